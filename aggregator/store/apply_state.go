package store

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"maps"
	"math"
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

// The view is stored in pieces, so that an event costs the size of its change rather
// than the size of the device's ruleset: a header (bucketDevStates: the ruleset without
// its rules, the sequence and the Exact flag) and one record per rule (bucketDevRules:
// the rule and its origin), keyed by device, chain and an order key that sorts the rules
// of a chain in their order. An added rule takes a key between its neighbours' (the
// chain's keys are numbered afresh when there is no room), so an event writes its new
// rules, deletes its removed ones and rewrites the header. The order keys are a function
// of the commands alone, like everything in the state file.
// The elements of named sets have records of their own too (bucketDevElems, keyed by
// device, set and the element's text, so bbolt keeps them in their canonical order).

// devHeader is the record in bucketDevStates.
type devHeader struct {
	model.DeviceState
	// Split is true when the rules are in bucketDevRules; a record written before that
	// holds them inline (and its origins), and the next write of the view splits it.
	Split bool `json:"split,omitempty"`
	// ExactIf, when set, is the digest the device reported for this state: Exact is
	// whether the view's digest is it, decided when the view is read (devView.after).
	ExactIf string `json:"exact_if,omitempty"`
}

// devRule is one rule's record in bucketDevRules.
type devRule struct {
	Rule   ruleset.Rule `json:"rule"`
	Origin model.Origin `json:"origin"`
}

// devView is a device's view as the state machine works on it: the state, the order
// keys of its rules, and the writes it owes since it was taken.
type devView struct {
	st *model.DeviceState
	// keys holds, per chain key, the order key of each rule, parallel to the chain's
	// rules. nil when the rules are not stored per rule yet: the next put writes all.
	keys map[string][]uint64
	// rewrite makes the next put write every rule record afresh (a full state).
	rewrite bool
	// Writes owed to bucketDevRules: chains whose records all go (removed, or numbered
	// afresh), then single records deleted and written; and to bucketDevElems: sets whose
	// records all go, then elements deleted and written.
	dropped     []string
	dels        []ruleKey
	puts        []rulePut
	droppedSets []string
	elemDels    []elemKey
	elemPuts    []elemKey
	// after is the digest the device reported for the state a diff led to: the view is
	// exact when its digest is that, which is taken when the view is read (the digest is
	// in the size of the ruleset, so no event pays it). "" when st.Exact was decided
	// when the view was written (a full state).
	after string
}

type ruleKey struct {
	chain string
	key   uint64
}

type rulePut struct {
	ruleKey
	rec devRule
}

type elemKey struct {
	set  string // "family table set"
	elem string
}

func setKey(family, table, set string) string { return family + " " + table + " " + set }

func devElemKey(prefix []byte, set, elem string) []byte {
	k := make([]byte, 0, len(prefix)+len(set)+1+len(elem))
	return append(append(append(append(k, prefix...), set...), 0), elem...)
}

// newView wraps a state that replaces the device's view: every rule is written afresh.
func newView(st *model.DeviceState) *devView {
	return &devView{st: st, rewrite: true}
}

// state is the view's state, nil for a device without one.
func (v *devView) state() *model.DeviceState {
	if v == nil {
		return nil
	}
	return v.st
}

func devRulePrefix(tenant, device string) []byte {
	return append(deviceKey(tenant, device), 0)
}

func devRuleKey(prefix []byte, chain string, key uint64) []byte {
	k := make([]byte, 0, len(prefix)+len(chain)+9)
	k = append(append(append(k, prefix...), chain...), 0)
	return binary.BigEndian.AppendUint64(k, key)
}

// loadDevState decodes a device's view. Readers use it; a command that writes the view
// back takes it with takeDevView.
func loadDevState(tx *bolt.Tx, tenant, device string) (*model.DeviceState, error) {
	v, err := loadDevView(tx, tenant, device)
	return v.state(), err
}

