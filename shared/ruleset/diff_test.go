package ruleset

import (
	"fmt"
	"math/rand/v2"
	"reflect"
	"slices"
	"strings"
	"testing"
)

const (
	inputAccept = "type filter hook input priority filter; policy accept;"
	inputDrop   = "type filter hook input priority filter; policy drop;"
)

// inputChain returns table inet filter with base chain input holding rules.
func inputChain(rules ...string) *Ruleset {
	c := &Chain{Name: "input", Type: "filter", Hook: "input", Priority: "filter", Policy: "accept"}
	for i, r := range rules {
		c.Rules = append(c.Rules, &Rule{Text: r, Handle: uint64(10 + i)})
	}
	return &Ruleset{Tables: []*Table{{Family: "inet", Name: "filter", Chains: []*Chain{c}}}}
}

// ruleChange is a rule change in inet filter input.
func ruleChange(kind ChangeKind, pos int, rule string) Change {
	c := Change{Kind: kind, Family: "inet", Table: "filter", Chain: "input"}
	c.Position, c.Rule = pos, rule
	return c
}

// moved is a rule_moved change in inet filter input.
func moved(pos, from int, rule string) Change {
	c := ruleChange(RuleMoved, pos, rule)
	c.FromPosition = from
	return c
}

func formatChanges(cs []Change) string {
	var b strings.Builder
	for _, c := range cs {
		fmt.Fprintf(&b, "\n\t%+v", c)
	}
	return b.String()
}

