package ruleset

import (
	"encoding/json"
	"math/rand/v2"
	"testing"
)

// sampleRuleset returns a small ruleset that uses every part of the model: table flags and
// comment, base and regular chains, rules with handles, a static set, a dynamic set, a
// map, objects and a flowtable. Each call returns a fresh copy. TestDigestKnownAnswers
// pins its digest: a change here changes that value.
func sampleRuleset() *Ruleset {
	return &Ruleset{Tables: []*Table{
		{
			Family: "ip", Name: "nat", Flags: []string{"dormant"},
			Chains: []*Chain{{
				Name: "post", Type: "nat", Hook: "postrouting", Priority: "srcnat + 5",
				Policy: "accept",
				Rules:  []*Rule{{Text: `oifname "eth0" masquerade`, Handle: 3}},
			}},
		},
		{
			Family: "inet", Name: "filter", Comment: "edge filter",
			Chains: []*Chain{
				{
					Name: "input", Type: "filter", Hook: "input", Priority: "filter",
					Policy: "drop", Comment: "main input",
					Rules: []*Rule{
						{Text: "ct state established,related accept", Handle: 4},
						{Text: `iifname "lo" accept`, Handle: 5},
						{Text: `tcp dport 22 counter accept comment "ssh"`, Handle: 6},
						{Text: "ip saddr @allowed jump svc", Handle: 7},
						{Text: "update @seen { ip saddr }", Handle: 8},
					},
				},
				{Name: "svc", Rules: []*Rule{{Text: "tcp dport @small accept", Handle: 9}}},
			},
			Sets: []*Set{
				{
					Name: "allowed", Spec: []string{"type ipv4_addr", "flags interval"},
					Elements: []string{"10.0.0.0/8", "172.16.0.1", "192.168.1.0/24"},
				},
				{
					Name: "seen", Dynamic: true,
					Spec: []string{
						"type ipv4_addr", "size 65535", "flags dynamic,timeout", "timeout 1m",
					},
					Elements: []string{"192.0.2.1", "192.0.2.7"},
				},
				{
					Name: "portmap", Map: true, Spec: []string{"type inet_service : verdict"},
					Elements: []string{"22 : accept", "80 : drop"},
				},
				{Name: "small", Spec: []string{"type inet_service"}, Elements: []string{"22"}},
			},
			Objects: []*Object{
				{Type: "counter", Name: "http"},
				{Type: "quota", Name: "q1", Spec: []string{"over 100 mbytes"}},
			},
			Flowtables: []*Flowtable{{
				Name: "ft", Hook: "ingress", Prio: "filter", Devices: []string{"eth0", "eth1"},
			}},
		},
		{Family: "ip6", Name: "empty"},
	}}
}

// cloneRuleset deep-copies rs through its JSON form.
func cloneRuleset(t testing.TB, rs *Ruleset) *Ruleset {
	t.Helper()
	b, err := json.Marshal(rs)
	if err != nil {
		t.Fatal(err)
	}
	var out Ruleset
	if err := json.Unmarshal(b, &out); err != nil {
		t.Fatal(err)
	}
	return &out
}

// shuffleOrderless permutes every part of rs whose order the digest ignores: tables,
// chains, sets, objects, flowtables and set elements. Rule order is kept.
func shuffleOrderless(r *rand.Rand, rs *Ruleset) {
	shuffle(r, rs.Tables)
	for _, t := range rs.Tables {
		shuffle(r, t.Chains)
		shuffle(r, t.Sets)
		shuffle(r, t.Objects)
		shuffle(r, t.Flowtables)
		for _, s := range t.Sets {
			shuffle(r, s.Elements)
		}
	}
}

func shuffle[T any](r *rand.Rand, xs []T) {
	r.Shuffle(len(xs), func(i, j int) { xs[i], xs[j] = xs[j], xs[i] })
}

// byteSource hands out the bytes of a fuzz input, then zeros.
type byteSource struct{ b []byte }

func (s *byteSource) next() byte {
	if len(s.b) == 0 {
		return 0
	}
	c := s.b[0]
	s.b = s.b[1:]
	return c
}

// n returns a number in [0, max).
func (s *byteSource) n(max int) int { return int(s.next()) % max }

// str returns a short string over an alphabet that makes collisions and boundary cases
// likely: a space, a NUL byte and a multi-byte character among letters.
func (s *byteSource) str() string {
	alphabet := []string{"a", "b", " ", "\x00", "é", "1"}
	out := ""
	for range s.n(4) {
		out += alphabet[s.n(len(alphabet))]
	}
	return out
}

// name returns a short identifier: like str, but without the space and NUL, as nft
// names never contain them and Diff joins type and name of an object with a space.
func (s *byteSource) name() string {
	alphabet := []string{"a", "b", "é", "1"}
	out := ""
	for range s.n(4) {
		out += alphabet[s.n(len(alphabet))]
	}
	return out
}

func (s *byteSource) strs() []string {
	var out []string
	for range s.n(4) {
		out = append(out, s.str())
	}
	return out
}

// randomRuleset builds a ruleset from fuzz bytes. Names are unique where the kernel makes
// them unique (table family and name, chain, set and flowtable names, object type and
// name), since the digest orders those by name.
func randomRuleset(s *byteSource) *Ruleset {
	families := []string{"ip", "ip6", "inet", "arp", "bridge", "netdev"}
	rs := &Ruleset{}
	seenT := map[[2]string]bool{}
	for range s.n(4) {
		t := &Table{Family: families[s.n(len(families))], Name: s.name(), Comment: s.str()}
		if seenT[[2]string{t.Family, t.Name}] {
			continue
		}
		seenT[[2]string{t.Family, t.Name}] = true
		if s.n(2) == 1 {
			t.Flags = s.strs()
		}
		seen := map[string]bool{}
		for range s.n(4) {
			c := &Chain{Name: s.name(), Comment: s.str()}
			if seen[c.Name] {
				continue
			}
			seen[c.Name] = true
			if s.n(2) == 1 {
				c.Type, c.Hook, c.Priority, c.Policy = s.str(), "h"+s.str(), s.str(), s.str()
				c.Devices = s.strs()
			}
			for range s.n(4) {
				c.Rules = append(c.Rules, &Rule{Text: s.str(), Handle: uint64(s.next())})
			}
			t.Chains = append(t.Chains, c)
		}
		clear(seen)
		for range s.n(4) {
			st := &Set{Name: s.name(), Map: s.n(2) == 1, Dynamic: s.n(2) == 1}
			if seen[st.Name] {
				continue
			}
			seen[st.Name] = true
			st.Spec, st.Elements = s.strs(), s.strs()
			t.Sets = append(t.Sets, st)
		}
		seenO := map[[2]string]bool{}
		for range s.n(4) {
			o := &Object{Type: s.name(), Name: s.name(), Spec: s.strs()}
			if seenO[[2]string{o.Type, o.Name}] {
				continue
			}
			seenO[[2]string{o.Type, o.Name}] = true
			t.Objects = append(t.Objects, o)
		}
		clear(seen)
		for range s.n(3) {
			f := &Flowtable{Name: s.name(), Hook: s.str(), Prio: s.str()}
			if seen[f.Name] {
				continue
			}
			seen[f.Name] = true
			f.Devices, f.Flags = s.strs(), s.strs()
			t.Flowtables = append(t.Flowtables, f)
		}
		rs.Tables = append(rs.Tables, t)
	}
	return rs
}
