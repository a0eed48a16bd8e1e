package agent

import (
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/fenceline/fenceline/agent/nft"
	"github.com/fenceline/fenceline/shared/event"
	"github.com/fenceline/fenceline/shared/ruleset"
)

const filterRules = `table inet fw {
	chain input {
		type filter hook input priority filter; policy accept;
		ct state established,related accept
		iifname "lo" accept
		tcp dport 22 accept
	}
}
`

// TestObserveCtOriginalInChain: a chain holding a `ct original` rule among others is
// read whole (google/nftables v0.3.0 cannot read such a chain at all), and adding the
// rule is one change event naming it, its position and its committer.
func TestObserveCtOriginalInChain(t *testing.T) {
	requireKernel(t)
	ns := newNS(t, "obs-ct")
	loadRuleset(t, ns, filterRules+`add rule inet fw input ct original ip daddr 192.0.2.1 drop
`)
	o := startObserver(t, ns, nil)
	base := o.waitEvents(t, 1, 5*time.Second)[0]
	if base.Kind != event.Baseline {
		t.Fatalf("first event %s, want baseline", base.Kind)
	}
	if got := chainRules(base.Ruleset, "inet", "fw", "input"); len(got) != 4 ||
		got[3] != "ct original ip daddr 192.0.2.1 drop" {
		t.Fatalf("baseline chain input: %q", got)
	}
	inNS(t, ns, "nft", "add rule inet fw input ct original ip saddr 10.0.0.1 accept")
	e := o.waitEvents(t, 1, 5*time.Second)[0]
	want := ruleset.Change{Kind: ruleset.RuleAdded, Family: "inet", Table: "fw", Chain: "input",
		Position: 5, Rule: "ct original ip saddr 10.0.0.1 accept"}
	if e.Kind != event.Change || len(e.Changes) != 1 || e.Changes[0] != want {
		t.Fatalf("event:\n%s", describe([]*event.Event{e}))
	}
	if e.Committer == nil || e.Committer.Comm != "nft" || e.Committer.PID == 0 {
		t.Fatalf("committer %+v, want nft with its pid", e.Committer)
	}
	if e.Before != base.After {
		t.Fatalf("change event before %s, baseline after %s", e.Before, base.After)
	}
}

// TestObserveBurst: 200 `nft add rule` commands in a row are 200 change events, one per
// generation, each naming its own rule and its own nft process.
func TestObserveBurst(t *testing.T) {
	requireKernel(t)
	ns := newNS(t, "obs-burst")
	loadRuleset(t, ns, filterRules)
	o := startObserver(t, ns, nil)
	o.waitEvents(t, 1, 5*time.Second)
	const n = 200
	inNS(t, ns, "sh", "-c", fmt.Sprintf(
		"for i in $(seq %d); do nft add rule inet fw input tcp dport $((1000+i)) accept; done", n))
	evs := o.untilSentinel(t, ns)
	if len(evs) != n {
		t.Fatalf("%d events for %d commits:\n%s", len(evs), n, describe(evs))
	}
	pids := map[uint32]bool{}
	for i, e := range evs {
		rule := fmt.Sprintf("tcp dport %d accept", 1001+i)
		if e.Kind != event.Change || len(e.Changes) != 1 || e.Changes[0].Rule != rule ||
			e.Changes[0].Kind != ruleset.RuleAdded || e.Changes[0].Position != 4+i {
			t.Fatalf("event %d:\n%s", i, describe([]*event.Event{e}))
		}
		if e.Committer == nil || e.Committer.Comm != "nft" || e.Committer.PID == 0 {
			t.Fatalf("event %d committer %+v", i, e.Committer)
		}
		if i > 0 && e.Generation != evs[i-1].Generation+1 {
			t.Fatalf("event %d generation %d after %d", i, e.Generation, evs[i-1].Generation)
		}
		pids[e.Committer.PID] = true
	}
	if len(pids) < n/2 {
		t.Errorf("only %d distinct committer pids over %d nft runs", len(pids), n)
	}
}

