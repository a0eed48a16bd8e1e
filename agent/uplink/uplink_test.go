package uplink

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/fenceline/fenceline/agent/outbox"
	"github.com/fenceline/fenceline/scripts/lab"
)

// syncBuffer is a log sink safe for the uplink's goroutines.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

// lines returns the log lines that contain every one of the words.
func (s *syncBuffer) lines(words ...string) []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []string
	for _, l := range strings.Split(s.b.String(), "\n") {
		ok := l != ""
		for _, w := range words {
			ok = ok && strings.Contains(l, w)
		}
		if ok {
			out = append(out, l)
		}
	}
	return out
}

func waitFor(t *testing.T, within time.Duration, what string, cond func() bool) {
	t.Helper()
	if err := lab.WaitFor(within, what, func() (bool, string) { return cond(), "" }); err != nil {
		t.Fatal(err)
	}
}

// errValue is the err attribute of a log line.
var errValue = regexp.MustCompile(`err="([^"]*)"|err=(\S+)`)

// repeats reports whether an error message says the same thing twice in a row
// ("connect: connect: …") or carries the MQTT client's own wrapping.
func repeats(msg string) bool {
	parts := strings.Split(msg, ": ")
	for i := 1; i < len(parts); i++ {
		if parts[i] == parts[i-1] {
			return true
		}
	}
	return strings.Contains(msg, "network Error")
}

// TestLinkStatusAndLogs: an agent whose broker is unreachable says so once at info with
// the broker and the cause, retries at debug, says when it connects, and says when the
// connection is lost; Status reports each state.
func TestLinkStatusAndLogs(t *testing.T) {
	if err := lab.CheckHost("mosquitto"); err != nil {
		t.Skip(err)
	}
	port, err := lab.FreePort()
	if err != nil {
		t.Fatal(err)
	}
	broker := fmt.Sprintf("tcp://127.0.0.1:%d", port)
	ob, err := outbox.Open(filepath.Join(t.TempDir(), "outbox.db"), outbox.Config{})
	if err != nil {
		t.Fatal(err)
	}
	defer ob.Close()
	logs := &syncBuffer{}
	log := slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	u := New(Config{BrokerURL: broker, Tenant: "acme", Device: "fw-1",
		ConnectRetry: 50 * time.Millisecond}, ob, nil, log)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- u.Run(ctx) }()
	defer func() { cancel(); <-done }()

	waitFor(t, 10*time.Second, "three failed attempts", func() bool {
		return u.Status().FailedAttempts >= 3
	})
	st := u.Status()
	if st.Connected || st.Broker != broker || !strings.Contains(st.Error, "connection refused") {
		t.Errorf("status while unreachable: %+v", st)
	}
	info := logs.lines("level=INFO", "broker unreachable", "broker="+broker)
	if len(info) != 1 {
		t.Errorf("%d info lines about the unreachable broker, want 1:\n%s", len(info),
			strings.Join(logs.lines("broker"), "\n"))
	}
	if retries := logs.lines("level=DEBUG", "broker still unreachable"); len(retries) < 2 {
		t.Errorf("%d debug lines for retries, want ≥ 2", len(retries))
	}
	for _, l := range logs.lines("err=") {
		if m := errValue.FindStringSubmatch(l); m != nil && repeats(m[1]+m[2]) {
			t.Errorf("error message repeats itself: %s", l)
		}
	}

	l := lab.New("", t.TempDir(), "")
	defer l.Close()
	_, mosq, err := l.MosquittoIn("", "127.0.0.1", port)
	if err != nil {
		t.Fatal(err)
	}
	waitFor(t, 10*time.Second, "connected", func() bool { return u.Status().Connected })
	if up := logs.lines("level=INFO", "connected to broker", "broker="+broker, "down_for="); len(up) != 1 {
		t.Errorf("%d info lines about the connection, want 1", len(up))
	}

	mosq.Stop()
	waitFor(t, 10*time.Second, "disconnected", func() bool { return !u.Status().Connected })
	waitFor(t, 10*time.Second, "a failed reconnection", func() bool {
		return u.Status().FailedAttempts >= 1
	})
	if lost := logs.lines("level=INFO", "broker connection lost", "broker="+broker); len(lost) != 1 {
		t.Errorf("%d info lines about the lost connection, want 1", len(lost))
	}
	if again := logs.lines("level=INFO", "broker unreachable"); len(again) != 1 {
		t.Errorf("reconnection failures after a lost connection logged at info: %d lines", len(again))
	}
	if t.Failed() {
		t.Log(strings.Join(logs.lines("component=uplink"), "\n"))
	}
}
