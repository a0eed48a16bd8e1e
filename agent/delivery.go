package agent

import (
	"crypto/ed25519"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"

	"github.com/fenceline/fenceline/agent/outbox"
	"github.com/fenceline/fenceline/agent/uplink"
	"github.com/fenceline/fenceline/shared/event"
)

// chain is one device's event chain on its way out: the signer, the durable outbox and
// the uplink that delivers it. The nftables Agent and every SNMP device reporter append
// through one, so the delivery rules (resync after a re-anchor, fold at the disk bound,
// never fatal when full) are the same for both.
type chain struct {
	ob       *outbox.Outbox
	up       *uplink.Uplink
	signer   *event.Signer
	log      *slog.Logger
	maxBytes int64
	metrics  *metrics // nil: not counted
	// newEvent returns an event of kind with the device's fields and the current time.
	newEvent func(kind event.Kind, after string) *event.Event
	// beforeFold, in tests, runs when an event did not fit, before the fold (where an ack
	// may arrive).
	beforeFold func()
}

// append seals e as the next event of the chain, stores it durably, and wakes the uplink.
// A baseline that cannot be the chain's first event (the chain was re-anchored at the
// aggregator's head) goes out as a resync. When e does not fit under the outbox bound,
// the pending events and e are folded into one state event instead; nothing is dropped
// silently, and a full outbox is never fatal. state is e's state blob (nil: e does not
// move the state); last is the state last reported.
func (c *chain) append(e *event.Event, state []byte, last *observed) (uint64, error) {
	seal := func(seq uint64, prev string) ([]byte, string, error) {
		e.Seq, e.Prev = seq, prev
		if e.Kind == event.Baseline && seq > 1 {
			e.Kind = event.Resync
			e.Before, e.Changes = "", nil
			e.Note = "the agent's chain continues from the aggregator's head; the events it " +
				"had not delivered are lost and this state replaces them"
		}
		return c.signer.Seal(e)
	}
	kind := e.Kind
	seq, err := c.ob.Append(seal, state)
	for attempt := 0; errors.Is(err, outbox.ErrFull); attempt++ {
		seq, err = c.fold(kind, state, last)
		if errors.Is(err, errNothingToFold) && attempt < 3 {
			// An ack emptied the outbox between Append and Fold: there is room now.
			seq, err = c.ob.Append(seal, state)
			continue
		}
		kind = event.Fold
	}
	if err != nil {
		return 0, err
	}
	if c.metrics != nil {
		c.metrics.appended(kind)
	}
	c.up.Notify()
	return seq, nil
}

// errNothingToFold: the outbox was full, but by the time fold ran acks had emptied it.
var errNothingToFold = errors.New("fold: the outbox was full but holds no pending event")

// fold replaces the pending events that never left the agent, together with the event
// of kind that did not fit, by one fold event carrying the state that event reports
// (state, or last when state is nil). The fold event is stored whatever its size: when
// it alone, with the events already published, exceeds the bound (a ruleset larger than
// outbox.max_bytes), the bound is exceeded rather than the state lost, and that is
// counted and logged. It returns the fold event's sequence.
func (c *chain) fold(kind event.Kind, state []byte, last *observed) (uint64, error) {
	if c.beforeFold != nil {
		c.beforeFold()
	}
	cur := last
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
	n, err := c.ob.Fold(c.up.Published(), func(seq uint64, prev string, first outbox.Entry, count int) ([]byte, string, error) {
		o, err := event.Open(first.Envelope, func(string) (ed25519.PublicKey, error) {
			return c.signer.PublicKey(), nil
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
		e := c.newEvent(event.Fold, cur.Digest)
		e.Seq, e.Prev, e.Generation = seq, prev, cur.Generation
		e.Before, e.Ruleset, e.Folded = firstBefore, cur.Ruleset, total
		e.Note = fmt.Sprintf("outbox reached its bound of %d bytes while undelivered; %d events "+
			"(sequences %d to %d, and a %s event that did not fit) folded into this state",
			c.maxBytes, total, first.Seq, first.Seq+uint64(count)-1, kind)
		return c.signer.Seal(e)
	}, state)
	if err != nil {
		return 0, err
	}
	if n == 0 {
		// Nothing pending any more: acks took it between Append and Fold.
		return 0, errNothingToFold
	}
	if c.metrics != nil {
		c.metrics.folds.Inc()
	}
	c.up.Replaced()
	head, err := c.ob.Head()
	if err != nil {
		return 0, fmt.Errorf("fold: %w", err)
	}
	c.log.Warn("outbox full: pending events folded into one state event", "folded", total,
		"max_bytes", c.maxBytes, "first_digest", firstBefore, "digest", cur.Digest)
	if c.maxBytes > 0 && head.Bytes > c.maxBytes {
		if c.metrics != nil {
			c.metrics.overBound.Inc()
		}
		c.log.Warn("outbox over its bound: the fold event, with the events already published, "+
			"exceeds outbox.max_bytes; kept rather than lose the state (raise outbox.max_bytes "+
			"above the size of a full ruleset)", "pending_bytes", head.Bytes, "max_bytes",
			c.maxBytes, "seq", head.Seq)
	}
	return head.Seq, nil
}

// resync re-anchors the outbox at the aggregator's head and reports last from there: the
// aggregator's chain is not this outbox's (the outbox was lost, or events it holds were
// replaced, or the aggregator lost events it had acknowledged), so what the outbox still
// held cannot be delivered.
func (c *chain) resync(head event.Ack, last *observed) error {
	dropped, err := c.ob.Reanchor(head.Seq, head.ID)
	if err != nil {
		return err
	}
	c.log.Warn("re-anchored the event chain at the aggregator's head", "seq", head.Seq,
		"dropped", dropped)
	if last == nil {
		return nil // the first state event will go out as a resync
	}
	e := c.newEvent(event.Baseline, last.Digest)
	e.Generation, e.Ruleset = last.Generation, last.Ruleset
	_, err = c.append(e, nil, last)
	return err
}

// append appends through the agent's chain.
func (a *Agent) append(e *event.Event, state []byte) (uint64, error) {
	return a.chain.append(e, state, a.last)
}

// resync re-anchors the agent's chain at the aggregator's head.
func (a *Agent) resync(head event.Ack) error { return a.chain.resync(head, a.last) }