// TestObserveOverrun: a commit too big for the notification socket's buffer makes the
// kernel drop notifications (ENOBUFS); the agent reads the ruleset in full and reports
// one reconcile event that lists the generation it could not observe, then goes on with
// one event per generation.
func TestObserveOverrun(t *testing.T) {
	requireKernel(t)
	ns := newNS(t, "obs-overrun")
	loadRuleset(t, ns, filterRules)
	// The agent's watch reads nothing until the load is done: the kernel must overrun it
	// (one that keeps up with the load from another core would not overrun).
	hold := make(chan struct{})
	o := startObserver(t, ns, func(r *nft.Reader) { r.SetWatchBuffer(4096); r.SetWatchHold(hold) })
	base := o.waitEvents(t, 1, 5*time.Second)[0]
	var big strings.Builder
	big.WriteString("table ip bulk {\n\tchain c {\n")
	for i := range 3000 {
		fmt.Fprintf(&big, "\t\tip saddr 10.%d.%d.1 tcp dport %d counter drop\n", i/256, i%256, i)
	}
	big.WriteString("\t}\n}\n")
	loadRuleset(t, ns, big.String())
	close(hold)
	e := o.waitEvents(t, 1, 10*time.Second)[0]
	if e.Kind != event.Reconcile {
		t.Fatalf("want a reconcile event, got:\n%s", describe([]*event.Event{e}))
	}
	want := []string{fmt.Sprintf("%d-%d", base.Generation+1, e.Generation)}
	if !slices.Equal(e.MissedGenerations, want) {
		t.Fatalf("missed generations %v, want %v", e.MissedGenerations, want)
	}
	if e.Ruleset == nil || e.Ruleset.RuleCount() != 3003 || e.Committer != nil {
		t.Fatalf("reconcile event: %d rules, committer %+v", e.Ruleset.RuleCount(), e.Committer)
	}
	if evs := o.untilSentinel(t, ns); len(evs) != 0 {
		t.Fatalf("more events after the reconcile:\n%s", describe(evs))
	}
	// Small commits fit the buffer and are events of their own again.
	inNS(t, ns, "nft", "add rule ip bulk c udp dport 53 accept")
	next := o.waitEvents(t, 1, 5*time.Second)[0]
	if next.Kind != event.Change || len(next.Changes) != 1 ||
		next.Changes[0].Rule != "udp dport 53 accept" {
		t.Fatalf("after the overrun:\n%s", describe([]*event.Event{next}))
	}
}

// TestObserveWhileDown: changes made while the agent was down are one reconcile event
// on restart that lists the generations it did not observe.
func TestObserveWhileDown(t *testing.T) {
	requireKernel(t)
	ns := newNS(t, "obs-down")
	loadRuleset(t, ns, filterRules)
	o := startObserver(t, ns, nil)
	base := o.waitEvents(t, 1, 5*time.Second)[0]
	o.stop()
	for _, port := range []string{"80", "443", "8080"} {
		inNS(t, ns, "nft", "add rule inet fw input tcp dport "+port+" accept")
	}
	o = o.restart(t, ns)
	e := o.waitEvents(t, 1, 5*time.Second)[0]
	want := []string{fmt.Sprintf("%d-%d", base.Generation+1, base.Generation+3)}
	if e.Kind != event.Reconcile || !slices.Equal(e.MissedGenerations, want) ||
		len(e.Changes) != 3 || e.Before != base.After {
		t.Fatalf("after restart, want a reconcile of generations %v with 3 changes:\n%s", want,
			describe([]*event.Event{e}))
	}
	if evs := o.untilSentinel(t, ns); len(evs) != 0 {
		t.Fatalf("more events:\n%s", describe(evs))
	}
}

// TestObserveAttribution: the committer's audit login uid and session travel with the
// event when the kernel has them for the process. Here no process descends from a login
// session (loginuid unset), so a plain nft run leaves them empty; a committer whose
// loginuid was set (as pam_loginuid does at login) and that is still alive when the
// generation message arrives (an interactive nft) carries both.
func TestObserveAttribution(t *testing.T) {
	requireKernel(t)
	ns := newNS(t, "obs-attr")
	loadRuleset(t, ns, filterRules)
	o := startObserver(t, ns, nil)
	o.waitEvents(t, 1, 5*time.Second)

	t.Run("unset", func(t *testing.T) {
		if b, _ := os.ReadFile("/proc/self/loginuid"); strings.TrimSpace(string(b)) != unsetLoginUID {
			t.Skip("this test process has a login uid; nft inherits it")
		}
		inNS(t, ns, "nft", "add rule inet fw input tcp dport 80 accept")
		e := o.waitEvents(t, 1, 5*time.Second)[0]
		if c := e.Committer; c == nil || c.Comm != "nft" || c.LoginUID != "" || c.Session != "" {
			t.Fatalf("committer %+v, want nft without login uid", e.Committer)
		}
	})

	t.Run("login session", func(t *testing.T) {
		cmd := exec.Command("ip", "netns", "exec", ns, "sh", "-c",
			"echo 4242 > /proc/self/loginuid && exec nft -i")
		stdin, err := cmd.StdinPipe()
		if err != nil {
			t.Fatal(err)
		}
		cmd.Stdout, cmd.Stderr = io.Discard, io.Discard
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		defer func() {
			stdin.Close()
			if err := cmd.Wait(); err != nil {
				t.Errorf("nft -i: %v", err)
			}
		}()
		if _, err := io.WriteString(stdin, "add rule inet fw input tcp dport 443 accept\n"); err != nil {
			t.Fatal(err)
		}
		e := o.waitEvents(t, 1, 5*time.Second)[0]
		c := e.Committer
		if c == nil || c.Comm != "nft" || c.PID != uint32(cmd.Process.Pid) || c.LoginUID != "4242" ||
			c.Session == "" {
			t.Fatalf("committer %+v, want nft pid %d, login uid 4242 and a session", c,
				cmd.Process.Pid)
		}
	})
}

