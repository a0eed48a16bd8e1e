package store

import (
	"bytes"
	"encoding/json"
	"fmt"
	"maps"
	"slices"
	"strconv"
	"strings"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/fenceline/fenceline/aggregator/deviation"
	"github.com/fenceline/fenceline/aggregator/model"
	"github.com/fenceline/fenceline/shared/event"
	"github.com/fenceline/fenceline/shared/ruleset"
)

// deviationNumber is the number in a deviation id "DEV-000042".
func deviationNumber(id string) (uint64, bool) {
	s, ok := strings.CutPrefix(id, "DEV-")
	if !ok {
		return 0, false
	}
	n, err := strconv.ParseUint(s, 10, 64)
	return n, err == nil && n > 0
}

// firstDeviation is the number the tenant's next deviation gets.
func firstDeviation(tx *bolt.Tx, tenant string) uint64 {
	return readCounter(tx, tenant+"/"+counterDeviation) + 1
}

func openKey(tenant, device string, n uint64) []byte {
	return numberKey([]byte(tenant+"/"+device+"/"), n)
}

// putDeviation stores a deviation (new or changed) and keeps the open index. A new one
// moves the tenant's deviation counter to its number.
func putDeviation(tx *bolt.Tx, d *model.Deviation, isNew bool) error {
	n, ok := deviationNumber(d.ID)
	if !ok {
		return fmt.Errorf("deviation id %q", d.ID)
	}
	if isNew {
		if readCounter(tx, d.Tenant+"/"+counterDeviation) >= n {
			return fmt.Errorf("deviation %s of %s numbered twice", d.ID, d.Tenant)
		}
		if err := tx.Bucket(bucketCounters).Put([]byte(d.Tenant+"/"+counterDeviation), u64(n)); err != nil {
			return err
		}
		if _, err := nextCounter(tx, counterDeviationsRaise); err != nil {
			return err
		}
	}
	if err := putJSON(tx.Bucket(bucketDeviations), numberKey(tenantPrefix(d.Tenant), n), d); err != nil {
		return err
	}
	// A deviation about several devices (an incomplete CR) is indexed under each.
	devices := strings.Split(d.Device, ",")
	open, byKey := tx.Bucket(bucketOpenDevs), tx.Bucket(bucketOpenByKey)
	ikey := []byte(deviation.IndexKey(d))
	for _, dev := range devices {
		k := openKey(d.Tenant, dev, n)
		dk := deviceKey(d.Tenant, dev)
		if old := open.Get(k); old != nil && (d.State == model.DeviationResolved || !bytes.Equal(old, ikey)) {
			if err := byKey.Delete(openByKey(dk, old, k[len(k)-8:])); err != nil {
				return err
			}
		}
		var err error
		if d.State == model.DeviationResolved {
			err = open.Delete(k)
		} else {
			if err = open.Put(k, ikey); err == nil {
				err = byKey.Put(openByKey(dk, ikey, k[len(k)-8:]), nil)
			}
		}
		if err != nil {
			return err
		}
	}
	return nil
}

// openByKey is a key of bucketOpenByKey: the device key, the index key without its kind,
// and the deviation's number (8 bytes).
func openByKey(dkey, indexKey, number []byte) []byte {
	w := indexKey
	if i := bytes.IndexByte(indexKey, 0); i >= 0 {
		w = indexKey[i:] // deviation.KeyWithoutKind
	}
	k := make([]byte, 0, len(dkey)+len(w)+9)
	k = append(append(append(k, dkey...), w...), 0)
	return append(k, number...)
}

// openDeviationsUndone returns the device's open deviations whose index key without its
// kind is one of undo, oldest first: what openDeviations with that filter returns, read
// through bucketOpenByKey.
func openDeviationsUndone(tx *bolt.Tx, tenant, device string, undo map[string]bool) ([]*model.Deviation, error) {
	if len(undo) == 0 {
		return nil, nil
	}
	dkey := deviceKey(tenant, device)
	var numbers [][]byte
	for _, u := range slices.Sorted(maps.Keys(undo)) {
		prefix := append(append(slices.Clip(dkey), u...), 0)
		err := forPrefix(tx.Bucket(bucketOpenByKey), prefix, func(k, _ []byte) error {
			if len(k) == len(prefix)+8 { // not a longer key that merely starts alike
				numbers = append(numbers, slices.Clone(k[len(prefix):]))
			}
			return nil
		})
		if err != nil {
			return nil, err
		}
	}
	slices.SortFunc(numbers, bytes.Compare)
	numbers = slices.CompactFunc(numbers, bytes.Equal)
	out := make([]*model.Deviation, 0, len(numbers))
	b := tx.Bucket(bucketDeviations)
	for _, n := range numbers {
		var d model.Deviation
		ok, err := getJSON(b, append(tenantPrefix(tenant), n...), &d)
		if err != nil {
			return nil, err
		}
		if ok {
			out = append(out, &d)
		}
	}
	return out, nil
}

