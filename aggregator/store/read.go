package store

import (
	"encoding/json"
	"fmt"
	"slices"
	"strings"

	bolt "go.etcd.io/bbolt"

	"github.com/fenceline/fenceline/aggregator/model"
	"github.com/fenceline/fenceline/shared/event"
)

// Reads serve the local state file. On a single node that is the committed state.
// TODO: on followers, VerifyLeader or Barrier before reads that must be linearizable.

// TenantKnown reports whether the tenant has anything in the state: a device, a CR, a
// deviation or a policy. Enrollment tokens not yet redeemed do not count.
func (s *Store) TenantKnown(tenant string) bool {
	known := false
	s.fsm.view(func(tx *bolt.Tx) error {
		prefix := tenantPrefix(tenant)
		for _, b := range [][]byte{bucketDevices, bucketCRs, bucketDeviations} {
			if k, _ := tx.Bucket(b).Cursor().Seek(prefix); k != nil && strings.HasPrefix(string(k), string(prefix)) {
				known = true
				return nil
			}
		}
		known = tx.Bucket(bucketPolicies).Get([]byte(tenant)) != nil
		return nil
	})
	return known
}

// Device returns one device.
func (s *Store) Device(tenant, device string) (*model.Device, error) {
	var d model.Device
	err := s.fsm.view(func(tx *bolt.Tx) error {
		ok, err := getJSON(tx.Bucket(bucketDevices), deviceKey(tenant, device), &d)
		if err == nil && !ok {
			err = fmt.Errorf("device %s/%s: %w", tenant, device, ErrNotFound)
		}
		return err
	})
	if err != nil {
		return nil, err
	}
	return &d, nil
}

// Devices returns the tenant's devices by name.
func (s *Store) Devices(tenant string) ([]model.Device, error) {
	out := []model.Device{}
	err := s.fsm.view(func(tx *bolt.Tx) error {
		return forPrefix(tx.Bucket(bucketDevices), tenantPrefix(tenant), func(_, v []byte) error {
			var d model.Device
			if err := json.Unmarshal(v, &d); err != nil {
				return fmt.Errorf("decode device: %w", err)
			}
			out = append(out, d)
			return nil
		})
	})
	return out, err
}

// EventQuery selects events of a device.
type EventQuery struct {
	// Limit keeps the newest Limit events; zero keeps all.
	Limit int
	// Kinds keeps only these kinds; empty keeps all.
	Kinds []event.Kind
	// Envelopes fills each event's Envelope.
	Envelopes bool
}

// Events returns a device's events, oldest first.
func (s *Store) Events(tenant, device string, q EventQuery) ([]model.Event, error) {
	out := []model.Event{}
	err := s.fsm.view(func(tx *bolt.Tx) error {
		dkey := deviceKey(tenant, device)
		if tx.Bucket(bucketDevices).Get(dkey) == nil {
			return fmt.Errorf("device %s/%s: %w", tenant, device, ErrNotFound)
		}
		evs := tx.Bucket(bucketEvents).Bucket(dkey)
		if evs == nil {
			return nil
		}
		envs := tx.Bucket(bucketEnvelopes).Bucket(dkey)
		c := evs.Cursor()
		for k, v := c.Last(); k != nil; k, v = c.Prev() {
			var e model.Event
			if err := json.Unmarshal(v, &e); err != nil {
				return fmt.Errorf("decode event: %w", err)
			}
			if len(q.Kinds) > 0 && !slices.Contains(q.Kinds, e.Kind) {
				continue
			}
			if q.Envelopes && envs != nil {
				e.Envelope = append([]byte(nil), envs.Get(k)...)
			}
			out = append(out, e)
			if q.Limit > 0 && len(out) == q.Limit {
				break
			}
		}
		return nil
	})
	slices.Reverse(out)
	return out, err
}

// Ruleset returns the newest full ruleset a device reported (as JSON), and the sequence
// of the event that carried it.
func (s *Store) Ruleset(tenant, device string) (json.RawMessage, uint64, error) {
	var raw json.RawMessage
	var seq uint64
	err := s.fsm.view(func(tx *bolt.Tx) error {
		var d model.Device
		ok, err := getJSON(tx.Bucket(bucketDevices), deviceKey(tenant, device), &d)
		if err != nil {
			return err
		}
		v := tx.Bucket(bucketRulesets).Get(deviceKey(tenant, device))
		if !ok || v == nil {
			return fmt.Errorf("ruleset of %s/%s: %w", tenant, device, ErrNotFound)
		}
		raw, seq = append(json.RawMessage(nil), v...), d.RulesetSeq
		return nil
	})
	return raw, seq, err
}

// CR returns one change request.
func (s *Store) CR(tenant, id string) (*model.CR, error) {
	var cr model.CR
	err := s.fsm.view(func(tx *bolt.Tx) error {
		ok, err := getJSON(tx.Bucket(bucketCRs), tenantKey(tenant, id), &cr)
		if err == nil && !ok {
			err = fmt.Errorf("change request %s: %w", id, ErrNotFound)
		}
		return err
	})
	if err != nil {
		return nil, err
	}
	return &cr, nil
}

