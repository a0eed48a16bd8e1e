package store

import (
	"bytes"
	"log/slog"
	"strings"
	"testing"

	"github.com/hashicorp/go-hclog"
)

func TestRaftLogger(t *testing.T) {
	var buf bytes.Buffer
	l := newRaftLogger(slog.New(slog.NewTextHandler(&buf, &slog.HandlerOptions{Level: slog.LevelInfo})))
	l.Debug("hidden", "a", 1)
	l.Info("initial configuration", "last-index", 3, "votesNeeded", 1,
		"servers", hclog.Fmt("%+v", []int{1, 2}))
	l.Warn("odd", "lonely")
	l.Warn(electionStarted, "last-leader-addr", "")
	out := buf.String()
	for _, want := range []string{"level=INFO", "last_index=3", "votes_needed=1",
		`servers="[1 2]"`, "level=WARN", "extra=lonely", "logger=raft"} {
		if !strings.Contains(out, want) {
			t.Errorf("log lacks %q:\n%s", want, out)
		}
	}
	if !strings.Contains(out, "level=INFO msg=\""+electionStarted) {
		t.Errorf("election start not at info:\n%s", out)
	}
	if strings.Contains(out, "hidden") {
		t.Errorf("debug record logged at info level:\n%s", out)
	}
}
