package agent

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/fenceline/fenceline/agent/nft"
	"github.com/fenceline/fenceline/shared/event"
	"github.com/fenceline/fenceline/shared/ruleset"
)

// lossySource is the real reader with notifications lost on purpose: drop decides, for
// each notification the kernel sent, whether the agent never sees it. Reads go to the
// kernel unchanged.
type lossySource struct {
	*nft.Reader
	drop func(n nft.Notification) bool
}

func (s *lossySource) Watch(ctx context.Context) (<-chan nft.Notification, error) {
	in, err := s.Reader.Watch(ctx)
	if err != nil {
		return nil, err
	}
	out := make(chan nft.Notification)
	go func() { // ends when the reader's channel closes, which ctx ending does
		defer close(out)
		for n := range in {
			if s.drop(n) {
				continue
			}
			select {
			case out <- n:
			case <-ctx.Done():
				return
			}
		}
	}()
	return out, nil
}

// TestObserveGenerationJump: the notification of one generation never arrives (no
// ENOBUFS says so); the next one names a generation two ahead of the tracked state. The
// agent reads in full and reports one reconcile event that lists the generations it
// could not observe one by one, then goes on with one change event per generation.
func TestObserveGenerationJump(t *testing.T) {
	requireKernel(t)
	ns := newNS(t, "obs-jump")
	loadRuleset(t, ns, filterRules)
	r, err := nft.Open(ns)
	if err != nil {
		t.Fatal(err)
	}
	var dropped atomic.Int32
	src := &lossySource{Reader: r, drop: func(nft.Notification) bool {
		return dropped.CompareAndSwap(0, 1) // the first commit after the baseline
	}}
	o := startObserverSource(t, r, src, nil)
	base := o.waitEvents(t, 1, 5*time.Second)[0]

	inNS(t, ns, "nft", "add rule inet fw input tcp dport 80 accept")  // notification lost
	inNS(t, ns, "nft", "add rule inet fw input tcp dport 443 accept") // seen, one ahead
	e := o.waitEvents(t, 1, 5*time.Second)[0]
	want := []string{fmt.Sprintf("%d-%d", base.Generation+1, base.Generation+2)}
	if e.Kind != event.Reconcile || !slices.Equal(e.MissedGenerations, want) ||
		e.Generation != base.Generation+2 || len(e.Changes) != 2 || e.Before != base.After {
		t.Fatalf("want a reconcile of generations %v with both rules:\n%s", want,
			describe([]*event.Event{e}))
	}
	if got := chainRules(e.Ruleset, "inet", "fw", "input"); len(got) != 5 ||
		got[3] != "tcp dport 80 accept" || got[4] != "tcp dport 443 accept" {
		t.Fatalf("reconciled chain input: %q", got)
	}
	inNS(t, ns, "nft", "add rule inet fw input tcp dport 8443 accept")
	next := o.waitEvents(t, 1, 5*time.Second)[0]
	if next.Kind != event.Change || next.Generation != base.Generation+3 ||
		len(next.Changes) != 1 || next.Changes[0].Rule != "tcp dport 8443 accept" ||
		next.Committer == nil || next.Committer.Comm != "nft" {
		t.Fatalf("after the jump:\n%s", describe([]*event.Event{next}))
	}
}

// TestObserveBackstop: with every notification lost, the slow backstop re-read still
// finds the change and reports it as a reconcile event naming the missed generation.
func TestObserveBackstop(t *testing.T) {
	requireKernel(t)
	ns := newNS(t, "obs-backstop")
	loadRuleset(t, ns, filterRules)
	r, err := nft.Open(ns)
	if err != nil {
		t.Fatal(err)
	}
	src := &lossySource{Reader: r, drop: func(nft.Notification) bool { return true }}
	o := startObserverSource(t, r, src, func(c *Config) {
		c.Nftables.BackstopInterval = 200 * time.Millisecond
	})
	base := o.waitEvents(t, 1, 5*time.Second)[0]
	// Several backstops with nothing changed: no event.
	time.Sleep(700 * time.Millisecond)
	if evs := o.events(t); len(evs) != 1 {
		t.Fatalf("events without a change:\n%s", describe(evs))
	}
	inNS(t, ns, "nft", "add rule inet fw input tcp dport 25 drop")
	e := o.waitEvents(t, 1, 5*time.Second)[0]
	want := []string{fmt.Sprintf("%d-%d", base.Generation+1, base.Generation+1)}
	if e.Kind != event.Reconcile || !strings.Contains(e.Note, "backstop") ||
		!slices.Equal(e.MissedGenerations, want) || len(e.Changes) != 1 ||
		e.Changes[0].Kind != ruleset.RuleAdded || e.Changes[0].Rule != "tcp dport 25 drop" {
		t.Fatalf("want a backstop reconcile of generation %v:\n%s", want,
			describe([]*event.Event{e}))
	}
}

