package agent

import (
	"crypto/ed25519"
	"errors"
	"fmt"

	"github.com/fenceline/fenceline/agent/outbox"
	"github.com/fenceline/fenceline/shared/event"
)

// append seals e as the next event of the chain, stores it durably, and wakes the uplink.
// A baseline that cannot be the chain's first event (the chain was re-anchored at the
// aggregator's head) goes out as a resync. When the outbox is at its bound, every
// pending event is first folded into one state event; nothing is dropped silently.
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
	seq, err := a.ob.Append(seal, state)
	if errors.Is(err, outbox.ErrFull) {
		if ferr := a.fold(); ferr != nil {
			return 0, ferr
		}
		seq, err = a.ob.Append(seal, state)
	}
	if err != nil {
		return 0, err
	}
	a.metrics.appended(e.Kind)
	a.up.Notify()
	return seq, nil
}

// fold replaces the pending events that never left the agent with one fold event carrying
// the last reported state: the outbox reached its disk bound while the aggregator was
// unreachable.
func (a *Agent) fold() error {
	if a.last == nil {
		return errors.New("outbox full before any state was reported")
	}
	state, err := a.ob.State()
	if err != nil {
		return fmt.Errorf("fold: %w", err)
	}
	var firstBefore string
	// Events already published may be at the aggregator: fold only the rest.
	n, err := a.ob.Fold(a.up.Published(), func(seq uint64, prev string, first outbox.Entry, count int) ([]byte, string, error) {
		o, err := event.Open(first.Envelope, func(string) (ed25519.PublicKey, error) {
			return a.signer.PublicKey(), nil
		})
		if err != nil {
			return nil, "", fmt.Errorf("read first pending event: %w", err)
		}
		firstBefore = o.Event.Before
		e := &event.Event{
			V: event.Version, Kind: event.Fold, Tenant: a.id.Tenant, Device: a.id.Device,
			KeyID: a.signer.KeyID(), Seq: seq, Prev: prev, Observed: event.FormatTime(a.now()),
			Source: event.SourceNftables, Generation: a.last.Generation,
			Before: firstBefore, After: a.last.Digest, Ruleset: a.last.Ruleset,
			Folded: uint64(count),
			Note: fmt.Sprintf("outbox reached its bound of %d bytes while undelivered; %d events "+
				"(sequences %d to %d) folded into this state", a.cfg.Outbox.MaxBytes, count,
				first.Seq, first.Seq+uint64(count)-1),
		}
		return a.signer.Seal(e)
	}, state)
	if err != nil {
		return err
	}
	a.metrics.folds.Inc()
	a.up.Replaced()
	a.log.Warn("outbox full: pending events folded into one state event", "folded", n,
		"max_bytes", a.cfg.Outbox.MaxBytes, "first_digest", firstBefore, "digest", a.last.Digest)
	return nil
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
