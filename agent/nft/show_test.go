package nft

import (
	"path/filepath"
	"strings"
	"testing"

	"github.com/fenceline/fenceline/shared/ruleset"
)

// TestDroppedExpressionsAreHashed: a `byteorder` rule (an OpenWrt time rule) and an `rt`
// rule keep those expressions in their text, so each hashes differently from the same
// rule without them (google/nftables v0.3.0 drops both silently).
func TestDroppedExpressionsAreHashed(t *testing.T) {
	requireKernel(t)
	with := newNS(t)
	without := newNS(t)
	mustNS(t, with, "nft", `add table inet t
add chain inet t c
add rule inet t c meta time >= "2022-05-30 21:51:23" tcp dport 22 accept
add rule inet t c tcp flags syn tcp option maxseg size set rt mtu`)
	mustNS(t, without, "nft", `add table inet t
add chain inet t c
add rule inet t c tcp dport 22 accept
add rule inet t c tcp flags syn tcp option maxseg size set 1400`)
	a, _ := snapshot(t, with)
	b, _ := snapshot(t, without)
	ra, rb := a.Table("inet", "t").Chain("c").Rules, b.Table("inet", "t").Chain("c").Rules
	if len(ra) != 2 || len(rb) != 2 {
		t.Fatalf("rules: %d and %d", len(ra), len(rb))
	}
	for i := range ra {
		ca := &ruleset.Chain{Name: "c", Rules: []*ruleset.Rule{ra[i]}}
		cb := &ruleset.Chain{Name: "c", Rules: []*ruleset.Rule{rb[i]}}
		if ca.Digest() == cb.Digest() {
			t.Errorf("rule %q hashes like %q", ra[i].Text, rb[i].Text)
		}
		if ra[i].Undecoded != 0 {
			t.Errorf("rule %q undecoded", ra[i].Text)
		}
	}
	l := listing(t, with)
	for i, lr := range l.Chains[0].Rules {
		if ra[i].Text != lr.Text {
			t.Errorf("rule %d: %q, nft lists %q", i, ra[i].Text, lr.Text)
		}
	}
}

// TestIntervalSetAsNftPrints: an interval set of single addresses and a prefix renders
// its elements as nft lists them.
func TestIntervalSetAsNftPrints(t *testing.T) {
	requireKernel(t)
	ns := newNS(t)
	mustNS(t, ns, "nft", `add table ip t
add set ip t nets { type ipv4_addr; flags interval; }
add element ip t nets { 10.0.0.1, 127.0.0.1, 192.168.0.0/24 }
add chain ip t c
add rule ip t c ip daddr { 10.0.0.1, 127.0.0.1, 192.168.0.0/24 } accept`)
	rs, _ := snapshot(t, ns)
	s := rs.Table("ip", "t").Set("nets")
	if got := strings.Join(s.Elements, ", "); got != "10.0.0.1, 127.0.0.1, 192.168.0.0/24" {
		t.Errorf("set elements %q", got)
	}
	l := listing(t, ns)
	if got := strings.Join(l.Sets[0].Elements, ", "); got != "10.0.0.1, 127.0.0.1, 192.168.0.0/24" {
		t.Errorf("nft lists %q", got)
	}
	r := rs.Table("ip", "t").Chain("c").Rules[0].Text
	if r != l.Chains[0].Rules[0].Text || r != "ip daddr { 10.0.0.1, 127.0.0.1, 192.168.0.0/24 } accept" {
		t.Errorf("rule %q, nft lists %q", r, l.Chains[0].Rules[0].Text)
	}
}

// TestBlocklistReloadSameDigest: a 54k-prefix blocklist that nft auto-merges on load
// hashes identically after a flush and reload.
func TestBlocklistReloadSameDigest(t *testing.T) {
	requireKernel(t)
	dir := requireCorpus(t)
	if testing.Short() {
		t.Skip("loads a 54k-element set twice")
	}
	file := filepath.Join(dir, "BIG-gen-blocklist-50k.nft")
	ns := loadFile(t, file, nil)
	before, _ := snapshot(t, ns)
	mustNS(t, ns, "nft", "flush ruleset")
	mustNS(t, ns, "nft", "-f", file)
	after, _ := snapshot(t, ns)
	n := 0
	for _, tb := range after.Tables {
		for _, s := range tb.Sets {
			n += len(s.Elements)
		}
	}
	if n < 50000 {
		t.Fatalf("%d set elements after reload", n)
	}
	if before.Digest() != after.Digest() {
		t.Fatalf("digest moved on reload:\n%s", ruleDiff(before, after))
	}
}