// TestObserveCommitterPID: a rule added by `nft add rule` is a change event naming the
// process `nft` with the pid of exactly that run (`ip netns exec` execs nft in place).
func TestObserveCommitterPID(t *testing.T) {
	requireKernel(t)
	ns := newNS(t, "obs-pid")
	loadRuleset(t, ns, filterRules)
	o := startObserver(t, ns, nil)
	o.waitEvents(t, 1, 5*time.Second)
	for _, port := range []string{"8080", "8081", "8082"} {
		pid := runNft(t, ns, "add rule inet fw input tcp dport "+port+" accept")
		e := o.waitEvents(t, 1, 5*time.Second)[0]
		if e.Kind != event.Change || len(e.Changes) != 1 ||
			e.Changes[0].Rule != "tcp dport "+port+" accept" {
			t.Fatalf("event:\n%s", describe([]*event.Event{e}))
		}
		if c := e.Committer; c == nil || c.Comm != "nft" || c.PID != uint32(pid) {
			t.Fatalf("committer %+v, want nft with pid %d", c, pid)
		}
	}
}

// runNft runs nft with args in the namespace and returns the pid it ran as.
func runNft(t testing.TB, ns string, args ...string) int {
	t.Helper()
	cmd := exec.Command("ip", append([]string{"netns", "exec", ns, "nft"}, args...)...)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("nft %s: %v: %s", strings.Join(args, " "), err, out)
	}
	return cmd.Process.Pid
}

// TestObserveChangeKinds: each kind of edit an operator makes with nft is one change event
// with the change named as such: a rule moved (deleted and inserted elsewhere in one
// transaction), a base chain's policy, set elements, a set, an object, a chain and a
// table added or removed.
func TestObserveChangeKinds(t *testing.T) {
	requireKernel(t)
	ns := newNS(t, "obs-kinds")
	loadRuleset(t, ns, filterRules+`add set inet fw blocked { type ipv4_addr; }
add rule inet fw input ip saddr @blocked drop
`)
	o := startObserver(t, ns, nil)
	base := o.waitEvents(t, 1, 5*time.Second)[0]
	handle := func(rule string) string {
		t.Helper()
		for _, r := range base.Ruleset.Table("inet", "fw").Chain("input").Rules {
			if r.Text == rule {
				return fmt.Sprint(r.Handle)
			}
		}
		t.Fatalf("no rule %q in the baseline", rule)
		return ""
	}
	type want struct {
		kind ruleset.ChangeKind
		what string // Rule, Element, Set, Object, Chain or Table, whichever the kind names
	}
	for _, step := range []struct {
		cmd  string
		want []want
	}{
		{"delete rule inet fw input handle " + handle("tcp dport 22 accept") + "\n" +
			"insert rule inet fw input position " + handle("ct state established,related accept") +
			" tcp dport 22 accept",
			[]want{{ruleset.RuleMoved, "tcp dport 22 accept"}}},
		{"add chain inet fw input { policy drop; }", []want{{ruleset.ChainPolicy, "input"}}},
		{"add element inet fw blocked { 198.18.0.9, 198.18.0.10 }",
			[]want{{ruleset.ElementAdded, "198.18.0.10"}, {ruleset.ElementAdded, "198.18.0.9"}}},
		{"delete element inet fw blocked { 198.18.0.9 }",
			[]want{{ruleset.ElementRemoved, "198.18.0.9"}}},
		{"add set inet fw ports { type inet_service; }", []want{{ruleset.SetAdded, "ports"}}},
		{"add counter inet fw hits", []want{{ruleset.ObjectAdded, "counter hits"}}},
		{"add chain inet fw extra", []want{{ruleset.ChainAdded, "extra"}}},
		{"delete chain inet fw extra", []want{{ruleset.ChainRemoved, "extra"}}},
		{"add table ip other", []want{{ruleset.TableAdded, "other"}}},
		{"delete table ip other", []want{{ruleset.TableRemoved, "other"}}},
	} {
		runNft(t, ns, "-f", writeTemp(t, step.cmd))
		e := o.waitEvents(t, 1, 5*time.Second)[0]
		var got []want
		for _, c := range e.Changes {
			what := c.Rule + c.Element
			switch c.Kind {
			case ruleset.ChainPolicy, ruleset.ChainAdded, ruleset.ChainRemoved:
				what = c.Chain
			case ruleset.SetAdded:
				what = c.Set
			case ruleset.ObjectAdded:
				what = c.Object
			case ruleset.TableAdded, ruleset.TableRemoved:
				what = c.Table
			}
			got = append(got, want{c.Kind, what})
		}
		if e.Kind != event.Change || !slices.Equal(got, step.want) {
			t.Fatalf("%s: changes %v, want %v:\n%s", step.cmd, got, step.want,
				describe([]*event.Event{e}))
		}
	}
}

// writeTemp writes text to a file of the test's own and returns its path.
func writeTemp(t *testing.T, text string) string {
	t.Helper()
	f := filepath.Join(t.TempDir(), "cmds.nft")
	if err := os.WriteFile(f, []byte(text+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	return f
}
