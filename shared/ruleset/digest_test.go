package ruleset

import (
	"crypto/sha256"
	"encoding/binary"
	"math/rand/v2"
	"reflect"
	"slices"
	"strings"
	"testing"
)

// The reference below is the digest specification at the top of digest.go, written out as
// plainly as possible: each node's hash input is built as one byte string, children are
// ordered with an insertion sort, and nothing is shared with digest.go except
// Chain.Header, which the specification names as the chain's header field.

func refStr(s string) []byte {
	return append(binary.BigEndian.AppendUint32(nil, uint32(len(s))), s...)
}

func refStrs(ss []string) []byte {
	out := binary.BigEndian.AppendUint32(nil, uint32(len(ss)))
	for _, s := range ss {
		out = append(out, refStr(s)...)
	}
	return out
}

func refChildren(sums []Sum) []byte {
	out := binary.BigEndian.AppendUint32(nil, uint32(len(sums)))
	for _, s := range sums {
		out = append(out, s[:]...)
	}
	return out
}

func refNode(tag string, fields ...[]byte) Sum {
	msg := append([]byte(tag), 0)
	for _, f := range fields {
		msg = append(msg, f...)
	}
	return sha256.Sum256(msg)
}

// insertionSort returns a sorted copy of xs.
func insertionSort[T any](xs []T, less func(a, b T) bool) []T {
	out := append([]T(nil), xs...)
	for i := 1; i < len(out); i++ {
		for j := i; j > 0 && less(out[j], out[j-1]); j-- {
			out[j], out[j-1] = out[j-1], out[j]
		}
	}
	return out
}

func refRule(text string) Sum { return refNode("fenceline/v1/rule", refStr(text)) }

func refChain(c *Chain) Sum {
	var rules []Sum
	for _, r := range c.Rules {
		rules = append(rules, refRule(r.Text))
	}
	return refNode("fenceline/v1/chain",
		refStr(c.Name), refStr(c.Header()), refStr(c.Comment), refChildren(rules))
}

func refSet(s *Set) Sum {
	kind, state, elems := "set", "static", s.Elements
	if s.Map {
		kind = "map"
	}
	if s.Dynamic {
		state, elems = "dynamic", nil
	}
	elems = insertionSort(elems, func(a, b string) bool { return a < b })
	return refNode("fenceline/v1/set",
		refStr(s.Name), refStr(kind), refStrs(s.Spec), refStr(state), refStrs(elems))
}

func refObject(o *Object) Sum {
	return refNode("fenceline/v1/object", refStr(o.Type), refStr(o.Name), refStrs(o.Spec))
}

func refFlowtable(f *Flowtable) Sum {
	return refNode("fenceline/v1/flowtable",
		refStr(f.Name), refStr(f.Hook), refStr(f.Prio), refStrs(f.Devices), refStrs(f.Flags))
}

func refTable(t *Table) Sum {
	var chains, sets, objs, fts []Sum
	for _, c := range insertionSort(t.Chains, func(a, b *Chain) bool { return a.Name < b.Name }) {
		chains = append(chains, refChain(c))
	}
	for _, s := range insertionSort(t.Sets, func(a, b *Set) bool { return a.Name < b.Name }) {
		sets = append(sets, refSet(s))
	}
	byTypeName := func(a, b *Object) bool {
		return a.Type < b.Type || a.Type == b.Type && a.Name < b.Name
	}
	for _, o := range insertionSort(t.Objects, byTypeName) {
		objs = append(objs, refObject(o))
	}
	byName := func(a, b *Flowtable) bool { return a.Name < b.Name }
	for _, f := range insertionSort(t.Flowtables, byName) {
		fts = append(fts, refFlowtable(f))
	}
	return refNode("fenceline/v1/table",
		refStr(t.Family), refStr(t.Name), refStrs(t.Flags), refStr(t.Comment),
		refChildren(chains), refChildren(sets), refChildren(objs), refChildren(fts))
}