func getDeviation(tx *bolt.Tx, tenant, id string) (*model.Deviation, error) {
	n, ok := deviationNumber(id)
	if !ok {
		return nil, fmt.Errorf("deviation %q: %w", id, ErrNotFound)
	}
	var d model.Deviation
	found, err := getJSON(tx.Bucket(bucketDeviations), numberKey(tenantPrefix(tenant), n), &d)
	switch {
	case err != nil:
		return nil, err
	case !found:
		return nil, fmt.Errorf("deviation %s: %w", id, ErrNotFound)
	}
	return &d, nil
}

// openDeviations returns the device's deviations that are not resolved, oldest first,
// among those whose index key (deviation.IndexKey) keep accepts; nil keep takes all. The
// filter spares decoding the others, but visits every open deviation of the device; an
// event uses openDeviationsUndone instead. keep gets the key in bbolt's memory, valid only
// during the call.
func openDeviations(tx *bolt.Tx, tenant, device string, keep func(key []byte) bool) ([]*model.Deviation, error) {
	var out []*model.Deviation
	b := tx.Bucket(bucketDeviations)
	err := forPrefix(tx.Bucket(bucketOpenDevs), []byte(tenant+"/"+device+"/"), func(k, v []byte) error {
		if keep != nil && !keep(v) {
			return nil
		}
		n := k[len(k)-8:]
		var d model.Deviation
		ok, err := getJSON(b, append(tenantPrefix(tenant), n...), &d)
		if err != nil || !ok {
			return err
		}
		out = append(out, &d)
		return nil
	})
	return out, err
}

// raiseFinding records a finding about a device's record. While a deviation of the same
// kind is open for the device, the finding is counted on it instead of raising another.
func raiseFinding(tx *bolt.Tx, tenant, device string, kind model.DeviationKind, detail string,
	seq uint64, eventID, observed string, at time.Time) (string, bool, error) {
	prefix := deviation.KindPrefix(kind)
	open, err := openDeviations(tx, tenant, device, func(key []byte) bool {
		return bytes.HasPrefix(key, []byte(prefix))
	})
	if err != nil {
		return "", false, err
	}
	for _, d := range open {
		if d.Kind == kind && d.Device == device {
			d.Count++
			d.LastSeen = at
			if err := putDeviation(tx, d, false); err != nil {
				return "", false, err
			}
			return d.ID, false, nil
		}
	}
	d := &model.Deviation{
		Tenant: tenant, ID: deviation.DeviationID(firstDeviation(tx, tenant)), Kind: kind,
		State: model.DeviationOpen, Device: device, Detail: detail, Seq: seq, EventID: eventID,
		Observed: observed, Raised: at, Count: 1, LastSeen: at,
	}
	return d.ID, true, putDeviation(tx, d, true)
}

func applyRecordFinding(tx *bolt.Tx, c *recordFindingCmd) (any, error) {
	if !c.Kind.Trust() || !event.ValidName(c.Tenant) || !event.ValidName(c.Device) {
		return nil, fmt.Errorf("%w: finding %q for %q/%q", ErrInvalid, c.Kind, c.Tenant, c.Device)
	}
	if tx.Bucket(bucketDevices).Get(deviceKey(c.Tenant, c.Device)) == nil {
		return nil, fmt.Errorf("device %s/%s: %w", c.Tenant, c.Device, ErrNotFound)
	}
	id, _, err := raiseFinding(tx, c.Tenant, c.Device, c.Kind, c.Detail, c.Seq, "", "", c.At)
	return id, err
}

// Deviation actions.
const (
	DeviationAcknowledge = "acknowledge"
	DeviationResolve     = "resolve"
)

func applyDeviationAction(tx *bolt.Tx, c *deviationActionCmd) (any, error) {
	d, err := getDeviation(tx, c.Tenant, c.ID)
	if err != nil {
		return nil, err
	}
	by, _, err := actor(tx, c.Tenant, c.By, true)
	if err != nil {
		return nil, err
	}
	switch c.Action {
	case DeviationAcknowledge:
		if d.State != model.DeviationOpen {
			return nil, fmt.Errorf("deviation %s is %s, only an open one is acknowledged: %w", d.ID,
				d.State, ErrState)
		}
		d.SetState(model.DeviationAcknowledged, by, c.Why, "", c.At)
	case DeviationResolve:
		if d.State == model.DeviationResolved {
			return nil, fmt.Errorf("deviation %s is resolved already: %w", d.ID, ErrState)
		}
		if !slices.Contains(model.Resolutions, c.Resolution) {
			return nil, fmt.Errorf("%w: resolution %q: want one of %s", ErrInvalid, c.Resolution,
				strings.Join(model.Resolutions, ", "))
		}
		if strings.TrimSpace(c.Why) == "" {
			return nil, fmt.Errorf("%w: a resolution needs a reason (why)", ErrInvalid)
		}
		switch c.Resolution {
		case model.ResolvedRetroactiveCR:
			cr, err := getCR(tx, c.Tenant, c.CR)
			if err != nil {
				return nil, err
			}
			switch cr.State {
			case model.CRApproved, model.CRImplemented, model.CRVerified, model.CRClosed:
			default:
				return nil, fmt.Errorf("%w: retroactive CR %s is %s; it must be approved", ErrInvalid,
					cr.ID, cr.State)
			}
			if err := retroactiveCovers(tx, cr, d); err != nil {
				return nil, err
			}
			d.ResolvedBy = cr.ID
			if err := creditRules(tx, d, cr.ID); err != nil {
				return nil, err
			}
		case model.ResolvedRollback:
			if err := stillLive(tx, d); err != nil {
				return nil, err
			}
			d.ResolvedBy = c.CR // an event id or a note, if given
		}
		d.SetState(model.DeviationResolved, by, c.Why, c.Resolution, c.At)
	default:
		return nil, fmt.Errorf("%w: action %q: want acknowledge or resolve", ErrInvalid, c.Action)
	}
	if err := putDeviation(tx, d, false); err != nil {
		return nil, err
	}
	return d, nil
}

