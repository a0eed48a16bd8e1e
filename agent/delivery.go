package agent

import (
	"crypto/ed25519"
	"encoding/json"
	"errors"
	"fmt"

	"github.com/fenceline/fenceline/agent/outbox"
	"github.com/fenceline/fenceline/shared/event"
)

// append seals e as the next event of the chain, stores it durably, and wakes the uplink.
// A baseline that cannot be the chain's first event (the chain was re-anchored at the
// aggregator's head) goes out as a resync. When e does not fit under the outbox bound,
// the pending events and e are folded into one state event instead; nothing is dropped
// silently, and a full outbox is never fatal. state is e's state blob (nil: e does not
// move the state).
func (a *Agent) append(e *event.Event, state []byte) (uint64, error) {
	seal := func(seq uint64, prev string) ([]byte, string, error) {
		e.Seq, e.Prev = seq, prev
		if e.Kind == event.Baseline && seq > 1 {
			e.Kind = event.Resync
			e.Before, e.Changes = "", nil
			e.Note = "the agent's chain continues from the aggregator's head; the events it " +
				"had not delivered are lost and this state replaces them"
		}
		return a.signer.Seal(e)
	}
	kind := e.Kind
	seq, err := a.ob.Append(seal, state)
	if errors.Is(err, outbox.ErrFull) {
		seq, err = a.fold(kind, state)
		kind = event.Fold
	}
	if err != nil {
		return 0, err
	}
	a.metrics.appended(kind)
	a.up.Notify()
	return seq, nil
}

// fold replaces the pending events that never left the agent, together with the event
// of kind that did not fit, by one fold event carrying the state that event reports
// (state, or the last reported state when state is nil). The fold event is stored
// whatever its size: when it alone, with the events already published, exceeds the
// bound (a ruleset larger than outbox.max_bytes), the bound is exceeded rather than the
// state lost, and that is counted and logged. It returns the fold event's sequence.
func (a *Agent) fold(kind event.Kind, state []byte) (uint64, error) {
	cur := a.last
	if state != nil {
		cur = new(observed)
		if err := json.Unmarshal(state, cur); err != nil {
			return 0, fmt.Errorf("fold: decode state: %w", err)
		}
	}
	if cur == nil {
		return 0, errors.New("fold: outbox full before any state was reported")
	}
	var firstBefore string
	var total uint64
	// Events already published may be at the aggregator: fold only the rest.
	n, err := a.ob.Fold(a.up.Published(), func(seq uint64, prev string, first outbox.Entry, count int) ([]byte, string, error) {
		o, err := event.Open(first.Envelope, func(string) (ed25519.PublicKey, error) {
			return a.signer.PublicKey(), nil
		})
		if err != nil {
			return nil, "", fmt.Errorf("read first pending event: %w", err)
		}
		firstBefore = o.Event.Before
		// The event that did not fit counts as folded too. A fold event among the folded
		// ones counts as the events it replaced; only the first can be one, since a fold
		// replaces every unpublished event after it.
		total = uint64(count) + 1
		if o.Event.Kind == event.Fold && o.Event.Folded > 0 {
			total += o.Event.Folded - 1
		}
		e := &event.Event{
			V: event.Version, Kind: event.Fold, Tenant: a.id.Tenant, Device: a.id.Device,
			KeyID: a.signer.KeyID(), Seq: seq, Prev: prev, Observed: event.FormatTime(a.now()),
			Source: event.SourceNftables, Generation: cur.Generation,
			Before: firstBefore, After: cur.Digest, Ruleset: cur.Ruleset,
			Folded: total,
			Note: fmt.Sprintf("outbox reached its bound of %d bytes while undelivered; %d events "+
				"(sequences %d to %d, and a %s event that did not fit) folded into this state",
				a.cfg.Outbox.MaxBytes, total, first.Seq, first.Seq+uint64(count)-1, kind),
		}
		return a.signer.Seal(e)
	}, state)
	if err != nil {
		return 0, err
	}
	if n == 0 {
		// Fold found nothing pending, so Append could not have been full.
		return 0, errors.New("fold: the outbox was full but holds no pending event")
	}
	a.metrics.folds.Inc()
	a.up.Replaced()
	head, err := a.ob.Head()
	if err != nil {
		return 0, fmt.Errorf("fold: %w", err)
	}
	a.log.Warn("outbox full: pending events folded into one state event", "folded", total,
		"max_bytes", a.cfg.Outbox.MaxBytes, "first_digest", firstBefore, "digest", cur.Digest)
	if max := a.cfg.Outbox.MaxBytes; max > 0 && head.Bytes > max {
		a.metrics.overBound.Inc()
		a.log.Warn("outbox over its bound: the fold event, with the events already published, "+
			"exceeds outbox.max_bytes; kept rather than lose the state (raise outbox.max_bytes "+
			"above the size of a full ruleset)", "pending_bytes", head.Bytes, "max_bytes", max,
			"seq", head.Seq)
	}
	return head.Seq, nil
}

// resync re-anchors the outbox at the aggregator's head and reports the current state
// from there: the aggregator's chain is not this outbox's (the outbox was lost, or events
// it holds were replaced), so what the outbox still held cannot be delivered.
func (a *Agent) resync(head event.Ack) error {
	dropped, err := a.ob.Reanchor(head.Seq, head.ID)
	if err != nil {
		return err
	}
	a.log.Warn("re-anchored the event chain at the aggregator's head", "seq", head.Seq,
		"dropped", dropped)
	if a.last == nil {
		return nil // the first state event will go out as a resync
	}
	e := &event.Event{
		V: event.Version, Kind: event.Baseline, Tenant: a.id.Tenant, Device: a.id.Device,
		KeyID: a.signer.KeyID(), Observed: event.FormatTime(a.now()), Source: event.SourceNftables,
		Generation: a.last.Generation, After: a.last.Digest, Ruleset: a.last.Ruleset,
	}
	_, err = a.append(e, nil)
	return err
}
