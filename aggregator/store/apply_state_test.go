package store

import (
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"reflect"
	"slices"
	"strings"
	"testing"

	bolt "go.etcd.io/bbolt"

	"github.com/fenceline/fenceline/aggregator/model"
	"github.com/fenceline/fenceline/shared/ruleset"
)

// TestDevViewRecords drives a device's view through a long run of random diffs (rules
// added, removed and moved anywhere, runs of insertions at one place that exhaust the
// order keys, chains and tables added and removed, set elements) and checks after each:
// the rules stored per record decode to the ruleset the diff led to, the view kept in
// memory equals the decoded one, and Exact (decided when the view is read) says whether
// the device reported the digest of that ruleset.
func TestDevViewRecords(t *testing.T) {
	f := newTestFSM(t)
	rnd := rand.New(rand.NewPCG(7, 11))
	cur := &ruleset.Ruleset{Tables: []*ruleset.Table{{Family: "inet", Name: "filter",
		Chains: []*ruleset.Chain{{Name: "input", Type: "filter", Hook: "input", Priority: "filter",
			Policy: "accept"}},
		Sets: []*ruleset.Set{{Name: "blk", Spec: []string{"type ipv4_addr"}}}}}}
	for i := range 5 {
		cur.Tables[0].Chains[0].Rules = append(cur.Tables[0].Chains[0].Rules,
			&ruleset.Rule{Text: fmt.Sprintf("tcp dport %d accept", i)})
	}
	update := func(fn func(tx *bolt.Tx) error) {
		t.Helper()
		if err := f.db.Update(fn); err != nil {
			t.Fatal(err)
		}
	}
	update(func(tx *bolt.Tx) error {
		o := model.Origin{Source: model.SourceBaseline, Seq: 1}
		return putDevView(tx, newView(fullState(nil, "acme", "fw", 1, clone(t, cur),
			cur.Digest().String(), nil, o)))
	})
	n := 0
	for step := range 400 {
		next := clone(t, cur)
		mutate(rnd, next, step, &n)
		changes := ruleset.Diff(cur, next)
		after := next.Digest().String()
		if step%7 == 0 {
			after = "sha256:00" // a digest the view does not have: Exact must be false
		}
		seq := uint64(step + 2)
		var cached *devView
		update(func(tx *bolt.Tx) error {
			v, err := takeDevView(tx, "acme", "fw")
			if err != nil {
				return err
			}
			origins := make([]model.Origin, len(changes))
			for i := range origins {
				origins[i] = model.Origin{Source: model.SourceUnauthorized, Seq: seq,
					Deviation: fmt.Sprint("DEV-", step, "-", i)}
			}
			applyDiff(v, seq, changes, origins, after)
			cached = v
			return putDevView(tx, v)
		})
		var decoded *model.DeviceState
		if err := f.view(func(tx *bolt.Tx) error {
			var err error
			decoded, err = loadDevState(tx, "acme", "fw")
			return err
		}); err != nil {
			t.Fatal(err)
		}
		if want, got := ruleTexts(next), ruleTexts(decoded.Ruleset); !reflect.DeepEqual(want, got) {
			t.Fatalf("step %d: stored rules\n%v\nwant\n%v\nchanges %+v", step, got, want, changes)
		}
		if want := after == next.Digest().String(); decoded.Exact != want {
			t.Fatalf("step %d: exact %v, want %v", step, decoded.Exact, want)
		}
		if want, got := elements(next), elements(decoded.Ruleset); !reflect.DeepEqual(want, got) {
			t.Fatalf("step %d: stored elements\n%v\nwant\n%v", step, got, want)
		}
		if !reflect.DeepEqual(ruleTexts(cached.st.Ruleset), ruleTexts(decoded.Ruleset)) ||
			!reflect.DeepEqual(elements(cached.st.Ruleset), elements(decoded.Ruleset)) ||
			!reflect.DeepEqual(nonEmpty(cached.st.Origins), nonEmpty(decoded.Origins)) {
			t.Fatalf("step %d: the view in memory differs from the stored one", step)
		}
		cur = next
	}
	if n == 0 {
		t.Fatal("no chain was numbered afresh")
	}
}

