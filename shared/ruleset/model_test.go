package ruleset

import (
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