func refDigest(rs *Ruleset) Sum {
	byFamilyName := func(a, b *Table) bool {
		return a.Family < b.Family || a.Family == b.Family && a.Name < b.Name
	}
	var tables []Sum
	for _, t := range insertionSort(rs.Tables, byFamilyName) {
		tables = append(tables, refTable(t))
	}
	return refNode("fenceline/v1/ruleset", refChildren(tables))
}

// oneChainRuleset is one table with one base chain and two rules.
func oneChainRuleset() *Ruleset {
	return &Ruleset{Tables: []*Table{{
		Family: "inet", Name: "filter",
		Chains: []*Chain{{
			Name: "input", Type: "filter", Hook: "input", Priority: "filter", Policy: "drop",
			Rules: []*Rule{
				{Text: "ct state established,related accept"},
				{Text: "tcp dport 22 accept"},
			},
		}},
	}}}
}

func setRuleset(dynamic bool) *Ruleset {
	return &Ruleset{Tables: []*Table{{
		Family: "ip", Name: "t",
		Sets: []*Set{{
			Name: "s", Spec: []string{"type ipv4_addr", "flags interval"},
			Elements: []string{"192.168.0.0/16", "10.0.0.0/8"}, Dynamic: dynamic,
		}},
	}}}
}

// TestDigestKnownAnswers pins digest version 1. A failure here means the digest of an
// unchanged ruleset changed: every deployed agent and aggregator would see drift. Change
// these values only together with a new version of the specification.
func TestDigestKnownAnswers(t *testing.T) {
	tests := []struct {
		name string
		got  Sum
		want string
	}{
		// The first two were computed with printf and sha256sum, the next three with a
		// separate Python script written from the specification; all outside Go.
		{"empty ruleset", (&Ruleset{}).Digest(),
			"sha256:fc9f9d899e5b811b721b6d08ad6eaa095d4a94d14a1cebdf73fae6c2cd1b4e01"},
		{"rule", RuleDigest("tcp dport 22 accept"),
			"sha256:4dfb9330ebd149bde70f9458591b1c227828ab9b728e3b598bbf743515c7ee37"},
		{"one base chain, two rules", oneChainRuleset().Digest(),
			"sha256:28e2f37cdd46ab3a18803978138812f8bcd1bb2df366d862b5a31f2e40500ae3"},
		{"set with elements", setRuleset(false).Digest(),
			"sha256:9f8701386959941377008446d5707d2fd7be1832477f56279db2f7630617e40f"},
		{"dynamic set", setRuleset(true).Digest(),
			"sha256:32d930d45ca0c0d5c79940cfed01b20515461cff00d9cffab8a8da3e7a1ddf04"},
		{"sample", sampleRuleset().Digest(),
			"sha256:53031d46730a6d8722d975cdecda6d30258a3548a822c241c9b75d68ad8461e5"},
	}
	for _, tt := range tests {
		if tt.got.String() != tt.want {
			t.Errorf("%s: digest %s, want %s", tt.name, tt.got, tt.want)
		}
	}
}

func TestDigestMatchesReference(t *testing.T) {
	for name, rs := range map[string]*Ruleset{
		"empty":       {},
		"one chain":   oneChainRuleset(),
		"set":         setRuleset(false),
		"dynamic set": setRuleset(true),
		"sample":      sampleRuleset(),
	} {
		if got, want := rs.Digest(), refDigest(rs); got != want {
			t.Errorf("%s: Digest %s, reference %s", name, got, want)
		}
	}
}

func TestDigestIgnoresLoadOrder(t *testing.T) {
	want := sampleRuleset().Digest()
	r := rand.New(rand.NewPCG(1, 2))
	for i := range 50 {
		rs := sampleRuleset()
		shuffleOrderless(r, rs)
		if got := rs.Digest(); got != want {
			t.Fatalf("shuffle %d: digest %s, want %s\n%s", i, got, want, rs.Text())
		}
	}
}

