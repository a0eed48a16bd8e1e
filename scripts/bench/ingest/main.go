// Command ingest measures what a 3-node aggregator cluster with fsync commits, against
// what the same Mosquitto delivers to a bare subscriber, in the same run, with the same
// messages; and the commit latency at a fixed rate. Method: scripts/bench/README.md.
// Needs root (the cluster runs in a network namespace) and mosquitto.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	mqtt "github.com/eclipse/paho.mqtt.golang"

	"github.com/fenceline/fenceline/scripts/lab"
)

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "ingest bench:", err)
		os.Exit(1)
	}
}

type options struct {
	devices, perDevice, rate int
	latencySecs              int
	keep                     bool
}

func run() error {
	var o options
	flag.IntVar(&o.devices, "devices", 50, "simulated agents")
	flag.IntVar(&o.perDevice, "events", 200, "events per agent in the throughput runs")
	flag.IntVar(&o.rate, "rate", 1000, "events per second in the latency run")
	flag.IntVar(&o.latencySecs, "latency-seconds", 10, "length of the latency run")
	flag.BoolVar(&o.keep, "keep", false, "keep the lab directory")
	flag.Parse()
	if err := lab.CheckHost("mosquitto"); err != nil {
		return err
	}
	root, err := filepath.Abs(".")
	if err != nil {
		return err
	}
	dir, err := os.MkdirTemp("", "fenceline-bench-ingest-")
	if err != nil {
		return err
	}
	if !o.keep {
		defer os.RemoveAll(dir)
	} else {
		fmt.Println("lab directory (kept):", dir)
	}
	bin := filepath.Join(dir, "bin")
	fmt.Println("building ...")
	if err := lab.Build(root, bin); err != nil {
		return err
	}
	l := lab.New(root, dir, bin)
	defer l.Close()
	// The production raft timeouts (the lab's are short for fast failover tests); a
	// large ingest queue so that a burst is queued, not dropped and resent.
	c, err := l.Cluster(3, lab.ClusterOptions{Env: []string{"FENCELINE_INGEST_QUEUE_SIZE=65536",
		"FENCELINE_LOG_LEVEL=warn", "FENCELINE_RAFT_HEARTBEAT_TIMEOUT=1s",
		"FENCELINE_RAFT_ELECTION_TIMEOUT=1s", "FENCELINE_RAFT_LEADER_LEASE_TIMEOUT=500ms",
		"FENCELINE_CLUSTER_TICK_INTERVAL=1s"}})
	if err != nil {
		return err
	}
	leader, err := c.Leader(10 * time.Second)
	if err != nil {
		return err
	}
	fleet, err := lab.NewFleet(c.Broker, lab.NetnsDialer(c.Netns))
	if err != nil {
		return err
	}
	defer fleet.Close()
	var devs []*lab.SimDevice
	for i := range o.devices {
		d, err := fleet.Enroll(c.Poster(leader), "bench", fmt.Sprintf("fw%03d", i))
		if err != nil {
			return err
		}
		devs = append(devs, d)
	}
	// Baselines first, acked, so that every measured event is a change of the same size.
	for _, d := range devs {
		if err := fleet.Seal(d, ""); err != nil {
			return err
		}
		if err := fleet.Publish(d, 1, 1); err != nil {
			return err
		}
	}
	if err := fleet.WaitAcked(30*time.Second, 5*time.Second); err != nil {
		return err
	}
	for _, d := range devs {
		for j := range o.perDevice {
			if err := fleet.Seal(d, fmt.Sprintf("tcp dport %d drop", 1024+j)); err != nil {
				return err
			}
		}
	}
	total := o.devices * o.perDevice
	size := len(devs[0].Envelopes[1])
	fmt.Printf("messages: %d signed change events from %d agents, %d bytes each\n", total,
		o.devices, size)

	meter := newCPUMeter(c)
	bare, err := bareSubscriber(c, devs)
	if err != nil {
		return err
	}
	fmt.Printf("bare subscriber (same Mosquitto, QoS 1): %d messages in %s = %.0f msg/s\n",
		total, bare.Round(time.Millisecond), float64(total)/bare.Seconds())
	meter.report(total, bare)

	meter = newCPUMeter(c)
	meter = newCPUMeter(c)
	start := time.Now()
	var wg sync.WaitGroup
	for _, d := range devs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			fleet.Publish(d, 2, uint64(len(d.IDs)))
		}()
	}
	wg.Wait()
	if err := fleet.WaitAcked(120*time.Second, 10*time.Second); err != nil {
		return err
	}
	took := time.Since(start)
	var stats struct {
		Ingest map[string]any `json:"ingest"`
	}
	if now, err := c.Leader(10 * time.Second); err == nil && now != leader {
		fmt.Printf("note: leadership moved from %s to %s during the run\n", leader.ID, now.ID)
		leader = now
	}
	if st, body, _, err := c.Do(leader, "GET", "/metrics", nil); err == nil && st == 200 &&
		os.Getenv("BENCH_METRICS") != "" {
		for _, line := range strings.Split(string(body), "\n") {
			if strings.HasPrefix(line, "fenceline_fsm_apply_batch_entries_") ||
				strings.HasPrefix(line, "fenceline_raft_apply_duration_seconds_sum") ||
				strings.HasPrefix(line, "fenceline_raft_apply_duration_seconds_count") ||
				strings.HasPrefix(line, "process_cpu_seconds_total") {
				fmt.Println("  " + line)
			}
		}
	}
	if err := c.Get(leader, "/v1/stats", &stats); err == nil {
		fmt.Printf("leader's ingest counters: %v\n", stats.Ingest)
	}
	fmt.Printf("3-node cluster (fsync): %d events committed and acked in %s = %.0f events/s "+
		"(%.0f%% of the bare subscriber)\n", total, took.Round(time.Millisecond),
		float64(total)/took.Seconds(), 100*bare.Seconds()/took.Seconds())
	meter.report(total, took)

	return latency(fleet, devs, o)
}

