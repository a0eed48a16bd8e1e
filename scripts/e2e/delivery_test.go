package e2e

// Fault tests for the delivery guarantees, with real processes: agent, Mosquitto and
// aggregator, and real nft changes in a namespace. Each ends with "every change observed
// exactly once, in order, at the aggregator".

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/fenceline/fenceline/scripts/lab"
)

const burstTenant, burstDevice = "acme", "fw-burst"

// rig is one device watched by an agent, reporting to an aggregator through Mosquitto.
type rig struct {
	l        *lab.Lab
	ns       string
	brokerP  *lab.Proc
	broker   string
	agg      *lab.Aggregator
	agent    *lab.Proc
	stateDir string
}

func newRig(t *testing.T, agentEnv ...string) *rig {
	t.Helper()
	return newRigWith(t, func(l *lab.Lab) (string, *lab.Proc, error) { return l.Mosquitto() },
		agentEnv...)
}

// newRigWith builds a rig whose broker the given function starts.
func newRigWith(t *testing.T, broker func(*lab.Lab) (string, *lab.Proc, error),
	agentEnv ...string) *rig {
	t.Helper()
	r := &rig{l: newLab(t, "mosquitto")}
	var err error
	r.ns, err = r.l.Netns("fl-e2e")
	check(t, err)
	nft(t, r.ns, "add", "table", "ip", "bench")
	nft(t, r.ns, "add", "chain", "ip", "bench", "c")
	r.broker, r.brokerP, err = broker(r.l)
	check(t, err)
	r.agg, err = r.l.Aggregator("aggregator", r.broker)
	check(t, err)
	r.agent, err = r.l.AgentWithEnv(r.agg, burstTenant, burstDevice, r.ns, agentEnv,
		"--metrics", fmt.Sprintf("127.0.0.1:%d", freePort(t)))
	check(t, err)
	r.stateDir = filepath.Join(r.l.Dir, "agent-"+burstDevice)
	r.waitBaseline(t)
	return r
}

func freePort(t *testing.T) int {
	p, err := lab.FreePort()
	check(t, err)
	return p
}

func (r *rig) waitBaseline(t *testing.T) {
	t.Helper()
	waitFor(t, 30*time.Second, "baseline", func() (bool, string) {
		h, err := r.history()
		if err != nil {
			return false, err.Error()
		}
		return len(h) > 0, fmt.Sprintf("%d events", len(h))
	})
}

type storedEvent struct {
	Seq     string `json:"seq"`
	Kind    string `json:"kind"`
	Note    string `json:"note"`
	Changes []struct {
		Kind  string `json:"kind"`
		Chain string `json:"chain"`
		Rule  string `json:"rule"`
	} `json:"changes"`
}

func (r *rig) history() ([]storedEvent, error) {
	var h []storedEvent
	err := r.agg.Get("/v1/tenants/"+burstTenant+"/devices/"+burstDevice+"/events?limit=100000", &h)
	return h, err
}

// burst feeds `nft -i` in the namespace one command at a time: each line is a transaction
// of its own (its own generation), as an administrator's script would make them.
type burst struct {
	cmd   *exec.Cmd
	stdin io.WriteCloser
	n     int
}

func startBurst(t *testing.T, ns string) *burst {
	t.Helper()
	cmd := exec.Command("ip", "netns", "exec", ns, "nft", "-i")
	stdin, err := cmd.StdinPipe()
	check(t, err)
	cmd.Stdout, cmd.Stderr = io.Discard, os.Stderr
	check(t, cmd.Start())
	b := &burst{cmd: cmd, stdin: stdin}
	t.Cleanup(func() { b.close() })
	return b
}

// add adds rules up to port n, pacing them so that the burst lasts a while.
func (b *burst) addUpTo(t *testing.T, n int) {
	t.Helper()
	for b.n < n {
		b.n++
		if _, err := fmt.Fprintf(b.stdin, "add rule ip bench c tcp dport %d drop\n", b.n); err != nil {
			t.Fatal(err)
		}
		if b.n%10 == 0 {
			time.Sleep(2 * time.Millisecond) // pacing of the load, not a wait for a result
		}
	}
}

func (b *burst) close() {
	if b.stdin != nil {
		b.stdin.Close()
		b.cmd.Wait()
		b.stdin = nil
	}
}

var dportRE = regexp.MustCompile(`^tcp dport (\d+) drop$`)

