package nft

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/fenceline/fenceline/shared/nftcanon"
	"github.com/fenceline/fenceline/shared/ruleset"
)

// applyStep is one commit of TestApplyMatchesRead: nft commands (one transaction) and
// whether applying its messages may be refused in favour of a full read.
type applyStep struct {
	cmds     string
	mayRefer bool // ErrNotIncremental is an acceptable answer
}

var applySteps = []applyStep{
	{cmds: `add table inet fl_apply
add chain inet fl_apply input { type filter hook input priority 0; policy accept; }
add chain inet fl_apply other`},
	{cmds: `add rule inet fl_apply input tcp dport 22 counter accept comment "ssh"`},
	{cmds: `add rule inet fl_apply input tcp dport { 80, 443 } accept`},
	{cmds: `insert rule inet fl_apply input ct state established,related accept`},
	{cmds: `add rule inet fl_apply input ct original ip saddr 10.0.0.1 accept`},
	// Two inserts at the head in one transaction: the first one's neighbour is the
	// second, whose message comes later.
	{cmds: `insert rule inet fl_apply input udp dport 53 accept
insert rule inet fl_apply input udp dport 123 accept`},
	{cmds: `add set inet fl_apply blocked { type ipv4_addr; flags interval; auto-merge; }
add element inet fl_apply blocked { 10.0.0.0/8, 192.168.1.1 }
add rule inet fl_apply input ip saddr @blocked drop`},
	{cmds: `add element inet fl_apply blocked { 172.16.0.0/12 }`},
	{cmds: `delete element inet fl_apply blocked { 192.168.1.1 }`},
	{cmds: `add map inet fl_apply ports { type inet_service : verdict; }
add element inet fl_apply ports { 8080 : jump other, 8443 : drop }
add rule inet fl_apply input tcp dport vmap @ports`},
	{cmds: `add set inet fl_apply seen { type ipv4_addr; flags dynamic,timeout; timeout 1m; }
add rule inet fl_apply input update @seen { ip saddr } counter`},
	{cmds: `add set inet fl_apply pairs { type ipv4_addr . inet_service; flags interval; }
add element inet fl_apply pairs { 10.1.0.0/16 . 1000-2000, 10.2.0.1 . 22 }`},
	{cmds: `add element inet fl_apply pairs { 10.3.0.0/16 . 80 }
delete element inet fl_apply pairs { 10.2.0.1 . 22 }`},
	{cmds: `add set inet fl_apply timed { type ipv4_addr; flags timeout; }
add element inet fl_apply timed { 10.9.9.9 timeout 10m }`},
	{cmds: `flush set inet fl_apply timed`},
	{cmds: `replace rule inet fl_apply input handle @{udp dport 123 accept} udp dport 124 accept`,
		mayRefer: true},
	{cmds: `replace rule inet fl_apply input handle @{tcp dport 22 counter accept comment "ssh"} tcp dport 2222 accept`},
	{cmds: `delete rule inet fl_apply input handle @{ct state established,related accept}`},
	{cmds: `add rule inet fl_apply input position @{tcp dport 2222 accept} ip daddr 192.0.2.9 accept`},
	{cmds: `insert rule inet fl_apply input position @{tcp dport 2222 accept} ip daddr 192.0.2.8 accept`},
	{cmds: `delete rule inet fl_apply input handle @{ip daddr 192.0.2.8 accept}
add rule inet fl_apply input ip daddr 192.0.2.10 accept`, mayRefer: true},
	{cmds: `add counter inet fl_apply hits
add quota inet fl_apply budget { over 100 mbytes }
add rule inet fl_apply other counter name "hits"`},
	{cmds: `delete quota inet fl_apply budget`},
	{cmds: `chain inet fl_apply input { policy drop; }`},
	{cmds: `add rule inet fl_apply other position 0 meta mark 1 accept`},
	// Jumps inside an anonymous verdict map name the chain in the map's elements, not in
	// the rule: a rename must show in the rule's text.
	{cmds: `add rule inet fl_apply input meta mark vmap { 1 : jump other, 2 : goto other }`},
	{cmds: `rename chain inet fl_apply other renamed`, mayRefer: true},
	{cmds: `flush chain inet fl_apply renamed`},
	{cmds: `add table ip fl_second
add chain ip fl_second c
add rule ip fl_second c ip daddr 192.0.2.1 drop`},
	// A firewalld-style rebuild: the table goes and comes back in one transaction.
	{cmds: `delete table ip fl_second
add table ip fl_second
add chain ip fl_second c
add rule ip fl_second c ip daddr 192.0.2.1 drop`},
	{cmds: `add table netdev fl_dev
add chain netdev fl_dev ingress { type filter hook ingress device "lo" priority 0; }
add rule netdev fl_dev ingress ip saddr 192.0.2.7 drop`},
	{cmds: `delete table netdev fl_dev`},
	{cmds: `delete table inet fl_apply`},
}