func TestDiff(t *testing.T) {
	withSet := func(mutate func(*Set)) *Ruleset {
		rs := inputChain("ip saddr @blocked drop")
		s := &Set{
			Name: "blocked", Spec: []string{"type ipv4_addr", "flags interval"},
			Elements: []string{"10.0.0.0/8", "192.0.2.1"},
		}
		if mutate != nil {
			mutate(s)
		}
		rs.Tables[0].Sets = []*Set{s}
		return rs
	}
	withObjects := func(objs ...*Object) *Ruleset {
		rs := inputChain()
		rs.Tables[0].Objects = objs
		return rs
	}
	withFlowtable := func(fts ...*Flowtable) *Ruleset {
		rs := inputChain()
		rs.Tables[0].Flowtables = fts
		return rs
	}
	policy := func(rs *Ruleset, p string) *Ruleset { rs.Tables[0].Chains[0].Policy = p; return rs }
	addChain := func(rs *Ruleset, c *Chain) *Ruleset {
		rs.Tables[0].Chains = append(rs.Tables[0].Chains, c)
		return rs
	}
	fwd := func() *Chain {
		return &Chain{
			Name: "forward", Type: "filter", Hook: "forward", Priority: "filter", Policy: "drop",
			Rules: []*Rule{{Text: "ct state established accept"}, {Text: `iifname "lan" accept`}},
		}
	}
	fwdHeader := "type filter hook forward priority filter; policy drop;"
	natTable := func() *Table {
		return &Table{
			Family: "ip", Name: "nat",
			Sets: []*Set{{
				Name: "nets", Spec: []string{"type ipv4_addr"}, Elements: []string{"10.1.0.0"},
			}},
			Chains: []*Chain{{
				Name: "post", Type: "nat", Hook: "postrouting", Priority: "srcnat",
				Policy: "accept",
				Rules:  []*Rule{{Text: "ip saddr @nets masquerade"}, {Text: "counter"}},
			}},
		}
	}
	natHeader := "type nat hook postrouting priority srcnat; policy accept;"
	withNat := func(rs *Ruleset) *Ruleset {
		rs.Tables = append(rs.Tables, natTable())
		return rs
	}
	nat := func(kind ChangeKind) Change { return Change{Kind: kind, Family: "ip", Table: "nat"} }

	tests := []struct {
		name     string
		old, new *Ruleset
		want     []Change
	}{
		{"identical", inputChain("a", "b"), inputChain("a", "b"), nil},
		{"both nil", nil, nil, nil},
		{"rule appended", inputChain("a", "b"), inputChain("a", "b", "c"),
			[]Change{ruleChange(RuleAdded, 3, "c")}},
		{"rule added at the top", inputChain("a", "b"), inputChain("x", "a", "b"),
			[]Change{ruleChange(RuleAdded, 1, "x")}},
		{"rule inserted in the middle", inputChain("a", "b", "c"), inputChain("a", "x", "b", "c"),
			[]Change{ruleChange(RuleAdded, 2, "x")}},
		{"rule removed from the middle", inputChain("a", "b", "c"), inputChain("a", "c"),
			[]Change{ruleChange(RuleRemoved, 2, "b")}},
		{"last rule removed", inputChain("a", "b", "c"), inputChain("a", "b"),
			[]Change{ruleChange(RuleRemoved, 3, "c")}},
		{"rule replaced", inputChain("a", "b", "c"), inputChain("a", "y", "c"),
			[]Change{ruleChange(RuleRemoved, 2, "b"), ruleChange(RuleAdded, 2, "y")}},
		{"rule moved to the top", inputChain("a", "b", "c"), inputChain("c", "a", "b"),
			[]Change{moved(1, 3, "c")}},
		{"rule moved down", inputChain("a", "b", "c", "d"), inputChain("b", "c", "a", "d"),
			[]Change{moved(3, 1, "a")}},
		{"rule moved and another added", inputChain("a", "b", "c"),
			inputChain("c", "a", "x", "b"),
			[]Change{moved(1, 3, "c"), ruleChange(RuleAdded, 3, "x")}},
		{"two rules swapped", inputChain("a", "b"), inputChain("b", "a"),
			[]Change{moved(2, 1, "a")}},
		{"duplicate rule removed is no move", inputChain("a", "b", "a"), inputChain("a", "b"),
			[]Change{ruleChange(RuleRemoved, 3, "a")}},
		{"rule edited in place is no move", inputChain("a", "b"), inputChain("a", "b2"),
			[]Change{ruleChange(RuleRemoved, 2, "b"), ruleChange(RuleAdded, 2, "b2")}},
		{"duplicate rule added", inputChain("counter", "a"), inputChain("counter", "counter", "a"),
			[]Change{ruleChange(RuleAdded, 2, "counter")}},
		{"handles differ", inputChain("a", "b"),
			func() *Ruleset {
				rs := inputChain("a", "b")
				rs.Tables[0].Chains[0].Rules[0].Handle = 99
				return rs
			}(), nil},

		{"chain policy", inputChain("a"), policy(inputChain("a"), "drop"),
			[]Change{{Kind: ChainPolicy, Family: "inet", Table: "filter", Chain: "input",
				Before: inputAccept, After: inputDrop}}},
		{"chain priority", inputChain("a"),
			func() *Ruleset {
				rs := inputChain("a")
				rs.Tables[0].Chains[0].Priority = "filter - 10"
				return rs
			}(),
			[]Change{{Kind: ChainChanged, Family: "inet", Table: "filter", Chain: "input",
				Before: inputAccept,
				After:  "type filter hook input priority filter - 10; policy accept;"}}},
		{"chain priority and policy", inputChain("a"),
			func() *Ruleset {
				rs := policy(inputChain("a"), "drop")
				rs.Tables[0].Chains[0].Priority = "filter - 10"
				return rs
			}(),
			[]Change{{Kind: ChainChanged, Family: "inet", Table: "filter", Chain: "input",
				Before: inputAccept,
				After:  "type filter hook input priority filter - 10; policy drop;"}}},
		{"chain comment", inputChain("a"),
			func() *Ruleset {
				rs := inputChain("a")
				rs.Tables[0].Chains[0].Comment = "inbound"
				return rs
			}(),
			[]Change{{Kind: ChainChanged, Family: "inet", Table: "filter", Chain: "input",
				Before: inputAccept, After: inputAccept}}},
		{"chain added with rules", inputChain("a"), addChain(inputChain("a"), fwd()),
			[]Change{
				{Kind: ChainAdded, Family: "inet", Table: "filter", Chain: "forward",
					After: fwdHeader},
				{Kind: RuleAdded, Family: "inet", Table: "filter", Chain: "forward",
					Position: 1, Rule: "ct state established accept"},
				{Kind: RuleAdded, Family: "inet", Table: "filter", Chain: "forward",
					Position: 2, Rule: `iifname "lan" accept`},
			}},
		{"chain removed with rules", addChain(inputChain("a"), fwd()), inputChain("a"),
			[]Change{
				{Kind: RuleRemoved, Family: "inet", Table: "filter", Chain: "forward",
					Position: 1, Rule: "ct state established accept"},
				{Kind: RuleRemoved, Family: "inet", Table: "filter", Chain: "forward",
					Position: 2, Rule: `iifname "lan" accept`},
				{Kind: ChainRemoved, Family: "inet", Table: "filter", Chain: "forward",
					Before: fwdHeader},
			}},
		{"regular chain added", inputChain("a"), addChain(inputChain("a"), &Chain{Name: "svc"}),
			[]Change{{Kind: ChainAdded, Family: "inet", Table: "filter", Chain: "svc"}}},

		{"table added", inputChain("a"), withNat(inputChain("a")),
			[]Change{
				nat(TableAdded),
				{Kind: SetAdded, Family: "ip", Table: "nat", Set: "nets", After: "type ipv4_addr"},
				{Kind: ElementAdded, Family: "ip", Table: "nat", Set: "nets", Element: "10.1.0.0"},
				{Kind: ChainAdded, Family: "ip", Table: "nat", Chain: "post", After: natHeader},
				{Kind: RuleAdded, Family: "ip", Table: "nat", Chain: "post", Position: 1,
					Rule: "ip saddr @nets masquerade"},
				{Kind: RuleAdded, Family: "ip", Table: "nat", Chain: "post", Position: 2,
					Rule: "counter"},
			}},
		{"table removed", withNat(inputChain("a")), inputChain("a"),
			[]Change{
				{Kind: ElementRemoved, Family: "ip", Table: "nat", Set: "nets",
					Element: "10.1.0.0"},
				{Kind: SetRemoved, Family: "ip", Table: "nat", Set: "nets",
					Before: "type ipv4_addr"},
				{Kind: RuleRemoved, Family: "ip", Table: "nat", Chain: "post", Position: 1,
					Rule: "ip saddr @nets masquerade"},
				{Kind: RuleRemoved, Family: "ip", Table: "nat", Chain: "post", Position: 2,
					Rule: "counter"},
				{Kind: ChainRemoved, Family: "ip", Table: "nat", Chain: "post", Before: natHeader},
				nat(TableRemoved),
			}},
		{"table flags", inputChain(),
			func() *Ruleset {
				rs := inputChain()
				rs.Tables[0].Flags = []string{"dormant"}
				return rs
			}(),
			[]Change{{Kind: TableChanged, Family: "inet", Table: "filter",
				Before: "flags ", After: "flags dormant"}}},

		{"set elements added and removed", withSet(nil),
			withSet(func(s *Set) {
				s.Elements = []string{"10.0.0.0/8", "198.51.100.0/24", "203.0.113.5"}
			}),
			[]Change{
				{Kind: ElementAdded, Family: "inet", Table: "filter", Set: "blocked",
					Element: "198.51.100.0/24"},
				{Kind: ElementAdded, Family: "inet", Table: "filter", Set: "blocked",
					Element: "203.0.113.5"},
				{Kind: ElementRemoved, Family: "inet", Table: "filter", Set: "blocked",
					Element: "192.0.2.1"},
			}},
		{"set elements reordered", withSet(nil),
			withSet(func(s *Set) { slices.Reverse(s.Elements) }), nil},
		{"dynamic set elements ignored", withSet(func(s *Set) { s.Dynamic = true }),
			withSet(func(s *Set) { s.Dynamic = true; s.Elements = []string{"203.0.113.9"} }), nil},
		{"set spec", withSet(nil), withSet(func(s *Set) { s.Spec = s.Spec[:1] }),
			[]Change{{Kind: SetChanged, Family: "inet", Table: "filter", Set: "blocked",
				Before: "type ipv4_addr; flags interval", After: "type ipv4_addr"}}},
		{"map element changed",
			withSet(func(s *Set) { s.Map, s.Elements = true, []string{"22 : accept"} }),
			withSet(func(s *Set) { s.Map, s.Elements = true, []string{"22 : drop"} }),
			[]Change{
				{Kind: ElementAdded, Family: "inet", Table: "filter", Set: "blocked",
					Element: "22 : drop"},
				{Kind: ElementRemoved, Family: "inet", Table: "filter", Set: "blocked",
					Element: "22 : accept"},
			}},

		{"object added", withObjects(), withObjects(&Object{Type: "counter", Name: "http"}),
			[]Change{{Kind: ObjectAdded, Family: "inet", Table: "filter", Object: "counter http"}}},
		{"object removed",
			withObjects(&Object{Type: "quota", Name: "q", Spec: []string{"over 1 mbytes"}}),
			withObjects(),
			[]Change{{Kind: ObjectRemoved, Family: "inet", Table: "filter", Object: "quota q",
				Before: "over 1 mbytes"}}},
		{"object changed",
			withObjects(&Object{Type: "quota", Name: "q", Spec: []string{"over 1 mbytes"}}),
			withObjects(&Object{Type: "quota", Name: "q", Spec: []string{"over 2 mbytes"}}),
			[]Change{{Kind: ObjectChanged, Family: "inet", Table: "filter", Object: "quota q",
				Before: "over 1 mbytes", After: "over 2 mbytes"}}},
		{"objects of two types with one name",
			withObjects(&Object{Type: "counter", Name: "x"}),
			withObjects(&Object{Type: "counter", Name: "x"}, &Object{Type: "quota", Name: "x"}),
			[]Change{{Kind: ObjectAdded, Family: "inet", Table: "filter", Object: "quota x"}}},

		{"flowtable added", withFlowtable(),
			withFlowtable(&Flowtable{Name: "ft", Hook: "ingress", Prio: "filter",
				Devices: []string{"eth0"}}),
			[]Change{{Kind: FlowtableAdded, Family: "inet", Table: "filter", Object: "flowtable ft",
				After: "ingress filter eth0 "}}},
		{"flowtable changed",
			withFlowtable(&Flowtable{Name: "ft", Hook: "ingress", Prio: "filter",
				Devices: []string{"eth0"}}),
			withFlowtable(&Flowtable{Name: "ft", Hook: "ingress", Prio: "filter",
				Devices: []string{"eth0", "eth1"}}),
			[]Change{{Kind: FlowtableChanged, Family: "inet", Table: "filter",
				Object: "flowtable ft",
				Before: "ingress filter eth0 ", After: "ingress filter eth0; eth1 "}}},
		{"flowtable removed",
			withFlowtable(&Flowtable{Name: "ft", Hook: "ingress", Prio: "filter"}), withFlowtable(),
			[]Change{{Kind: FlowtableRemoved, Family: "inet", Table: "filter",
				Object: "flowtable ft",
				Before: "ingress filter  "}}},

		{"from nil", nil, inputChain("a"),
			[]Change{
				{Kind: TableAdded, Family: "inet", Table: "filter"},
				{Kind: ChainAdded, Family: "inet", Table: "filter", Chain: "input",
					After: inputAccept},
				ruleChange(RuleAdded, 1, "a"),
			}},
		{"to nil", inputChain("a"), nil,
			[]Change{
				ruleChange(RuleRemoved, 1, "a"),
				{Kind: ChainRemoved, Family: "inet", Table: "filter", Chain: "input",
					Before: inputAccept},
				{Kind: TableRemoved, Family: "inet", Table: "filter"},
			}},
	}
	for _, tt := range tests {
		got := Diff(tt.old, tt.new)
		if !reflect.DeepEqual(got, tt.want) {
			t.Errorf("%s: Diff =%s\nwant%s", tt.name, formatChanges(got), formatChanges(tt.want))
		}
	}
}

