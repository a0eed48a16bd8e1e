package nft

import (
	"encoding/binary"
	"fmt"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/fenceline/fenceline/shared/nftcanon"
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

// TestElementExpiryIsNotState: a set element with `timeout 10m` is the same ruleset a
// minute later. The kernel reports each element's remaining time (its expiry countdown),
// which moves between any two reads; the test reads twice a second apart (the countdown
// in the raw messages moved), then moves every countdown a further minute on in the
// bytes the kernel sent, and the digest stays the baseline's. A changed timeout itself
// is a change.
func TestElementExpiryIsNotState(t *testing.T) {
	requireKernel(t)
	ns := newNS(t)
	mustNS(t, ns, "nft", `add table inet t
add set inet t allowed { type ipv4_addr; flags timeout; }
add element inet t allowed { 198.18.0.2 timeout 10m, 198.18.0.3 timeout 10m expires 5m }
add chain inet t c
add rule inet t c ip saddr @allowed accept`)
	r, err := Open(ns)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	read := func() (*nftcanon.Dump, *ruleset.Ruleset) {
		t.Helper()
		d, _, err := r.ReadDump()
		if err != nil {
			t.Fatal(err)
		}
		rs, err := nftcanon.Build(d)
		if err != nil {
			t.Fatal(err)
		}
		return d, rs
	}
	d1, rs1 := read()
	if got := strings.Join(rs1.Table("inet", "t").Set("allowed").Elements, ", "); got !=
		"198.18.0.2 timeout 10m, 198.18.0.3 timeout 10m" {
		t.Fatalf("elements %q", got)
	}
	time.Sleep(1100 * time.Millisecond) // the countdown is in milliseconds
	d2, rs2 := read()
	e1, e2 := expirations(t, d1, 0), expirations(t, d2, 0)
	if len(e1) != 2 || len(e2) != 2 || e2[0] >= e1[0] || e2[1] >= e1[1] {
		t.Fatalf("expiry countdowns did not move: %v then %v", e1, e2)
	}
	if rs1.Digest() != rs2.Digest() {
		t.Fatalf("digest moved a second later:\n%s", ruleDiff(rs1, rs2))
	}
	// A minute later, as the kernel would send it.
	later := expirations(t, d2, 60_000)
	if later[0] != e2[0]-60_000 || later[1] != e2[1]-60_000 {
		t.Fatalf("countdowns %v after moving %v on by a minute", later, e2)
	}
	rs3, err := nftcanon.Build(d2)
	if err != nil {
		t.Fatal(err)
	}
	if rs1.Digest() != rs3.Digest() {
		t.Fatalf("digest moved a minute later:\n%s", ruleDiff(rs1, rs3))
	}
	mustNS(t, ns, "nft", `delete element inet t allowed { 198.18.0.2 }
add element inet t allowed { 198.18.0.2 timeout 20m }`)
	if _, rs4 := read(); rs4.Digest() == rs1.Digest() {
		t.Fatal("a changed element timeout hashes like the old one")
	}
}

// expirations returns the remaining time (ms) of every element in d's set element
// messages, after moving each on by by ms in place.
func expirations(t *testing.T, d *nftcanon.Dump, by uint64) []uint64 {
	t.Helper()
	var out []uint64
	for _, se := range d.Elements {
		for _, m := range se.Msgs {
			walkAttrs(t, m[4:], []uint16{unix.NFTA_SET_ELEM_LIST_ELEMENTS, unix.NFTA_LIST_ELEM,
				unix.NFTA_SET_ELEM_EXPIRATION}, func(v []byte) {
				ms := binary.BigEndian.Uint64(v) - by
				binary.BigEndian.PutUint64(v, ms)
				out = append(out, ms)
			})
		}
	}
	return out
}

// walkAttrs calls f with the payload of every attribute at path (nested attributes,
// one type per level) in the netlink attributes b.
func walkAttrs(t *testing.T, b []byte, path []uint16, f func([]byte)) {
	for len(b) >= 4 {
		l := int(binary.NativeEndian.Uint16(b))
		typ := binary.NativeEndian.Uint16(b[2:]) &^ (unix.NLA_F_NESTED | unix.NLA_F_NET_BYTEORDER)
		if l < 4 || l > len(b) {
			t.Fatalf("bad attribute length %d", l)
		}
		if typ == path[0] {
			if len(path) == 1 {
				f(b[4:l])
			} else {
				walkAttrs(t, b[4:l], path[1:], f)
			}
		}
		b = b[min((l+3)&^3, len(b)):]
	}
}

// TestConstantSetsRemembered: a re-read takes the elements of anonymous sets it already
// read from memory (they cannot change), and still sees every change: a rule replaced by
// one with other elements, elements added to a named set, a reload that makes every
// anonymous set anew. Each read equals a fresh reader's.
func TestConstantSetsRemembered(t *testing.T) {
	requireKernel(t)
	ns := newNS(t)
	mustNS(t, ns, "nft", `add table inet t
add set inet t named { type ipv4_addr; }
add chain inet t c
add rule inet t c tcp dport { 22, 80 } accept
add rule inet t c udp dport { 53, 123 } accept
add rule inet t c ip saddr @named drop`)
	r, err := Open(ns)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	check := func(step string, wantHits int) *ruleset.Ruleset {
		t.Helper()
		rs, _, err := r.Snapshot()
		if err != nil {
			t.Fatal(err)
		}
		fresh, _ := snapshot(t, ns)
		if rs.Digest() != fresh.Digest() {
			t.Fatalf("%s: remembered read differs from a fresh one:\n%s", step, ruleDiff(fresh, rs))
		}
		if r.consts.hits != wantHits {
			t.Fatalf("%s: %d sets from memory, want %d", step, r.consts.hits, wantHits)
		}
		return rs
	}
	first := check("first read", 0)
	check("re-read", 2)
	rules := first.Table("inet", "t").Chain("c").Rules
	mustNS(t, ns, "nft", fmt.Sprintf("replace rule inet t c handle %d udp dport { 53, 853 } accept",
		rules[1].Handle))
	mustNS(t, ns, "nft", "add element inet t named { 198.18.0.7 }")
	rs := check("after replace", 1)
	if got := rs.Table("inet", "t").Chain("c").Rules[1].Text; got != "udp dport { 53, 853 } accept" {
		t.Fatalf("replaced rule reads %q", got)
	}
	mustNS(t, ns, "nft", "flush ruleset")
	mustNS(t, ns, "nft", `add table inet t
add chain inet t c
add rule inet t c tcp dport { 22, 80 } accept`)
	check("after reload", 0)
}