func TestDigestIgnoresVolatileState(t *testing.T) {
	want := sampleRuleset().Digest()
	for name, mutate := range map[string]func(*Ruleset){
		"handles": func(rs *Ruleset) {
			for _, r := range rs.Tables[1].Chains[0].Rules {
				r.Handle += 1000
			}
		},
		"undecoded": func(rs *Ruleset) { rs.Tables[1].Chains[0].Rules[0].Undecoded = 2 },
		"dynamic set elements": func(rs *Ruleset) {
			s := rs.Tables[1].Set("seen")
			s.Elements = append(s.Elements, "198.51.100.9")
		},
		"dynamic set emptied": func(rs *Ruleset) { rs.Tables[1].Set("seen").Elements = nil },
	} {
		rs := sampleRuleset()
		mutate(rs)
		if got := rs.Digest(); got != want {
			t.Errorf("%s: digest changed to %s", name, got)
		}
	}
}

// TestDigestCoversEveryField changes one configuration field at a time; each change must
// give a digest different from the original and from every other change.
func TestDigestCoversEveryField(t *testing.T) {
	filter := func(rs *Ruleset) *Table { return rs.Tables[1] }
	input := func(rs *Ruleset) *Chain { return rs.Tables[1].Chains[0] }
	svc := func(rs *Ruleset) *Chain { return rs.Tables[1].Chains[1] }
	allowed := func(rs *Ruleset) *Set { return rs.Tables[1].Set("allowed") }
	quota := func(rs *Ruleset) *Object { return rs.Tables[1].Objects[1] }
	ft := func(rs *Ruleset) *Flowtable { return rs.Tables[1].Flowtables[0] }
	mutations := map[string]func(*Ruleset){
		"table family":  func(rs *Ruleset) { rs.Tables[2].Family = "ip" },
		"table name":    func(rs *Ruleset) { rs.Tables[2].Name = "other" },
		"table flags":   func(rs *Ruleset) { rs.Tables[0].Flags = nil },
		"table flag":    func(rs *Ruleset) { filter(rs).Flags = []string{"dormant"} },
		"table comment": func(rs *Ruleset) { filter(rs).Comment = "edge" },
		"table added": func(rs *Ruleset) {
			rs.Tables = append(rs.Tables, &Table{Family: "arp", Name: "a"})
		},
		"table removed": func(rs *Ruleset) { rs.Tables = rs.Tables[:2] },

		"chain name":         func(rs *Ruleset) { svc(rs).Name = "svc2" },
		"chain type":         func(rs *Ruleset) { input(rs).Type = "route" },
		"chain hook":         func(rs *Ruleset) { input(rs).Hook = "forward" },
		"chain priority":     func(rs *Ruleset) { input(rs).Priority = "filter + 1" },
		"chain policy":       func(rs *Ruleset) { input(rs).Policy = "accept" },
		"chain device":       func(rs *Ruleset) { input(rs).Devices = []string{"eth0"} },
		"chain comment":      func(rs *Ruleset) { input(rs).Comment = "" },
		"regular chain note": func(rs *Ruleset) { svc(rs).Comment = "services" },
		"chain added": func(rs *Ruleset) {
			filter(rs).Chains = append(filter(rs).Chains, &Chain{Name: "x"})
		},
		"chain removed": func(rs *Ruleset) { filter(rs).Chains = filter(rs).Chains[:1] },
		"rule text":     func(rs *Ruleset) { svc(rs).Rules[0].Text = "tcp dport @small drop" },
		"rule added": func(rs *Ruleset) {
			svc(rs).Rules = append(svc(rs).Rules, &Rule{Text: "drop"})
		},
		"rule removed": func(rs *Ruleset) { input(rs).Rules = input(rs).Rules[1:] },
		"rule order": func(rs *Ruleset) {
			r := input(rs).Rules
			r[0], r[1] = r[1], r[0]
		},
		"rule moved to other chain": func(rs *Ruleset) {
			svc(rs).Rules = append(svc(rs).Rules, input(rs).Rules[4])
			input(rs).Rules = input(rs).Rules[:4]
		},

		"set name":     func(rs *Ruleset) { allowed(rs).Name = "allowed2" },
		"set map flag": func(rs *Ruleset) { allowed(rs).Map = true },
		"set spec":     func(rs *Ruleset) { allowed(rs).Spec = []string{"type ipv4_addr"} },
		"set spec order": func(rs *Ruleset) {
			allowed(rs).Spec = []string{"flags interval", "type ipv4_addr"}
		},
		"set dynamic": func(rs *Ruleset) { allowed(rs).Dynamic = true },
		"set element": func(rs *Ruleset) {
			allowed(rs).Elements = append(allowed(rs).Elements, "10.9.9.9")
		},
		"set element out": func(rs *Ruleset) { allowed(rs).Elements = allowed(rs).Elements[1:] },
		"map element": func(rs *Ruleset) {
			filter(rs).Set("portmap").Elements[1] = "80 : accept"
		},
		"set added": func(rs *Ruleset) {
			filter(rs).Sets = append(filter(rs).Sets, &Set{Name: "new"})
		},
		"set removed": func(rs *Ruleset) { filter(rs).Sets = filter(rs).Sets[1:] },
		"dynamic set spec": func(rs *Ruleset) {
			filter(rs).Set("seen").Spec[3] = "timeout 2m"
		},

		"object type": func(rs *Ruleset) { quota(rs).Type = "limit" },
		"object name": func(rs *Ruleset) { quota(rs).Name = "q2" },
		"object spec": func(rs *Ruleset) { quota(rs).Spec = []string{"over 200 mbytes"} },
		"object added": func(rs *Ruleset) {
			filter(rs).Objects = append(filter(rs).Objects, &Object{Type: "counter", Name: "x"})
		},
		"object removed": func(rs *Ruleset) { filter(rs).Objects = filter(rs).Objects[:1] },

		"flowtable name":    func(rs *Ruleset) { ft(rs).Name = "ft2" },
		"flowtable hook":    func(rs *Ruleset) { ft(rs).Hook = "egress" },
		"flowtable prio":    func(rs *Ruleset) { ft(rs).Prio = "filter + 1" },
		"flowtable devices": func(rs *Ruleset) { ft(rs).Devices = []string{"eth0"} },
		"flowtable flags":   func(rs *Ruleset) { ft(rs).Flags = []string{"offload"} },
		"flowtable removed": func(rs *Ruleset) { filter(rs).Flowtables = nil },
	}
	base := sampleRuleset().Digest()
	seen := map[Sum]string{base: "original"}
	for name, mutate := range mutations {
		rs := sampleRuleset()
		mutate(rs)
		got := rs.Digest()
		if other, ok := seen[got]; ok {
			t.Errorf("%s: digest %s equals that of %s", name, got, other)
			continue
		}
		seen[got] = name
		if ref := refDigest(rs); got != ref {
			t.Errorf("%s: digest %s, reference %s", name, got, ref)
		}
	}
}