// TestDiffOrder checks the documented order across tables and inside one: tables by
// family (in nft's order) and name; inside a table objects, sets, flowtables, then chains.
func TestDiffOrder(t *testing.T) {
	got := Diff(nil, sampleRuleset())
	var kinds []string
	for _, c := range got {
		if c.Kind == RuleAdded || c.Kind == ElementAdded {
			continue
		}
		kinds = append(kinds, fmt.Sprintf("%s %s %s %s%s%s",
			c.Kind, c.Family, c.Table, c.Chain, c.Set, c.Object))
	}
	want := []string{
		"table_added ip nat ",
		"chain_added ip nat post",
		"table_added ip6 empty ",
		"table_added inet filter ",
		"object_added inet filter counter http",
		"object_added inet filter quota q1",
		"set_added inet filter allowed",
		"set_added inet filter seen",
		"set_added inet filter portmap",
		"set_added inet filter small",
		"flowtable_added inet filter flowtable ft",
		"chain_added inet filter input",
		"chain_added inet filter svc",
	}
	if !slices.Equal(kinds, want) {
		t.Errorf("order:\n%s\nwant\n%s", strings.Join(kinds, "\n"), strings.Join(want, "\n"))
	}
	// A new ruleset reports every rule and every static element; dynamic ones never.
	var rules, elems int
	for _, c := range got {
		switch c.Kind {
		case RuleAdded:
			rules++
		case ElementAdded:
			elems++
			if c.Set == "seen" {
				t.Errorf("element %q of dynamic set reported", c.Element)
			}
		}
	}
	if rules != sampleRuleset().RuleCount() || elems != 3+2+1 {
		t.Errorf("%d rules and %d elements reported, want %d and 6", rules, elems,
			sampleRuleset().RuleCount())
	}
}