func loadDevView(tx *bolt.Tx, tenant, device string) (*devView, error) {
	var h devHeader
	ok, err := getJSON(tx.Bucket(bucketDevStates), deviceKey(tenant, device), &h)
	if err != nil || !ok {
		return nil, err
	}
	st := &h.DeviceState
	if st.Ruleset == nil {
		st.Ruleset = &ruleset.Ruleset{}
	}
	if !h.Split {
		if st.Origins == nil {
			st.Origins = map[string][]model.Origin{}
		}
		return &devView{st: st}, nil
	}
	st.Origins = map[string][]model.Origin{}
	v := &devView{st: st, keys: map[string][]uint64{}}
	chains := map[string]*ruleset.Chain{}
	for _, t := range st.Ruleset.Tables {
		for _, c := range t.Chains {
			k := chainKey(t.Family, t.Name, c.Name)
			chains[k] = c
			st.Origins[k] = []model.Origin{}
			v.keys[k] = []uint64{}
		}
	}
	prefix := devRulePrefix(tenant, device)
	err = forPrefix(tx.Bucket(bucketDevRules), prefix, func(k, raw []byte) error {
		if len(k) < len(prefix)+9 || k[len(k)-9] != 0 {
			return fmt.Errorf("rule record %q: bad key", k)
		}
		ck := string(k[len(prefix) : len(k)-9])
		c := chains[ck]
		if c == nil {
			return fmt.Errorf("rule record %q: no chain %q in the view", k, ck)
		}
		var r devRule
		if err := json.Unmarshal(raw, &r); err != nil {
			return fmt.Errorf("decode rule record %q: %w", k, err)
		}
		rule := r.Rule
		c.Rules = append(c.Rules, &rule)
		st.Origins[ck] = append(st.Origins[ck], r.Origin)
		v.keys[ck] = append(v.keys[ck], binary.BigEndian.Uint64(k[len(k)-8:]))
		return nil
	})
	if err != nil {
		return nil, err
	}
	sets := map[string]*ruleset.Set{}
	for _, t := range st.Ruleset.Tables {
		for _, set := range t.Sets {
			sets[setKey(t.Family, t.Name, set.Name)] = set
		}
	}
	err = forPrefix(tx.Bucket(bucketDevElems), prefix, func(k, _ []byte) error {
		rest := k[len(prefix):]
		i := bytes.IndexByte(rest, 0)
		if i < 0 {
			return fmt.Errorf("element record %q: bad key", k)
		}
		set := sets[string(rest[:i])]
		if set == nil {
			return fmt.Errorf("element record %q: no set %q in the view", k, rest[:i])
		}
		set.Elements = append(set.Elements, string(rest[i+1:]))
		return nil
	})
	if err != nil {
		return nil, err
	}
	if h.ExactIf != "" {
		v.after = h.ExactIf
		st.Exact = st.Ruleset.Digest().String() == h.ExactIf
	}
	return v, nil
}

// Decoding the view was half the state machine's time (BenchmarkAppendChanges). So each
// state file keeps, in memory, the decoded view its device's last write left, with that
// write's number (bucketDevVersions, written in the same transaction). A command that
// will write the view back takes it from there when the numbers still agree; it leaves
// the cache when taken, so a transaction that is rolled back after changing it leaves
// nothing stale behind (the numbers then disagree, or there is nothing to take, and the
// records are decoded). The records stay the state; the cache only spares decoding them.
var devCaches sync.Map // *bolt.DB → *devCache

type devCache struct {
	mu sync.Mutex
	m  map[string]cachedDevView
}

type cachedDevView struct {
	version uint64
	v       *devView
}