// TestDigestFieldBoundaries checks that the length prefixes keep neighbouring fields and
// list items apart.
func TestDigestFieldBoundaries(t *testing.T) {
	chain := func(rules ...string) Sum {
		c := &Chain{Name: "c"}
		for _, r := range rules {
			c.Rules = append(c.Rules, &Rule{Text: r})
		}
		return c.Digest()
	}
	if chain("ab") == chain("a", "b") || chain("") == chain() {
		t.Error("rule boundaries do not change the chain digest")
	}
	obj := func(typ, name string, spec ...string) Sum {
		return (&Object{Type: typ, Name: name, Spec: spec}).Digest()
	}
	if obj("counter", "ab") == obj("countera", "b") ||
		obj("a", "b", "c d") == obj("a", "b", "c", "d") {
		t.Error("object field boundaries do not change the digest")
	}
	// A rule and a chain with the same bytes after the tag must not collide.
	if RuleDigest("") == (&Ruleset{}).Digest() {
		t.Error("rule and ruleset digests collide")
	}
}

func TestDigestDoesNotModifyModel(t *testing.T) {
	rs := sampleRuleset()
	shuffleOrderless(rand.New(rand.NewPCG(3, 4)), rs)
	before := cloneRuleset(t, rs)
	rs.Digest()
	if !reflect.DeepEqual(before, rs) {
		t.Error("Digest reordered the model it hashed")
	}
}

