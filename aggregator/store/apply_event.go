package store

import (
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"slices"

	bolt "go.etcd.io/bbolt"

	"github.com/fenceline/fenceline/aggregator/deviation"
	"github.com/fenceline/fenceline/aggregator/model"
	"github.com/fenceline/fenceline/shared/event"
)

// Outcome is what the state machine did with an event.
type Outcome string

// Event outcomes. Only Accepted stores anything.
const (
	// Accepted: the event extends the device's chain and is stored.
	Accepted Outcome = "accepted"
	// Duplicate: the sequence number is at or below the head; dropped.
	Duplicate Outcome = "duplicate"
	// Gap: the sequence number skips ahead of head+1; not stored, the agent resends.
	Gap Outcome = "gap"
	// BrokenChain: the sequence number is head+1 but prev is not the head's id.
	BrokenChain Outcome = "broken_chain"
	// UnknownKey: the device is not enrolled, or not with the event's key (it was
	// re-enrolled between verification and commit).
	UnknownKey Outcome = "unknown_key"
	// TopicMismatch: the payload names another tenant or device than the command.
	TopicMismatch Outcome = "topic_mismatch"
	// Malformed: the envelope does not decode (the proposer should have caught it).
	Malformed Outcome = "malformed"
)

// AppendResult is what appending an event did.
type AppendResult struct {
	Outcome Outcome
	Kind    event.Kind
	Seq     uint64
	ID      string
	// Head is the device's chain head after the command, as the agent is acked.
	Head event.Ack
	// Deviations are the ids of the deviations the event raised.
	Deviations []string
	// Implemented are the ids of the CRs the event completed.
	Implemented []string
}

// decodeEnvelope reads the event inside an envelope without verifying the signature: the
// proposer verified it under the key whose id the payload carries, and key ids are
// hashes of keys, so matching the enrolled key id is matching the enrolled key.
func decodeEnvelope(b []byte) (*event.Event, string, error) {
	var env event.Envelope
	if err := json.Unmarshal(b, &env); err != nil {
		return nil, "", err
	}
	if env.PayloadType != event.PayloadType {
		return nil, "", fmt.Errorf("payload type %q", env.PayloadType)
	}
	payload, err := base64.StdEncoding.DecodeString(env.Payload)
	if err != nil {
		return nil, "", err
	}
	var e event.Event
	if err := json.Unmarshal(payload, &e); err != nil {
		return nil, "", err
	}
	// No event.Validate here: the proposer validated, and a later, stricter Validate
	// must not change what replaying an old log entry does.
	if e.Seq == 0 {
		return nil, "", errors.New("sequence 0")
	}
	return &e, event.ID(event.PayloadType, payload), nil
}

func applyAppendEvent(tx *bolt.Tx, c *appendEventCmd) (any, error) {
	res := &AppendResult{}
	e, id, err := decodeEnvelope(c.Envelope)
	if err != nil {
		res.Outcome = Malformed
		return res, errRejected
	}
	res.Kind, res.Seq, res.ID = e.Kind, e.Seq, id
	if e.Tenant != c.Tenant || e.Device != c.Device {
		res.Outcome = TopicMismatch
		return res, errRejected
	}
	devs := tx.Bucket(bucketDevices)
	dkey := deviceKey(c.Tenant, c.Device)
	var d model.Device
	ok, err := getJSON(devs, dkey, &d)
	if err != nil {
		return nil, err
	}
	if !ok || d.KeyID != e.KeyID {
		res.Outcome = UnknownKey
		return res, errRejected
	}
	head := event.Ack{Seq: d.HeadSeq, ID: d.HeadID}
	if d.NewChain && e.Seq == 1 {
		// The first event under a new enrollment starts the chain over.
		head = event.Ack{}
	}
	res.Head = head
	switch {
	case e.Seq <= head.Seq:
		// TODO: compare the id with the stored event of that sequence and raise a
		// deviation for a forked chain (same sequence, different event).
		res.Outcome = Duplicate
		res.Head = event.Ack{Seq: d.HeadSeq, ID: d.HeadID}
		return res, errRejected
	case e.Seq > head.Seq+1:
		res.Outcome = Gap
		res.Head = event.Ack{Seq: d.HeadSeq, ID: d.HeadID}
		return res, errRejected
	case e.Prev != head.ID:
		res.Outcome = BrokenChain
		res.Head = event.Ack{Seq: d.HeadSeq, ID: d.HeadID}
		return res, errRejected
	}

	rec := model.Event{
		Tenant: c.Tenant, Device: c.Device, Seq: e.Seq, ID: id, Prev: e.Prev, Kind: e.Kind,
		Source: e.Source, KeyID: e.KeyID, Observed: e.Observed, Received: c.ReceivedAt,
		Before: e.Before, After: e.After, Changes: e.Changes, Committer: e.Committer,
		Note: e.Note,
	}
	switch {
	case e.Kind.CarriesRuleset():
		if e.Ruleset != nil {
			if err := putJSON(tx.Bucket(bucketRulesets), dkey, e.Ruleset); err != nil {
				return nil, err
			}
			d.RulesetSeq = e.Seq
		}
	case e.Kind == event.Heartbeat:
		d.LastHeartbeat = c.ReceivedAt
		// TODO: a heartbeat whose digest differs from the last reported state means a
		// change went unreported; raise a deviation for it once that kind exists.
	}
	if e.Kind == event.Change || e.Kind == event.Reconcile {
		// TODO: a baseline after a re-enrollment replaces a known state without a diff;
		// what changed in between is not evaluated yet.
		if err := evaluate(tx, c, &d, e, id, res, &rec); err != nil {
			return nil, err
		}
	}

	d.Records++
	d.HeadSeq, d.HeadID = e.Seq, id
	d.NewChain = false
	d.LastSeen = c.ReceivedAt
	d.Digest = e.After
	if err := putJSON(devs, dkey, &d); err != nil {
		return nil, err
	}
	if err := putEvent(tx, dkey, d.Records, &rec, c.Envelope); err != nil {
		return nil, err
	}
	if _, err := nextCounter(tx, counterEventsAccepted); err != nil {
		return nil, err
	}
	res.Outcome = Accepted
	res.Head = event.Ack{Seq: d.HeadSeq, ID: d.HeadID}
	return res, nil
}

