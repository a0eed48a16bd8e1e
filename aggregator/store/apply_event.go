package store

import (
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/fenceline/fenceline/aggregator/deviation"
	"github.com/fenceline/fenceline/aggregator/model"
	"github.com/fenceline/fenceline/shared/event"
	"github.com/fenceline/fenceline/shared/ruleset"
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
		// TODO: a gap here is usually transient (the agent resends from the ack) and raises
		// nothing; events lost for good arrive as a resync, which raises the gap deviation.
		// A gap that persists is not raised yet.
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
		// change went unreported; raise a deviation for it.
	}
	if d.Silent != "" {
		// The device reports again: its silence deviation resolves by itself.
		if err := recovered(tx, c.Tenant, d.Silent, e.Seq, c.ReceivedAt); err != nil {
			return nil, err
		}
		d.Silent = ""
	}
	if err := observe(tx, c, &d, e, id, res, &rec); err != nil {
		return nil, err
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

// observe decides what an accepted event means for the device's rules:
//   - a first baseline is the starting state: every rule's origin is "baseline";
//   - a baseline after a re-enrollment, a fold and a resync carry a full state and no
//     diff: the diff against the state the aggregator holds is evaluated like a change,
//     and a fold or resync also raises a finding (changes not observed one by one, or
//     events lost);
//   - change and reconcile events are evaluated with the diff they carry.
//
// The engine's decisions (CRs observed, deviations raised or resolved) are stored, and
// the device's rule provenance follows.
func observe(tx *bolt.Tx, c *appendEventCmd, d *model.Device, e *event.Event, id string,
	res *AppendResult, rec *model.Event) error {
	if e.Kind == event.Heartbeat {
		return nil
	}
	v, err := takeDevView(tx, c.Tenant, c.Device)
	if err != nil {
		return err
	}
	st := v.state()
	base := model.Origin{Event: id, Seq: e.Seq, Observed: e.Observed}
	if e.Kind == event.Baseline && st == nil {
		o := base
		o.Source = model.SourceBaseline
		return putDevView(tx, newView(fullState(nil, c.Tenant, c.Device, e.Seq, e.Ruleset, e.After, nil, o)))
	}
	changes := e.Changes
	derived := false
	if e.Kind == event.Baseline || e.Kind == event.Fold || e.Kind == event.Resync {
		var old *ruleset.Ruleset
		if st != nil {
			old = st.Ruleset
		}
		changes, derived = ruleset.Diff(old, e.Ruleset), true
	}
	var findings []string
	switch e.Kind {
	case event.Fold:
		detail := fmt.Sprintf("the agent folded %d undelivered events into one state; the changes "+
			"in them were not observed one by one (%d changes against the last known state)",
			e.Folded, len(changes))
		if e.Note != "" {
			detail += ": " + e.Note
		}
		fid, err := raiseEventFinding(tx, c, d, e, id, model.Folded, detail)
		if err != nil {
			return err
		}
		findings = append(findings, fid)
	case event.Resync:
		detail := fmt.Sprintf("the agent lost events it had not delivered and resynchronized "+
			"at sequence %d with its full state (%d changes against the last known state)",
			e.Seq, len(changes))
		if e.Note != "" {
			detail += ": " + e.Note
		}
		fid, err := raiseEventFinding(tx, c, d, e, id, model.Gap, detail)
		if err != nil {
			return err
		}
		findings = append(findings, fid)
	}
	if derived {
		// TODO: the changes inside a fold or resync are evaluated at the event's observed
		// time, not at the (unknown) times they were made, so a folded change made inside
		// its CR's window may show as out_of_window.
		rec.Changes = changes
	}
	observed, err := e.ObservedTime()
	if err != nil {
		return fmt.Errorf("%w: %v", ErrInvalid, err)
	}
	crs, err := tenantCRs(tx, c.Tenant)
	if err != nil {
		return err
	}
	undo := deviation.UndoKeys(changes)
	open, err := openDeviationsUndone(tx, c.Tenant, c.Device, undo)
	if err != nil {
		return err
	}
	pol, err := loadPolicy(tx, c.Tenant)
	if err != nil {
		return err
	}
	removed := removedOrigins(st, changes)
	out := deviation.Evaluate(deviation.Observation{
		Tenant: c.Tenant, Device: d, EventID: id, Seq: e.Seq,
		Observed: observed, ObservedText: e.Observed, Received: c.ReceivedAt, Changes: changes,
		Removed: removed, FirstDeviation: firstDeviation(tx, c.Tenant),
	}, deviation.Input{CRs: crs, Open: open, Policy: pol,
		GroupIndicators: readLogFormat(tx) >= formatIndicatorGroups,
	})
	for _, cr := range out.Updated {
		if err := putCR(tx, cr); err != nil {
			return err
		}
		if cr.State == model.CRImplemented && !slices.ContainsFunc(crs, func(o *model.CR) bool {
			return o.ID == cr.ID && o.State == model.CRImplemented
		}) {
			res.Implemented = append(res.Implemented, cr.ID)
		}
	}
	for i := range out.Deviations {
		dv := &out.Deviations[i]
		if e.Kind == event.Baseline {
			dv.Detail = strings.TrimSpace("found when the device re-enrolled: its new baseline " +
				"differs from the last known state. " + dv.Detail)
		}
		if err := putDeviation(tx, dv, true); err != nil {
			return err
		}
		res.Deviations = append(res.Deviations, dv.ID)
	}
	for _, r := range out.Resolved {
		if err := putDeviation(tx, r, false); err != nil {
			return err
		}
	}
	res.Deviations = append(findings, res.Deviations...)
	rec.Deviations = res.Deviations

	// Provenance.
	origins := make([]model.Origin, len(changes))
	for i := range changes {
		origins[i] = originOf(out.Outcomes[i], base)
	}
	if derived || e.Kind == event.Reconcile || st == nil {
		decided := map[string]map[int]model.Origin{}
		for i, ch := range changes {
			if ch.Kind == ruleset.RuleAdded || ch.Kind == ruleset.RuleMoved {
				k := chainKey(ch.Family, ch.Table, ch.Chain)
				if decided[k] == nil {
					decided[k] = map[int]model.Origin{}
				}
				decided[k][ch.Position] = origins[i]
			}
		}
		fallback := base
		fallback.Source = model.SourceUnauthorized
		rs := e.Ruleset
		if rs == nil && st != nil {
			// A reconcile without its state: apply the diff to what is known.
			applyDiff(v, e.Seq, changes, origins, e.After)
			return putDevView(tx, v)
		}
		return putDevView(tx, newView(fullState(st, c.Tenant, c.Device, e.Seq, rs, e.After, decided, fallback)))
	}
	applyDiff(v, e.Seq, changes, origins, e.After)
	return putDevView(tx, v)
}

// raiseEventFinding raises a finding about the record that an accepted event carries.
func raiseEventFinding(tx *bolt.Tx, c *appendEventCmd, d *model.Device, e *event.Event, id string,
	kind model.DeviationKind, detail string) (string, error) {
	dv := &model.Deviation{
		Tenant: c.Tenant, ID: deviation.DeviationID(firstDeviation(tx, c.Tenant)), Kind: kind,
		State: model.DeviationOpen, Device: d.Device, Detail: detail, EventID: id, Seq: e.Seq,
		Observed: e.Observed, Raised: c.ReceivedAt, Count: 1, LastSeen: c.ReceivedAt,
	}
	return dv.ID, putDeviation(tx, dv, true)
}

// recovered resolves a device's silence deviation: it reported again.
func recovered(tx *bolt.Tx, tenant, id string, seq uint64, at time.Time) error {
	dv, err := getDeviation(tx, tenant, id)
	if errors.Is(err, ErrNotFound) {
		return nil
	}
	if err != nil || dv.State == model.DeviationResolved {
		return err
	}
	dv.ResolvedBy = fmt.Sprintf("event %d", seq)
	dv.SetState(model.DeviationResolved, model.System, fmt.Sprintf("the device reported again "+
		"(event %d)", seq), model.ResolvedRecovered, at)
	return putDeviation(tx, dv, false)
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