// checkExactlyOnce waits until the aggregator holds the namespace's current ruleset, then
// checks that the device's events form one gapless chain and that their changes add the
// burst's rules 1…n exactly once each, in order, and remove none.
func (r *rig) checkExactlyOnce(t *testing.T, n int) []storedEvent {
	t.Helper()
	want := r.liveDigest(t)
	var h []storedEvent
	waitFor(t, 120*time.Second, "the aggregator to hold the live ruleset", func() (bool, string) {
		var d struct {
			Digest string `json:"digest"`
		}
		if err := r.agg.Get("/v1/tenants/"+burstTenant+"/devices/"+burstDevice, &d); err != nil {
			return false, err.Error()
		}
		return d.Digest == want, "aggregator digest " + d.Digest + ", live " + want
	})
	h, err := r.history()
	check(t, err)
	var ports []int
	for i, e := range h {
		if e.Seq != strconv.Itoa(i+1) {
			t.Fatalf("event %d has sequence %s: the chain has a gap or a duplicate", i+1, e.Seq)
		}
		for _, c := range e.Changes {
			m := dportRE.FindStringSubmatch(c.Rule)
			if c.Chain != "c" || m == nil {
				continue
			}
			if c.Kind != "rule_added" {
				t.Fatalf("event %s: unexpected %s %q", e.Seq, c.Kind, c.Rule)
			}
			p, _ := strconv.Atoi(m[1])
			ports = append(ports, p)
		}
	}
	if len(ports) != n {
		t.Fatalf("saw %d rule additions, want %d", len(ports), n)
	}
	for i, p := range ports {
		if p != i+1 {
			t.Fatalf("addition %d is port %d: changes out of order or repeated", i+1, p)
		}
	}
	return h
}

// liveDigest is the digest of the namespace's ruleset as the agent computes it.
func (r *rig) liveDigest(t *testing.T) string {
	t.Helper()
	out, err := exec.Command(filepath.Join(binDir, "fenceline-agent"), "dump", "--netns", r.ns,
		"-o", "json").Output()
	check(t, err)
	var d struct {
		Digest string `json:"digest"`
	}
	check(t, json.Unmarshal(out, &d))
	return d.Digest
}

// stat reads one counter from the aggregator's /v1/stats.
func (r *rig) ingestStat(t *testing.T, name string) float64 {
	t.Helper()
	var s struct {
		Ingest map[string]any `json:"ingest"`
	}
	check(t, r.agg.Get("/v1/stats", &s))
	if rej, ok := s.Ingest["rejected"].(map[string]any); ok {
		if v, ok := rej[name].(float64); ok {
			return v
		}
	}
	v, _ := s.Ingest[name].(float64)
	return v
}

func TestKillAgentMidBurst(t *testing.T) {
	r := newRig(t)
	b := startBurst(t, r.ns)
	b.addUpTo(t, 300)
	r.agent.Kill()
	b.addUpTo(t, 700) // changes made while the agent is down
	check(t, r.agent.Restart())
	b.addUpTo(t, 1000)
	b.close()
	h := r.checkExactlyOnce(t, 1000)
	if !hasKind(h, "reconcile") {
		t.Error("no reconcile event after the agent came back")
	}
}

func TestRestartMosquittoMidBurst(t *testing.T) {
	r := newRig(t)
	b := startBurst(t, r.ns)
	b.addUpTo(t, 300)
	r.brokerP.Stop() // no persistence: every session and retained message is gone
	b.addUpTo(t, 600)
	check(t, r.brokerP.Restart())
	check(t, lab.WaitListening(strings.TrimPrefix(r.broker, "tcp://"), 10*time.Second))
	b.addUpTo(t, 1000)
	b.close()
	r.checkExactlyOnce(t, 1000)
}

func TestKillAggregatorMidBurst(t *testing.T) {
	r := newRig(t)
	b := startBurst(t, r.ns)
	b.addUpTo(t, 300)
	r.agg.Kill()
	b.addUpTo(t, 600)
	check(t, r.agg.Restart())
	check(t, r.agg.WaitHealthy(30*time.Second))
	b.addUpTo(t, 1000)
	b.close()
	r.checkExactlyOnce(t, 1000)
}