// mutate changes rs a little; every 50 steps it inserts a run of rules at the front of a
// chain, which exhausts the room between order keys (n counts those runs).
func mutate(rnd *rand.Rand, rs *ruleset.Ruleset, step int, n *int) {
	pick := func() (*ruleset.Table, *ruleset.Chain) {
		var all [][2]int
		for i, t := range rs.Tables {
			for j := range t.Chains {
				all = append(all, [2]int{i, j})
			}
		}
		if len(all) == 0 {
			return nil, nil
		}
		p := all[rnd.IntN(len(all))]
		return rs.Tables[p[0]], rs.Tables[p[0]].Chains[p[1]]
	}
	rule := func() *ruleset.Rule {
		return &ruleset.Rule{Text: fmt.Sprintf("ip saddr 10.%d.%d.0/24 drop", step%250, rnd.IntN(250))}
	}
	if step%50 == 49 {
		if _, c := pick(); c != nil {
			for range 40 {
				c.Rules = slices.Insert(c.Rules, 0, rule())
			}
			*n++
		}
		return
	}
	switch r := rnd.IntN(20); {
	case r < 8: // add a rule anywhere
		if _, c := pick(); c != nil {
			c.Rules = slices.Insert(c.Rules, rnd.IntN(len(c.Rules)+1), rule())
		}
	case r < 11: // remove one
		if _, c := pick(); c != nil && len(c.Rules) > 0 {
			i := rnd.IntN(len(c.Rules))
			c.Rules = slices.Delete(c.Rules, i, i+1)
		}
	case r < 13: // move one
		if _, c := pick(); c != nil && len(c.Rules) > 1 {
			i := rnd.IntN(len(c.Rules))
			r := c.Rules[i]
			c.Rules = slices.Delete(c.Rules, i, i+1)
			c.Rules = slices.Insert(c.Rules, rnd.IntN(len(c.Rules)+1), r)
		}
	case r < 14: // a second set comes (with elements) or goes
		if t := rs.Table("inet", "filter"); t != nil {
			if t.Set("blk2") != nil {
				t.Sets = slices.DeleteFunc(t.Sets, func(o *ruleset.Set) bool { return o.Name == "blk2" })
			} else {
				t.Sets = append(t.Sets, &ruleset.Set{Name: "blk2", Spec: []string{"type ipv4_addr"},
					Elements: []string{"198.51.100.1", fmt.Sprintf("198.51.100.%d", 2+step%200)}})
			}
		}
	case r < 15: // set elements
		if t := rs.Table("inet", "filter"); t != nil && len(t.Sets) > 0 {
			s := t.Sets[0]
			if len(s.Elements) > 3 && rnd.IntN(2) == 0 {
				s.Elements = slices.Delete(s.Elements, 0, 1)
			} else {
				s.Elements = append(s.Elements, fmt.Sprintf("192.0.2.%d", step%250))
				slices.Sort(s.Elements)
				s.Elements = slices.Compact(s.Elements)
			}
		}
	case r < 17: // a new chain, with rules
		if t := rs.Table("inet", "filter"); t != nil {
			c := &ruleset.Chain{Name: fmt.Sprintf("c%d", step)}
			c.Rules = []*ruleset.Rule{rule(), rule()}
			t.Chains = append(t.Chains, c)
		}
	case r < 18: // a chain goes
		if t, c := pick(); c != nil && c.Name != "input" {
			t.Chains = slices.DeleteFunc(t.Chains, func(o *ruleset.Chain) bool { return o == c })
		}
	case r < 19: // a table comes or goes
		if t := rs.Table("ip", "nat"); t != nil {
			rs.Tables = slices.DeleteFunc(rs.Tables, func(o *ruleset.Table) bool { return o == t })
		} else {
			rs.Tables = append(rs.Tables, &ruleset.Table{Family: "ip", Name: "nat",
				Chains: []*ruleset.Chain{{Name: "post", Rules: []*ruleset.Rule{rule()}}}})
			rs.Sort()
		}
	default: // nothing changes
	}
}

