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

	"github.com/fenceline/fenceline/agent"
	"github.com/fenceline/fenceline/agent/identity"
	"github.com/fenceline/fenceline/agent/outbox"
	"github.com/fenceline/fenceline/scripts/lab"
	"github.com/fenceline/fenceline/shared/event"
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
	ns    string
	cmd   *exec.Cmd
	stdin io.WriteCloser
	n     int
}

func startBurst(t *testing.T, ns string) *burst {
	t.Helper()
	b := &burst{ns: ns}
	t.Cleanup(func() { b.flush(t) })
	return b
}

// addUpTo writes rules up to port n into the pipe; nft applies them at its own pace.
func (b *burst) addUpTo(t *testing.T, n int) {
	t.Helper()
	if b.stdin == nil {
		b.cmd = exec.Command("ip", "netns", "exec", b.ns, "nft", "-i")
		stdin, err := b.cmd.StdinPipe()
		check(t, err)
		b.cmd.Stdout, b.cmd.Stderr = io.Discard, os.Stderr
		check(t, b.cmd.Start())
		b.stdin = stdin
	}
	w := bufio.NewWriter(b.stdin)
	for b.n < n {
		b.n++
		fmt.Fprintf(w, "add rule ip bench c tcp dport %d drop\n", b.n)
	}
	check(t, w.Flush())
}

// flush waits until nft has applied every rule written: it closes the pipe and waits for
// nft to exit. The next addUpTo starts a new nft.
func (b *burst) flush(t *testing.T) {
	t.Helper()
	if b.stdin == nil {
		return
	}
	b.stdin.Close()
	err := b.cmd.Wait()
	b.stdin, b.cmd = nil, nil
	check(t, err)
}

var dportRE = regexp.MustCompile(`^tcp dport (\d+) drop$`)

// deviceState is the aggregator's view of the device.
type deviceState struct {
	Digest  string `json:"digest"`
	HeadSeq string `json:"head_seq"`
}

func (r *rig) device() (deviceState, error) {
	var d deviceState
	err := r.agg.Get("/v1/tenants/"+burstTenant+"/devices/"+burstDevice, &d)
	return d, err
}

// waitLive waits until the aggregator holds the namespace's current ruleset. It gives up
// only when the aggregator's head stops advancing for stall, so a slow machine replaying
// a long backlog is not failed for being slow.
func (r *rig) waitLive(t *testing.T, stall time.Duration) deviceState {
	t.Helper()
	want := r.liveDigest(t)
	var d deviceState
	check(t, lab.WaitProgress(stall, "the aggregator to hold the live ruleset",
		func() (bool, string, string) {
			var err error
			if d, err = r.device(); err != nil {
				return false, "", err.Error()
			}
			return d.Digest == want, d.HeadSeq, "head " + d.HeadSeq + ", digest " + d.Digest +
				", live " + want
		}))
	return d
}

// checkExactlyOnce waits until nft has applied the burst and the aggregator holds the
// namespace's resulting ruleset, then checks that the device's events form one gapless
// chain and that their changes add the burst's rules 1…n exactly once each, in order,
// and remove none.
func (r *rig) checkExactlyOnce(t *testing.T, b *burst) []storedEvent {
	t.Helper()
	b.flush(t)
	r.waitLive(t, time.Minute)
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
	if len(ports) != b.n {
		t.Fatalf("saw %d rule additions, want %d", len(ports), b.n)
	}
	for i, p := range ports {
		if p != i+1 {
			t.Fatalf("addition %d is port %d: changes out of order or repeated", i+1, p)
		}
	}
	return h
}