func TestSumStringParse(t *testing.T) {
	s := sampleRuleset().Digest()
	got, ok := ParseSum(s.String())
	if !ok || got != s {
		t.Fatalf("ParseSum(%q) = %v, %v", s.String(), got, ok)
	}
	if s.IsZero() || !(Sum{}).IsZero() {
		t.Error("IsZero is wrong")
	}
	hexPart := strings.TrimPrefix(s.String(), "sha256:")
	for _, bad := range []string{
		"", "sha256:", hexPart, "sha1:" + hexPart, "SHA256:" + hexPart,
		"sha256:" + hexPart[:62], "sha256:" + hexPart + "00", "sha256:" + hexPart[:62] + "zz",
		// Sum.String writes lower case; a second spelling of the same digest would let
		// two events that mean the same thing compare different.
		"sha256:" + strings.ToUpper(hexPart),
		" sha256:" + hexPart,
	} {
		if _, ok := ParseSum(bad); ok {
			t.Errorf("ParseSum(%q) accepted", bad)
		}
	}
}

// FuzzDigest compares Digest with the reference on random models, and checks that the
// digest ignores load order.
func FuzzDigest(f *testing.F) {
	f.Add([]byte{})
	f.Add([]byte{1, 0, 2, 2, 1, 1, 3, 1, 2, 3, 4, 5, 6, 7, 8, 9})
	f.Add([]byte("three tables, each with chains and sets and objects and flowtables......"))
	f.Add([]byte{3, 1, 1, 1, 0, 3, 3, 1, 1, 3, 2, 2, 2, 1, 3, 0, 0, 2, 3, 1, 1, 1, 3, 3, 3, 3})
	f.Fuzz(func(t *testing.T, data []byte) {
		rs := randomRuleset(&byteSource{b: data})
		got, want := rs.Digest(), refDigest(rs)
		if got != want {
			t.Fatalf("Digest %s, reference %s\n%#v", got, want, rs)
		}
		seed := uint64(len(data))
		for _, b := range data {
			seed = seed*131 + uint64(b)
		}
		shuffleOrderless(rand.New(rand.NewPCG(seed, 7)), rs)
		if again := rs.Digest(); again != got {
			t.Fatalf("digest changed with load order: %s, then %s", got, again)
		}
	})
}

// TestDigestCached: a cached digest equals the plain one, for a first model and for a
// next one that shares all but one chain and one set with it, and hashes only the nodes
// it had not seen.
func TestDigestCached(t *testing.T) {
	var c DigestCache
	rs := sampleRuleset()
	if got, want := rs.DigestCached(&c), rs.Digest(); got != want {
		t.Fatalf("first: %s, want %s", got, want)
	}
	if got, want := rs.DigestCached(&c), rs.Digest(); got != want || c.Hashed != 0 {
		t.Fatalf("same model again: %s (hashed %d), want %s with nothing hashed", got,
			c.Hashed, want)
	}
	// The next model: new tables sharing every chain and set but one of each.
	next := &Ruleset{}
	for _, tb := range rs.Tables {
		nt := *tb
		nt.Chains, nt.Sets = slices.Clone(tb.Chains), slices.Clone(tb.Sets)
		next.Tables = append(next.Tables, &nt)
	}
	filter := next.Tables[1]
	ch := *filter.Chains[1]
	ch.Rules = append(slices.Clone(ch.Rules), &Rule{Text: "counter drop"})
	filter.Chains[1] = &ch
	set := *filter.Set("allowed")
	set.Elements = append(slices.Clone(set.Elements), "198.51.100.1")
	for i, s := range filter.Sets {
		if s.Name == "allowed" {
			filter.Sets[i] = &set
		}
	}
	if got, want := next.DigestCached(&c), next.Digest(); got != want || got == rs.Digest() {
		t.Fatalf("next: %s, want %s (and unlike the first)", got, want)
	}
	if c.Hashed != 2 {
		t.Errorf("next: %d chains and sets hashed, want 2", c.Hashed)
	}
}