func clone(t *testing.T, rs *ruleset.Ruleset) *ruleset.Ruleset {
	t.Helper()
	var out ruleset.Ruleset
	raw, err := json.Marshal(rs)
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(raw, &out); err != nil {
		t.Fatal(err)
	}
	return &out
}

// ruleTexts lists every chain's rules by chain key.
func ruleTexts(rs *ruleset.Ruleset) map[string][]string {
	out := map[string][]string{}
	for _, t := range rs.Tables {
		for _, c := range t.Chains {
			var texts []string
			for _, r := range c.Rules {
				texts = append(texts, r.Text)
			}
			out[chainKey(t.Family, t.Name, c.Name)] = texts
		}
	}
	return out
}

// elements lists every set's elements by set key.
func elements(rs *ruleset.Ruleset) map[string][]string {
	out := map[string][]string{}
	for _, t := range rs.Tables {
		for _, set := range t.Sets {
			out[setKey(t.Family, t.Name, set.Name)] = slices.Clone(set.Elements)
		}
	}
	return out
}

func nonEmpty(m map[string][]model.Origin) map[string][]model.Origin {
	out := map[string][]model.Origin{}
	for k, v := range m {
		if len(v) > 0 {
			out[k] = v
		}
	}
	return out
}

// TestDevViewOldRecord reads a view written before the rules had records of their own
// (the whole state in one record), and splits it at its next write.
func TestDevViewOldRecord(t *testing.T) {
	f := newTestFSM(t)
	rs := replayRuleset("tcp dport 22 accept", "tcp dport 80 accept")
	rs.Tables[0].Sets[0].Elements = []string{"192.0.2.1", "192.0.2.2"}
	old := &model.DeviceState{Tenant: "acme", Device: "fw", Seq: 3, Exact: true, Ruleset: rs,
		Origins: map[string][]model.Origin{"inet filter input": {
			{Source: model.SourceBaseline, Seq: 1}, {Source: model.SourceCR, CR: "CR-000001", Seq: 2}}}}
	if err := f.db.Update(func(tx *bolt.Tx) error {
		return putJSON(tx.Bucket(bucketDevStates), deviceKey("acme", "fw"), old)
	}); err != nil {
		t.Fatal(err)
	}
	load := func() *model.DeviceState {
		t.Helper()
		var st *model.DeviceState
		if err := f.view(func(tx *bolt.Tx) error {
			var err error
			st, err = loadDevState(tx, "acme", "fw")
			return err
		}); err != nil {
			t.Fatal(err)
		}
		return st
	}
	if st := load(); !reflect.DeepEqual(st.Origins, old.Origins) ||
		!reflect.DeepEqual(ruleTexts(st.Ruleset), ruleTexts(rs)) ||
		!reflect.DeepEqual(elements(st.Ruleset), elements(rs)) {
		t.Fatalf("old record read as %+v", st)
	}
	next := replayRuleset("tcp dport 22 accept", "tcp dport 443 accept", "tcp dport 80 accept")
	next.Tables[0].Sets[0].Elements = []string{"192.0.2.1", "192.0.2.3"}
	if err := f.db.Update(func(tx *bolt.Tx) error {
		v, err := takeDevView(tx, "acme", "fw")
		if err != nil {
			return err
		}
		changes := ruleset.Diff(rs, next)
		applyDiff(v, 4, changes, make([]model.Origin, len(changes)), next.Digest().String())
		return putDevView(tx, v)
	}); err != nil {
		t.Fatal(err)
	}
	st := load()
	if !reflect.DeepEqual(ruleTexts(st.Ruleset), ruleTexts(next)) ||
		!reflect.DeepEqual(elements(st.Ruleset), elements(next)) || !st.Exact {
		t.Fatalf("after a change: %v exact %v", ruleTexts(st.Ruleset), st.Exact)
	}
	if o := st.Origins["inet filter input"]; len(o) != 3 || o[2].CR != "CR-000001" {
		t.Fatalf("origins after a change: %+v", o)
	}
	if raw := dumpBucket(t, f, bucketDevStates); strings.Contains(raw, "tcp dport") ||
		strings.Contains(raw, "192.0.2") {
		t.Fatalf("the header still holds rules: %s", raw)
	}
}
