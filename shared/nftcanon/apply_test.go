package nftcanon

import (
	"encoding/binary"
	"errors"
	"testing"

	"github.com/fenceline/fenceline/shared/ruleset"
)

// withPosition returns a copy of a rule message with NFTA_RULE_POSITION set to prev, as
// the kernel's notification of a rule in the middle of its chain carries it.
func withPosition(m Msg, prev uint64) Msg {
	out := append(Msg(nil), m...)
	var b [8]byte
	binary.BigEndian.PutUint64(b[:], prev)
	return appendAttr(out, nftaRulePosition, b[:])
}

// TestApplyRecorded replays recorded dumps: every rule removed and added back, and every
// table deleted and created again, give the dump's ruleset again; removing an unknown
// rule is refused.
func TestApplyRecorded(t *testing.T) {
	for _, rec := range loadRecorded(t) {
		t.Run(rec.name, func(t *testing.T) {
			want, err := Build(rec.dump)
			if err != nil {
				t.Fatal(err)
			}
			d := cloneDump(rec.dump)
			// Delete every rule, then add them back in order, each after its predecessor
			// in the same chain (the first without position, at the head).
			var dels, adds []Update
			prev := map[[2]string]uint64{}
			for _, m := range rec.dump.Rules {
				a, _ := msgAttrs(m)
				k := [2]string{a.str(nftaRuleTable), a.str(nftaRuleChain)}
				dels = append(dels, Update{Type: MsgDelRule, Msg: m})
				u := Update{Type: MsgNewRule, Msg: m}
				if p, ok := prev[k]; ok {
					u.Msg = withPosition(m, p)
				}
				adds = append(adds, u)
				prev[k] = a.u64(nftaRuleHandle)
			}
			if err := d.Apply(dels); err != nil {
				t.Fatal(err)
			}
			if got, _ := Build(d); got.RuleCount() != 0 {
				t.Fatalf("%d rules left after deleting all", got.RuleCount())
			}
			if err := d.Apply(adds); err != nil {
				t.Fatal(err)
			}
			checkSame(t, want, d)

			// Every table deleted and created again, objects in dump order.
			var ups []Update
			for _, m := range rec.dump.Tables {
				ups = append(ups, Update{Type: MsgDelTable, Msg: m})
			}
			for _, m := range rec.dump.Tables {
				ups = append(ups, Update{Type: MsgNewTable, Msg: m})
			}
			for _, m := range rec.dump.Chains {
				ups = append(ups, Update{Type: MsgNewChain, Msg: m})
			}
			for _, m := range rec.dump.Sets {
				ups = append(ups, Update{Type: MsgNewSet, Msg: m})
			}
			for _, se := range rec.dump.Elements {
				for _, m := range se.Msgs {
					ups = append(ups, Update{Type: MsgNewSetElem, Msg: m})
				}
			}
			for _, m := range rec.dump.Objects {
				ups = append(ups, Update{Type: MsgNewObj, Msg: m})
			}
			ups = append(ups, adds...)
			if err := d.Apply(ups); err != nil {
				t.Fatal(err)
			}
			checkSame(t, want, d)

			if err := d.Apply(dels[:1]); err != nil {
				t.Fatal(err)
			}
			if err := d.Apply(dels[:1]); !errors.Is(err, ErrNotIncremental) {
				t.Fatalf("deleting a rule twice: %v", err)
			}
		})
	}
}

func checkSame(t *testing.T, want *ruleset.Ruleset, d *Dump) {
	t.Helper()
	got, err := Build(d)
	if err != nil {
		t.Fatal(err)
	}
	if got.Digest() != want.Digest() {
		t.Fatalf("applied state differs:\n%v", ruleset.Diff(want, got))
	}
}

// TestBuildCached: a cached build equals a plain one, and a second build of the same
// dump renders no rule again.
func TestBuildCached(t *testing.T) {
	for _, rec := range loadRecorded(t) {
		want, err := Build(rec.dump)
		if err != nil {
			t.Fatal(err)
		}
		c := NewCache()
		for i := range 2 {
			got, err := BuildCached(rec.dump, c)
			if err != nil {
				t.Fatal(err)
			}
			if got.Digest() != want.Digest() || got.Text() != want.Text() {
				t.Fatalf("%s: cached build %d differs", rec.name, i)
			}
		}
		if c.Hits() != len(rec.dump.Rules) || c.idHits != c.Hits() {
			t.Errorf("%s: %d cache hits (%d by message identity) on the second build, want %d",
				rec.name, c.Hits(), c.idHits, len(rec.dump.Rules))
		}
	}
}

// FuzzApply applies mutated messages to a recorded dump: Apply and the build after it
// must never panic; bad messages are errors.
func FuzzApply(f *testing.F) {
	recs := loadRecorded(f)
	base := recs[0].dump
	for i, m := range base.Rules {
		if i%5 == 0 {
			f.Add(uint8(MsgNewRule), []byte(m))
			f.Add(uint8(MsgDelRule), []byte(m))
		}
	}
	for _, se := range base.Elements {
		for _, m := range se.Msgs {
			f.Add(uint8(MsgDelSetElem), []byte(m))
		}
	}
	f.Add(uint8(MsgNewChain), []byte(base.Chains[0]))
	f.Add(uint8(MsgDelTable), []byte(base.Tables[0]))
	f.Fuzz(func(t *testing.T, typ uint8, msg []byte) {
		d := cloneDump(base)
		if err := d.Apply([]Update{{Type: uint16(typ), Msg: msg}}); err != nil {
			return
		}
		_, _ = Build(d)
	})
}

