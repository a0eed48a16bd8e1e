package agent

import (
	"encoding/json"
	"reflect"
	"slices"
	"testing"

	"github.com/fenceline/fenceline/shared/ruleset"
)

// TestObservedEncode: the stored state is encoded as json.Marshal encodes it, with and
// without a ruleset, and for a state sharing chains with the one encoded before; and
// observed has the fields encode writes.
func TestObservedEncode(t *testing.T) {
	var c ruleset.JSONCache
	rs := &ruleset.Ruleset{Tables: []*ruleset.Table{
		{Family: "ip", Name: "nat", Chains: []*ruleset.Chain{{Name: "post", Type: "nat",
			Hook: "postrouting", Priority: "srcnat", Policy: "accept",
			Rules: []*ruleset.Rule{{Text: `oifname "wan" masquerade`, Handle: 4}}}}},
		{Family: "inet", Name: "filter", Flags: []string{"owner"}, Comment: "<edge> & co",
			Chains:  []*ruleset.Chain{{Name: "in"}},
			Sets:    []*ruleset.Set{{Name: "s", Spec: []string{"type ipv4_addr"}, Elements: []string{"10.0.0.1"}}},
			Objects: []*ruleset.Object{{Type: "counter", Name: "hits"}}},
	}}
	next := &ruleset.Ruleset{Tables: slices.Clone(rs.Tables)}
	nt := *next.Tables[1]
	nt.Chains = []*ruleset.Chain{{Name: "in", Rules: []*ruleset.Rule{{Text: "accept"}}}}
	next.Tables[1] = &nt
	for _, o := range []*observed{
		{Digest: "sha256:00", Generation: 7},
		{Digest: "sha256:01", Generation: 4294967295, Ruleset: &ruleset.Ruleset{}},
		{Digest: "sha256:02", Generation: 8, Ruleset: rs},
		{Digest: "sha256:03", Generation: 9, Ruleset: next},
	} {
		want, err := json.Marshal(o)
		if err != nil {
			t.Fatal(err)
		}
		got, err := o.encode(&c)
		if err != nil {
			t.Fatal(err)
		}
		if string(got) != string(want) {
			t.Fatalf("encode:\n got %s\nwant %s", got, want)
		}
	}
	var tags []string
	ot := reflect.TypeFor[observed]()
	for i := range ot.NumField() {
		tags = append(tags, ot.Field(i).Tag.Get("json"))
	}
	if !slices.Equal(tags, []string{"digest", "generation", "ruleset"}) {
		t.Fatalf("observed's fields are %q: update encode", tags)
	}
}
