package nftcanon

import (
	"encoding/binary"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"runtime/debug"
	"strings"
	"testing"

	"github.com/fenceline/fenceline/shared/nftcanon/nftlist"
	"github.com/fenceline/fenceline/shared/ruleset"
)

// recorded is one recorded read of a namespace and nft's listing of it.
type recorded struct {
	name    string
	dump    *Dump
	listing *nftlist.Listing
}

func loadRecorded(t testing.TB) []recorded {
	t.Helper()
	files, err := filepath.Glob("testdata/*.json")
	if err != nil || len(files) == 0 {
		t.Fatalf("no recorded dumps in testdata: %v", err)
	}
	var out []recorded
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		var d Dump
		if err := json.Unmarshal(b, &d); err != nil {
			t.Fatalf("%s: %v", f, err)
		}
		lb, err := os.ReadFile(strings.TrimSuffix(f, ".json") + ".list")
		if err != nil {
			t.Fatal(err)
		}
		l, err := nftlist.Parse(string(lb))
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, recorded{filepath.Base(f), &d, l})
	}
	return out
}

// TestRecorded replays dumps recorded from real namespaces (testdata/src holds the
// rulesets, agent/nft's TestRecordTestdata re-records them) and compares every rule,
// chain declaration, set, object and table line with what nft 1.0.6 listed.
func TestRecorded(t *testing.T) {
	for _, rec := range loadRecorded(t) {
		t.Run(rec.name, func(t *testing.T) {
			rs, err := Build(rec.dump)
			if err != nil {
				t.Fatal(err)
			}
			for _, msg := range compareListing(rs, rec.listing) {
				t.Error(msg)
			}
			for _, tb := range rs.Tables {
				for _, c := range tb.Chains {
					for _, r := range c.Rules {
						if r.Undecoded != 0 {
							t.Errorf("%s: undecoded: %s", c.Name, r.Text)
						}
					}
				}
			}
		})
	}
}

// compareListing lists every difference between the model and nft's listing.
func compareListing(rs *ruleset.Ruleset, l *nftlist.Listing) []string {
	var bad []string
	if len(rs.Tables) != len(l.Tables) {
		bad = append(bad, fmt.Sprintf("%d tables, nft lists %d", len(rs.Tables), len(l.Tables)))
	}
	for _, lt := range l.Tables {
		t := rs.Table(lt.Family, lt.Name)
		if t == nil {
			bad = append(bad, "missing table "+lt.Family+" "+lt.Name)
			continue
		}
		var lines []string
		if len(t.Flags) > 0 {
			lines = append(lines, "flags "+strings.Join(t.Flags, ","))
		}
		if t.Comment != "" {
			lines = append(lines, "comment "+ruleset.Quote(t.Comment))
		}
		if strings.Join(lines, "; ") != strings.Join(lt.Lines, "; ") {
			bad = append(bad, fmt.Sprintf("table %s %s: %q, nft %q", lt.Family, lt.Name, lines, lt.Lines))
		}
	}
	for _, lc := range l.Chains {
		var c *ruleset.Chain
		if t := rs.Table(lc.Family, lc.Table); t != nil {
			c = t.Chain(lc.Name)
		}
		if c == nil {
			bad = append(bad, "missing chain "+lc.Key())
			continue
		}
		var header []string
		if c.Comment != "" {
			header = append(header, "comment "+ruleset.Quote(c.Comment))
		}
		if h := c.Header(); h != "" {
			header = append(header, h)
		}
		if strings.Join(header, "; ") != strings.Join(lc.Header, "; ") {
			bad = append(bad, fmt.Sprintf("chain %s: header %q, nft %q", lc.Key(), header, lc.Header))
		}
		if len(c.Rules) != len(lc.Rules) {
			bad = append(bad, fmt.Sprintf("chain %s: %d rules, nft %d", lc.Key(), len(c.Rules),
				len(lc.Rules)))
			continue
		}
		for i, lr := range lc.Rules {
			if c.Rules[i].Text != lr.Text || c.Rules[i].Handle != lr.Handle {
				bad = append(bad, fmt.Sprintf("chain %s rule %d:\n\tnft:  %s\n\tours: %s",
					lc.Key(), lr.Handle, lr.Text, c.Rules[i].Text))
			}
		}
	}
	for _, ls := range l.Sets {
		var s *ruleset.Set
		if t := rs.Table(ls.Family, ls.Table); t != nil {
			s = t.Set(ls.Name)
		}
		if s == nil {
			bad = append(bad, "missing set "+ls.Key())
			continue
		}
		want := append([]string(nil), ls.Elements...)
		ruleset.SortElements(want)
		if strings.Join(s.Spec, "; ") != strings.Join(ls.Spec, "; ") || s.Map != ls.Map {
			bad = append(bad, fmt.Sprintf("set %s:\n\tnft:  %q\n\tours: %q", ls.Key(), ls.Spec, s.Spec))
		}
		if strings.Join(s.Elements, ", ") != strings.Join(want, ", ") {
			bad = append(bad, fmt.Sprintf("set %s elements:\n\tnft:  %q\n\tours: %q", ls.Key(),
				want, s.Elements))
		}
	}
	for _, lo := range l.Objects {
		var o *ruleset.Object
		if t := rs.Table(lo.Family, lo.Table); t != nil {
			for _, x := range t.Objects {
				if x.Type == lo.Type && x.Name == lo.Name {
					o = x
				}
			}
		}
		if o == nil {
			bad = append(bad, "missing object "+lo.Key())
			continue
		}
		if strings.Join(o.Spec, "; ") != strings.Join(lo.Spec, "; ") {
			bad = append(bad, fmt.Sprintf("object %s:\n\tnft:  %q\n\tours: %q", lo.Key(), lo.Spec, o.Spec))
		}
	}
	return bad
}

