package agent

import (
	"context"
	"os/exec"
	"strings"
	"testing"
	"time"
)

// volatileRules counts and fills sets from the packet path: counters, a dynamic set with
// timeouts (`update @set`), a meter, named counter and quota objects, an inline quota, and
// a static set whose element counts down to its expiry.
const volatileRules = `table inet fw {
	counter pings {
	}

	quota budget {
		over 100 mbytes
	}

	set seen {
		type ipv4_addr
		size 65535
		flags dynamic,timeout
		timeout 1m
	}

	set allowed {
		type ipv4_addr
		flags timeout
		elements = { 198.18.0.2 timeout 10m }
	}

	chain input {
		type filter hook input priority filter; policy accept;
		ip saddr @allowed counter
		update @seen { ip saddr } counter
		icmp type echo-request counter name "pings"
		tcp dport 7777 quota name "budget"
		tcp dport 7777 quota over 1 mbytes
		tcp dport 7777 meter talkers size 1024 { ip saddr limit rate 100/second } counter accept
		counter
	}
}
`

// TestVolatileStateIsNoChange sends real traffic (ping and TCP over a veth pair into a
// second namespace, 198.18.0.0/15 addresses) through a ruleset that counts it and fills
// sets with it, while the backstop re-reads every second: no event, and the digest a full
// read gives is still the baseline's.
func TestVolatileStateIsNoChange(t *testing.T) {
	requireKernel(t)
	fw := newNS(t, "vol-fw")
	peer := newNS(t, "vol-peer")
	inNS(t, fw, "ip", "link", "add", "v0", "type", "veth", "peer", "name", "v1", "netns", peer)
	inNS(t, fw, "ip", "addr", "add", "198.18.0.1/24", "dev", "v0")
	inNS(t, fw, "ip", "link", "set", "v0", "up")
	inNS(t, fw, "ip", "link", "set", "lo", "up")
	inNS(t, peer, "ip", "addr", "add", "198.18.0.2/24", "dev", "v1")
	inNS(t, peer, "ip", "link", "set", "v1", "up")
	loadRuleset(t, fw, volatileRules)

	o := startObserverWith(t, fw, nil, func(c *Config) { c.Nftables.BackstopInterval = time.Second })
	base := o.waitEvents(t, 1, 5*time.Second)[0]
	before := listing(t, fw)

	inNS(t, peer, "ping", "-c", "5", "-i", "0.2", "-W", "2", "198.18.0.1")
	tcpExchange(t, fw, peer, "198.18.0.1", "7777")

	after := listing(t, fw)
	t.Logf("after traffic:\n%s", after)
	if after == before {
		t.Fatal("traffic changed nothing nft lists: the test did not exercise volatile state")
	}
	for _, want := range []string{"198.18.0.2", `counter pings {`, "packets 5", "quota over 1 mbytes used",
		"expires"} {
		if !strings.Contains(after, want) {
			t.Fatalf("listing after traffic lacks %q:\n%s", want, after)
		}
	}
	if !strings.Contains(after[strings.Index(after, "set seen"):], "198.18.0.2") {
		t.Fatalf("dynamic set not filled:\n%s", after)
	}
	rs, _, err := o.reader.Snapshot()
	if err != nil {
		t.Fatal(err)
	}
	if got := rs.Digest().String(); got != base.After {
		t.Fatalf("digest after traffic %s, baseline %s", got, base.After)
	}
	if evs := o.untilSentinel(t, fw); len(evs) != 0 {
		t.Fatalf("traffic produced events:\n%s", describe(evs))
	}
}

// tcpExchange makes one TCP connection from peer to addr:port in fw, with nc on both
// ends, and waits for both to finish.
func tcpExchange(t *testing.T, fw, peer, addr, port string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	srv := exec.CommandContext(ctx, "ip", "netns", "exec", fw, "nc", "-l", addr, port)
	if err := srv.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() {
		if err := srv.Wait(); err != nil && ctx.Err() == nil {
			t.Errorf("nc -l: %v", err)
		}
	}()
	deadline := time.Now().Add(5 * time.Second)
	for {
		cl := exec.CommandContext(ctx, "ip", "netns", "exec", peer, "nc", "-N", "-w", "2", addr, port)
		cl.Stdin = strings.NewReader("hello from the peer\n")
		if out, err := cl.CombinedOutput(); err == nil {
			return
		} else if time.Now().After(deadline) {
			t.Fatalf("nc to %s:%s: %v: %s", addr, port, err, out)
		}
		time.Sleep(20 * time.Millisecond) // the listener is not up yet
	}
}

// listing is nft's own listing of the namespace, counters included.
func listing(t *testing.T, ns string) string {
	t.Helper()
	return inNS(t, ns, "nft", "list", "ruleset")
}

// TestReloadIsNoChange: loading the same ruleset again in one transaction, after a
// flush or after deleting its table (as firewalld rebuilds), and with anonymous set
// elements written in another order, is no change event.
func TestReloadIsNoChange(t *testing.T) {
	requireKernel(t)
	ns := newNS(t, "obs-reload")
	const rules = `table inet fw {
	set nets {
		type ipv4_addr
		flags interval
		elements = { 10.0.0.1, 127.0.0.1, 192.168.0.0/24 }
	}

	chain input {
		type filter hook input priority filter; policy drop;
		tcp dport { 22, 80 } accept
		tcp flags { syn, syn | ack } counter
		ip saddr @nets accept
		ct state { established, related } accept
	}
}
`
	loadRuleset(t, ns, rules)
	o := startObserver(t, ns, nil)
	o.waitEvents(t, 1, 5*time.Second)
	loadRuleset(t, ns, "flush ruleset\n"+rules)
	loadRuleset(t, ns, "delete table inet fw\n"+rules)
	reordered := strings.NewReplacer("{ 22, 80 }", "{ 80, 22 }",
		"{ syn, syn | ack }", "{ syn | ack, syn }",
		"{ 10.0.0.1, 127.0.0.1, 192.168.0.0/24 }", "{ 192.168.0.0/24, 127.0.0.1, 10.0.0.1 }",
		"{ established, related }", "{ related, established }").Replace(rules)
	loadRuleset(t, ns, "flush ruleset\n"+reordered)
	if evs := o.untilSentinel(t, ns); len(evs) != 0 {
		t.Fatalf("reloads produced events:\n%s", describe(evs))
	}
}
