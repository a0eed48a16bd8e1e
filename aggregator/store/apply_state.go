package store

import (
	"encoding/binary"
	"slices"
	"strings"
	"sync"

	bolt "go.etcd.io/bbolt"

	"github.com/fenceline/fenceline/aggregator/deviation"
	"github.com/fenceline/fenceline/aggregator/model"
	"github.com/fenceline/fenceline/shared/ruleset"
)

// Rule provenance. The state machine keeps, per device, its view of the ruleset and the
// origin of every rule (model.DeviceState): a full state (baseline, reconcile, fold,
// resync) replaces the view, each change event's rule-level diff is applied to it, and
// each added rule takes the origin the deviation engine decided for it.

func chainKey(family, table, chain string) string { return family + " " + table + " " + chain }

// loadDevState decodes a device's view. Readers use it; a command that writes the view
// back takes it with takeDevState.
func loadDevState(tx *bolt.Tx, tenant, device string) (*model.DeviceState, error) {
	var st model.DeviceState
	ok, err := getJSON(tx.Bucket(bucketDevStates), deviceKey(tenant, device), &st)
	if err != nil || !ok {
		return nil, err
	}
	if st.Origins == nil {
		st.Origins = map[string][]model.Origin{}
	}
	return &st, nil
}

// The view is one JSON record per device, and decoding it was half the state machine's
// time (BenchmarkAppendChanges). So each state file keeps, in memory, the decoded view
// its device's last write left, with that write's number (bucketDevVersions, written in
// the same transaction). A command that will write the view back takes it from there
// when the numbers still agree; it leaves the cache when taken, so a transaction that is
// rolled back after changing it leaves nothing stale behind (the numbers then disagree, or
// there is nothing to take, and the record is decoded). The record stays the state; the
// cache only spares decoding it.
// TODO: encoding is still in the size of the device's ruleset for every event; keep the
// view per chain (with per-chain digests for the Exact check) to make it the size of the
// change.
var devCaches sync.Map // *bolt.DB → *devCache

type devCache struct {
	mu sync.Mutex
	m  map[string]cachedDevState
}

type cachedDevState struct {
	version uint64
	st      *model.DeviceState
}

func devCacheOf(tx *bolt.Tx) *devCache {
	if c, ok := devCaches.Load(tx.DB()); ok {
		return c.(*devCache)
	}
	c, _ := devCaches.LoadOrStore(tx.DB(), &devCache{m: map[string]cachedDevState{}})
	return c.(*devCache)
}

// forgetDevCache drops the cache of a state file that is closed.
func forgetDevCache(db *bolt.DB) { devCaches.Delete(db) }

func devVersion(tx *bolt.Tx, key []byte) uint64 {
	if v := tx.Bucket(bucketDevVersions).Get(key); len(v) == 8 {
		return binary.BigEndian.Uint64(v)
	}
	return 0
}

// takeDevState returns a device's view for a command that writes it back with
// putDevState (or drops it): the caller owns the value.
func takeDevState(tx *bolt.Tx, tenant, device string) (*model.DeviceState, error) {
	key := deviceKey(tenant, device)
	c := devCacheOf(tx)
	c.mu.Lock()
	e, ok := c.m[string(key)]
	delete(c.m, string(key))
	c.mu.Unlock()
	if ok && e.version == devVersion(tx, key) {
		return e.st, nil
	}
	return loadDevState(tx, tenant, device)
}

// putDevState writes a device's view and keeps it, decoded, for the next command that
// takes it. The caller must not change st afterwards.
func putDevState(tx *bolt.Tx, st *model.DeviceState) error {
	key := deviceKey(st.Tenant, st.Device)
	if err := putJSON(tx.Bucket(bucketDevStates), key, st); err != nil {
		return err
	}
	v := devVersion(tx, key) + 1
	if err := tx.Bucket(bucketDevVersions).Put(key, u64(v)); err != nil {
		return err
	}
	c := devCacheOf(tx)
	c.mu.Lock()
	c.m[string(key)] = cachedDevState{version: v, st: st}
	c.mu.Unlock()
	return nil
}

// originOf is the origin an added rule takes from the engine's outcome.
func originOf(out deviation.Outcome, ev model.Origin) model.Origin {
	switch {
	case out.Origin != nil:
		// A rule moved or put back keeps the origin it had.
		return *out.Origin
	case out.CR != "":
		ev.Source, ev.CR = model.SourceCR, out.CR
	case out.Deviation != "":
		ev.Source, ev.Deviation = model.SourceUnauthorized, out.Deviation
	default:
		ev.Source = model.SourceUnauthorized
	}
	return ev
}