// TestVolatileStateIgnored rewrites everything volatile in a dump (counter values,
// handles, element expirations, dynamic set contents, message order of sets) and checks
// that the digest does not move.
func TestVolatileStateIgnored(t *testing.T) {
	for _, rec := range loadRecorded(t) {
		t.Run(rec.name, func(t *testing.T) {
			before, err := Build(rec.dump)
			if err != nil {
				t.Fatal(err)
			}
			d := cloneDump(rec.dump)
			n := scrambleVolatile(t, d)
			after, err := Build(d)
			if err != nil {
				t.Fatal(err)
			}
			if before.Digest() != after.Digest() {
				t.Fatalf("digest moved after rewriting %d volatile values", n)
			}
			if before.RuleCount() > 0 && n == 0 {
				t.Fatal("nothing volatile was rewritten")
			}
		})
	}
}

func cloneDump(d *Dump) *Dump {
	b, _ := json.Marshal(d)
	var c Dump
	_ = json.Unmarshal(b, &c)
	return &c
}

// scrambleVolatile overwrites, in place, counter values and handles of rules and
// objects, and reverses the order of every set's elements.
func scrambleVolatile(t *testing.T, d *Dump) int {
	n := 0
	for _, m := range d.Rules {
		a, err := parseAttrs(m[4:])
		if err != nil {
			t.Fatal(err)
		}
		if h, ok := a.lookup(nftaRuleHandle); ok {
			binary.BigEndian.PutUint64(h, binary.BigEndian.Uint64(h)+1000)
			n++
		}
		list, _ := attrs(a.get(nftaRuleExpressions))
		for _, e := range list {
			x, err := parseExpr(e.data)
			if err != nil || (x.name != "counter" && x.name != "quota") {
				continue
			}
			for _, v := range x.a {
				if x.name == "quota" && v.typ != 4 { // only NFTA_QUOTA_CONSUMED
					continue
				}
				if len(v.data) == 8 {
					binary.BigEndian.PutUint64(v.data, 0xdeadbeef)
					n++
				}
			}
		}
	}
	for i := range d.Elements {
		msgs := d.Elements[i].Msgs
		for l, r := 0, len(msgs)-1; l < r; l, r = l+1, r-1 {
			msgs[l], msgs[r] = msgs[r], msgs[l]
		}
	}
	return n
}

// TestUndecodedFallback: an expression the package does not know is kept as its bytes
// and counted, so the digest still changes with it.
func TestUndecodedFallback(t *testing.T) {
	data := attrBytes(attrRec{1, u32be(7)}) // an attribute of a future expression
	expr := attrBytes(attrRec{nftaExprName, []byte("fancy\x00")}, attrRec{nftaExprData, data})
	d := minimalDump(attrBytes(attrRec{nftaListElem, expr}))
	rs, err := Build(d)
	if err != nil {
		t.Fatal(err)
	}
	r := rs.Tables[0].Chains[0].Rules[0]
	if r.Undecoded != 1 || r.Text != "[expr fancy 0800010000000007]" {
		t.Fatalf("rule %+v", r)
	}
	data2 := attrBytes(attrRec{1, u32be(8)})
	expr2 := attrBytes(attrRec{nftaExprName, []byte("fancy\x00")}, attrRec{nftaExprData, data2})
	rs2, err := Build(minimalDump(attrBytes(attrRec{nftaListElem, expr2})))
	if err != nil {
		t.Fatal(err)
	}
	if rs.Digest() == rs2.Digest() {
		t.Fatal("undecoded expressions with different data hash equal")
	}
}

