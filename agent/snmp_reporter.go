package agent

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/fenceline/fenceline/agent/identity"
	"github.com/fenceline/fenceline/agent/outbox"
	"github.com/fenceline/fenceline/agent/uplink"
	"github.com/fenceline/fenceline/shared/event"
	"github.com/fenceline/fenceline/shared/ruleset"
)

// deviceReporter is one enrolled device's half of the agent: its signer, its durable
// outbox and the uplink that delivers it, and the last state it reported. It turns
// observed states into the device's chain of signed events (baseline, change, reconcile,
// heartbeat; fold at the outbox bound; resync when the aggregator's head is not on the
// chain).
//
// Its delivery rules are the nftables Agent's: both append through a chain
// (delivery.go), with the source as the difference; snmp_reporter_test.go checks the
// fold at the outbox bound and the resync.
type deviceReporter struct {
	source string
	id     *identity.Identity
	ob     *outbox.Outbox
	up     *uplink.Uplink
	signer *event.Signer
	log    *slog.Logger
	now    func() time.Time

	chain *chain

	mu   sync.Mutex // serializes appends: the watcher reports, the resync loop re-anchors
	last *observed
}

// newDeviceReporter opens the outbox at path and prepares the uplink for the device.
func newDeviceReporter(source, path string, id *identity.Identity, up uplink.Config,
	outboxBytes int64, log *slog.Logger) (*deviceReporter, error) {
	ob, moved, err := outbox.OpenOrRecover(path, outbox.Config{MaxBytes: outboxBytes})
	if err != nil {
		return nil, err
	}
	if moved != "" {
		log.Error("outbox was corrupt and has been moved aside; undelivered events in it are lost "+
			"and the device resynchronizes with the aggregator", "moved_to", moved)
	}
	up.Tenant, up.Device = id.Tenant, id.Device
	r := &deviceReporter{
		source: source, id: id, ob: ob, signer: event.NewSigner(id.Key), log: log,
		now: time.Now,
		up:  uplink.New(up, ob, nil, log),
	}
	r.chain = &chain{ob: ob, up: r.up, signer: r.signer, log: log, maxBytes: outboxBytes,
		newEvent: r.event}
	b, err := ob.State()
	switch {
	case errors.Is(err, outbox.ErrNotFound):
	case err != nil:
		ob.Close()
		return nil, err
	default:
		var o observed
		if err := json.Unmarshal(b, &o); err != nil {
			ob.Close()
			return nil, fmt.Errorf("outbox state: %w", err)
		}
		r.last = &o
	}
	return r, nil
}

// Close releases the outbox.
func (r *deviceReporter) Close() error { return r.ob.Close() }

// Last is the state last reported, nil before the baseline.
func (r *deviceReporter) Last() *ruleset.Ruleset {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.last == nil {
		return nil
	}
	return r.last.Ruleset
}

// Run delivers the outbox and re-anchors the chain when the aggregator asks, until ctx
// ends.
func (r *deviceReporter) Run(ctx context.Context) error {
	errc := make(chan error, 1)
	go func() { errc <- r.up.Run(ctx) }()
	for {
		select {
		case <-ctx.Done():
			err := <-errc
			if errors.Is(err, context.Canceled) {
				return nil
			}
			return err
		case err := <-errc:
			return err
		case ack := <-r.up.Diverged():
			if err := r.resync(ack); err != nil {
				r.log.Error("re-anchoring the event chain failed", "err", err)
			}
		}
	}
}

// Report appends one event that moves the reported state to rs.
func (r *deviceReporter) Report(kind event.Kind, rs *ruleset.Ruleset, c *event.Committer,
	note string) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	after := rs.Digest().String()
	e := r.event(kind, after)
	e.Committer, e.Note = c, note
	if r.last != nil {
		e.Before = r.last.Digest
		e.Changes = ruleset.Diff(r.last.Ruleset, rs)
	}
	if kind.CarriesRuleset() {
		e.Ruleset = rs
	}
	next := &observed{Digest: after, Ruleset: rs}
	state, err := json.Marshal(next)
	if err != nil {
		return fmt.Errorf("encode state: %w", err)
	}
	seq, err := r.append(e, state)
	if err != nil {
		return err
	}
	r.last = next
	r.log.Info("device event", "kind", kind, "seq", seq, "changes", len(e.Changes),
		"digest", after, "committer", committerName(c))
	return nil
}

// Heartbeat appends a heartbeat carrying the last reported digest.
func (r *deviceReporter) Heartbeat() error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.last == nil {
		return nil
	}
	e := r.event(event.Heartbeat, r.last.Digest)
	e.Before = r.last.Digest
	_, err := r.append(e, nil)
	return err
}

func (r *deviceReporter) event(kind event.Kind, after string) *event.Event {
	return &event.Event{
		V: event.Version, Kind: kind, Tenant: r.id.Tenant, Device: r.id.Device,
		KeyID: r.signer.KeyID(), Observed: event.FormatTime(r.now()), Source: r.source,
		After: after,
	}
}

// append appends through the device's chain (delivery.go), as the Agent does.
func (r *deviceReporter) append(e *event.Event, state []byte) (uint64, error) {
	return r.chain.append(e, state, r.last)
}

// resync re-anchors the device's chain at the aggregator's head and reports the current
// state from there, as the Agent does.
func (r *deviceReporter) resync(head event.Ack) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.chain.resync(head, r.last)
}

func committerName(c *event.Committer) string {
	if c == nil {
		return ""
	}
	if c.LoginUID != "" {
		return c.LoginUID
	}
	return c.Comm
}