// cpuMeter reads the processor time of the broker, of every node and of this process
// (the publishing and subscribing clients) at its start, and reports what each used
// since then.
type cpuMeter struct {
	names []string
	pids  []int
	start []time.Duration
}

func newCPUMeter(c *lab.Cluster) *cpuMeter {
	m := &cpuMeter{names: []string{"mosquitto", "clients"},
		pids: []int{c.Mosquitto.Pid(), os.Getpid()}}
	for _, nd := range c.Nodes {
		m.names = append(m.names, nd.ID)
		m.pids = append(m.pids, nd.Pid())
	}
	m.start = m.read()
	return m
}

func (m *cpuMeter) read() []time.Duration {
	out := make([]time.Duration, len(m.pids))
	for i, pid := range m.pids {
		out[i], _ = lab.ProcessCPU(pid) // a process that ended counts as nothing
	}
	return out
}

// report prints each process's CPU time since the start, and the total per message.
func (m *cpuMeter) report(messages int, wall time.Duration) {
	now := m.read()
	var total time.Duration
	var parts []string
	for i, name := range m.names {
		d := max(0, now[i]-m.start[i])
		total += d
		parts = append(parts, fmt.Sprintf("%s %.2f s", name, d.Seconds()))
	}
	fmt.Printf("  CPU: %s; total %.2f s = %.0f µs per message, %.2f cores busy\n",
		strings.Join(parts, ", "), total.Seconds(),
		float64(total.Microseconds())/float64(messages), total.Seconds()/wall.Seconds())
	var peaks []string
	for i, name := range m.names[2:] {
		peaks = append(peaks, fmt.Sprintf("%s %s", name, peakRSS(m.pids[i+2])))
	}
	fmt.Printf("  peak RSS so far: %s\n", strings.Join(peaks, ", "))
}

// peakRSS is a process's peak resident set (VmHWM in /proc/PID/status).
func peakRSS(pid int) string {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return "?"
	}
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "VmHWM:"); ok {
			return strings.Join(strings.Fields(v), " ")
		}
	}
	return "?"
}

