// Command replay measures the replay of a large offline backlog: an agent whose outbox
// holds N signed events (a baseline and N-1 heartbeats, written straight into its outbox
// as if the site had been offline) is started against Mosquitto and an aggregator, and the
// run ends when the aggregator has committed all N. It reports events per second at the
// aggregator, the time until the agent's outbox is empty, and the peak RSS (VmHWM) of the
// agent and the aggregator. See ../README.md.
package main

import (
	"bufio"
	"context"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/fenceline/fenceline/agent"
	"github.com/fenceline/fenceline/agent/identity"
	"github.com/fenceline/fenceline/agent/nft"
	"github.com/fenceline/fenceline/agent/outbox"
	"github.com/fenceline/fenceline/scripts/lab"
	"github.com/fenceline/fenceline/shared/event"
)

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "replay:", err)
		os.Exit(1)
	}
}

func run() error {
	n := flag.Int("n", 1000000, "events in the backlog")
	ruleset := flag.String("ruleset", "../shared/corpus/nft/user-linux-wireless-router.nft",
		"ruleset of the device (relative to the repository root)")
	rateFlag := flag.Float64("rate", 0, "agent uplink.rate (events/s, 0 unbounded)")
	keep := flag.Bool("keep", false, "keep the working directory (logs) instead of removing it")
	flag.Parse()
	if err := lab.CheckHost("mosquitto"); err != nil {
		return err
	}
	root, _ := os.Getwd()
	dir, err := os.MkdirTemp("", "fenceline-replay-")
	if err != nil {
		return err
	}
	if *keep {
		fmt.Println("working directory:", dir)
	} else {
		defer os.RemoveAll(dir)
	}
	if err := lab.Build(root, dir); err != nil {
		return err
	}
	l := lab.New(root, dir, dir)
	defer l.Close()
	ns, err := l.Netns("fl-bench")
	if err != nil {
		return err
	}
	if _, err := lab.Nft(ns, "-f", filepath.Join(root, *ruleset)); err != nil {
		return err
	}
	brokerURL, _, err := l.Mosquitto()
	if err != nil {
		return err
	}
	agg, err := l.Aggregator("aggregator", brokerURL)
	if err != nil {
		return err
	}
	const tenant, device = "bench", "fw-replay"
	var tok struct {
		Token string `json:"token"`
	}
	if err := agg.CtlJSON(tenant, &tok, "enroll", "--device", device); err != nil {
		return err
	}
	stateDir := filepath.Join(dir, "agent")
	id, err := identity.Enroll(context.Background(), http.DefaultClient, agg.API, tok.Token, stateDir)
	if err != nil {
		return err
	}

	// The backlog, written as the agent would have written it while offline.
	t0 := time.Now()
	if err := prefill(id, ns, filepath.Join(stateDir, agent.OutboxFile), *n); err != nil {
		return err
	}
	fmt.Printf("prefilled %d events in %s\n", *n, time.Since(t0).Round(time.Millisecond))

	metricsAddr := fmt.Sprintf("127.0.0.1:%d", must(lab.FreePort()))
	start := time.Now()
	ag, err := l.Start("agent", []string{"FENCELINE_HEARTBEAT_INTERVAL=1h",
		"FENCELINE_UPLINK_RATE=" + strconv.FormatFloat(*rateFlag, 'f', -1, 64)},
		filepath.Join(dir, "fenceline-agent"), "run", "--config",
		filepath.Join(root, "configs", "agent.yaml"), "--state-dir", stateDir, "--netns", ns,
		"--metrics", metricsAddr, "--log-level", "warn")
	if err != nil {
		return err
	}
	var committed, emptied time.Duration
	var agentAnon, aggAnon int // peak anonymous RSS seen, kB
	last := time.Now()
	for committed == 0 || emptied == 0 {
		agentAnon = max(agentAnon, rssAnon(ag.Pid()))
		aggAnon = max(aggAnon, rssAnon(agg.Pid()))
		if ag.Exited() || agg.Exited() {
			return fmt.Errorf("a process exited\n%s", l.Logs(40))
		}
		var d struct {
			HeadSeq string `json:"head_seq"`
		}
		if err := agg.Get("/v1/tenants/"+tenant+"/devices/"+device, &d); err == nil && committed == 0 {
			if h, _ := strconv.Atoi(d.HeadSeq); h >= *n {
				committed = time.Since(start)
			}
		}
		if emptied == 0 {
			if depth, ok := metric("http://"+metricsAddr+"/metrics", "fenceline_agent_outbox_depth"); ok && depth == 0 {
				emptied = time.Since(start)
			}
		}
		if time.Since(last) > 10*time.Second {
			fmt.Printf("  %s: aggregator head %s\n", time.Since(start).Round(time.Second), d.HeadSeq)
			last = time.Now()
		}
		time.Sleep(100 * time.Millisecond)
	}
	fmt.Printf("replay of %d events: committed at the aggregator in %s (%.0f events/s); "+
		"agent outbox empty after %s\n", *n, committed.Round(time.Millisecond),
		float64(*n)/committed.Seconds(), emptied.Round(time.Millisecond))
	fmt.Printf("peak RSS (VmHWM, with bbolt's mapped file pages): agent %s, aggregator %s\n",
		hwm(ag.Pid()), hwm(agg.Pid()))
	fmt.Printf("peak anonymous RSS (RssAnon sampled every 100 ms): agent %d kB, aggregator %d kB\n",
		agentAnon, aggAnon)
	return nil
}