func devCacheOf(tx *bolt.Tx) *devCache {
	if c, ok := devCaches.Load(tx.DB()); ok {
		return c.(*devCache)
	}
	c, _ := devCaches.LoadOrStore(tx.DB(), &devCache{m: map[string]cachedDevView{}})
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

// takeDevView returns a device's view (nil when it has none) for a command that writes it
// back with putDevView (or drops it): the caller owns the value.
func takeDevView(tx *bolt.Tx, tenant, device string) (*devView, error) {
	key := deviceKey(tenant, device)
	c := devCacheOf(tx)
	c.mu.Lock()
	e, ok := c.m[string(key)]
	delete(c.m, string(key))
	c.mu.Unlock()
	if ok && e.version == devVersion(tx, key) {
		return e.v, nil
	}
	return loadDevView(tx, tenant, device)
}

// putDevView writes what changed in a device's view and keeps it, decoded, for the next
// command that takes it. The caller must not change v afterwards.
func putDevView(tx *bolt.Tx, v *devView) error {
	st := v.st
	key := deviceKey(st.Tenant, st.Device)
	b := tx.Bucket(bucketDevRules)
	prefix := devRulePrefix(st.Tenant, st.Device)
	eb := tx.Bucket(bucketDevElems)
	if v.keys == nil || v.rewrite {
		if err := deletePrefix(b, prefix); err != nil {
			return err
		}
		if err := deletePrefix(eb, prefix); err != nil {
			return err
		}
		v.keys = map[string][]uint64{}
		v.dropped, v.dels, v.puts = nil, nil, nil
		v.droppedSets, v.elemDels, v.elemPuts = nil, nil, nil
		for _, t := range st.Ruleset.Tables {
			for _, c := range t.Chains {
				k := chainKey(t.Family, t.Name, c.Name)
				v.keys[k] = v.putChain(k, c.Rules, st.Origins[k])
			}
			for _, set := range t.Sets {
				k := setKey(t.Family, t.Name, set.Name)
				for _, e := range set.Elements {
					v.elemPuts = append(v.elemPuts, elemKey{k, e})
				}
			}
		}
		v.rewrite = false
	}
	for _, k := range v.droppedSets {
		if err := deletePrefix(eb, append(append(slices.Clip(prefix), k...), 0)); err != nil {
			return err
		}
	}
	for _, d := range v.elemDels {
		if err := eb.Delete(devElemKey(prefix, d.set, d.elem)); err != nil {
			return err
		}
	}
	for _, p := range v.elemPuts {
		if err := eb.Put(devElemKey(prefix, p.set, p.elem), nil); err != nil {
			return err
		}
	}
	v.droppedSets, v.elemDels, v.elemPuts = v.droppedSets[:0], v.elemDels[:0], v.elemPuts[:0]
	for _, k := range v.dropped {
		if err := deletePrefix(b, append(append(slices.Clip(prefix), k...), 0)); err != nil {
			return err
		}
	}
	for _, d := range v.dels {
		if err := b.Delete(devRuleKey(prefix, d.chain, d.key)); err != nil {
			return err
		}
	}
	for _, p := range v.puts {
		if err := putJSON(b, devRuleKey(prefix, p.chain, p.key), &p.rec); err != nil {
			return err
		}
	}
	v.dropped, v.dels, v.puts = v.dropped[:0], v.dels[:0], v.puts[:0]

	h := devHeader{DeviceState: model.DeviceState{Tenant: st.Tenant, Device: st.Device,
		Seq: st.Seq, Exact: st.Exact && v.after == "", Ruleset: skeleton(st.Ruleset)},
		Split: true, ExactIf: v.after}
	if err := putJSON(tx.Bucket(bucketDevStates), key, &h); err != nil {
		return err
	}
	n := devVersion(tx, key) + 1
	if err := tx.Bucket(bucketDevVersions).Put(key, u64(n)); err != nil {
		return err
	}
	c := devCacheOf(tx)
	c.mu.Lock()
	c.m[string(key)] = cachedDevView{version: n, v: v}
	c.mu.Unlock()
	return nil
}

// keyStep spaces the order keys of a chain numbered afresh.
const keyStep = 1 << 32

// putChain numbers a chain's rules afresh and owes a write for each; the chain's records
// from before must be gone or owed a delete.
func (v *devView) putChain(k string, rules []*ruleset.Rule, origins []model.Origin) []uint64 {
	keys := make([]uint64, len(rules))
	for i, r := range rules {
		keys[i] = uint64(i+1) * keyStep
		var o model.Origin
		if i < len(origins) {
			o = origins[i]
		}
		v.puts = append(v.puts, rulePut{ruleKey{k, keys[i]}, devRule{Rule: *r, Origin: o}})
	}
	return keys
}

// orderKeys fills the zero keys (new rules) of a chain's keys with keys between their
// neighbours'. It reports false when there is no room: the chain must be numbered afresh.
func orderKeys(keys []uint64) bool {
	for i := 0; i < len(keys); {
		if keys[i] != 0 {
			i++
			continue
		}
		j := i
		for j < len(keys) && keys[j] == 0 {
			j++
		}
		var lo uint64
		if i > 0 {
			lo = keys[i-1]
		}
		n := uint64(j - i)
		if j == len(keys) {
			// At the end: a full step apart.
			if lo > math.MaxUint64-(n+1)*keyStep {
				return false
			}
			for m := range n {
				keys[i+int(m)] = lo + (m+1)*keyStep
			}
		} else {
			step := (keys[j] - lo) / (n + 1)
			if keys[j] <= lo || step == 0 {
				return false
			}
			for m := range n {
				keys[i+int(m)] = lo + (m+1)*step
			}
		}
		i = j
	}
	return true
}

// skeleton is the ruleset without its rules and set elements, as the header stores it.
func skeleton(rs *ruleset.Ruleset) *ruleset.Ruleset {
	out := &ruleset.Ruleset{Tables: make([]*ruleset.Table, len(rs.Tables))}
	for i, t := range rs.Tables {
		tc := *t
		tc.Chains = make([]*ruleset.Chain, len(t.Chains))
		for j, c := range t.Chains {
			cc := *c
			cc.Rules = nil
			tc.Chains[j] = &cc
		}
		tc.Sets = make([]*ruleset.Set, len(t.Sets))
		for j, set := range t.Sets {
			sc := *set
			sc.Elements = nil
			tc.Sets[j] = &sc
		}
		out.Tables[i] = &tc
	}
	return out
}

// deletePrefix deletes every key with the prefix.
func deletePrefix(b *bolt.Bucket, prefix []byte) error {
	var keys [][]byte
	if err := forPrefix(b, prefix, func(k, _ []byte) error {
		keys = append(keys, slices.Clone(k))
		return nil
	}); err != nil {
		return err
	}
	for _, k := range keys {
		if err := b.Delete(k); err != nil {
			return err
		}
	}
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
		// Elements in canonical order and once each, as their records keep them.
		for _, set := range t.Sets {
			if !slices.IsSorted(set.Elements) {
				ruleset.SortElements(set.Elements)
			}
			set.Elements = slices.Compact(set.Elements)
		}
	}
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
//
// It changes the view in place and notes the records to write.
func applyDiff(v *devView, seq uint64, changes []ruleset.Change, origins []model.Origin,
	after string) {
	st := v.st
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
			// Elements stay sorted and unique (fullState, and their records).
			if t := table(ch.Family, ch.Table, false); t != nil {
				if s := t.Set(ch.Set); s != nil {
					if j, found := slices.BinarySearch(s.Elements, ch.Element); !found {
						s.Elements = slices.Insert(s.Elements, j, ch.Element)
						v.elemPuts = append(v.elemPuts, elemKey{setKey(ch.Family, ch.Table, ch.Set), ch.Element})
					}
				}
			}
		case ruleset.ElementRemoved:
			if t := table(ch.Family, ch.Table, false); t != nil {
				if s := t.Set(ch.Set); s != nil {
					if j, found := slices.BinarySearch(s.Elements, ch.Element); found {
						s.Elements = slices.Delete(s.Elements, j, j+1)
						v.elemDels = append(v.elemDels, elemKey{setKey(ch.Family, ch.Table, ch.Set), ch.Element})
					}
				}
			}
		}
	}
	for _, k := range order {
		f := strings.SplitN(k, " ", 3)
		c := chain(ruleset.Change{Family: f[0], Table: f[1], Chain: f[2]}, true)
		// Three parallel slices, changed in place (the view is the command's): the rules,
		// their origins and their order keys (0 for a rule without a record: added,
		// padded, or any rule while the view is not stored per rule).
		n := len(c.Rules)
		rules := c.Rules
		kept := st.Origins[k]
		for len(kept) < n {
			kept = append(kept, model.Origin{Source: model.SourceBaseline})
		}
		kept = kept[:n]
		keys := v.keys[k]
		if len(keys) != n {
			keys = make([]uint64, n)
		}
		if gone := removals[k]; len(gone) > 0 {
			w := 0
			for i := range n {
				if slices.Contains(gone, i+1) {
					if keys[i] != 0 {
						v.dels = append(v.dels, ruleKey{k, keys[i]})
					}
					continue
				}
				rules[w], kept[w], keys[w] = rules[i], kept[i], keys[i]
				w++
			}
			clear(rules[w:])
			rules, kept, keys = rules[:w], kept[:w], keys[:w]
		}
		add := inserts[k]
		slices.SortStableFunc(add, func(a, b ins) int { return a.pos - b.pos })
		for _, a := range add {
			p := min(max(a.pos-1, 0), len(rules))
			rules = slices.Insert(rules, p, &ruleset.Rule{Text: a.text})
			kept = slices.Insert(kept, p, a.origin)
			keys = slices.Insert(keys, p, 0)
		}
		c.Rules, st.Origins[k] = rules, kept
		if v.keys == nil || v.rewrite {
			continue // the put writes every record
		}
		var fresh []int
		for i, kk := range keys {
			if kk == 0 {
				fresh = append(fresh, i)
			}
		}
		if orderKeys(keys) {
			for _, i := range fresh {
				v.puts = append(v.puts, rulePut{ruleKey{k, keys[i]}, devRule{Rule: *rules[i],
					Origin: kept[i]}})
			}
		} else {
			v.dropChain(k)
			keys = v.putChain(k, rules, kept)
		}
		v.keys[k] = keys
	}
	// Removals of whole chains and tables come last: their rules went with them.
	for _, ch := range changes {
		switch ch.Kind {
		case ruleset.ChainRemoved:
			if t := table(ch.Family, ch.Table, false); t != nil {
				t.Chains = slices.DeleteFunc(t.Chains, func(c *ruleset.Chain) bool { return c.Name == ch.Chain })
			}
			k := chainKey(ch.Family, ch.Table, ch.Chain)
			delete(st.Origins, k)
			v.dropChain(k)
			delete(v.keys, k)
		case ruleset.SetRemoved:
			if t := table(ch.Family, ch.Table, false); t != nil {
				t.Sets = slices.DeleteFunc(t.Sets, func(s *ruleset.Set) bool { return s.Name == ch.Set })
			}
			v.dropSet(setKey(ch.Family, ch.Table, ch.Set))
		case ruleset.TableRemoved:
			if t := table(ch.Family, ch.Table, false); t != nil {
				for _, set := range t.Sets {
					v.dropSet(setKey(t.Family, t.Name, set.Name))
				}
			}
			rs.Tables = slices.DeleteFunc(rs.Tables, func(t *ruleset.Table) bool {
				return t.Family == ch.Family && t.Name == ch.Table
			})
			prefix := ch.Family + " " + ch.Table + " "
			for k := range st.Origins {
				if strings.HasPrefix(k, prefix) {
					delete(st.Origins, k)
				}
			}
			var gone []string
			for k := range v.keys {
				if strings.HasPrefix(k, prefix) {
					gone = append(gone, k)
				}
			}
			slices.Sort(gone)
			for _, k := range gone {
				v.dropChain(k)
				delete(v.keys, k)
			}
		}
	}
	st.Seq = seq
	// Exact is decided when the view is read (devView.after).
	st.Exact, v.after = false, after
}

