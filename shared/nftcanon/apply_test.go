package nftcanon

import (
	"encoding/binary"
	"errors"
	"strings"
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

// ruleUpdates returns the notifications that delete every rule of d, and those that add
// them back in order, each after its predecessor in the same chain (the first without a
// position, at the head).
func ruleUpdates(d *Dump) (dels, adds []Update) {
	prev := map[[2]string]uint64{}
	for _, m := range d.Rules {
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
	return dels, adds
}

// recreateTables returns the notifications that delete every table of d and create it
// again with its chains, sets, elements and objects, in dump order (rules not included).
func recreateTables(d *Dump) []Update {
	var ups []Update
	for _, m := range d.Tables {
		ups = append(ups, Update{Type: MsgDelTable, Msg: m})
	}
	for _, m := range d.Tables {
		ups = append(ups, Update{Type: MsgNewTable, Msg: m})
	}
	for _, m := range d.Chains {
		ups = append(ups, Update{Type: MsgNewChain, Msg: m})
	}
	for _, m := range d.Sets {
		ups = append(ups, Update{Type: MsgNewSet, Msg: m})
	}
	for _, se := range d.Elements {
		for _, m := range se.Msgs {
			ups = append(ups, Update{Type: MsgNewSetElem, Msg: m})
		}
	}
	for _, m := range d.Objects {
		ups = append(ups, Update{Type: MsgNewObj, Msg: m})
	}
	return ups
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
			dels, adds := ruleUpdates(rec.dump)
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
			ups := append(recreateTables(rec.dump), adds...)
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
		// Rules that jump through an anonymous verdict map are rendered every time.
		cacheable := len(rec.dump.Rules)
		for _, tb := range want.Tables {
			for _, ch := range tb.Chains {
				for _, r := range ch.Rules {
					if strings.Contains(r.Text, ": jump ") || strings.Contains(r.Text, ": goto ") {
						cacheable--
					}
				}
			}
		}
		if c.Hits() != cacheable || c.idHits != c.Hits() {
			t.Errorf("%s: %d cache hits (%d by message identity) on the second build, want %d",
				rec.name, c.Hits(), c.idHits, cacheable)
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
			dels, adds := ruleUpdates(rec.dump)
			if err := st.Apply(dels); err != nil {
				t.Fatal(err)
			}
			if got, _ := st.Build(); got.RuleCount() != 0 {
				t.Fatalf("%d rules left after deleting all", got.RuleCount())
			}
			// The State forgets the anonymous sets of rendered rules: rules added back
			// without theirs cannot be rendered, and are refused rather than guessed.
			if err := st.Apply(adds); err != nil {
				t.Fatal(err)
			}
			if _, err := st.Build(); anonSets(rec.dump) != nil && !errors.Is(err, ErrNotIncremental) {
				t.Fatalf("rules added back without their anonymous sets: %v", err)
			}
			// As the kernel sends them: each rule with its anonymous sets.
			st, _, _ = readState(t, rec.dump, nil)
			if err := st.Apply(dels); err != nil {
				t.Fatal(err)
			}
			if err := st.Apply(append(anonSets(rec.dump), adds...)); err != nil {
				t.Fatal(err)
			}
			check("rules deleted and added")
			ups := append(recreateTables(rec.dump), adds...)
			if err := st.Apply(ups); err != nil {
				t.Fatal(err)
			}
			check("tables deleted and created")
			for _, m := range st.d.Sets {
				if a, _ := msgAttrs(m); a.u32(nftaSetFlags)&setFlagAnonymous != 0 {
					t.Errorf("anonymous set %s still held after its rule was rendered",
						a.str(nftaSetName))
				}
			}

			_, again, hits := readState(t, rec.dump, st)
			if again.Text() != want.Text() {
				t.Fatal("second read differs")
			}
			cacheable := 0
			for _, r := range st.rules {
				if r.key.table != 0 && r.key.rule != 0 && !r.namesChains {
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

// TestStateBuildShares: successive builds of a State share the chains and named sets a
// generation did not touch, never change an earlier model, and equal a plain build of
// the same updates applied to the dump.
func TestStateBuildShares(t *testing.T) {
	for _, rec := range loadRecorded(t) {
		t.Run(rec.name, func(t *testing.T) {
			st, _, _ := readState(t, rec.dump, nil)
			m1, err := st.Build()
			if err != nil {
				t.Fatal(err)
			}
			text1, sum1 := m1.Text(), m1.Digest()
			m2, err := st.Build()
			if err != nil {
				t.Fatal(err)
			}
			shared := func(a, b *ruleset.Ruleset) (chains, same int) {
				for _, ta := range a.Tables {
					tb := b.Table(ta.Family, ta.Name)
					for _, c := range ta.Chains {
						chains++
						if tb != nil && tb.Chain(c.Name) == c {
							same++
						}
					}
					for _, s := range ta.Sets {
						if tb == nil || tb.Set(s.Name) != s {
							t.Errorf("set %s not shared by an unchanged build", s.Name)
						}
					}
				}
				return chains, same
			}
			if n, same := shared(m1, m2); n != same {
				t.Fatalf("%d of %d chains shared by an unchanged build", same, n)
			}
			// Delete the first rule: only its chain is new.
			d := cloneDump(rec.dump)
			del := []Update{{Type: MsgDelRule, Msg: rec.dump.Rules[0]}}
			if err := d.Apply(del); err != nil {
				t.Fatal(err)
			}
			want, err := Build(d)
			if err != nil {
				t.Fatal(err)
			}
			if err := st.Apply(del); err != nil {
				t.Fatal(err)
			}
			m3, err := st.Build()
			if err != nil {
				t.Fatal(err)
			}
			if m3.Text() != want.Text() || m3.Digest() != want.Digest() {
				t.Fatalf("state after a deletion differs:\n%v", ruleset.Diff(want, m3))
			}
			if st.quick == 0 {
				t.Error("no build patched the last model")
			}
			if n, same := shared(m2, m3); same != n-1 {
				t.Errorf("%d of %d chains shared after one rule's deletion, want %d", same, n, n-1)
			}
			if m1.Text() != text1 || m1.Digest() != sum1 {
				t.Fatal("an earlier model changed")
			}
			// And back, with the anonymous sets (the kernel would send only the rule's).
			back := append(anonSets(rec.dump), Update{Type: MsgNewRule, Msg: rec.dump.Rules[0]})
			if err := st.Apply(back); err != nil {
				t.Fatal(err)
			}
			m4, err := st.Build()
			if err != nil {
				t.Fatal(err)
			}
			if m4.Text() != text1 || m4.Digest() != sum1 {
				t.Fatalf("state after adding the rule back differs:\n%v", ruleset.Diff(m1, m4))
			}
		})
	}
}

// anonSets returns the messages that create the anonymous sets of d with their elements,
// as a generation adding their rules carries them.
func anonSets(d *Dump) []Update {
	var out []Update
	for _, m := range d.Sets {
		a, _ := msgAttrs(m)
		if a.u32(nftaSetFlags)&setFlagAnonymous == 0 {
			continue
		}
		out = append(out, Update{Type: MsgNewSet, Msg: m})
		for _, se := range d.Elements {
			if se.Family == m.Family() && se.Table == a.str(nftaSetTable) &&
				se.Set == a.str(nftaSetName) {
				for _, em := range se.Msgs {
					out = append(out, Update{Type: MsgNewSetElem, Msg: em})
				}
			}
		}
	}
	return out
}
