package nft

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/fenceline/fenceline/internal/nstest"
	"github.com/fenceline/fenceline/shared/nftcanon/nftlist"
	"github.com/fenceline/fenceline/shared/ruleset"
)

func TestOpenMissingNamespace(t *testing.T) {
	if _, err := Open("fl-does-not-exist-0"); err == nil {
		t.Fatal("Open of a missing namespace succeeded")
	}
	if _, err := Open("../etc"); err == nil {
		t.Fatal("Open accepted a path as namespace name")
	}
}

// snapshot opens the namespace and reads it once.
func snapshot(t *testing.T, ns string) (*ruleset.Ruleset, uint32) {
	t.Helper()
	r, err := Open(ns)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	rs, gen, err := r.Snapshot()
	if err != nil {
		t.Fatal(err)
	}
	return rs, gen
}

// listing is nft's own stateless listing of the namespace, with handles.
func listing(t *testing.T, ns string) *nftlist.Listing {
	t.Helper()
	l, err := nftlist.Parse(mustNS(t, ns, "nft", "-a", "-s", "list", "ruleset"))
	if err != nil {
		t.Fatal(err)
	}
	return l
}

func TestSnapshotReadsTheNamespace(t *testing.T) {
	requireKernel(t)
	ns := newNS(t)
	mustNS(t, ns, "nft", "add table inet fl_probe")
	mustNS(t, ns, "nft",
		"add chain inet fl_probe c { type filter hook input priority 0; policy drop; }")
	mustNS(t, ns, "nft", "add rule inet fl_probe c tcp dport 22 counter accept comment \"ssh\"")
	rs, gen := snapshot(t, ns)
	if gen == 0 {
		t.Error("generation 0 after three commits")
	}
	tb := rs.Table("inet", "fl_probe")
	if tb == nil || len(rs.Tables) != 1 {
		t.Fatalf("want exactly table inet fl_probe, got %+v", rs.Tables)
	}
	c := tb.Chain("c")
	if c == nil || c.Header() != "type filter hook input priority filter; policy drop;" {
		t.Fatalf("chain header: %+v", c)
	}
	if len(c.Rules) != 1 || c.Rules[0].Text != `tcp dport 22 counter accept comment "ssh"` {
		t.Fatalf("rules: %+v", c.Rules)
	}
}

func TestGeneration(t *testing.T) {
	requireKernel(t)
	ns := newNS(t)
	r, err := Open(ns)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	g1, err := r.Generation()
	if err != nil {
		t.Fatal(err)
	}
	mustNS(t, ns, "nft", "add table ip fl_gen")
	g2, err := r.Generation()
	if err != nil {
		t.Fatal(err)
	}
	if g2 != g1+1 {
		t.Fatalf("generation %d after one commit on %d", g2, g1)
	}
	if _, gen, err := r.Snapshot(); err != nil || gen != g2 {
		t.Fatalf("snapshot generation %d, %v; want %d", gen, err, g2)
	}
	if err := r.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := r.Generation(); !errors.Is(err, ErrClosed) {
		t.Fatalf("Generation after Close: %v", err)
	}
}

// TestReloadSameDigest: flushing and loading the same file again is not a change.
func TestReloadSameDigest(t *testing.T) {
	requireKernel(t)
	dir := requireCorpus(t)
	for _, name := range []string{"openwrt-fw4-01-configuration-01-ruleset.nft",
		"firewalld-1.3.3-public-zone-features.nft", "kube-proxy-k8s-testoverall.nft",
		"nftables-test-maps-vmap-concat.nft"} {
		t.Run(name, func(t *testing.T) {
			file := filepath.Join(dir, name)
			ns := loadFile(t, file, nstest.CorpusInterfaces(t, dir)[name])
			before, g1 := snapshot(t, ns)
			mustNS(t, ns, "nft", "flush ruleset")
			mustNS(t, ns, "nft", "-f", file)
			after, g2 := snapshot(t, ns)
			if g2 == g1 {
				t.Fatal("reload did not commit")
			}
			if before.Digest() != after.Digest() {
				t.Errorf("digest changed on reload:\n%s", ruleDiff(before, after))
			}
		})
	}
}