func prefill(id *identity.Identity, ns, path string, n int) error {
	r, err := nft.Open(ns)
	if err != nil {
		return err
	}
	rs, gen, err := r.Snapshot()
	r.Close()
	if err != nil {
		return err
	}
	state, err := agent.StateBlob(rs, gen)
	if err != nil {
		return err
	}
	ob, err := outbox.Open(path, outbox.Config{})
	if err != nil {
		return err
	}
	defer ob.Close()
	signer := event.NewSigner(id.Key)
	digest := rs.Digest().String()
	now := time.Now()
	mk := func(i int) outbox.Sealer {
		return func(seq uint64, prev string) ([]byte, string, error) {
			e := &event.Event{V: event.Version, Kind: event.Heartbeat, Tenant: id.Tenant,
				Device: id.Device, KeyID: signer.KeyID(), Seq: seq, Prev: prev,
				Observed: event.FormatTime(now.Add(time.Duration(i) * time.Millisecond)),
				Source:   event.SourceNftables, Generation: gen, Before: digest, After: digest}
			if seq == 1 {
				e.Kind, e.Before, e.Ruleset = event.Baseline, "", rs
			}
			return signer.Seal(e)
		}
	}
	const batch = 2000
	for i := 0; i < n; i += batch {
		items := make([]outbox.Item, 0, batch)
		for j := i; j < min(i+batch, n); j++ {
			it := outbox.Item{Seal: mk(j)}
			if j == 0 {
				it.State = state
			}
			items = append(items, it)
		}
		if _, err := ob.AppendBatch(items); err != nil {
			return err
		}
	}
	return nil
}

func metric(url, name string) (float64, bool) {
	resp, err := http.Get(url)
	if err != nil {
		return 0, false
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	sc := bufio.NewScanner(strings.NewReader(string(b)))
	for sc.Scan() {
		if line := sc.Text(); strings.HasPrefix(line, name+"{") || strings.HasPrefix(line, name+" ") {
			f := strings.Fields(line)
			v, err := strconv.ParseFloat(f[len(f)-1], 64)
			return v, err == nil
		}
	}
	return 0, false
}

// hwm is a process's peak resident set size (VmHWM) from /proc.
func hwm(pid int) string {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return "?"
	}
	for _, line := range strings.Split(string(b), "\n") {
		if strings.HasPrefix(line, "VmHWM:") {
			return strings.Join(strings.Fields(line)[1:], " ")
		}
	}
	return "?"
}

// rssAnon is the process's anonymous resident memory in kB (heap and stacks, without
// mapped files such as bbolt's), or 0.
func rssAnon(pid int) int {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0
	}
	for _, line := range strings.Split(string(b), "\n") {
		if f := strings.Fields(line); len(f) >= 2 && f[0] == "RssAnon:" {
			n, _ := strconv.Atoi(f[1])
			return n
		}
	}
	return 0
}

func must[T any](v T, err error) T {
	if err != nil {
		panic(err)
	}
	return v
}