const unsetLoginUID = "4294967295"

// loadRuleset loads ruleset text into the namespace in one transaction.
func loadRuleset(t testing.TB, ns, text string) {
	t.Helper()
	f := filepath.Join(t.TempDir(), "ruleset.nft")
	if err := os.WriteFile(f, []byte(text), 0o644); err != nil {
		t.Fatal(err)
	}
	inNS(t, ns, "nft", "-f", f)
}

func chainRules(rs *ruleset.Ruleset, family, table, chain string) []string {
	if rs == nil {
		return nil
	}
	tb := rs.Table(family, table)
	if tb == nil {
		return nil
	}
	c := tb.Chain(chain)
	if c == nil {
		return nil
	}
	var out []string
	for _, r := range c.Rules {
		out = append(out, r.Text)
	}
	return out
}

// TestObserveNewInterface: an interface created after the agent read the ruleset is
// printed by name in a rule added later (nft prints `iif "fl-v0"`, not its index), and a
// rename shows in the rules that match it at the next generation.
func TestObserveNewInterface(t *testing.T) {
	requireKernel(t)
	ns := newNS(t, "obs-if")
	loadRuleset(t, ns, filterRules)
	o := startObserver(t, ns, nil)
	o.waitEvents(t, 1, 5*time.Second)
	inNS(t, ns, "ip", "link", "add", "fl-v0", "type", "veth", "peer", "name", "fl-p0")
	inNS(t, ns, "nft", "add rule inet fw input iif fl-v0 accept")
	e := o.waitEvents(t, 1, 5*time.Second)[0]
	if len(e.Changes) != 1 || e.Changes[0].Rule != `iif "fl-v0" accept` {
		t.Fatalf("event:\n%s%+v", describe([]*event.Event{e}), e.Changes)
	}
	inNS(t, ns, "ip", "link", "set", "fl-v0", "name", "fl-v1")
	inNS(t, ns, "nft", "add rule inet fw input iif fl-v1 drop")
	evs := o.untilSentinel(t, ns)
	var got []string
	for _, e := range evs {
		for _, c := range e.Changes {
			got = append(got, string(c.Kind)+" "+c.Rule)
		}
	}
	want := []string{`rule_removed iif "fl-v0" accept`, `rule_added iif "fl-v1" accept`,
		`rule_added iif "fl-v1" drop`}
	if !slices.Equal(got, want) {
		t.Fatalf("after the rename: %q, want %q\n%s", got, want, describe(evs))
	}
}

// TestObserveElementTimeout: the kernel announces no element that times out. The agent
// reads when the first element of a configuration set is due and reports its removal on
// its own, as a reconcile without a committer; a commit after it is its own change.
func TestObserveElementTimeout(t *testing.T) {
	requireKernel(t)
	ns := newNS(t, "obs-expire")
	loadRuleset(t, ns, filterRules+`add set inet fw tmp { type ipv4_addr; flags timeout; }
`)
	o := startObserver(t, ns, nil)
	o.waitEvents(t, 1, 5*time.Second)
	inNS(t, ns, "nft", "add element inet fw tmp { 198.18.0.9 timeout 2s, 198.18.0.10 }")
	added := o.waitEvents(t, 1, 5*time.Second)[0]
	if added.Kind != event.Change || len(added.Changes) != 2 {
		t.Fatalf("elements added:\n%s", describe([]*event.Event{added}))
	}
	e := o.waitEvents(t, 1, 6*time.Second)[0]
	if e.Kind != event.Reconcile || e.Committer != nil || len(e.Changes) != 1 ||
		e.Changes[0].Kind != ruleset.ElementRemoved || !strings.HasPrefix(e.Changes[0].Element, "198.18.0.9") ||
		!strings.Contains(e.Note, "timed out") {
		t.Fatalf("expiry:\n%s%+v", describe([]*event.Event{e}), e.Changes)
	}
	inNS(t, ns, "nft", "add rule inet fw input tcp dport 9 drop")
	c := o.waitEvents(t, 1, 5*time.Second)[0]
	if len(c.Changes) != 1 || c.Changes[0].Kind != ruleset.RuleAdded || c.Committer == nil {
		t.Fatalf("the next commit:\n%s%+v", describe([]*event.Event{c}), c.Changes)
	}
}