func putEvent(tx *bolt.Tx, dkey []byte, n uint64, rec *model.Event, envelope []byte) error {
	evs, err := tx.Bucket(bucketEvents).CreateBucketIfNotExists(dkey)
	if err != nil {
		return err
	}
	envs, err := tx.Bucket(bucketEnvelopes).CreateBucketIfNotExists(dkey)
	if err != nil {
		return err
	}
	if err := putJSON(evs, u64(n), rec); err != nil {
		return err
	}
	return envs.Put(u64(n), envelope)
}

// evaluate runs the deviation engine for a change or reconcile event and stores what it
// decided: CRs whose planned changes were observed, and numbered deviations.
func evaluate(tx *bolt.Tx, c *appendEventCmd, d *model.Device, e *event.Event, id string, res *AppendResult,
	rec *model.Event) error {
	observed, err := e.ObservedTime()
	if err != nil {
		return fmt.Errorf("%w: %v", ErrInvalid, err)
	}
	crs, err := tenantCRs(tx, c.Tenant)
	if err != nil {
		return err
	}
	out := deviation.Evaluate(deviation.Observation{
		Tenant: c.Tenant, Device: d, EventID: id, Seq: e.Seq,
		Observed: observed, ObservedText: e.Observed, Received: c.ReceivedAt, Changes: e.Changes,
	}, deviation.Input{CRs: crs})
	crb := tx.Bucket(bucketCRs)
	for _, cr := range out.Updated {
		if err := putJSON(crb, tenantKey(cr.Tenant, cr.ID), cr); err != nil {
			return err
		}
		if cr.State == model.CRImplemented && !slices.ContainsFunc(crs, func(o *model.CR) bool {
			return o.ID == cr.ID && o.State == model.CRImplemented
		}) {
			res.Implemented = append(res.Implemented, cr.ID)
		}
	}
	db := tx.Bucket(bucketDeviations)
	for i := range out.Deviations {
		dv := &out.Deviations[i]
		n, err := nextCounter(tx, c.Tenant+"/"+counterDeviation)
		if err != nil {
			return err
		}
		dv.ID = fmt.Sprintf("DEV-%06d", n)
		if err := putJSON(db, numberKey(tenantPrefix(c.Tenant), n), dv); err != nil {
			return err
		}
		if _, err := nextCounter(tx, counterDeviationsRaise); err != nil {
			return err
		}
		res.Deviations = append(res.Deviations, dv.ID)
	}
	rec.Deviations = res.Deviations
	return nil
}

// tenantCRs returns the tenant's CRs in creation order.
// TODO: keep an index of approved CRs by device; every change event reads all of the
// tenant's CRs, which grows with the CR history.
func tenantCRs(tx *bolt.Tx, tenant string) ([]*model.CR, error) {
	var out []*model.CR
	err := forPrefix(tx.Bucket(bucketCRs), tenantPrefix(tenant), func(_, v []byte) error {
		var cr model.CR
		if err := json.Unmarshal(v, &cr); err != nil {
			return fmt.Errorf("decode CR: %w", err)
		}
		out = append(out, &cr)
		return nil
	})
	slices.SortFunc(out, func(a, b *model.CR) int {
		switch {
		case a.Number < b.Number:
			return -1
		case a.Number > b.Number:
			return 1
		}
		return 0
	})
	return out, err
}
