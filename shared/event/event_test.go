package event_test

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/fenceline/fenceline/shared/event"
)

func TestValidate(t *testing.T) {
	s := event.NewSigner(testKey(1))
	digest := sampleEvent(s).After
	id := strings.Repeat("0123456789abcdef", 4)
	tests := []struct {
		name   string
		mutate func(*event.Event)
		ok     bool
	}{
		{"sample", func(*event.Event) {}, true},
		{"baseline", func(e *event.Event) {
			e.Kind, e.Seq, e.Prev, e.Before, e.Changes = event.Baseline, 1, "", "", nil
		}, true},
		{"heartbeat from snmp", func(e *event.Event) {
			e.Kind, e.Source, e.Ruleset, e.Changes = event.Heartbeat, event.SourceSNMP, nil, nil
		}, true},
		{"reconcile", func(e *event.Event) {
			e.Kind, e.MissedGenerations = event.Reconcile, []string{"18-25"}
		}, true},
		{"name of 64 characters",
			func(e *event.Event) { e.Device = strings.Repeat("d", 64) }, true},
		{"time without fraction",
			func(e *event.Event) { e.Observed = "2025-03-04T05:06:07Z" }, true},

		{"version 0", func(e *event.Event) { e.V = 0 }, false},
		{"version 2", func(e *event.Event) { e.V = 2 }, false},
		{"no kind", func(e *event.Event) { e.Kind = "" }, false},
		{"unknown kind", func(e *event.Event) { e.Kind = "Change" }, false},
		{"seq 0", func(e *event.Event) { e.Seq, e.Prev = 0, "" }, false},
		{"seq 1 with prev", func(e *event.Event) { e.Seq, e.Prev = 1, id }, false},
		{"seq 2 without prev", func(e *event.Event) { e.Seq, e.Prev = 2, "" }, false},
		{"prev not an id", func(e *event.Event) { e.Prev = "previous" }, false},
		{"prev in upper case", func(e *event.Event) { e.Prev = strings.ToUpper(id) }, false},
		{"prev too short", func(e *event.Event) { e.Prev = id[:62] }, false},
		{"no source", func(e *event.Event) { e.Source = "" }, false},
		{"unknown source", func(e *event.Event) { e.Source = "iptables" }, false},
		{"no after", func(e *event.Event) { e.After = "" }, false},
		{"after without prefix",
			func(e *event.Event) { e.After = strings.TrimPrefix(digest, "sha256:") }, false},
		{"after short", func(e *event.Event) { e.After = digest[:len(digest)-2] }, false},
		{"after not hex", func(e *event.Event) { e.After = digest[:len(digest)-1] + "g" }, false},
		{"after in upper case",
			func(e *event.Event) { e.After = "sha256:" + strings.ToUpper(digest[7:]) }, false},
		{"before bad", func(e *event.Event) { e.Before = "sha256:00" }, false},
		{"no tenant", func(e *event.Event) { e.Tenant = "" }, false},
		{"tenant with wildcard", func(e *event.Event) { e.Tenant = "acme+" }, false},
		{"device with slash", func(e *event.Event) { e.Device = "fw/1" }, false},
		{"device too long", func(e *event.Event) { e.Device = strings.Repeat("d", 65) }, false},
		{"no time", func(e *event.Event) { e.Observed = "" }, false},
		{"time not RFC 3339", func(e *event.Event) { e.Observed = "2025-03-04 05:06:07" }, false},
		{"time not UTC", func(e *event.Event) { e.Observed = "2025-03-04T07:06:07+02:00" }, false},
		{"time with zero offset",
			func(e *event.Event) { e.Observed = "2025-03-04T05:06:07+00:00" }, false},
		{"time in lower case", func(e *event.Event) { e.Observed = "2025-03-04t05:06:07z" }, false},
		{"time out of range", func(e *event.Event) { e.Observed = "2025-02-30T05:06:07Z" }, false},
		{"one-digit hour", func(e *event.Event) { e.Observed = "2025-03-04T5:06:07Z" }, false},
		{"comma before fraction",
			func(e *event.Event) { e.Observed = "2025-03-04T05:06:07,8Z" }, false},
		{"fraction with trailing zero",
			func(e *event.Event) { e.Observed = "2025-03-04T05:06:07.80Z" }, false},
	}
	for _, tt := range tests {
		e := sampleEvent(s)
		tt.mutate(e)
		err := e.Validate()
		switch {
		case tt.ok && err != nil:
			t.Errorf("%s: %v", tt.name, err)
		case !tt.ok && !errors.Is(err, event.ErrInvalid):
			t.Errorf("%s: Validate = %v, want ErrInvalid", tt.name, err)
		}
	}
}

func TestFormatTime(t *testing.T) {
	at := time.Date(2025, 3, 4, 7, 6, 7, 891000000, time.FixedZone("CET", 2*3600))
	s := event.FormatTime(at)
	if s != "2025-03-04T05:06:07.891Z" {
		t.Errorf("FormatTime = %q", s)
	}
	e := &event.Event{Observed: s}
	got, err := e.ObservedTime()
	if err != nil || !got.Equal(at) {
		t.Errorf("ObservedTime = %v, %v; want %v", got, err, at)
	}
}
