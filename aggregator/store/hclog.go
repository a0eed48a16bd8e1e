package store

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"strings"

	"github.com/hashicorp/go-hclog"
)

// newRaftLogger gives raft an hclog.Logger that writes to slog: raft's Info (state
// changes) at Info, its Debug and Trace at Debug, and its kebab-case keys in snake_case.
func newRaftLogger(log *slog.Logger) hclog.Logger {
	l := hclog.NewInterceptLogger(&hclog.LoggerOptions{
		Name:   "raft",
		Output: io.Discard,
		Level:  hclog.Off, // the discarded base logger formats nothing; the sink gets all
	})
	l.RegisterSink(&slogSink{log: log})
	return l
}

// electionStarted is raft's warning when a follower has heard from no leader.
const electionStarted = "heartbeat timeout reached, starting election"

type slogSink struct{ log *slog.Logger }

// Accept receives one hclog record.
func (s *slogSink) Accept(name string, level hclog.Level, msg string, args ...any) {
	lvl := slog.LevelDebug
	switch {
	case level >= hclog.Error:
		lvl = slog.LevelError
	case level == hclog.Warn && msg == electionStarted:
		// Every start of a node, and a single node's bootstrap, begins with this; it
		// is worth seeing, not a warning. A lost leader shows as a state change too.
		lvl = slog.LevelInfo
	case level == hclog.Warn:
		lvl = slog.LevelWarn
	case level == hclog.Info:
		lvl = slog.LevelInfo
	}
	ctx := context.Background()
	if !s.log.Enabled(ctx, lvl) {
		return
	}
	attrs := make([]any, 0, len(args)+2)
	attrs = append(attrs, "logger", name)
	for i := 0; i < len(args); i += 2 {
		if i+1 == len(args) {
			attrs = append(attrs, "extra", args[i])
			break
		}
		attrs = append(attrs, snakeCase(fmt.Sprint(args[i])), value(args[i+1]))
	}
	s.log.Log(ctx, lvl, msg, attrs...)
}

// value renders hclog's deferred formats; other values pass through.
func value(v any) any {
	if f, ok := v.(hclog.Format); ok && len(f) > 0 {
		if format, ok := f[0].(string); ok {
			return fmt.Sprintf(format, f[1:]...)
		}
	}
	return v
}

// snakeCase turns raft's "last-index" and "votesNeeded" into last_index, votes_needed.
func snakeCase(k string) string {
	var b strings.Builder
	for i, r := range k {
		switch {
		case r == '-' || r == ' ':
			b.WriteByte('_')
		case r >= 'A' && r <= 'Z':
			if i > 0 {
				b.WriteByte('_')
			}
			b.WriteRune(r + 'a' - 'A')
		default:
			b.WriteRune(r)
		}
	}
	return b.String()
}