// FuzzBuild feeds mutated rule expressions to Build: it must never panic, and must
// render every rule (in the fallback form if need be).
func FuzzBuild(f *testing.F) {
	for _, rec := range loadRecorded(f) {
		for i, m := range rec.dump.Rules {
			if i%7 == 0 {
				a, _ := parseAttrs(m[4:])
				f.Add(a.get(nftaRuleExpressions))
			}
		}
	}
	renderPanicked = func(v any) { panic(fmt.Sprint(v, "\n", string(debug.Stack()))) }
	defer func() { renderPanicked = func(any) {} }()
	f.Fuzz(func(t *testing.T, exprs []byte) {
		rs, err := Build(minimalDump(exprs))
		if err != nil {
			t.Fatal(err)
		}
		_ = rs.Tables[0].Chains[0].Rules[0].Text
	})
}

// minimalDump is an inet table with one chain holding one rule made of exprs (the
// payload of NFTA_RULE_EXPRESSIONS).
func minimalDump(exprs []byte) *Dump {
	hdr := []byte{famInet, 0, 0, 0}
	table := append(hdr, attrBytes(attrRec{nftaTableName, []byte("t\x00")})...)
	chain := append(append([]byte(nil), hdr...), attrBytes(
		attrRec{nftaChainTable, []byte("t\x00")}, attrRec{nftaChainName, []byte("c\x00")})...)
	rule := append(append([]byte(nil), hdr...), attrBytes(
		attrRec{nftaRuleTable, []byte("t\x00")}, attrRec{nftaRuleChain, []byte("c\x00")},
		attrRec{nftaRuleHandle, make([]byte, 8)}, attrRec{nftaRuleExpressions, exprs})...)
	return &Dump{Tables: []Msg{table}, Chains: []Msg{chain}, Rules: []Msg{rule}}
}

type attrRec struct {
	typ  uint16
	data []byte
}

func attrBytes(recs ...attrRec) []byte {
	var b []byte
	for _, r := range recs {
		var h [4]byte
		binary.LittleEndian.PutUint16(h[:], uint16(4+len(r.data)))
		binary.LittleEndian.PutUint16(h[2:], r.typ)
		b = append(b, h[:]...)
		b = append(b, r.data...)
		for len(b)%4 != 0 {
			b = append(b, 0)
		}
	}
	return b
}

func u32be(v uint32) []byte {
	b := make([]byte, 4)
	binary.BigEndian.PutUint32(b, v)
	return b
}

// FuzzSetElements renders sets of any key type, flags and element bytes: Build must not
// panic, and a named set with elements must list them.
func FuzzSetElements(f *testing.F) {
	f.Add(uint32(tIPAddr), uint32(setFlagInterval), []byte{10, 0, 0, 0}, []byte{11, 0, 0, 0})
	f.Add(uint32(tIfname), uint32(0), []byte("eth0\x00"), []byte("abc"))
	f.Add(uint32(tIPAddr<<6|tInetService), uint32(setFlagInterval|setFlagConcat),
		[]byte{1, 2, 3, 4, 0, 80, 0, 0}, []byte{1, 2, 3, 5})
	renderPanicked = func(v any) { panic(fmt.Sprint(v, "\n", string(debug.Stack()))) }
	defer func() { renderPanicked = func(any) {} }()
	f.Fuzz(func(t *testing.T, keyType, flags uint32, k1, k2 []byte) {
		flags &= setFlagInterval | setFlagConcat | setFlagMap | setFlagTimeout | setFlagConstant
		d := minimalDump(nil)
		d.Rules = nil
		d.Sets = []Msg{append([]byte{famInet, 0, 0, 0}, attrBytes(
			attrRec{nftaSetTable, []byte("t\x00")}, attrRec{nftaSetName, []byte("s\x00")},
			attrRec{nftaSetFlags, u32be(flags)}, attrRec{nftaSetKeyType, u32be(keyType)},
			attrRec{nftaSetKeyLen, u32be(uint32(len(k1)))}, attrRec{nftaSetDataType, u32be(tMark)},
			attrRec{nftaSetDataLen, u32be(4)})...)}
		elem := func(k []byte, fl uint32) []byte {
			key := attrBytes(attrRec{nftaDataValue, k})
			return attrBytes(attrRec{nftaListElem, attrBytes(attrRec{nftaSetElemKey, key},
				attrRec{nftaSetElemFlags, u32be(fl)},
				attrRec{nftaSetElemData, attrBytes(attrRec{nftaDataValue, []byte{0, 0, 0, 1}})})})
		}
		list := append(elem(k1, 0), elem(k2, elemFlagIntervalEnd)...)
		d.Elements = []SetElems{{Family: famInet, Table: "t", Set: "s", Msgs: []Msg{
			append([]byte{famInet, 0, 0, 0}, attrBytes(attrRec{nftaSetElemListElements, list})...)}}}
		rs, err := Build(d)
		if err != nil {
			t.Fatal(err)
		}
		if s := rs.Tables[0].Set("s"); s == nil || len(s.Spec) == 0 {
			t.Fatal("set not rendered")
		}
	})
}