// removedOrigins returns, parallel to changes, the origin of the rule each removal or
// move takes away, from the state before the changes.
func removedOrigins(st *model.DeviceState, changes []ruleset.Change) []*model.Origin {
	out := make([]*model.Origin, len(changes))
	if st == nil {
		return out
	}
	for i, ch := range changes {
		pos := 0
		switch ch.Kind {
		case ruleset.RuleRemoved:
			pos = ch.Position
		case ruleset.RuleMoved:
			pos = ch.FromPosition
		}
		origins := st.Origins[chainKey(ch.Family, ch.Table, ch.Chain)]
		if pos > 0 && pos <= len(origins) {
			o := origins[pos-1]
			out[i] = &o
		}
	}
	return out
}

// fullState replaces the view with a full ruleset. Rules whose text was in the same chain
// before keep their origin (in order); rules the engine decided (added positions in
// decided) take that origin; any other rule takes fallback.
func fullState(old *model.DeviceState, tenant, device string, seq uint64, rs *ruleset.Ruleset,
	after string, decided map[string]map[int]model.Origin, fallback model.Origin) *model.DeviceState {
	st := &model.DeviceState{Tenant: tenant, Device: device, Seq: seq, Ruleset: rs,
		Origins: map[string][]model.Origin{}}
	if rs == nil {
		st.Ruleset = &ruleset.Ruleset{}
	}
	st.Exact = after == "" || st.Ruleset.Digest().String() == after
	for _, t := range st.Ruleset.Tables {
		for _, c := range t.Chains {
			k := chainKey(t.Family, t.Name, c.Name)
			prior := map[string][]model.Origin{}
			if old != nil && old.Ruleset != nil {
				if ot := old.Ruleset.Table(t.Family, t.Name); ot != nil {
					if oc := ot.Chain(c.Name); oc != nil {
						for i, r := range oc.Rules {
							if i < len(old.Origins[k]) {
								prior[r.Text] = append(prior[r.Text], old.Origins[k][i])
							}
						}
					}
				}
			}
			origins := make([]model.Origin, len(c.Rules))
			for i, r := range c.Rules {
				if o, ok := decided[k][i+1]; ok {
					origins[i] = o
					if q := prior[r.Text]; len(q) > 0 {
						prior[r.Text] = q[1:]
					}
					continue
				}
				if q := prior[r.Text]; len(q) > 0 {
					origins[i], prior[r.Text] = q[0], q[1:]
					continue
				}
				origins[i] = fallback
			}
			st.Origins[k] = origins
		}
	}
	return st
}

