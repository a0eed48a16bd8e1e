package nftparse

import (
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"

	agentnft "github.com/fenceline/fenceline/agent/nft"
	"github.com/fenceline/fenceline/internal/nstest"
	"github.com/fenceline/fenceline/shared/ruleset"
)

// TestCorpusRoundTrip checks, for every rule of every curated corpus file, that parsing
// the rule's nft text gives the canonical text the agent reads back after `nft add rule`
// of that same text. Each file is loaded into a fresh namespace (so that its tables,
// chains, sets and objects exist), every rule is added once more at the end of its chain
// in one transaction, and the agent's reader lists the chains.
func TestCorpusRoundTrip(t *testing.T) {
	requireKernel(t)
	dir := requireCorpus(t)
	ifaces := nstest.CorpusInterfaces(t, dir)
	files, err := filepath.Glob(filepath.Join(dir, "*.nft"))
	if err != nil || len(files) == 0 {
		t.Fatalf("no corpus files in %s: %v", dir, err)
	}
	sort.Strings(files)
	total, equal := 0, 0
	for _, f := range files {
		base := filepath.Base(f)
		t.Run(base, func(t *testing.T) {
			n, eq := roundTripFile(t, f, ifaces[base])
			total += n
			equal += eq
		})
	}
	t.Logf("corpus round trip: %d of %d rules give the agent's canonical text", equal, total)
}

type chainKey struct{ family, table, chain string }

func roundTripFile(t *testing.T, file string, ifaces []string) (int, int) {
	src, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	script, err := ParseScript(string(src))
	if err != nil {
		t.Fatalf("parse script: %v", err)
	}
	if len(script.Rules) == 0 {
		t.Skip("no rules")
	}
	ns := newNS(t)
	nstest.AddInterfaces(t, ns, ifaces)
	if _, err := inNS(ns, "nft", "-f", file); err != nil {
		t.Fatal(err)
	}
	r, err := agentnft.Open(ns)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	before, _, err := r.Snapshot()
	if err != nil {
		t.Fatal(err)
	}
	var batch strings.Builder
	for _, sr := range script.Rules {
		fmt.Fprintf(&batch, "add rule %s %s %s %s\n", sr.Family, quoteName(sr.Table),
			quoteName(sr.Chain), sr.Text)
	}
	bf := filepath.Join(t.TempDir(), "again.nft")
	if err := os.WriteFile(bf, []byte(batch.String()), 0o600); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	if _, err := inNS(ns, "nft", "-f", bf); err != nil {
		t.Fatalf("adding the rules again: %v", err)
	}
	after, _, err := r.Snapshot()
	if err != nil {
		t.Fatal(err)
	}
	added := map[chainKey][]*ruleset.Rule{}
	for _, tb := range after.Tables {
		for _, c := range tb.Chains {
			n := 0
			if ob := before.Table(tb.Family, tb.Name); ob != nil {
				if oc := ob.Chain(c.Name); oc != nil {
					n = len(oc.Rules)
				}
			}
			added[chainKey{tb.Family, tb.Name, c.Name}] = c.Rules[n:]
		}
	}
	next := map[chainKey]int{}
	equal := 0
	for _, sr := range script.Rules {
		k := chainKey{sr.Family, sr.Table, sr.Chain}
		i := next[k]
		next[k]++
		if i >= len(added[k]) {
			t.Errorf("line %d: no rule read back for %s", sr.Line, sr.Text)
			continue
		}
		want := added[k][i].Text
		got, err := Rule(ContextFor(after, sr.Family, sr.Table), sr.Text)
		switch {
		case err != nil:
			t.Errorf("line %d: %s\n\tparse: %v\n\tagent: %s", sr.Line, sr.Text, err, want)
		case got != want:
			t.Errorf("line %d: %s\n\tparsed: %s\n\tagent:  %s", sr.Line, sr.Text, got, want)
		default:
			equal++
		}
	}
	t.Logf("%d rules, %d equal (%s)", len(script.Rules), equal, time.Since(start).Round(time.Millisecond))
	checkElements(t, script, after)
	return len(script.Rules), equal
}

// checkElements compares the elements the script adds to each named set, parsed, with
// the set's elements as the agent reads them.
func checkElements(t *testing.T, script *Script, rs *ruleset.Ruleset) {
	type setKey struct{ family, table, set string }
	texts := map[setKey][]string{}
	var order []setKey
	for _, e := range script.Elements {
		k := setKey{e.Family, e.Table, e.Set}
		if _, ok := texts[k]; !ok {
			order = append(order, k)
		}
		if strings.TrimSpace(e.Text) != "" {
			texts[k] = append(texts[k], e.Text)
		}
	}
	for _, k := range order {
		tb := rs.Table(k.family, k.table)
		if tb == nil || tb.Set(k.set) == nil || len(texts[k]) == 0 {
			continue
		}
		set := tb.Set(k.set)
		if set.Dynamic {
			continue
		}
		got, err := Elements(ContextFor(rs, k.family, k.table), k.set, strings.Join(texts[k], ", "))
		if err != nil {
			t.Errorf("set %s %s %s: %v", k.family, k.table, k.set, err)
			continue
		}
		if strings.Join(got, ", ") != strings.Join(set.Elements, ", ") {
			i := 0
			for i < len(got) && i < len(set.Elements) && got[i] == set.Elements[i] {
				i++
			}
			t.Errorf("set %s %s %s: %d elements parsed, %d read; first difference at %d:"+
				"\n\tparsed: %s\n\tagent:  %s", k.family, k.table, k.set, len(got),
				len(set.Elements), i, clip(strings.Join(got[i:], ", ")),
				clip(strings.Join(set.Elements[i:], ", ")))
		}
	}
}

func clip(s string) string {
	if len(s) > 300 {
		return s[:300] + "…"
	}
	return s
}

// quoteName quotes a table or chain name nft would not read bare.
func quoteName(s string) string {
	for _, c := range s {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' ||
			strings.ContainsRune("_-./", c)) {
			return `"` + s + `"`
		}
	}
	return s
}