// TestAddRuleChangesOneChain: `nft add rule` changes exactly that chain's digest.
func TestAddRuleChangesOneChain(t *testing.T) {
	requireKernel(t)
	dir := requireCorpus(t)
	name := "openwrt-fw4-01-configuration-01-ruleset.nft"
	ns := loadFile(t, filepath.Join(dir, name), nil)
	before, _ := snapshot(t, ns)
	mustNS(t, ns, "nft", "add rule inet fw4 input_wan tcp dport 8443 accept")
	after, _ := snapshot(t, ns)
	changed := 0
	for _, tb := range before.Tables {
		ta := after.Table(tb.Family, tb.Name)
		for _, c := range tb.Chains {
			ca := ta.Chain(c.Name)
			if c.Digest() == ca.Digest() {
				continue
			}
			changed++
			if c.Name != "input_wan" {
				t.Errorf("chain %s changed", c.Name)
			}
			last := ca.Rules[len(ca.Rules)-1].Text
			if last != "tcp dport 8443 accept" {
				t.Errorf("added rule reads %q", last)
			}
		}
	}
	if changed != 1 {
		t.Errorf("%d chains changed, want 1", changed)
	}
	if before.Digest() == after.Digest() {
		t.Error("ruleset digest unchanged")
	}
}

func TestWatch(t *testing.T) {
	requireKernel(t)
	defer goleak.VerifyNone(t, goleak.IgnoreCurrent())
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
	mustNS(t, ns, "nft", "add table inet fl_watch")
	mustNS(t, ns, "nft", "add chain inet fl_watch c")
	want, err := r.Generation()
	if err != nil {
		t.Fatal(err)
	}
	mustNS(t, ns, "nft", "add rule inet fl_watch c accept")
	want++
	deadline := time.After(time.Second)
	for {
		select {
		case n := <-notes:
			if n.Overrun {
				t.Fatalf("overrun: %v", n.Err)
			}
			if n.Gen < want {
				continue // the table and chain commits
			}
			if n.Gen != want || n.Comm != "nft" || n.PID == 0 {
				t.Fatalf("notification %+v, want generation %d by nft", n, want)
			}
			cancel()
			for range notes { // the channel closes when ctx ends
			}
			return
		case <-deadline:
			t.Fatal("no notification within a second")
		}
	}
}

// TestWatchOverrun loads a big ruleset while a watch with a tiny buffer listens: the
// kernel overruns it, Watch reports that and keeps reporting after resubscribing.
func TestWatchOverrun(t *testing.T) {
	requireKernel(t)
	dir := requireCorpus(t)
	defer goleak.VerifyNone(t, goleak.IgnoreCurrent())
	ns := newNS(t)
	r, err := Open(ns)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	// The watch reads nothing until the load is done, so the kernel cannot but overrun
	// its socket (a watch that keeps up with a load on another core would not overrun).
	hold := make(chan struct{})
	r.watchHold = hold
	notes, err := r.watch(ctx, 4096)
	if err != nil {
		t.Fatal(err)
	}
	mustNS(t, ns, "nft", "-f", filepath.Join(dir, "BIG-gen-flat-3000-mixed.nft"))
	close(hold)
	overrun := false
	deadline := time.After(5 * time.Second)
	for !overrun {
		select {
		case n := <-notes:
			overrun = n.Overrun
		case <-deadline:
			t.Fatal("no overrun reported")
		}
	}
	// Commits after the overrun are reported again, once Watch has subscribed anew.
	deadline = time.After(3 * time.Second)
	for i := 0; ; i++ {
		mustNS(t, ns, "nft", fmt.Sprintf("add table ip fl_after%d", i))
		want, err := r.Generation()
		if err != nil {
			t.Fatal(err)
		}
		wait := time.After(200 * time.Millisecond)
	drain:
		for {
			select {
			case n := <-notes:
				if n.Gen == want && !n.Overrun {
					return
				}
			case <-wait:
				break drain
			case <-deadline:
				t.Fatal("no notifications after the overrun")
			}
		}
	}
}

