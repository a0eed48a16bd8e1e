package agent

import (
	"crypto/ed25519"
	"fmt"
	"io"
	"log/slog"
	"path/filepath"
	"testing"

	"github.com/fenceline/fenceline/agent/identity"
	"github.com/fenceline/fenceline/agent/outbox"
	"github.com/fenceline/fenceline/agent/snmp"
	"github.com/fenceline/fenceline/agent/uplink"
	"github.com/fenceline/fenceline/shared/event"
	"github.com/fenceline/fenceline/shared/ruleset"
)

// snmpState is an SNMP device state with one interface row whose description is desc.
func snmpState(desc string) *ruleset.Ruleset {
	rs := &ruleset.Ruleset{Tables: []*ruleset.Table{{Family: snmp.Family, Name: "ifTable",
		Objects: []*ruleset.Object{{Type: "ifEntry", Name: "1",
			Spec: []string{fmt.Sprintf("ifDescr = %q", desc), "ifAdminStatus = up(1)"}}}}}}
	rs.Sort()
	return rs
}

func newTestReporter(t *testing.T, maxBytes int64) (*deviceReporter, ed25519.PublicKey) {
	t.Helper()
	pub, key, err := ed25519.GenerateKey(nil)
	if err != nil {
		t.Fatal(err)
	}
	id := &identity.Identity{Tenant: "acme", Device: "edge-fw-1", Key: key}
	// The uplink never runs: nothing is published, so a fold takes every pending event.
	r, err := newDeviceReporter(event.SourceSNMP, filepath.Join(t.TempDir(), OutboxFile), id,
		uplink.Config{BrokerURL: "tcp://127.0.0.1:1"}, maxBytes,
		slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { r.Close() })
	return r, pub
}

// pendingEvents opens every pending event and checks they form one chain.
func pendingOpened(t *testing.T, ob *outbox.Outbox, pub ed25519.PublicKey) []*event.Opened {
	t.Helper()
	h, err := ob.Head()
	if err != nil {
		t.Fatal(err)
	}
	es, err := ob.Pending(h.Acked, 1<<20)
	if err != nil {
		t.Fatal(err)
	}
	var out []*event.Opened
	prev := h.AckedID
	for i, e := range es {
		o, err := event.Open(e.Envelope, func(string) (ed25519.PublicKey, error) { return pub, nil })
		if err != nil {
			t.Fatalf("event %d: %v", e.Seq, err)
		}
		if o.Event.Seq != h.Acked+uint64(i)+1 || o.Event.Prev != prev || o.ID != e.ID {
			t.Fatalf("event %d: seq %d prev %s, want seq %d prev %s", e.Seq, o.Event.Seq,
				o.Event.Prev, h.Acked+uint64(i)+1, prev)
		}
		prev = o.ID
		out = append(out, o)
	}
	return out
}

// At the outbox bound the SNMP reporter folds every undelivered event, with the one that
// did not fit, into one fold event carrying the newest state, exactly as the nftables
// agent does (delivery.go): nothing is dropped silently, the chain holds, and a full
// outbox is never an error.
func TestSNMPReporterFoldsAtTheBound(t *testing.T) {
	r, pub := newTestReporter(t, 6<<10)
	if err := r.Report(event.Baseline, snmpState("v0"), nil, ""); err != nil {
		t.Fatal(err)
	}
	var n int
	for n = 1; n < 100; n++ {
		if err := r.Report(event.Change, snmpState(fmt.Sprintf("v%d", n)), nil, ""); err != nil {
			t.Fatalf("change %d: %v", n, err)
		}
		if es := pendingOpened(t, r.ob, pub); es[0].Event.Kind == event.Fold {
			break
		}
	}
	// The change that did not fit is folded in with the pending ones: one fold event
	// carrying its state, counting the baseline, the n-1 changes before it, and it.
	es := pendingOpened(t, r.ob, pub)
	if n == 100 || len(es) != 1 {
		t.Fatalf("after %d changes: %d pending events, want one fold", n, len(es))
	}
	fold := es[0].Event
	want := snmpState(fmt.Sprintf("v%d", n)).Digest().String()
	if fold.Source != event.SourceSNMP || fold.Folded != uint64(n+1) || fold.After != want ||
		fold.Before != "" || fold.Ruleset == nil ||
		fold.Ruleset.Digest().String() != want || fold.Note == "" {
		t.Errorf("fold: source %s folded %d %s -> %s, want %d events folded into state v%d",
			fold.Source, fold.Folded, fold.Before, fold.After, n+1, n)
	}
	// A heartbeat at the bound folds too, and never fails for want of room.
	for i := 0; i < 50; i++ {
		if err := r.Heartbeat(); err != nil {
			t.Fatalf("heartbeat %d: %v", i, err)
		}
	}
	pendingOpened(t, r.ob, pub)
}

// When the aggregator's head is not on the reporter's chain, the outbox is re-anchored
// at that head and the current state goes out from there as a resync event.
func TestSNMPReporterResync(t *testing.T) {
	r, pub := newTestReporter(t, 0)
	for i := 0; i < 3; i++ {
		kind := event.Change
		if i == 0 {
			kind = event.Baseline
		}
		if err := r.Report(kind, snmpState(fmt.Sprintf("v%d", i)), nil, ""); err != nil {
			t.Fatal(err)
		}
	}
	head := event.Ack{Seq: 41, ID: fmt.Sprintf("%064x", 41)}
	if err := r.resync(head); err != nil {
		t.Fatal(err)
	}
	es := pendingOpened(t, r.ob, pub)
	if len(es) != 1 {
		t.Fatalf("%d pending events after the resync, want 1", len(es))
	}
	e := es[0].Event
	want := snmpState("v2").Digest().String()
	if e.Kind != event.Resync || e.Seq != 42 || e.Prev != head.ID || e.After != want ||
		e.Before != "" || e.Ruleset == nil || e.Source != event.SourceSNMP {
		t.Fatalf("resync event: %s seq %d prev %s after %s", e.Kind, e.Seq, e.Prev, e.After)
	}
	// The chain goes on from there.
	if err := r.Report(event.Change, snmpState("v3"), nil, ""); err != nil {
		t.Fatal(err)
	}
	if es := pendingOpened(t, r.ob, pub); len(es) != 2 || es[1].Event.Before != want {
		t.Fatalf("after the resync: %d events", len(es))
	}
}