// waitAgent waits until the agent's metric reaches at least min.
func (r *rig) waitAgent(t *testing.T, name string, min float64) {
	t.Helper()
	waitFor(t, 60*time.Second, fmt.Sprintf("%s ≥ %v", name, min), func() (bool, string) {
		v := r.agentMetric(t, name)
		return v >= min, fmt.Sprintf("%s %v", name, v)
	})
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

// TestKillAgentMidBurst: kill -9 the agent while it reports a burst of 1,000 changes;
// the burst goes on while it is down; restarted, it reconciles, and every change arrives.
func TestKillAgentMidBurst(t *testing.T) {
	t.Parallel()
	r := newRig(t)
	b := startBurst(t, r.ns)
	b.addUpTo(t, 300)
	r.waitAgent(t, "fenceline_agent_sequence", 50) // busy with the burst
	r.agent.Kill()
	b.addUpTo(t, 700) // changes made while the agent is down
	b.flush(t)
	check(t, r.agent.Restart())
	b.addUpTo(t, 1000)
	h := r.checkExactlyOnce(t, b)
	if !hasKind(h, "reconcile") {
		t.Error("no reconcile event after the agent came back")
	}
}

// TestRestartMosquittoMidBurst: Mosquitto, without persistence, is restarted while the
// agent delivers a burst; its sessions and retained acks are gone.
func TestRestartMosquittoMidBurst(t *testing.T) {
	t.Parallel()
	r := newRig(t)
	b := startBurst(t, r.ns)
	b.addUpTo(t, 100)
	r.waitAgent(t, "fenceline_agent_events_published_total", 20)
	r.brokerP.Stop() // no persistence: every session and retained message is gone
	b.addUpTo(t, 200)
	check(t, r.brokerP.Restart())
	check(t, lab.WaitListening(strings.TrimPrefix(r.broker, "tcp://"), 10*time.Second))
	b.addUpTo(t, 300)
	r.checkExactlyOnce(t, b)
}

// TestKillAggregatorMidBurst: kill -9 the aggregator while it ingests a burst, and
// restart it.
func TestKillAggregatorMidBurst(t *testing.T) {
	t.Parallel()
	r := newRig(t)
	b := startBurst(t, r.ns)
	b.addUpTo(t, 100)
	waitFor(t, 60*time.Second, "the aggregator to ingest part of the burst", func() (bool, string) {
		d, err := r.device()
		if err != nil {
			return false, err.Error()
		}
		n, _ := strconv.Atoi(d.HeadSeq)
		return n >= 20, "head " + d.HeadSeq
	})
	r.agg.Kill()
	b.addUpTo(t, 200)
	check(t, r.agg.Restart())
	check(t, r.agg.WaitHealthy(30*time.Second))
	b.addUpTo(t, 300)
	r.checkExactlyOnce(t, b)
}

// TestAgentRestartBeforeAck: the agent publishes while the aggregator is down, so no ack
// comes; restarted, it publishes everything again. The broker queues both copies for the
// aggregator's persistent session; the aggregator drops the duplicates.
func TestAgentRestartBeforeAck(t *testing.T) {
	t.Parallel()
	r := newRig(t)
	r.agg.Stop()
	b := startBurst(t, r.ns)
	b.addUpTo(t, 100)
	b.flush(t)
	published := func() (bool, string) {
		p := r.agentMetric(t, "fenceline_agent_events_published_total")
		seq := r.agentMetric(t, "fenceline_agent_sequence")
		return seq > 1 && p >= seq, fmt.Sprintf("published %v of %v", p, seq)
	}
	waitFor(t, 30*time.Second, "every event published", published)
	r.agent.Stop()
	check(t, r.agent.Restart())
	waitFor(t, 30*time.Second, "every event published again", published)
	check(t, r.agg.Restart())
	check(t, r.agg.WaitHealthy(30*time.Second))
	r.checkExactlyOnce(t, b)
	// The second copies may still be on their way when the first ones made the state.
	waitFor(t, 30*time.Second, "the second copies dropped as duplicates", func() (bool, string) {
		d := r.ingestStat(t, "duplicate")
		return d > 0, fmt.Sprintf("%v duplicates", d)
	})
}

// TestOfflineBacklog: the broker is unreachable while 50,000 events accumulate, then it
// returns and everything is delivered once, in order. The agent writes the first ones
// itself (a burst of changes, then heartbeats every millisecond); it commits and fsyncs
// each event on its own, about 200 a second at best on this kind of disk (the test logs
// the rate), so the rest are heartbeats appended to its outbox while it is stopped,
// continuing its chain and signed with its key, as weeks of heartbeats would be.
func TestOfflineBacklog(t *testing.T) {
	if testing.Short() {
		t.Skip("50,000 events: not in -short")
	}
	t.Parallel()
	const target = 50000
	r := newRig(t, "FENCELINE_HEARTBEAT_INTERVAL=1ms", "FENCELINE_UPLINK_RATE=0")
	r.brokerP.Stop()
	b := startBurst(t, r.ns)
	b.addUpTo(t, 200)
	b.flush(t)
	start, t0 := r.agentMetric(t, "fenceline_agent_sequence"), time.Now()
	r.waitAgent(t, "fenceline_agent_sequence", start+500)
	t.Logf("the agent appended %.0f events/s while offline (one fsynced commit each)",
		(r.agentMetric(t, "fenceline_agent_sequence")-start)/time.Since(t0).Seconds())
	r.agent.Stop()
	n := appendHeartbeats(t, r.stateDir, target)

	// Back with the example configuration's heartbeat, unpaced: the replay goes as fast
	// as the window of unacknowledged events and the aggregator allow.
	agent, err := r.l.Start("agent-normal", []string{"FENCELINE_UPLINK_RATE=0"},
		filepath.Join(binDir, "fenceline-agent"), r.agent.Args()...)
	check(t, err)
	r.agent = agent
	r.waitAgent(t, "fenceline_agent_sequence", 1)
	want := int(r.agentMetric(t, "fenceline_agent_sequence"))
	if want < target {
		t.Fatalf("the agent's chain ends at %d, want at least %d", want, target)
	}
	t1 := time.Now()
	check(t, r.brokerP.Restart())
	check(t, lab.WaitProgress(30*time.Second, "the backlog at the aggregator",
		func() (bool, string, string) {
			d, err := r.device()
			if err != nil {
				return false, "", err.Error()
			}
			head, _ := strconv.Atoi(d.HeadSeq)
			return head >= want, d.HeadSeq, fmt.Sprintf("head %d of %d", head, want)
		}))
	took := time.Since(t1)
	t.Logf("replayed %d pending events in %s (%.0f events/s at the aggregator)", n,
		took.Round(time.Millisecond), float64(n)/took.Seconds())
	r.checkExactlyOnce(t, b)
}

// appendHeartbeats appends heartbeats to the stopped agent's outbox, continuing its chain
// with its key and its last reported state, until n events are pending, in fsynced
// batches of 2,000. It returns how many events are pending.
func appendHeartbeats(t *testing.T, stateDir string, n int) int {
	t.Helper()
	id, err := identity.Load(stateDir)
	check(t, err)
	ob, err := outbox.Open(filepath.Join(stateDir, agent.OutboxFile), outbox.Config{})
	check(t, err)
	defer ob.Close()
	blob, err := ob.State()
	check(t, err)
	var st struct {
		Digest     string `json:"digest"`
		Generation uint32 `json:"generation"`
	}
	check(t, json.Unmarshal(blob, &st))
	signer := event.NewSigner(id.Key)
	now := time.Now()
	seal := func(seq uint64, prev string) ([]byte, string, error) {
		return signer.Seal(&event.Event{V: event.Version, Kind: event.Heartbeat,
			Tenant: id.Tenant, Device: id.Device, KeyID: signer.KeyID(), Seq: seq, Prev: prev,
			Observed:   event.FormatTime(now.Add(time.Duration(seq) * time.Microsecond)),
			Source:     event.SourceNftables,
			Generation: st.Generation, Before: st.Digest, After: st.Digest})
	}
	h, err := ob.Head()
	check(t, err)
	for pending := h.Count; pending < n; {
		items := make([]outbox.Item, min(2000, n-pending))
		for i := range items {
			items[i] = outbox.Item{Seal: seal}
		}
		_, err := ob.AppendBatch(items)
		check(t, err)
		pending += len(items)
	}
	h, err = ob.Head()
	check(t, err)
	return h.Count
}

func (r *rig) agentMetric(t *testing.T, name string) float64 {
	t.Helper()
	addr := ""
	for i, a := range r.agent.Args() {
		if a == "--metrics" {
			addr = r.agent.Args()[i+1]
		}
	}
	return scrapeMetric(addr, name)
}

// scrapeMetric reads the first sample named name from the Prometheus metrics served on
// addr; -1 when there is none or they cannot be read.
func scrapeMetric(addr, name string) float64 {
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
	t.Parallel()
	r := newRig(t)
	b := startBurst(t, r.ns)
	b.addUpTo(t, 50)
	r.checkExactlyOnce(t, b)
	r.agent.Stop()
	b.addUpTo(t, 80) // changed while the agent is down
	b.flush(t)
	path := filepath.Join(r.stateDir, "outbox.db")
	raw, err := os.ReadFile(path)
	check(t, err)
	for i := 0; i < len(raw) && i < 3*4096; i++ {
		raw[i] = byte(i*31 + 7)
	}
	check(t, os.WriteFile(path, raw, 0o600))

	check(t, r.agent.Restart())
	r.waitLive(t, 30*time.Second)
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

// TestOutboxBoundWhileOffline: with the broker gone, large changes take the outbox to
// its disk bound; the pending events are folded into one state event, which reaches the
// aggregator when the broker returns and is raised there as a deviation.
func TestOutboxBoundWhileOffline(t *testing.T) {
	t.Parallel()
	r := newRig(t, "FENCELINE_OUTBOX_MAX_BYTES=1048576")
	r.brokerP.Stop()
	// Five transactions of 2,000 rules: each change event lists its 2,000 additions
	// (about a quarter of the bound), so the fourth or fifth reaches the bound.
	for i := range 5 {
		var script strings.Builder
		fmt.Fprintf(&script, "add chain ip bench big%d\n", i)
		for j := range 2000 {
			fmt.Fprintf(&script, "add rule ip bench big%d tcp dport %d accept comment \"bulk rule %d of batch %d\"\n",
				i, j+1, j, i)
		}
		f := filepath.Join(t.TempDir(), fmt.Sprintf("batch%d.nft", i))
		check(t, os.WriteFile(f, []byte(script.String()), 0o600))
		nft(t, r.ns, "-f", f)
	}
	r.waitAgent(t, "fenceline_agent_outbox_folds_total", 1)
	check(t, r.brokerP.Restart())
	r.waitLive(t, 30*time.Second)
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
	if !r.hasDeviation(t, "folded") {
		t.Fatal("the fold event was not raised as a folded deviation")
	}
}

// hasDeviation reports whether the aggregator lists a deviation of kind for the device.
func (r *rig) hasDeviation(t *testing.T, kind string) bool {
	t.Helper()
	var ds []struct {
		Kind   string `json:"kind"`
		Device string `json:"device"`
	}
	check(t, r.agg.Get("/v1/tenants/"+burstTenant+"/deviations?device="+burstDevice, &ds))
	for _, d := range ds {
		if d.Kind == kind && d.Device == burstDevice {
			return true
		}
	}
	return false
}

// TestAggregatorRestoredFromBackup: the aggregator is restored from a copy of its data
// taken before it committed (and acknowledged) the last changes; the agent has already
// dropped those events. The agent notices the head behind its acks, re-anchors there and
// sends its current state as a resync; the aggregator holds the live ruleset again and
// raises the lost events as a gap.
func TestAggregatorRestoredFromBackup(t *testing.T) {
	t.Parallel()
	r := newRig(t, "FENCELINE_HEARTBEAT_INTERVAL=1s")
	b := startBurst(t, r.ns)
	b.addUpTo(t, 20)
	r.checkExactlyOnce(t, b)
	r.agg.Stop()
	backup := filepath.Join(t.TempDir(), "backup")
	copyDir(t, r.agg.DataDir, backup)
	check(t, r.agg.Restart())
	check(t, r.agg.WaitHealthy(30*time.Second))
	b.addUpTo(t, 40)
	b.flush(t)
	acked := r.waitLive(t, 30*time.Second)
	waitFor(t, 30*time.Second, "the agent's outbox empty", func() (bool, string) {
		d := r.agentMetric(t, "fenceline_agent_outbox_depth")
		return d == 0, fmt.Sprintf("depth %v", d)
	})

	// Restore the older state: the aggregator forgets the last acknowledged events.
	r.agg.Stop()
	check(t, os.RemoveAll(r.agg.DataDir))
	copyDir(t, backup, r.agg.DataDir)
	check(t, r.agg.Restart())
	check(t, r.agg.WaitHealthy(30*time.Second))
	d, err := r.device()
	check(t, err)
	restored, _ := strconv.Atoi(d.HeadSeq)
	before, _ := strconv.Atoi(acked.HeadSeq)
	if restored >= before {
		t.Fatalf("restored head %d, want behind the acknowledged %d", restored, before)
	}
	b.addUpTo(t, 45)
	b.flush(t)
	r.waitLive(t, time.Minute)
	h, err := r.history()
	check(t, err)
	if !hasKind(h, "resync") {
		t.Fatalf("no resync event after the restore; kinds %v", kinds(h))
	}
	for i, e := range h {
		if e.Seq != strconv.Itoa(i+1) {
			t.Fatalf("event %d has sequence %s", i+1, e.Seq)
		}
	}
	if !r.hasDeviation(t, "gap") {
		t.Fatal("the lost events were not raised as a gap deviation")
	}
	if r.agent.Exited() {
		t.Fatal("agent exited")
	}
}

// copyDir copies a directory tree of regular files.
func copyDir(t *testing.T, from, to string) {
	t.Helper()
	check(t, filepath.WalkDir(from, func(path string, d os.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(from, path)
		dst := filepath.Join(to, rel)
		if d.IsDir() {
			return os.MkdirAll(dst, 0o700)
		}
		b, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		return os.WriteFile(dst, b, 0o600)
	}))
}

// TestDeadLinkNoFIN: the broker sits in a namespace behind a veth pair; its traffic is
// dropped silently (no FIN, no RST) while changes are made, then restored. Nothing is lost.
func TestDeadLinkNoFIN(t *testing.T) {
	t.Parallel()
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
	r.checkExactlyOnce(t, b)

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
	r.checkExactlyOnce(t, b)
}

func kinds(h []storedEvent) map[string]int {
	m := map[string]int{}
	for _, e := range h {
		m[e.Kind]++
	}
	return m
}
