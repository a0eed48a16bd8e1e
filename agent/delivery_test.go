package agent

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"testing"

	"github.com/fenceline/fenceline/agent/nft"
	"github.com/fenceline/fenceline/shared/event"
	"github.com/fenceline/fenceline/shared/ruleset"
)

// syncBuffer is a log sink safe for the agent's goroutines.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// newDeliveryAgent is an agent on a real outbox in a temporary state directory, without a
// ruleset source; conf may change its configuration. Its uplink runs only if the test
// starts it.
func newDeliveryAgent(t *testing.T, logs *syncBuffer, conf func(*Config)) *Agent {
	t.Helper()
	log := slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	a := newTestAgent(t, nil, log, conf)
	t.Cleanup(func() { a.Close() })
	return a
}

// bigRuleset is one chain of n rules, about 40 bytes each in an event.
func bigRuleset(n int) *ruleset.Ruleset {
	c := &ruleset.Chain{Name: "c"}
	for i := range n {
		c.Rules = append(c.Rules, &ruleset.Rule{Text: fmt.Sprintf("tcp dport %d drop", i+1)})
	}
	return &ruleset.Ruleset{Tables: []*ruleset.Table{{Family: "ip", Name: "t", Chains: []*ruleset.Chain{c}}}}
}

func pendingEvents(t *testing.T, a *Agent) []event.Event {
	t.Helper()
	entries, err := a.ob.Pending(0, 1<<20)
	if err != nil {
		t.Fatal(err)
	}
	var out []event.Event
	for _, en := range entries {
		o, err := event.Open(en.Envelope, func(string) (ed25519.PublicKey, error) {
			return a.signer.PublicKey(), nil
		})
		if err != nil {
			t.Fatalf("event %d: %v", en.Seq, err)
		}
		out = append(out, o.Event)
	}
	return out
}

// TestAckBetweenFullAndFold: an event does not fit, and before the fold an ack empties
// the outbox (it was published meanwhile): the event is stored as itself, the agent goes
// on (it used to stop with "the outbox was full but holds no pending event").
func TestAckBetweenFullAndFold(t *testing.T) {
	logs := &syncBuffer{}
	a := newDeliveryAgent(t, logs, func(c *Config) { c.Outbox.MaxBytes = 16 << 10 })
	if err := a.report(event.Baseline, bigRuleset(10), 1, nil, "", nil); err != nil {
		t.Fatal(err)
	}
	a.chain.beforeFold = func() {
		h, _ := a.ob.Head()
		if _, err := a.ob.Ack(h.Seq, h.ID); err != nil {
			t.Error(err)
		}
	}
	big := bigRuleset(1000)
	if err := a.report(event.Reconcile, big, 5, nil, "changed while down", nil); err != nil {
		t.Fatalf("event after the ack: %v", err)
	}
	evs := pendingEvents(t, a)
	if len(evs) != 1 || evs[0].Kind != event.Reconcile || evs[0].Seq != 2 ||
		evs[0].After != big.Digest().String() {
		t.Fatalf("outbox holds %v, want the reconcile as seq 2", kindsOf(evs))
	}
}

