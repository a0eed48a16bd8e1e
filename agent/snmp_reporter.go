package agent

import (
	"context"
	"crypto/ed25519"
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
// It is the nftables Agent's delivery logic (agent.go report/heartbeat, delivery.go
// append/fold/resync) with the source as a parameter, so that every SNMP target can be a
// device of its own; snmp_reporter_test.go checks the fold at the outbox bound and the
// resync behave as delivery.go's do.
//
// TODO: this duplicates Agent.append, Agent.fold, Agent.resync (agent/delivery.go) and
// Agent.report/heartbeat (agent/agent.go). Factoring them into one chain type needs
// delivery.go and agent.go, which were being changed by others when this was written;
// until the Agent delegates to one shared type, a change to the delivery rules there
// must be mirrored here.
type deviceReporter struct {
	source   string
	id       *identity.Identity
	ob       *outbox.Outbox
	up       *uplink.Uplink
	signer   *event.Signer
	log      *slog.Logger
	maxBytes int64
	now      func() time.Time

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
		maxBytes: outboxBytes, now: time.Now,
		up: uplink.New(up, ob, nil, log),
	}
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

// append seals e as the next event of the chain, as Agent.append does.
func (r *deviceReporter) append(e *event.Event, state []byte) (uint64, error) {
	seal := func(seq uint64, prev string) ([]byte, string, error) {
		e.Seq, e.Prev = seq, prev
		if e.Kind == event.Baseline && seq > 1 {
			e.Kind = event.Resync
			e.Before, e.Changes = "", nil
			e.Note = "the agent's chain continues from the aggregator's head; the events it " +
				"had not delivered are lost and this state replaces them"
		}
		return r.signer.Seal(e)
	}
	seq, err := r.ob.Append(seal, state)
	if errors.Is(err, outbox.ErrFull) {
		seq, err = r.fold(e.Kind, state)
	}
	if err != nil {
		return 0, err
	}
	r.up.Notify()
	return seq, nil
}

// fold replaces the pending events that never left the agent, together with the event
// of kind that did not fit, by one fold event carrying the state that event reports
// (state, or the last reported state when state is nil), as Agent.fold does. The fold
// event is kept even beyond the bound: a full outbox is never fatal.
func (r *deviceReporter) fold(kind event.Kind, state []byte) (uint64, error) {
	cur := r.last
	if state != nil {
		cur = new(observed)
		if err := json.Unmarshal(state, cur); err != nil {
			return 0, fmt.Errorf("fold: decode state: %w", err)
		}
	} else if b, err := r.ob.State(); err == nil {
		state = b
	}
	if cur == nil {
		return 0, errors.New("fold: outbox full before any state was reported")
	}
	var total uint64
	n, err := r.ob.Fold(r.up.Published(), func(seq uint64, prev string, first outbox.Entry, count int) ([]byte, string, error) {
		o, err := event.Open(first.Envelope, func(string) (ed25519.PublicKey, error) {
			return r.signer.PublicKey(), nil
		})
		if err != nil {
			return nil, "", fmt.Errorf("read first pending event: %w", err)
		}
		// The event that did not fit counts as folded too, and a fold among the folded
		// events counts as the events it replaced.
		total = uint64(count) + 1
		if o.Event.Kind == event.Fold && o.Event.Folded > 0 {
			total += o.Event.Folded - 1
		}
		e := r.event(event.Fold, cur.Digest)
		e.Seq, e.Prev, e.Before, e.Ruleset, e.Folded = seq, prev, o.Event.Before, cur.Ruleset, total
		e.Note = fmt.Sprintf("outbox reached its bound of %d bytes while undelivered; %d events "+
			"(sequences %d to %d, and a %s event that did not fit) folded into this state",
			r.maxBytes, total, first.Seq, first.Seq+uint64(count)-1, kind)
		return r.signer.Seal(e)
	}, state)
	if err != nil {
		return 0, err
	}
	if n == 0 {
		return 0, errors.New("fold: the outbox was full but holds no pending event")
	}
	r.up.Replaced()
	head, err := r.ob.Head()
	if err != nil {
		return 0, fmt.Errorf("fold: %w", err)
	}
	r.log.Warn("outbox full: pending events folded into one state event", "folded", total,
		"max_bytes", r.maxBytes, "digest", cur.Digest)
	if r.maxBytes > 0 && head.Bytes > r.maxBytes {
		r.log.Warn("outbox over its bound: the fold event, with the events already published, "+
			"exceeds outbox.max_bytes; kept rather than lose the state", "pending_bytes",
			head.Bytes, "max_bytes", r.maxBytes, "seq", head.Seq)
	}
	return head.Seq, nil
}

// resync re-anchors the outbox at the aggregator's head and reports the current state
// from there, as Agent.resync does.
func (r *deviceReporter) resync(head event.Ack) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	dropped, err := r.ob.Reanchor(head.Seq, head.ID)
	if err != nil {
		return err
	}
	r.log.Warn("re-anchored the event chain at the aggregator's head", "seq", head.Seq,
		"dropped", dropped)
	if r.last == nil {
		return nil
	}
	e := r.event(event.Baseline, r.last.Digest)
	e.Ruleset = r.last.Ruleset
	_, err = r.append(e, nil)
	return err
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