// TestAgentRestartBeforeAck: the agent publishes while the aggregator is down, so no ack
// comes; restarted, it publishes everything again. The broker queues both copies for the
// aggregator's persistent session; the aggregator drops the duplicates.
func TestAgentRestartBeforeAck(t *testing.T) {
	r := newRig(t)
	r.agg.Stop()
	b := startBurst(t, r.ns)
	b.addUpTo(t, 100)
	b.close()
	published := func(min float64) func() (bool, string) {
		return func() (bool, string) {
			p := r.agentMetric(t, "fenceline_agent_events_published_total")
			seq := r.agentMetric(t, "fenceline_agent_sequence")
			return seq > 1 && p >= seq && p >= min, fmt.Sprintf("published %v of %v", p, seq)
		}
	}
	waitFor(t, 20*time.Second, "every event published", published(0))
	r.agent.Stop()
	check(t, r.agent.Restart())
	waitFor(t, 20*time.Second, "every event published again", published(0))
	check(t, r.agg.Restart())
	check(t, r.agg.WaitHealthy(30*time.Second))
	r.checkExactlyOnce(t, 100)
	if d := r.ingestStat(t, "duplicate"); d == 0 {
		t.Errorf("no duplicates counted: the second copies were not dropped as such")
	}
}

// TestOfflineBacklog: the broker is unreachable while 50,000 events accumulate (heartbeats
// every millisecond, and rule changes); then it returns and everything is delivered.
func TestOfflineBacklog(t *testing.T) {
	if testing.Short() {
		t.Skip("50,000 events: not in -short")
	}
	r := newRig(t, "FENCELINE_HEARTBEAT_INTERVAL=1ms", "FENCELINE_UPLINK_RATE=0")
	r.brokerP.Stop()
	b := startBurst(t, r.ns)
	const target = 50000
	b.addUpTo(t, 200)
	b.close()
	waitFor(t, 5*time.Minute, "50,000 events in the outbox", func() (bool, string) {
		d := r.agentMetric(t, "fenceline_agent_outbox_depth")
		return d >= target, fmt.Sprintf("outbox depth %v", d)
	})
	// Back to a normal heartbeat so the chain stops growing by a thousand events a second:
	// the same agent state, restarted with the example configuration's interval.
	r.agent.Stop()
	agent, err := r.l.Start("agent-normal", nil, filepath.Join(binDir, "fenceline-agent"),
		r.agent.Args()...)
	check(t, err)
	r.agent = agent
	check(t, r.brokerP.Restart())
	r.checkExactlyOnce(t, b.n)
}

func (r *rig) agentMetric(t *testing.T, name string) float64 {
	t.Helper()
	addr := ""
	for i, a := range r.agent.Args() {
		if a == "--metrics" {
			addr = r.agent.Args()[i+1]
		}
	}
	resp, err := httpGet("http://" + addr + "/metrics")
	if err != nil {
		return -1
	}
	sc := bufio.NewScanner(strings.NewReader(resp))
	for sc.Scan() {
		line := sc.Text()
		if strings.HasPrefix(line, name+"{") || strings.HasPrefix(line, name+" ") {
			f := strings.Fields(line)
			v, _ := strconv.ParseFloat(f[len(f)-1], 64)
			return v
		}
	}
	return -1
}

func httpGet(url string) (string, error) {
	resp, err := http.Get(url)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return string(b), err
}

func hasKind(h []storedEvent, kind string) bool {
	for _, e := range h {
		if e.Kind == kind {
			return true
		}
	}
	return false
}

// TestCorruptOutbox: the agent's outbox file is damaged while the agent is stopped. At
// start it says so, moves the file aside, resynchronizes from the aggregator's head with
// the full state, and keeps running.
func TestCorruptOutbox(t *testing.T) {
	r := newRig(t)
	b := startBurst(t, r.ns)
	b.addUpTo(t, 50)
	r.checkExactlyOnce(t, 50)
	r.agent.Stop()
	b.addUpTo(t, 80) // changed while the agent is down
	b.close()
	path := filepath.Join(r.stateDir, "outbox.db")
	raw, err := os.ReadFile(path)
	check(t, err)
	for i := 0; i < len(raw) && i < 3*4096; i++ {
		raw[i] = byte(i*31 + 7)
	}
	check(t, os.WriteFile(path, raw, 0o600))

	check(t, r.agent.Restart())
	want := r.liveDigest(t)
	waitFor(t, 30*time.Second, "resync to the live state", func() (bool, string) {
		var d struct {
			Digest string `json:"digest"`
		}
		if err := r.agg.Get("/v1/tenants/"+burstTenant+"/devices/"+burstDevice, &d); err != nil {
			return false, err.Error()
		}
		return d.Digest == want, d.Digest
	})
	h, err := r.history()
	check(t, err)
	if !hasKind(h, "resync") {
		t.Errorf("no resync event; kinds: %v", kinds(h))
	}
	moved, _ := filepath.Glob(path + ".corrupt-*")
	if len(moved) != 1 {
		t.Errorf("corrupt outbox not moved aside: %v", moved)
	}
	if r.agent.Exited() {
		t.Fatal("agent exited")
	}
	if log := r.agent.Tail(200); !strings.Contains(log, "outbox was corrupt") {
		t.Errorf("no clear error about the corrupt outbox in the log")
	}
}