// applyDiff applies one event's changes to the view: rules removed and moved come out at
// their old positions, rules added and moved go in at their new ones (in position
// order), chain policies and set elements follow. Tables, chains and sets added get
// empty declarations (their details are not in the diff), so the view is exact only
// while its digest matches what the device reported.
func applyDiff(st *model.DeviceState, seq uint64, changes []ruleset.Change, origins []model.Origin,
	after string) {
	rs := st.Ruleset
	if rs == nil {
		rs = &ruleset.Ruleset{}
		st.Ruleset = rs
	}
	table := func(fam, name string, create bool) *ruleset.Table {
		if t := rs.Table(fam, name); t != nil || !create {
			return t
		}
		t := &ruleset.Table{Family: fam, Name: name}
		rs.Tables = append(rs.Tables, t)
		rs.Sort()
		return t
	}
	chain := func(ch ruleset.Change, create bool) *ruleset.Chain {
		t := table(ch.Family, ch.Table, create)
		if t == nil {
			return nil
		}
		if c := t.Chain(ch.Chain); c != nil || !create {
			return c
		}
		c := &ruleset.Chain{Name: ch.Chain}
		t.Chains = append(t.Chains, c)
		return c
	}
	type ins struct {
		pos    int
		text   string
		origin model.Origin
	}
	removals := map[string][]int{}
	inserts := map[string][]ins{}
	var order []string
	note := func(k string) {
		if !slices.Contains(order, k) {
			order = append(order, k)
		}
	}
	for i, ch := range changes {
		k := chainKey(ch.Family, ch.Table, ch.Chain)
		switch ch.Kind {
		case ruleset.TableAdded:
			table(ch.Family, ch.Table, true)
		case ruleset.ChainAdded:
			c := chain(ch, true)
			c.Policy = deviation.PolicyOf(ch.After)
		case ruleset.ChainPolicy:
			if c := chain(ch, false); c != nil {
				c.Policy = deviation.PolicyOf(ch.After)
			}
		case ruleset.RuleRemoved:
			removals[k] = append(removals[k], ch.Position)
			note(k)
		case ruleset.RuleMoved:
			removals[k] = append(removals[k], ch.FromPosition)
			inserts[k] = append(inserts[k], ins{ch.Position, ch.Rule, origins[i]})
			note(k)
		case ruleset.RuleAdded:
			inserts[k] = append(inserts[k], ins{ch.Position, ch.Rule, origins[i]})
			note(k)
		case ruleset.SetAdded:
			if t := table(ch.Family, ch.Table, true); t.Set(ch.Set) == nil {
				s := &ruleset.Set{Name: ch.Set}
				if ch.After != "" {
					s.Spec = strings.Split(ch.After, "; ")
				}
				t.Sets = append(t.Sets, s)
			}
		case ruleset.ElementAdded:
			if t := table(ch.Family, ch.Table, false); t != nil {
				if s := t.Set(ch.Set); s != nil {
					s.Elements = append(s.Elements, ch.Element)
					ruleset.SortElements(s.Elements)
				}
			}
		case ruleset.ElementRemoved:
			if t := table(ch.Family, ch.Table, false); t != nil {
				if s := t.Set(ch.Set); s != nil {
					if j := slices.Index(s.Elements, ch.Element); j >= 0 {
						s.Elements = slices.Delete(s.Elements, j, j+1)
					}
				}
			}
		}
	}
	for _, k := range order {
		f := strings.SplitN(k, " ", 3)
		c := chain(ruleset.Change{Family: f[0], Table: f[1], Chain: f[2]}, true)
		origins := st.Origins[k]
		for len(origins) < len(c.Rules) {
			origins = append(origins, model.Origin{Source: model.SourceBaseline})
		}
		gone := removals[k]
		var rules []*ruleset.Rule
		var kept []model.Origin
		for i, r := range c.Rules {
			if slices.Contains(gone, i+1) {
				continue
			}
			rules = append(rules, r)
			kept = append(kept, origins[i])
		}
		add := inserts[k]
		slices.SortStableFunc(add, func(a, b ins) int { return a.pos - b.pos })
		for _, a := range add {
			p := min(max(a.pos-1, 0), len(rules))
			rules = slices.Insert(rules, p, &ruleset.Rule{Text: a.text})
			kept = slices.Insert(kept, p, a.origin)
		}
		c.Rules, st.Origins[k] = rules, kept
	}
	// Removals of whole chains and tables come last: their rules went with them.
	for _, ch := range changes {
		switch ch.Kind {
		case ruleset.ChainRemoved:
			if t := table(ch.Family, ch.Table, false); t != nil {
				t.Chains = slices.DeleteFunc(t.Chains, func(c *ruleset.Chain) bool { return c.Name == ch.Chain })
			}
			delete(st.Origins, chainKey(ch.Family, ch.Table, ch.Chain))
		case ruleset.SetRemoved:
			if t := table(ch.Family, ch.Table, false); t != nil {
				t.Sets = slices.DeleteFunc(t.Sets, func(s *ruleset.Set) bool { return s.Name == ch.Set })
			}
		case ruleset.TableRemoved:
			rs.Tables = slices.DeleteFunc(rs.Tables, func(t *ruleset.Table) bool {
				return t.Family == ch.Family && t.Name == ch.Table
			})
			prefix := ch.Family + " " + ch.Table + " "
			for k := range st.Origins {
				if strings.HasPrefix(k, prefix) {
					delete(st.Origins, k)
				}
			}
		}
	}
	st.Seq = seq
	st.Exact = rs.Digest().String() == after
}

// creditRules gives the rules a deviation brought, on its device, the CR that
// retroactively authorized them.
func creditRules(tx *bolt.Tx, d *model.Deviation, cr string) error {
	st, err := takeDevState(tx, d.Tenant, d.Device)
	if err != nil || st == nil {
		return err
	}
	changed := false
	for k, origins := range st.Origins {
		for i := range origins {
			if origins[i].Deviation == d.ID && origins[i].CR == "" {
				st.Origins[k][i].CR = cr
				changed = true
			}
		}
	}
	if !changed {
		return nil
	}
	return putDevState(tx, st)
}
