package ruleset

import (
	"encoding/json"
	"reflect"
	"slices"
	"testing"
)

func TestSort(t *testing.T) {
	ipA := &Table{
		Family: "ip", Name: "a", Chains: []*Chain{{Name: "z"}, {Name: "a"}},
		Sets: []*Set{{Name: "s", Elements: []string{"10.0.0.2", "10.0.0.10", "10.0.0.1"}}},
	}
	rs := &Ruleset{Tables: []*Table{
		{Family: "netdev", Name: "a"}, {Family: "inet", Name: "b"}, {Family: "inet", Name: "a"},
		{Family: "bridge", Name: "a"}, {Family: "ip6", Name: "a"}, {Family: "arp", Name: "a"},
		{Family: "ip", Name: "z"}, ipA,
	}}
	before := rs.Digest()
	rs.Sort()
	var got []string
	for _, t := range rs.Tables {
		got = append(got, t.Family+" "+t.Name)
	}
	want := []string{"ip a", "ip z", "arp a", "ip6 a", "bridge a", "inet a", "inet b", "netdev a"}
	if !slices.Equal(got, want) {
		t.Errorf("tables sorted as %q, want %q", got, want)
	}
	ip := rs.Table("ip", "a")
	if ip.Chains[0].Name != "z" {
		t.Error("Sort reordered chains, which keep kernel order")
	}
	if e := ip.Set("s").Elements; !slices.Equal(e, []string{"10.0.0.1", "10.0.0.10", "10.0.0.2"}) {
		t.Errorf("elements sorted as %q, want byte order", e)
	}
	if rs.Digest() != before {
		t.Error("Sort changed the digest")
	}
}

func TestLookups(t *testing.T) {
	rs := sampleRuleset()
	f := rs.Table("inet", "filter")
	if f == nil || rs.Table("ip", "filter") != nil || rs.Table("inet", "nat") != nil {
		t.Fatal("Table looks up by family and name")
	}
	if f.Chain("svc") != f.Chains[1] || f.Chain("nope") != nil {
		t.Error("Chain lookup")
	}
	if f.Set("portmap") == nil || !f.Set("portmap").Map || f.Set("nope") != nil {
		t.Error("Set lookup")
	}
	if n := rs.RuleCount(); n != 7 {
		t.Errorf("RuleCount = %d, want 7", n)
	}
	if s := (ChainRef{"inet", "filter", "input"}).String(); s != "inet filter input" {
		t.Errorf("ChainRef = %q", s)
	}
	if !f.Chains[0].IsBase() || f.Chains[1].IsBase() {
		t.Error("IsBase")
	}
}

// TestAppendJSON: AppendJSON gives what json.Marshal gives, for a first model and for a
// next one sharing all but one chain with it.
func TestAppendJSON(t *testing.T) {
	var c JSONCache
	check := func(what string, rs *Ruleset) {
		t.Helper()
		want, err := json.Marshal(rs)
		if err != nil {
			t.Fatal(err)
		}
		got, err := rs.AppendJSON(nil, &c)
		if err != nil {
			t.Fatal(err)
		}
		if string(got) != string(want) {
			t.Fatalf("%s:\n got %s\nwant %s", what, got, want)
		}
	}
	check("empty", &Ruleset{})
	check("nil", nil)
	rs := sampleRuleset()
	rs.Tables[1].Comment = `a <comment> & "quotes"`
	check("sample", rs)
	check("sample again", rs)
	next := &Ruleset{Tables: slices.Clone(rs.Tables)}
	nt := *next.Tables[1]
	nt.Chains = slices.Clone(nt.Chains)
	ch := *nt.Chains[0]
	ch.Rules = append(slices.Clone(ch.Rules), &Rule{Text: `meta mark 1 counter comment "<x>"`})
	nt.Chains[0] = &ch
	next.Tables[1] = &nt
	check("next", next)
	check("one table", &Ruleset{Tables: []*Table{{Family: "ip", Name: "t"}}})
}

// TestAppendJSONFields: Table.appendJSON writes the fields of Table in this order with
// these JSON names and omitempty; a field added to Table must be added there too.
func TestAppendJSONFields(t *testing.T) {
	want := []string{"family", "name", "flags,omitempty", "comment,omitempty",
		"chains,omitempty", "sets,omitempty", "objects,omitempty", "flowtables,omitempty"}
	tt := reflect.TypeFor[Table]()
	var got []string
	for i := range tt.NumField() {
		got = append(got, tt.Field(i).Tag.Get("json"))
	}
	if !slices.Equal(got, want) {
		t.Fatalf("Table's JSON fields are %q, appendJSON writes %q", got, want)
	}
	rt := reflect.TypeFor[Ruleset]()
	if rt.NumField() != 1 || rt.Field(0).Tag.Get("json") != "tables,omitempty" {
		t.Fatal("Ruleset's fields changed: update AppendJSON")
	}
}