func TestDiffIgnoresLoadOrder(t *testing.T) {
	r := rand.New(rand.NewPCG(8, 9))
	for range 20 {
		rs := sampleRuleset()
		shuffleOrderless(r, rs)
		if got := Diff(sampleRuleset(), rs); len(got) != 0 {
			t.Fatalf("Diff of a reordered ruleset:%s", formatChanges(got))
		}
	}
}

func TestDiffDeterministic(t *testing.T) {
	old := sampleRuleset()
	new := sampleRuleset()
	new.Tables = append(new.Tables[1:],
		&Table{Family: "bridge", Name: "br"}, &Table{Family: "arp", Name: "a"})
	f := new.Tables[0]
	f.Set("allowed").Elements = []string{"1.1.1.1", "2.2.2.2", "3.3.3.3", "4.4.4.4"}
	f.Objects = nil
	f.Chains[0].Rules = f.Chains[0].Rules[2:]
	first := Diff(old, new)
	for range 20 {
		if again := Diff(old, new); !reflect.DeepEqual(first, again) {
			t.Fatalf("Diff not deterministic:%s\nthen%s", formatChanges(first),
				formatChanges(again))
		}
	}
}

// mutate applies a few random configuration changes to rs, driven by s.
func mutate(s *byteSource, rs *Ruleset) {
	for range s.n(4) {
		if len(rs.Tables) == 0 {
			rs.Tables = append(rs.Tables, &Table{Family: "ip", Name: s.name()})
			continue
		}
		t := rs.Tables[s.n(len(rs.Tables))]
		var c *Chain
		if len(t.Chains) > 0 {
			c = t.Chains[s.n(len(t.Chains))]
		}
		var st *Set
		if len(t.Sets) > 0 {
			st = t.Sets[s.n(len(t.Sets))]
		}
		switch s.n(10) {
		case 0:
			if c != nil {
				at := s.n(len(c.Rules) + 1)
				c.Rules = slices.Insert(c.Rules, at, &Rule{Text: s.str()})
			}
		case 1:
			if c != nil && len(c.Rules) > 0 {
				at := s.n(len(c.Rules))
				c.Rules = slices.Delete(c.Rules, at, at+1)
			}
		case 2:
			t.Comment += "x"
		case 3:
			if c != nil {
				c.Policy, c.Hook = s.str(), "hook"
			}
		case 4:
			if st != nil {
				st.Elements = append(st.Elements, s.str())
			}
		case 5:
			if st != nil && len(st.Elements) > 0 {
				st.Elements = st.Elements[1:]
			}
		case 6:
			if c != nil {
				t.Chains = slices.DeleteFunc(t.Chains, func(x *Chain) bool { return x == c })
			}
		case 7:
			if len(t.Objects) > 0 {
				t.Objects[0].Spec = append(t.Objects[0].Spec, s.str())
			}
		case 8:
			if c != nil && len(c.Rules) > 0 {
				c.Rules[0].Handle++ // volatile: no change
			}
		case 9:
			rs.Tables = slices.DeleteFunc(rs.Tables, func(x *Table) bool { return x == t })
		}
	}
}