// TestFoldBeyondBound: the state alone is larger than the outbox bound. Reaching the
// bound folds the pending events and the one that did not fit into one fold event, which
// is kept although it exceeds the bound; the agent goes on (it used to stop with ErrFull
// and crash-loop), counts it and says so.
func TestFoldBeyondBound(t *testing.T) {
	const bound = 16 << 10
	logs := &syncBuffer{}
	a := newDeliveryAgent(t, logs, func(c *Config) { c.Outbox.MaxBytes = bound })

	small, big := bigRuleset(10), bigRuleset(1000)
	if err := a.report(event.Baseline, small, 1, nil, "", nil); err != nil {
		t.Fatal(err)
	}
	// The aggregator has the baseline.
	h, _ := a.ob.Head()
	if _, err := a.ob.Ack(h.Seq, h.ID); err != nil {
		t.Fatal(err)
	}
	for range 2 {
		if err := a.heartbeat(); err != nil {
			t.Fatal(err)
		}
	}
	// A reconcile carrying a ruleset larger than the bound, then more heartbeats.
	if err := a.report(event.Reconcile, big, 5, nil, "changed while down", nil); err != nil {
		t.Fatalf("state event beyond the bound: %v", err)
	}
	for range 3 {
		if err := a.heartbeat(); err != nil {
			t.Fatalf("heartbeat after the fold: %v", err)
		}
	}

	evs := pendingEvents(t, a)
	if len(evs) != 1 || evs[0].Kind != event.Fold {
		t.Fatalf("outbox holds %d events (%v), want one fold event", len(evs), kindsOf(evs))
	}
	f := evs[0]
	if f.Seq != 2 || f.Prev != h.ID {
		t.Errorf("fold is seq %d prev %s, want seq 2 after the acked baseline %s", f.Seq, f.Prev, h.ID)
	}
	// Two heartbeats, the reconcile, three heartbeats.
	if f.Folded != 6 {
		t.Errorf("fold replaces %d events, want 6", f.Folded)
	}
	if f.Before != small.Digest().String() || f.After != big.Digest().String() {
		t.Errorf("fold goes %s → %s, want %s → %s", f.Before, f.After, small.Digest(), big.Digest())
	}
	if f.Ruleset == nil || f.Ruleset.Digest() != big.Digest() {
		t.Error("fold does not carry the state after the reconcile")
	}
	if a.last.Digest != big.Digest().String() {
		t.Errorf("agent's last state %s, want the reconcile's %s", a.last.Digest, big.Digest())
	}
	if n := metricValue(t, a, "fenceline_agent_outbox_over_bound_total"); n < 1 {
		t.Errorf("fenceline_agent_outbox_over_bound_total = %v, want ≥ 1", n)
	}
	if n := metricValue(t, a, "fenceline_agent_outbox_folds_total"); n != 4 {
		t.Errorf("fenceline_agent_outbox_folds_total = %v, want 4", n)
	}
	if !strings.Contains(logs.String(), "outbox over its bound") {
		t.Errorf("no log line about the bound being exceeded:\n%s", logs)
	}

	// Restarted on the same outbox (what a crash loop would do): still no error.
	a.Close()
	b, err := New(a.cfg, a.id, nil, slog.New(slog.NewTextHandler(logs, nil)))
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	if err := b.loadLast(); err != nil {
		t.Fatal(err)
	}
	if err := b.heartbeat(); err != nil {
		t.Fatalf("heartbeat after restart: %v", err)
	}
	if evs := pendingEvents(t, b); len(evs) != 1 || evs[0].Folded != 7 {
		t.Fatalf("after restart: %v, want one fold of 7", kindsOf(evs))
	}
}

func kindsOf(evs []event.Event) []string {
	var out []string
	for _, e := range evs {
		out = append(out, fmt.Sprintf("%d:%s", e.Seq, e.Kind))
	}
	return out
}

// metricValue is the value of the agent's counter or gauge name, as /metrics serves it.
func metricValue(t *testing.T, a *Agent, name string) float64 {
	t.Helper()
	mfs, err := a.metrics.reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != name || len(mf.GetMetric()) == 0 {
			continue
		}
		m := mf.GetMetric()[0]
		if c := m.GetCounter(); c != nil {
			return c.GetValue()
		}
		return m.GetGauge().GetValue()
	}
	t.Fatalf("no metric %s", name)
	return 0
}

// unstableSource is a ruleset that changes during its first reads.
type unstableSource struct {
	unstable int // reads left that fail
	rs       *ruleset.Ruleset
}

func (s *unstableSource) Snapshot() (*ruleset.Ruleset, uint32, error) {
	if s.unstable > 0 {
		s.unstable--
		return nil, 0, nft.ErrUnstable
	}
	return s.rs, 7, nil
}

func (s *unstableSource) Watch(ctx context.Context) (<-chan nft.Notification, error) {
	return make(chan nft.Notification), nil
}

// TestFirstReadWaitsForStillRuleset: at start, a ruleset that changes during every read
// attempt (a stream of commits) is read again after a pause instead of ending the agent.
func TestFirstReadWaitsForStillRuleset(t *testing.T) {
	logs := &syncBuffer{}
	a := newDeliveryAgent(t, logs, nil)
	src := &unstableSource{unstable: 2, rs: bigRuleset(3)}
	rs, gen, err := a.firstRead(context.Background(), newTracker(src))
	if err != nil || gen != 7 || rs.Digest() != src.rs.Digest() || src.unstable != 0 {
		t.Fatalf("first read: gen %d, %v; %d unstable reads left", gen, err, src.unstable)
	}
	if n := strings.Count(logs.String(), "ruleset changing during every read"); n != 2 {
		t.Fatalf("%d warnings, want 2:\n%s", n, logs.String())
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	src.unstable = 1
	if _, _, err := a.firstRead(ctx, newTracker(src)); !errors.Is(err, context.Canceled) {
		t.Fatalf("stopped while waiting: %v", err)
	}
}