// stillLive refuses a rollback resolution while the device's last reported state still
// holds the rule or element the deviation is about.
func stillLive(tx *bolt.Tx, d *model.Deviation) error {
	st, err := loadDevState(tx, d.Tenant, d.Device)
	if err != nil || st == nil || st.Ruleset == nil {
		return err
	}
	t := st.Ruleset.Table(d.Family, d.Table)
	if t == nil {
		return nil
	}
	live := false
	switch d.Change {
	case ruleset.RuleAdded:
		if c := t.Chain(d.Chain); c != nil {
			live = slices.ContainsFunc(c.Rules, func(r *ruleset.Rule) bool { return r.Text == d.Rule })
		}
	case ruleset.ElementAdded:
		if s := t.Set(d.Set); s != nil {
			live = slices.Contains(s.Elements, d.Element)
		}
	}
	if live {
		return fmt.Errorf("%w: %s is still on device %s as last reported; a rollback is "+
			"observed, not declared", ErrState, d.What(), d.Device)
	}
	return nil
}

// retroactiveCovers checks that cr, filed after the fact, authorizes what d is about:
// it targets d's device and plans exactly d's change.
func retroactiveCovers(tx *bolt.Tx, cr *model.CR, d *model.Deviation) error {
	var dev model.Device
	ok, err := getJSON(tx.Bucket(bucketDevices), deviceKey(d.Tenant, d.Device), &dev)
	if err != nil {
		return err
	}
	if !ok || !cr.TargetsDevice(&dev) {
		return fmt.Errorf("%w: retroactive CR %s does not target device %s", ErrInvalid, cr.ID,
			d.Device)
	}
	ch := ruleset.Change{Kind: d.Change, Family: d.Family, Table: d.Table, Chain: d.Chain,
		Position: d.Position, Rule: d.Rule, Set: d.Set, Element: d.Element, Before: d.Before,
		After: d.After}
	for _, p := range cr.Changes {
		if deviation.Covers(p, ch) {
			return nil
		}
	}
	return fmt.Errorf("%w: retroactive CR %s plans no change that covers %s (%s)", ErrInvalid,
		cr.ID, d.ID, d.What())
}

func applySetPolicy(tx *bolt.Tx, c *setPolicyCmd) (any, error) {
	p := c.Policy
	if !event.ValidName(p.Tenant) {
		return nil, fmt.Errorf("%w: tenant %q", ErrInvalid, p.Tenant)
	}
	if err := p.Validate(); err != nil {
		return nil, fmt.Errorf("%w: %v", ErrInvalid, err)
	}
	p.UpdatedAt, p.UpdatedBy = c.At, c.By
	if err := putJSON(tx.Bucket(bucketPolicies), []byte(p.Tenant), &p); err != nil {
		return nil, err
	}
	return &p, nil
}

func applySetDeviceTags(tx *bolt.Tx, c *setDeviceTagsCmd) (any, error) {
	key := deviceKey(c.Tenant, c.Device)
	var d model.Device
	ok, err := getJSON(tx.Bucket(bucketDevices), key, &d)
	switch {
	case err != nil:
		return nil, err
	case !ok:
		return nil, fmt.Errorf("device %s/%s: %w", c.Tenant, c.Device, ErrNotFound)
	}
	tags := slices.Clone(c.Tags)
	for _, t := range tags {
		if !event.ValidName(t) {
			return nil, fmt.Errorf("%w: tag %q", ErrInvalid, t)
		}
	}
	slices.Sort(tags)
	d.Tags = slices.Compact(tags)
	if err := putJSON(tx.Bucket(bucketDevices), key, &d); err != nil {
		return nil, err
	}
	return &d, nil
}

// decodeDevice decodes a device record.
func decodeDevice(v []byte) (*model.Device, error) {
	var d model.Device
	if err := json.Unmarshal(v, &d); err != nil {
		return nil, fmt.Errorf("decode device: %w", err)
	}
	return &d, nil
}