// checkRuleChanges checks that the rule changes Diff reported name the right rules at
// the right positions and turn each chain's old rules into its new rules.
func checkRuleChanges(t *testing.T, old, new *Ruleset, changes []Change) {
	t.Helper()
	rules := func(rs *Ruleset) map[ChainRef][]string {
		out := map[ChainRef][]string{}
		for _, tb := range rs.Tables {
			for _, c := range tb.Chains {
				out[ChainRef{tb.Family, tb.Name, c.Name}] = ruleTexts(c.Rules)
			}
		}
		return out
	}
	oldR, newR := rules(old), rules(new)
	removed, added := map[ChainRef]map[int]bool{}, map[ChainRef]map[int]bool{}
	for _, c := range changes {
		ref := ChainRef{c.Family, c.Table, c.Chain}
		if c.Kind == RuleMoved {
			// A move is a removal from FromPosition and an addition at Position.
			if c.FromPosition < 1 || c.FromPosition > len(oldR[ref]) ||
				oldR[ref][c.FromPosition-1] != c.Rule {
				t.Fatalf("%+v does not name a rule of the old %s", c, ref)
			}
			if removed[ref] == nil {
				removed[ref] = map[int]bool{}
			}
			removed[ref][c.FromPosition-1] = true
			c.Kind = RuleAdded
		}
		switch c.Kind {
		case RuleAdded:
			if c.Position < 1 || c.Position > len(newR[ref]) || newR[ref][c.Position-1] != c.Rule {
				t.Fatalf("%+v does not name a rule of the new %s", c, ref)
			}
			if added[ref] == nil {
				added[ref] = map[int]bool{}
			}
			added[ref][c.Position-1] = true
		case RuleRemoved:
			if c.Position < 1 || c.Position > len(oldR[ref]) || oldR[ref][c.Position-1] != c.Rule {
				t.Fatalf("%+v does not name a rule of the old %s", c, ref)
			}
			if removed[ref] == nil {
				removed[ref] = map[int]bool{}
			}
			removed[ref][c.Position-1] = true
		}
	}
	refs := map[ChainRef]bool{}
	for ref := range oldR {
		refs[ref] = true
	}
	for ref := range newR {
		refs[ref] = true
	}
	for ref := range refs {
		var keptOld, keptNew []string
		for i, r := range oldR[ref] {
			if !removed[ref][i] {
				keptOld = append(keptOld, r)
			}
		}
		for i, r := range newR[ref] {
			if !added[ref][i] {
				keptNew = append(keptNew, r)
			}
		}
		if !slices.Equal(keptOld, keptNew) {
			t.Fatalf("rule changes of %s do not turn %q into %q", ref, oldR[ref], newR[ref])
		}
	}
}

