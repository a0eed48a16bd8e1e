package nft

import (
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"

	"github.com/fenceline/fenceline/shared/nftcanon/nftlist"
	"github.com/fenceline/fenceline/shared/ruleset"
)

var (
	bigCorpus = flag.Bool("nft.big", false, "conformance: also check the BIG-* corpus files")
	bulkDir   = flag.String("nft.bulk", "", "conformance: also check this corpus subdirectory, "+
		"e.g. nftables-pytests/generated or nftables-shell-dumps")
)

// minMatchRate is the share of curated corpus rules whose canonical text must equal
// nft's own listing. Measured with nft 1.0.6 on kernel 6.18: 100% of the 2273 curated
// rules (and of the 16774 rules of the BIG-* files); 95.0% of the nftables project's
// 4643 pytest rules and 99.9% of its 846 shell-dump rules (-nft.bulk). The threshold
// leaves room for a different nft build, not for known gaps.
const minMatchRate = 0.99

// conformance compares one loaded file with nft's listing, rule by rule (matched by
// handle), and set by set.
type conformance struct {
	rules, equal int
	sets, setsEq int
	mismatches   []string
}

func compareWithNft(t *testing.T, ns string, rs *ruleset.Ruleset, l *nftlist.Listing) conformance {
	t.Helper()
	var c conformance
	for _, lc := range l.Chains {
		var mc *ruleset.Chain
		if tb := rs.Table(lc.Family, lc.Table); tb != nil {
			mc = tb.Chain(lc.Name)
		}
		byHandle := map[uint64]string{}
		if mc != nil {
			for _, r := range mc.Rules {
				byHandle[r.Handle] = r.Text
			}
			if len(mc.Rules) != len(lc.Rules) {
				c.mismatches = append(c.mismatches, fmt.Sprintf("%s: %d rules, nft lists %d",
					lc.Key(), len(mc.Rules), len(lc.Rules)))
			}
			if h := mc.Header(); h != "" && !slicesContain(lc.Header, h) {
				c.mismatches = append(c.mismatches, fmt.Sprintf("%s header:\n\tnft:  %v\n\tours: %s",
					lc.Key(), lc.Header, h))
			}
		}
		for _, lr := range lc.Rules {
			c.rules++
			got, ok := byHandle[lr.Handle]
			if ok && got == lr.Text {
				c.equal++
				continue
			}
			c.mismatches = append(c.mismatches, fmt.Sprintf("%s handle %d:\n\tnft:  %s\n\tours: %s",
				lc.Key(), lr.Handle, lr.Text, got))
		}
	}
	for _, ls := range l.Sets {
		c.sets++
		var ms *ruleset.Set
		if tb := rs.Table(ls.Family, ls.Table); tb != nil {
			ms = tb.Set(ls.Name)
		}
		if ms == nil {
			c.mismatches = append(c.mismatches, "set "+ls.Key()+" missing")
			continue
		}
		want := append([]string(nil), ls.Elements...)
		ruleset.SortElements(want)
		specOK := strings.Join(ms.Spec, "; ") == strings.Join(ls.Spec, "; ")
		elemsOK := ms.Dynamic || strings.Join(ms.Elements, ", ") == strings.Join(want, ", ")
		if specOK && elemsOK {
			c.setsEq++
			continue
		}
		c.mismatches = append(c.mismatches, fmt.Sprintf("set %s:\n\tnft:  %s | %s\n\tours: %s | %s",
			ls.Key(), strings.Join(ls.Spec, "; "), clip(strings.Join(want, ", ")),
			strings.Join(ms.Spec, "; "), clip(strings.Join(ms.Elements, ", "))))
	}
	return c
}

func slicesContain(ss []string, s string) bool {
	for _, x := range ss {
		if x == s {
			return true
		}
	}
	return false
}

func clip(s string) string {
	if len(s) > 200 {
		return s[:200] + "…"
	}
	return s
}

// TestConformance loads every curated corpus file into its own namespace, reads it
// through netlink and compares each rule's canonical text with `nft -s list ruleset`.
func TestConformance(t *testing.T) {
	requireKernel(t)
	dir := requireCorpus(t)
	ifaces := corpusIfaces(t, dir)
	files, err := filepath.Glob(filepath.Join(dir, "*.nft"))
	if err != nil || len(files) == 0 {
		t.Fatalf("no corpus files in %s: %v", dir, err)
	}
	if *bulkDir != "" {
		more, _ := filepath.Glob(filepath.Join(dir, *bulkDir, "*.nft"))
		files = append(files, more...)
	}
	type result struct {
		file string
		conformance
	}
	var results []result
	for _, f := range files {
		base := filepath.Base(f)
		if strings.HasPrefix(base, "BIG-") && !*bigCorpus {
			continue
		}
		t.Run(base, func(t *testing.T) {
			ns := newNS(t)
			addDummies(t, ns, ifaces[base])
			if _, err := inNS(ns, "nft", "-f", f); err != nil {
				if strings.Contains(f, string(filepath.Separator)+"nftables-") {
					t.Skipf("does not load here: %v", err) // bulk sets include such files
				}
				t.Fatal(err)
			}
			rs, _ := snapshot(t, ns)
			c := compareWithNft(t, ns, rs, listing(t, ns))
			for _, m := range c.mismatches {
				t.Log(m)
			}
			t.Logf("rules %d equal %d, sets %d equal %d", c.rules, c.equal, c.sets, c.setsEq)
			results = append(results, result{base, c})
		})
	}
	groups := map[string]*conformance{}
	total := &conformance{}
	for _, r := range results {
		g := corpusGroup(r.file)
		if groups[g] == nil {
			groups[g] = &conformance{}
		}
		for _, c := range []*conformance{groups[g], total} {
			c.rules += r.rules
			c.equal += r.equal
			c.sets += r.sets
			c.setsEq += r.setsEq
		}
	}
	names := make([]string, 0, len(groups))
	for g := range groups {
		names = append(names, g)
	}
	sort.Strings(names)
	var sb strings.Builder
	fmt.Fprintf(&sb, "%-20s %7s %7s %7s %6s %6s\n", "group", "rules", "equal", "%", "sets", "equal")
	for _, g := range append(names, "total") {
		c := total
		if g != "total" {
			c = groups[g]
		}
		fmt.Fprintf(&sb, "%-20s %7d %7d %6.1f%% %6d %6d\n", g, c.rules, c.equal,
			100*rate(c.equal, c.rules), c.sets, c.setsEq)
	}
	t.Log("conformance with nft -s list ruleset:\n" + sb.String())
	if out := os.Getenv("FL_CONFORMANCE_REPORT"); out != "" {
		_ = os.WriteFile(out, []byte(sb.String()), 0o644)
	}
	if r := rate(total.equal, total.rules); r < minMatchRate {
		t.Errorf("rule match rate %.1f%% below %.0f%%", 100*r, 100*minMatchRate)
	}
}

func rate(n, d int) float64 {
	if d == 0 {
		return 1
	}
	return float64(n) / float64(d)
}

// corpusGroup names a corpus file's group by its name's prefix.
func corpusGroup(file string) string {
	for _, p := range []string{"BIG-", "debian12", "openwrt-fw4", "firewalld", "docker",
		"kube-proxy", "flannel", "libvirt", "user-", "nftables-test", "nftables-example"} {
		if strings.HasPrefix(file, p) {
			return strings.TrimSuffix(p, "-")
		}
	}
	if i := strings.Index(file, "__"); i > 0 {
		return "bulk"
	}
	return "other"
}