// dropSet owes the deletion of every element record of set k, and forgets the writes
// owed to it so far.
func (v *devView) dropSet(k string) {
	if v.keys == nil || v.rewrite {
		return
	}
	v.droppedSets = append(v.droppedSets, k)
	v.elemDels = slices.DeleteFunc(v.elemDels, func(e elemKey) bool { return e.set == k })
	v.elemPuts = slices.DeleteFunc(v.elemPuts, func(e elemKey) bool { return e.set == k })
}

// dropChain owes the deletion of every record of chain k, and forgets the writes owed to
// it so far.
func (v *devView) dropChain(k string) {
	if v.keys == nil || v.rewrite {
		return
	}
	v.dropped = append(v.dropped, k)
	v.dels = slices.DeleteFunc(v.dels, func(d ruleKey) bool { return d.chain == k })
	v.puts = slices.DeleteFunc(v.puts, func(p rulePut) bool { return p.chain == k })
}

// creditRules gives the rules a deviation brought, on its device, the CR that
// retroactively authorized them.
func creditRules(tx *bolt.Tx, d *model.Deviation, cr string) error {
	v, err := takeDevView(tx, d.Tenant, d.Device)
	if err != nil || v == nil {
		return err
	}
	st := v.st
	chains := slices.Sorted(maps.Keys(st.Origins))
	changed := false
	for _, k := range chains {
		origins := st.Origins[k]
		for i := range origins {
			if origins[i].Deviation == d.ID && origins[i].CR == "" {
				origins[i].CR = cr
				changed = true
				if v.keys == nil || v.rewrite {
					continue
				}
				f := strings.SplitN(k, " ", 3)
				var c *ruleset.Chain
				if t := st.Ruleset.Table(f[0], f[1]); t != nil && len(f) == 3 {
					c = t.Chain(f[2])
				}
				if c == nil || i >= len(c.Rules) || i >= len(v.keys[k]) {
					v.rewrite = true // not reached: the records follow the chains
					continue
				}
				v.puts = append(v.puts, rulePut{ruleKey{k, v.keys[k][i]},
					devRule{Rule: *c.Rules[i], Origin: origins[i]}})
			}
		}
	}
	if !changed {
		return nil
	}
	return putDevView(tx, v)
}