// readState makes a State of d as a reader does: rules handed over one by one from a
// buffer that is overwritten after each, as a receive buffer is.
func readState(t *testing.T, d *Dump, prev *State) (*State, *ruleset.Ruleset, int) {
	t.Helper()
	objs := cloneDump(d)
	objs.Rules = nil
	sr, err := NewStateRead(objs, prev)
	if err != nil {
		t.Fatal(err)
	}
	var buf []byte
	for _, m := range d.Rules {
		buf = append(buf[:0], m...)
		if err := sr.Rule(buf); err != nil {
			t.Fatal(err)
		}
		for i := range buf {
			buf[i] = 0xff
		}
	}
	hits := sr.b.cache.Hits()
	st, rs, err := sr.Finish()
	if err != nil {
		t.Fatal(err)
	}
	return st, rs, hits
}

// TestStateRecorded: a State read from a recorded dump gives the dump's ruleset, keeps
// giving it through the same updates TestApplyRecorded applies, and a second read with
// the first as its predecessor renders no rule again.
func TestStateRecorded(t *testing.T) {
	for _, rec := range loadRecorded(t) {
		t.Run(rec.name, func(t *testing.T) {
			want, err := Build(rec.dump)
			if err != nil {
				t.Fatal(err)
			}
			st, got, _ := readState(t, rec.dump, nil)
			if got.Text() != want.Text() || got.Digest() != want.Digest() {
				t.Fatalf("read state differs:\n%v", ruleset.Diff(want, got))
			}
			if st.RuleCount() != len(rec.dump.Rules) {
				t.Fatalf("%d rules held, want %d", st.RuleCount(), len(rec.dump.Rules))
			}
			check := func(what string) {
				t.Helper()
				got, err := st.Build()
				if err != nil {
					t.Fatal(err)
				}
				if got.Text() != want.Text() || got.Digest() != want.Digest() {
					t.Fatalf("%s: state differs:\n%v", what, ruleset.Diff(want, got))
				}
			}
			check("read")
			var dels, adds []Update
			prev := map[[2]string]uint64{}
			for _, m := range rec.dump.Rules {
				a, _ := msgAttrs(m)
				k := [2]string{a.str(nftaRuleTable), a.str(nftaRuleChain)}
				dels = append(dels, Update{Type: MsgDelRule, Msg: m})
				u := Update{Type: MsgNewRule, Msg: m}
				if p, ok := prev[k]; ok {
					u.Msg = withPosition(m, p)
				}
				adds = append(adds, u)
				prev[k] = a.u64(nftaRuleHandle)
			}
			if err := st.Apply(dels); err != nil {
				t.Fatal(err)
			}
			if got, _ := st.Build(); got.RuleCount() != 0 {
				t.Fatalf("%d rules left after deleting all", got.RuleCount())
			}
			if err := st.Apply(adds); err != nil {
				t.Fatal(err)
			}
			check("rules deleted and added")
			var ups []Update
			for _, m := range rec.dump.Tables {
				ups = append(ups, Update{Type: MsgDelTable, Msg: m})
			}
			for _, m := range rec.dump.Tables {
				ups = append(ups, Update{Type: MsgNewTable, Msg: m})
			}
			for _, m := range rec.dump.Chains {
				ups = append(ups, Update{Type: MsgNewChain, Msg: m})
			}
			for _, m := range rec.dump.Sets {
				ups = append(ups, Update{Type: MsgNewSet, Msg: m})
			}
			for _, se := range rec.dump.Elements {
				for _, m := range se.Msgs {
					ups = append(ups, Update{Type: MsgNewSetElem, Msg: m})
				}
			}
			for _, m := range rec.dump.Objects {
				ups = append(ups, Update{Type: MsgNewObj, Msg: m})
			}
			ups = append(ups, adds...)
			if err := st.Apply(ups); err != nil {
				t.Fatal(err)
			}
			check("tables deleted and created")

			_, again, hits := readState(t, rec.dump, st)
			if again.Text() != want.Text() {
				t.Fatal("second read differs")
			}
			cacheable := 0
			for _, r := range st.rules {
				if r.key.table != 0 && r.key.rule != 0 {
					cacheable++
				}
			}
			if hits != cacheable || cacheable == 0 {
				t.Errorf("second read took %d rules from the first, want %d", hits, cacheable)
			}
			if err := st.Apply(dels[:1]); err != nil {
				t.Fatal(err)
			}
			if err := st.Apply(dels[:1]); !errors.Is(err, ErrNotIncremental) {
				t.Fatalf("deleting a rule twice: %v", err)
			}
		})
	}
}