// TestOutboxBoundWhileOffline: with the broker gone, the outbox reaches its disk bound;
// the pending events are folded into one state event, which reaches the aggregator when
// the broker returns.
func TestOutboxBoundWhileOffline(t *testing.T) {
	r := newRig(t, "FENCELINE_OUTBOX_MAX_BYTES=1048576", "FENCELINE_HEARTBEAT_INTERVAL=1ms")
	r.brokerP.Stop()
	b := startBurst(t, r.ns)
	b.addUpTo(t, 20)
	waitFor(t, 60*time.Second, "a fold", func() (bool, string) {
		f := r.agentMetric(t, "fenceline_agent_outbox_folds_total")
		return f >= 1, fmt.Sprintf("folds %v", f)
	})
	b.addUpTo(t, 30)
	b.close()
	// A normal heartbeat again, so the chain stops growing fast.
	r.agent.Stop()
	agent, err := r.l.Start("agent-normal", nil, filepath.Join(binDir, "fenceline-agent"),
		r.agent.Args()...)
	check(t, err)
	r.agent = agent
	check(t, r.brokerP.Restart())
	want := r.liveDigest(t)
	waitFor(t, 60*time.Second, "delivery after the fold", func() (bool, string) {
		var d struct {
			Digest string `json:"digest"`
		}
		if err := r.agg.Get("/v1/tenants/"+burstTenant+"/devices/"+burstDevice, &d); err != nil {
			return false, err.Error()
		}
		return d.Digest == want, d.Digest
	})
	h, err := r.history()
	check(t, err)
	if !hasKind(h, "fold") {
		t.Fatalf("no fold event at the aggregator; kinds %v", kinds(h))
	}
	for i, e := range h {
		if e.Seq != strconv.Itoa(i+1) {
			t.Fatalf("event %d has sequence %s", i+1, e.Seq)
		}
	}
}

// TestDeadLinkNoFIN: the broker sits in a namespace behind a veth pair; its traffic is
// dropped silently (no FIN, no RST) while changes are made, then restored. Nothing is lost.
func TestDeadLinkNoFIN(t *testing.T) {
	var brokerNS string
	r := newRigWith(t, func(l *lab.Lab) (string, *lab.Proc, error) {
		ns, err := l.Netns("fl-e2e-brk")
		if err != nil {
			return "", nil, err
		}
		brokerNS = ns
		_, addr, err := l.Link(ns)
		if err != nil {
			return "", nil, err
		}
		return l.MosquittoIn(ns, addr, 1883)
	})
	b := startBurst(t, r.ns)
	b.addUpTo(t, 50)
	r.checkExactlyOnce(t, 50)

	blackhole := filepath.Join(t.TempDir(), "blackhole.nft")
	check(t, os.WriteFile(blackhole, []byte(`table inet blackhole {
	chain in { type filter hook input priority -300; policy drop; }
	chain out { type filter hook output priority -300; policy drop; }
}
`), 0o600))
	nft(t, brokerNS, "-f", blackhole)
	b.addUpTo(t, 250)
	waitFor(t, 60*time.Second, "the agent to notice the dead link", func() (bool, string) {
		f := r.agentMetric(t, "fenceline_agent_publish_failures_total")
		return f >= 1, fmt.Sprintf("publish failures %v", f)
	})
	nft(t, brokerNS, "delete", "table", "inet", "blackhole")
	b.addUpTo(t, 300)
	b.close()
	r.checkExactlyOnce(t, 300)
}

func kinds(h []storedEvent) map[string]int {
	m := map[string]int{}
	for _, e := range h {
		m[e.Kind]++
	}
	return m
}
