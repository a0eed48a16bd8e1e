package agent

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"fmt"
	"io"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/fenceline/fenceline/agent/identity"
	"github.com/fenceline/fenceline/agent/nft"
	"github.com/fenceline/fenceline/internal/nstest"
	"github.com/fenceline/fenceline/shared/event"
)

// requireKernel skips kernel-tier tests where they cannot run.
func requireKernel(t testing.TB) { t.Helper(); nstest.RequireKernel(t) }

// newNS creates a uniquely named network namespace, deleted when the test ends.
func newNS(t testing.TB, tag string) string { t.Helper(); return nstest.New(t, tag) }

// inNS runs a command in the namespace and returns its output; it fails the test on error.
func inNS(t testing.TB, ns string, args ...string) string {
	t.Helper()
	out, err := nstest.Run(ns, args...)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// observer is an agent observing a namespace, with its outbox open for inspection. The
// uplink never runs: events stay in the outbox.
type observer struct {
	a         *Agent
	reader    *nft.Reader
	cancel    context.CancelFunc
	done      chan error
	seen      int // events already returned
	sentinels int
	stopped   bool
}

func startObserver(t *testing.T, ns string, setup func(*nft.Reader)) *observer {
	t.Helper()
	return startObserverWith(t, ns, setup, nil)
}

// startObserverWith is startObserver with a chance to change the configuration.
func startObserverWith(t *testing.T, ns string, setup func(*nft.Reader), conf func(*Config)) *observer {
	t.Helper()
	r, err := nft.Open(ns)
	if err != nil {
		t.Fatal(err)
	}
	if setup != nil {
		setup(r)
	}
	return startObserverSource(t, r, r, conf)
}

// newTestAgent is an agent of device acme/fw-1 with a fresh key, on a real outbox in a
// temporary state directory, reading src (nil: none); conf may change its configuration.
// Its uplink is never started by it (the broker address is never dialled). The caller
// closes it.
func newTestAgent(t testing.TB, src Source, log *slog.Logger, conf func(*Config)) *Agent {
	t.Helper()
	_, key, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	cfg := &Config{
		StateDir:          stateDir(t),
		HeartbeatInterval: time.Hour,
		Nftables:          NftablesConfig{BackstopInterval: time.Hour},
		Broker:            BrokerConfig{URL: "tcp://127.0.0.1:1"},
	}
	if conf != nil {
		conf(cfg)
	}
	id := &identity.Identity{Tenant: "acme", Device: "fw-1", Key: key}
	a, err := New(cfg, id, src, log)
	if err != nil {
		t.Fatal(err)
	}
	return a
}

// startObserverSource starts an agent on src, which reads through r (src may wrap r to
// lose notifications on purpose).
func startObserverSource(t testing.TB, r *nft.Reader, src Source, conf func(*Config)) *observer {
	t.Helper()
	a := newTestAgent(t, src, slog.New(slog.NewTextHandler(io.Discard, nil)), conf)
	ctx, cancel := context.WithCancel(context.Background())
	o := &observer{a: a, reader: r, cancel: cancel, done: make(chan error, 1)}
	go func() { o.done <- a.observe(ctx) }()
	t.Cleanup(func() {
		if !o.stopped {
			o.stop()
		}
	})
	return o
}

// stop ends the observer and closes its outbox, as an agent that goes down.
func (o *observer) stop() {
	o.cancel()
	<-o.done
	o.a.Close()
	o.reader.Close()
	o.stopped = true
}

// restart starts the agent again on the same state directory and key.
func (o *observer) restart(t *testing.T, ns string) *observer {
	t.Helper()
	r, err := nft.Open(ns)
	if err != nil {
		t.Fatal(err)
	}
	a, err := New(o.a.cfg, o.a.id, r, slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	n := &observer{a: a, reader: r, cancel: cancel, done: make(chan error, 1), seen: o.seen}
	go func() { n.done <- a.observe(ctx) }()
	t.Cleanup(func() {
		if !n.stopped {
			n.stop()
		}
	})
	return n
}

// stateDir is a fresh state directory for an agent.
func stateDir(t testing.TB) string { return t.TempDir() }

// events returns every event in the outbox, oldest first.
func (o *observer) events(t testing.TB) []*event.Event {
	t.Helper()
	entries, err := o.a.ob.Pending(0, 1<<20)
	if err != nil {
		t.Fatal(err)
	}
	var out []*event.Event
	for _, e := range entries {
		op, err := event.Open(e.Envelope, func(string) (ed25519.PublicKey, error) {
			return o.a.signer.PublicKey(), nil
		})
		if err != nil {
			t.Fatalf("event %d: %v", e.Seq, err)
		}
		ev := op.Event
		out = append(out, &ev)
	}
	return out
}

// waitEvents waits until the outbox holds at least n events after the ones already seen
// and returns those; it fails the test at the deadline.
func (o *observer) waitEvents(t testing.TB, n int, within time.Duration) []*event.Event {
	t.Helper()
	deadline := time.Now().Add(within)
	for {
		select {
		case err := <-o.done:
			t.Fatalf("observer stopped: %v", err)
		default:
		}
		evs := o.events(t)
		if len(evs)-o.seen >= n {
			got := evs[o.seen:]
			o.seen = len(evs)
			return got
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d events after %v, want %d more than %d:\n%s", len(evs), within, n, o.seen,
				describe(evs))
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// untilSentinel commits a marker change (a new empty table) and returns the events
// written before the marker's own change event: the agent handles generations in order,
// so once the marker is reported, every earlier generation has been dealt with.
func (o *observer) untilSentinel(t testing.TB, ns string) []*event.Event {
	t.Helper()
	o.sentinels++
	name := fmt.Sprintf("fl_sentinel_%d", o.sentinels)
	inNS(t, ns, "nft", "add table ip "+name)
	deadline := time.Now().Add(10 * time.Second)
	for {
		evs := o.events(t)
		for i := o.seen; i < len(evs); i++ {
			for _, c := range evs[i].Changes {
				if c.Kind == "table_added" && c.Table == name {
					got := evs[o.seen:i]
					o.seen = i + 1
					return got
				}
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("sentinel %s not reported:\n%s", name, describe(evs[o.seen:]))
		}
		select {
		case err := <-o.done:
			t.Fatalf("observer stopped: %v", err)
		case <-time.After(5 * time.Millisecond):
		}
	}
}

func describe(evs []*event.Event) string {
	var sb strings.Builder
	for _, e := range evs {
		fmt.Fprintf(&sb, "\t%d %s gen %d missed %v committer %+v changes %d %s\n", e.Seq, e.Kind,
			e.Generation, e.MissedGenerations, e.Committer, len(e.Changes), e.Note)
		for i, c := range e.Changes {
			if i == 5 {
				fmt.Fprintf(&sb, "\t\t…\n")
				break
			}
			fmt.Fprintf(&sb, "\t\t%s %s %s %s %s\n", c.Kind, c.Chain, c.Set, c.Rule, c.Element)
		}
	}
	return sb.String()
}