// bareSubscriber publishes the same envelopes on topics no aggregator subscribes to and
// times their delivery to a plain QoS 1 subscriber.
func bareSubscriber(c *lab.Cluster, devs []*lab.SimDevice) (time.Duration, error) {
	dial := lab.NetnsDialer(c.Netns)
	connect := func(id string) (mqtt.Client, error) {
		opts := mqtt.NewClientOptions().AddBroker(c.Broker).SetClientID(id).
			SetCleanSession(true).SetOrderMatters(false)
		opts.SetCustomOpenConnectionFn(func(u *url.URL, _ mqtt.ClientOptions) (net.Conn, error) {
			return dial(context.Background(), "tcp", u.Host)
		})
		cl := mqtt.NewClient(opts)
		if tok := cl.Connect(); !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
			return nil, fmt.Errorf("connect: %v", tok.Error())
		}
		return cl, nil
	}
	sub, err := connect("bench-sub")
	if err != nil {
		return 0, err
	}
	defer sub.Disconnect(100)
	pub, err := connect("bench-pub")
	if err != nil {
		return 0, err
	}
	defer pub.Disconnect(100)
	total := 0
	for _, d := range devs {
		total += len(d.Envelopes) - 1
	}
	var got atomic.Int64
	done := make(chan struct{})
	tok := sub.Subscribe("bench/+/events", 1, func(_ mqtt.Client, _ mqtt.Message) {
		if got.Add(1) == int64(total) {
			close(done)
		}
	})
	if !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
		return 0, fmt.Errorf("subscribe: %v", tok.Error())
	}
	start := time.Now()
	var wg sync.WaitGroup
	for _, d := range devs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			var toks []mqtt.Token
			for _, env := range d.Envelopes[1:] {
				toks = append(toks, pub.Publish("bench/"+d.Device+"/events", 1, false, env))
			}
			for _, t := range toks {
				t.WaitTimeout(30 * time.Second)
			}
		}()
	}
	wg.Wait()
	select {
	case <-done:
	case <-time.After(60 * time.Second):
		return 0, fmt.Errorf("bare subscriber got %d of %d", got.Load(), total)
	}
	return time.Since(start), nil
}

// latency sends events at a fixed rate, round robin over the agents, and reports the
// time from each publish to the first ack that covers it.
func latency(fleet *lab.Fleet, devs []*lab.SimDevice, o options) error {
	n := o.rate * o.latencySecs
	next := make([]uint64, len(devs))
	for i, d := range devs {
		next[i] = uint64(len(d.IDs)) + 1
	}
	for i := range n {
		d := devs[i%len(devs)]
		if err := fleet.Seal(d, fmt.Sprintf("udp dport %d drop", 1024+i)); err != nil {
			return err
		}
	}
	interval := time.Second / time.Duration(o.rate)
	start := time.Now()
	var toks []mqtt.Token
	for i := range n {
		time.Sleep(time.Until(start.Add(time.Duration(i) * interval)))
		k := i % len(devs)
		toks = append(toks, fleet.PublishAsync(devs[k], next[k]))
		next[k]++
	}
	for _, t := range toks {
		if !t.WaitTimeout(30*time.Second) || t.Error() != nil {
			return errors.New("publish failed in the latency run")
		}
	}
	if err := fleet.WaitAcked(60*time.Second, 10*time.Second); err != nil {
		return err
	}
	sent := time.Since(start)
	// Only the latency run's events: each agent's newest n/len(devs).
	var mine []time.Duration
	for _, d := range devs {
		from := len(d.IDs) - n/len(devs)
		for i := from; i < len(d.IDs); i++ {
			mine = append(mine, d.AckedAt[i].Sub(d.SentAt[i]))
		}
	}
	slices.Sort(mine)
	pct := func(p float64) time.Duration {
		return mine[min(len(mine)-1, int(p*float64(len(mine))))].Round(100 * time.Microsecond)
	}
	fmt.Printf("latency at %d events/s for %ds (%d events, sent in %s): p50 %s, p90 %s, "+
		"p99 %s, max %s\n", o.rate, o.latencySecs, len(mine), sent.Round(time.Millisecond),
		pct(.5), pct(.9), pct(.99), mine[len(mine)-1].Round(100*time.Microsecond))
	return nil
}