// checkTablesAndChains checks that Diff reports every table and chain that came or went,
// and no other.
func checkTablesAndChains(t *testing.T, old, new *Ruleset, changes []Change) {
	t.Helper()
	names := func(rs *Ruleset) map[string]bool {
		out := map[string]bool{}
		for _, tb := range rs.Tables {
			out["table "+tb.Family+" "+tb.Name] = true
			for _, c := range tb.Chains {
				out["chain "+tb.Family+" "+tb.Name+" "+c.Name] = true
			}
		}
		return out
	}
	oldN, newN := names(old), names(new)
	want := map[string]bool{}
	for n := range oldN {
		if !newN[n] {
			want[strings.Replace(n, " ", "_removed ", 1)] = true
		}
	}
	for n := range newN {
		if !oldN[n] {
			want[strings.Replace(n, " ", "_added ", 1)] = true
		}
	}
	got := map[string]bool{}
	for _, c := range changes {
		switch c.Kind {
		case TableAdded, TableRemoved:
			got[string(c.Kind)+" "+c.Family+" "+c.Table] = true
		case ChainAdded, ChainRemoved:
			got[string(c.Kind)+" "+c.Family+" "+c.Table+" "+c.Chain] = true
		}
	}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("tables and chains that came and went: %v, want %v", got, want)
	}
}

// FuzzDiff changes a random ruleset at random and checks that Diff reports a change
// exactly when the digest changes, that its rule changes are exact, and that it is
// deterministic.
func FuzzDiff(f *testing.F) {
	f.Add([]byte{})
	f.Add([]byte{1, 0, 2, 2, 1, 1, 3, 1, 2, 3, 4, 5, 6, 7, 8, 9, 3, 0, 0, 0, 1, 1, 1, 2, 2})
	f.Add([]byte("three tables, each with chains and sets and objects and flowtables......"))
	f.Fuzz(func(t *testing.T, data []byte) {
		s := &byteSource{b: data}
		old := randomRuleset(s)
		new := cloneRuleset(t, old)
		mutate(s, new)
		shuffleOrderless(rand.New(rand.NewPCG(uint64(len(data)), 1)), new)
		changes := Diff(old, new)
		if same := old.Digest() == new.Digest(); same != (len(changes) == 0) {
			t.Fatalf("digests equal: %v, but Diff reports%s", same, formatChanges(changes))
		}
		checkRuleChanges(t, old, new, changes)
		checkTablesAndChains(t, old, new, changes)
		if again := Diff(old, new); !reflect.DeepEqual(changes, again) {
			t.Fatalf("Diff not deterministic:%s\nthen%s", formatChanges(changes),
				formatChanges(again))
		}
	})
}