// TestWatchSurvivesClose: a watch keeps its namespace even after the reader is closed.
func TestWatchSurvivesClose(t *testing.T) {
	requireKernel(t)
	ns := newNS(t)
	r, err := Open(ns)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	notes, err := r.Watch(ctx)
	if err != nil {
		t.Fatal(err)
	}
	r.Close()
	mustNS(t, ns, "nft", "add table ip fl_closed")
	select {
	case n := <-notes:
		if n.Overrun || n.Comm != "nft" {
			t.Fatalf("notification %+v", n)
		}
	case <-time.After(time.Second):
		t.Fatal("no notification after Close")
	}
	if _, err := r.Watch(ctx); !errors.Is(err, ErrClosed) {
		t.Fatalf("Watch after Close: %v", err)
	}
}

// BenchmarkSnapshot reads, canonicalizes and hashes the 3000-rule chain and the 11k-rule
// kube-proxy ruleset of the corpus (scripts/bench/nft-read.sh measures 100k rules
// against nft itself).
func BenchmarkSnapshot(b *testing.B) {
	requireKernel(b)
	dir := requireCorpus(b)
	for _, c := range []struct {
		file  string
		rules int
	}{{"BIG-gen-flat-3000-mixed.nft", 3000}, {"BIG-gen-kube-proxy-1500svc.nft", 11685}} {
		b.Run(c.file, func(b *testing.B) {
			ns := loadFile(b, filepath.Join(dir, c.file), nil)
			r, err := Open(ns)
			if err != nil {
				b.Fatal(err)
			}
			defer r.Close()
			b.ReportAllocs()
			for b.Loop() {
				rs, _, err := r.Snapshot()
				if err != nil {
					b.Fatal(err)
				}
				if rs.Digest().IsZero() || rs.RuleCount() != c.rules {
					b.Fatalf("%d rules, want %d", rs.RuleCount(), c.rules)
				}
			}
		})
	}
}

// ruleDiff lists the rules of two rulesets that differ, for failure messages.
func ruleDiff(a, b *ruleset.Ruleset) string {
	var sb strings.Builder
	for _, ch := range ruleset.Diff(a, b) {
		fmt.Fprintf(&sb, "%s %s %s %s %s %s%s -> %s\n", ch.Kind, ch.Family, ch.Table,
			ch.Chain+ch.Set+ch.Object, ch.Rule, ch.Element, ch.Before, ch.After)
	}
	return sb.String()
}

// TestSnapshotConsistent snapshots while another process commits one rule at a time:
// every snapshot must hold exactly as many rules as commits its generation counts.
func TestSnapshotConsistent(t *testing.T) {
	requireKernel(t)
	ns := newNS(t)
	mustNS(t, ns, "nft", "add table ip fl_busy; add chain ip fl_busy c")
	r, err := Open(ns)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	g0, err := r.Generation()
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() {
		_, err := inNS(ns, "sh", "-c",
			"for i in $(seq 60); do nft add rule ip fl_busy c tcp dport $i accept; done")
		done <- err
	}()
	snaps := 0
	for finished := false; !finished; {
		select {
		case err := <-done:
			if err != nil {
				t.Fatal(err)
			}
			finished = true
		default:
		}
		rs, gen, err := r.Snapshot()
		if errors.Is(err, ErrUnstable) {
			continue
		}
		if err != nil {
			t.Fatal(err)
		}
		snaps++
		if got, want := rs.RuleCount(), int(gen-g0); got != want {
			t.Fatalf("generation %d: %d rules, want %d", gen, got, want)
		}
	}
	if snaps == 0 {
		t.Fatal("no snapshot succeeded")
	}
}