// TestApplyMatchesRead commits one transaction at a time and checks, after each, that
// the generation's notified messages applied to the previous dump, and to the previous
// State (as the agent holds it), give exactly the ruleset a full read gives.
func TestApplyMatchesRead(t *testing.T) {
	requireKernel(t)
	ns := newNS(t)
	r, err := Open(ns)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	notes, err := r.Watch(ctx)
	if err != nil {
		t.Fatal(err)
	}
	d, gen, err := r.ReadDump()
	if err != nil {
		t.Fatal(err)
	}
	state, _, sgen, err := r.ReadState(nil)
	if err != nil || sgen != gen {
		t.Fatalf("state read at generation %d (%v), dump at %d", sgen, err, gen)
	}
	cache := nftcanon.NewCache()
	file := filepath.Join(t.TempDir(), "step.nft")
	for i, st := range applySteps {
		cmds := withHandles(t, st.cmds, d)
		if err := os.WriteFile(file, []byte(cmds+"\n"), 0o644); err != nil {
			t.Fatal(err)
		}
		mustNS(t, ns, "nft", "-f", file)
		n := nextGen(t, notes, gen)
		gen = n.Gen
		// A reader of its own remembers nothing of earlier reads.
		want, wgen, err := freshSnapshot(t, ns)
		if err != nil || wgen != gen {
			t.Fatalf("step %d: read at generation %d (%v), notified %d", i, wgen, err, gen)
		}
		if !n.Complete {
			t.Fatalf("step %d: generation %d incomplete", i, gen)
		}
		err = d.Apply(n.Updates)
		serr := state.Apply(n.Updates)
		if (err == nil) != (serr == nil) {
			t.Fatalf("step %d: apply to the dump: %v, to the state: %v", i, err, serr)
		}
		if errors.Is(err, nftcanon.ErrNotIncremental) && st.mayRefer {
			t.Logf("step %d: %v (full read instead)", i, err)
			if d, _, err = r.ReadDump(); err != nil {
				t.Fatal(err)
			}
			var read *ruleset.Ruleset
			if state, read, _, err = r.ReadState(state); err != nil {
				t.Fatal(err)
			}
			if read.Digest() != want.Digest() {
				t.Fatalf("step %d (%s): the full read differs from a fresh read:\n%s", i,
					firstLine(st.cmds), ruleDiff(want, read))
			}
			continue
		}
		if err != nil {
			t.Fatalf("step %d (%s): apply: %v", i, firstLine(st.cmds), err)
		}
		got, err := nftcanon.BuildCached(d, cache)
		if err != nil {
			t.Fatalf("step %d: build: %v", i, err)
		}
		sgot, err := state.Build()
		if err != nil {
			t.Fatalf("step %d: build the state: %v", i, err)
		}
		for _, x := range []struct {
			what string
			got  *ruleset.Ruleset
		}{{"dump", got}, {"state", sgot}} {
			if x.got.Digest() != want.Digest() {
				t.Fatalf("step %d (%s): applied %s differs from a read:\n%s\napplied:\n%s\nread:\n%s",
					i, firstLine(st.cmds), x.what, ruleDiff(want, x.got), x.got.Text(), want.Text())
			}
			if !sameRuleTexts(x.got, want) {
				t.Fatalf("step %d: rule order of the applied %s differs:\napplied:\n%s\nread:\n%s",
					i, x.what, x.got.Text(), want.Text())
			}
		}
	}
	if cache.Hits() == 0 {
		t.Error("the render cache was never used")
	}
}

// nextGen waits for the first complete notification after gen.
func nextGen(t *testing.T, notes <-chan Notification, gen uint32) Notification {
	t.Helper()
	deadline := time.After(3 * time.Second)
	for {
		select {
		case n := <-notes:
			if n.Overrun {
				t.Fatalf("overrun: %v", n.Err)
			}
			if n.Gen > gen {
				return n
			}
		case <-deadline:
			t.Fatalf("no notification after generation %d", gen)
		}
	}
}

var handleRE = regexp.MustCompile(`@\{([^}]*)\}`)

// withHandles replaces @{RULE TEXT} with the handle of the rule of that text.
func withHandles(t *testing.T, cmds string, d *nftcanon.Dump) string {
	t.Helper()
	rs, err := nftcanon.Build(d)
	if err != nil {
		t.Fatal(err)
	}
	return handleRE.ReplaceAllStringFunc(cmds, func(m string) string {
		text := handleRE.FindStringSubmatch(m)[1]
		for _, tb := range rs.Tables {
			for _, c := range tb.Chains {
				for _, r := range c.Rules {
					if r.Text == text {
						return strconv.FormatUint(r.Handle, 10)
					}
				}
			}
		}
		t.Fatalf("no rule %q", text)
		return ""
	})
}

func firstLine(s string) string {
	line, _, _ := strings.Cut(s, "\n")
	return line
}

// sameRuleTexts compares rule order and text chain by chain (the digest covers it too;
// this gives the clearer failure).
func sameRuleTexts(a, b *ruleset.Ruleset) bool {
	if len(a.Tables) != len(b.Tables) {
		return false
	}
	for i, ta := range a.Tables {
		tb := b.Tables[i]
		for _, ca := range ta.Chains {
			cb := tb.Chain(ca.Name)
			if cb == nil || len(ca.Rules) != len(cb.Rules) {
				return false
			}
			for j := range ca.Rules {
				if ca.Rules[j].Text != cb.Rules[j].Text {
					return false
				}
			}
		}
	}
	return true
}

// freshSnapshot reads the namespace's ruleset with a new Reader.
func freshSnapshot(t *testing.T, ns string) (*ruleset.Ruleset, uint32, error) {
	t.Helper()
	r, err := Open(ns)
	if err != nil {
		return nil, 0, err
	}
	defer r.Close()
	return r.Snapshot()
}