// CRs returns the tenant's change requests in creation order.
func (s *Store) CRs(tenant string) ([]*model.CR, error) {
	var out []*model.CR
	err := s.fsm.view(func(tx *bolt.Tx) error {
		var err error
		out, err = tenantCRs(tx, tenant)
		return err
	})
	if out == nil {
		out = []*model.CR{}
	}
	return out, err
}

// DeviationFilter selects deviations; empty fields match everything.
type DeviationFilter struct {
	Device string
	State  model.DeviationState
	Kind   model.DeviationKind
	CR     string
}

// Deviations returns the tenant's deviations in the order they were raised.
func (s *Store) Deviations(tenant string, f DeviationFilter) ([]model.Deviation, error) {
	out := []model.Deviation{}
	err := s.fsm.view(func(tx *bolt.Tx) error {
		b := tx.Bucket(bucketDeviations)
		return forPrefix(b, tenantPrefix(tenant), func(_, v []byte) error {
			var d model.Deviation
			if err := json.Unmarshal(v, &d); err != nil {
				return fmt.Errorf("decode deviation: %w", err)
			}
			if (f.Device == "" || slices.Contains(strings.Split(d.Device, ","), f.Device)) &&
				(f.State == "" || d.State == f.State) && (f.Kind == "" || d.Kind == f.Kind) &&
				(f.CR == "" || d.CR == f.CR || d.ResolvedBy == f.CR) {
				out = append(out, d)
			}
			return nil
		})
	})
	return out, err
}

// Stats is a summary of the store for operators.
type Stats struct {
	NodeID           string `json:"node_id"`
	RaftState        string `json:"raft_state"`
	AppliedIndex     uint64 `json:"applied_index"`
	EventsAccepted   uint64 `json:"events_accepted"`
	DeviationsRaised uint64 `json:"deviations_raised"`
	Devices          int    `json:"devices"`
}

// Stats returns the store's counters.
func (s *Store) Stats() (Stats, error) {
	st := Stats{NodeID: s.cfg.NodeID, RaftState: s.RaftState(), AppliedIndex: s.AppliedIndex()}
	err := s.fsm.view(func(tx *bolt.Tx) error {
		st.EventsAccepted = readCounter(tx, counterEventsAccepted)
		st.DeviationsRaised = readCounter(tx, counterDeviationsRaise)
		st.Devices = tx.Bucket(bucketDevices).Stats().KeyN
		return nil
	})
	return st, err
}

// Policy returns the tenant's change-management policy (the default one if none was
// set).
func (s *Store) Policy(tenant string) (*model.Policy, error) {
	var p *model.Policy
	err := s.fsm.view(func(tx *bolt.Tx) error {
		var err error
		p, err = loadPolicy(tx, tenant)
		return err
	})
	return p, err
}

// Deviation returns one deviation.
func (s *Store) Deviation(tenant, id string) (*model.Deviation, error) {
	var d *model.Deviation
	err := s.fsm.view(func(tx *bolt.Tx) error {
		var err error
		d, err = getDeviation(tx, tenant, id)
		return err
	})
	return d, err
}

// DeviceState returns the aggregator's view of a device's ruleset with the origin of every
// rule.
func (s *Store) DeviceState(tenant, device string) (*model.DeviceState, error) {
	var st *model.DeviceState
	err := s.fsm.view(func(tx *bolt.Tx) error {
		if tx.Bucket(bucketDevices).Get(deviceKey(tenant, device)) == nil {
			return fmt.Errorf("device %s/%s: %w", tenant, device, ErrNotFound)
		}
		var err error
		st, err = loadDevState(tx, tenant, device)
		if err == nil && st == nil {
			err = fmt.Errorf("no state of %s/%s yet (no baseline): %w", tenant, device, ErrNotFound)
		}
		return err
	})
	return st, err
}

// Rules returns every rule now on a device, in ruleset order, with where it came from:
// the baseline, the CR that added it, or the deviation that found it unauthorized (with
// that deviation's state).
func (s *Store) Rules(tenant, device string) ([]model.RuleProvenance, error) {
	out := []model.RuleProvenance{}
	err := s.fsm.view(func(tx *bolt.Tx) error {
		if tx.Bucket(bucketDevices).Get(deviceKey(tenant, device)) == nil {
			return fmt.Errorf("device %s/%s: %w", tenant, device, ErrNotFound)
		}
		st, err := loadDevState(tx, tenant, device)
		if err != nil || st == nil || st.Ruleset == nil {
			return err
		}
		states := map[string]model.DeviationState{}
		for _, t := range st.Ruleset.Tables {
			for _, c := range t.Chains {
				origins := st.Origins[chainKey(t.Family, t.Name, c.Name)]
				for i, r := range c.Rules {
					p := model.RuleProvenance{Family: t.Family, Table: t.Name, Chain: c.Name,
						Position: i + 1, Rule: r.Text}
					if i < len(origins) {
						p.Origin = origins[i]
					}
					if id := p.Origin.Deviation; id != "" {
						if _, ok := states[id]; !ok {
							if d, err := getDeviation(tx, tenant, id); err == nil {
								states[id] = d.State
							}
						}
						p.DeviationState = states[id]
					}
					out = append(out, p)
				}
			}
		}
		return nil
	})
	return out, err
}
