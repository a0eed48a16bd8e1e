package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/fenceline/fenceline/scripts/lab"
)

// Rolling upgrade trials: a cluster of aggregators of an earlier version (binaries in
// FENCELINE_UPGRADE_OLD) is upgraded node by node to this one (FENCELINE_UPGRADE_NEW, or
// the package's build) while simulated agents publish. Opt-in: both variables unset skips.

type upgradeStatus struct {
	NodeID           string `json:"node_id"`
	State            string `json:"state"`
	CommitIndex      uint64 `json:"commit_index"`
	AppliedIndex     uint64 `json:"applied_index"`
	LogFormat        *int   `json:"log_format"`
	ClusterLogFormat *int   `json:"cluster_log_format"`
	Leader           struct {
		ID string `json:"id"`
	} `json:"leader"`
	Members []struct {
		ID string `json:"id"`
	} `json:"members"`
}

func fmtp(p *int) string {
	if p == nil {
		return "-"
	}
	return fmt.Sprint(*p)
}

func upgradeBins(t *testing.T) (string, string) {
	old := os.Getenv("FENCELINE_UPGRADE_OLD")
	if old == "" {
		t.Skip("FENCELINE_UPGRADE_OLD (binaries of the earlier version) not set")
	}
	nw := os.Getenv("FENCELINE_UPGRADE_NEW")
	if nw == "" {
		nw = binDir
	}
	return old, nw
}

// publisher seals and publishes one event per device every period, resending what is
// unacked every 2 s, until stop.
type publisher struct {
	fleet *lab.Fleet
	stop  chan struct{}
	done  sync.WaitGroup
}

func startPublisher(t *testing.T, fleet *lab.Fleet, period time.Duration) *publisher {
	p := &publisher{fleet: fleet, stop: make(chan struct{})}
	p.done.Add(1)
	go func() {
		defer p.done.Done()
		tick := time.NewTicker(period)
		defer tick.Stop()
		lastResend := time.Now()
		for n := 0; ; n++ {
			select {
			case <-p.stop:
				return
			case <-tick.C:
			}
			for i, d := range fleet.Devices() {
				if err := fleet.Seal(d, fmt.Sprintf("tcp dport %d drop", 1000+i*10000+n)); err != nil {
					t.Errorf("seal: %v", err)
					return
				}
				fleet.PublishAsync(d, uint64(len(d.IDs)))
			}
			if time.Since(lastResend) > 2*time.Second {
				fleet.Resend()
				lastResend = time.Now()
			}
		}
	}()
	return p
}

func (p *publisher) Stop() { close(p.stop); p.done.Wait() }

func statusLine(c *lab.Cluster) string {
	var b strings.Builder
	for _, nd := range c.Nodes {
		if nd.Exited() {
			fmt.Fprintf(&b, "%s: down; ", nd.ID)
			continue
		}
		var st upgradeStatus
		if err := c.Get(nd, "/v1/cluster", &st); err != nil {
			fmt.Fprintf(&b, "%s: %v; ", nd.ID, err)
			continue
		}
		h := "healthy"
		if status, body, _, err := c.Do(nd, "GET", "/healthz", nil); err != nil || status != 200 {
			h = fmt.Sprintf("UNHEALTHY %d %s", status, bytes.TrimSpace(body))
		}
		fmt.Fprintf(&b, "%s: %s commit %d applied %d log_format %s cluster_log_format %s %s; ",
			nd.ID, st.State, st.CommitIndex, st.AppliedIndex, fmtp(st.LogFormat),
			fmtp(st.ClusterLogFormat), h)
	}
	return b.String()
}

// acked returns the acked prefix of every device's chain.
func ackedIDs(fleet *lab.Fleet) map[string][]string {
	heads := fleet.Snapshot()
	out := map[string][]string{}
	for _, d := range fleet.Devices() {
		out[d.Device] = append([]string(nil), d.IDs[:heads[d.Tenant+"/"+d.Device]]...)
	}
	return out
}

// holds reports what nd is missing of want (device → ids in order), reading locally or
// consistently.
func holds(c *lab.Cluster, nd *lab.Node, want map[string][]string, consistent bool) string {
	q := "?limit=100000"
	if consistent {
		q += "&consistent=true"
	}
	for dev, ids := range want {
		var evs []clusterEvent
		if err := c.Get(nd, "/v1/tenants/acme/devices/"+dev+"/events"+q, &evs); err != nil {
			return err.Error()
		}
		if len(evs) < len(ids) {
			return fmt.Sprintf("%s: %s holds %d events, %d acked", nd.ID, dev, len(evs), len(ids))
		}
		for i, id := range ids {
			if evs[i].ID != id || evs[i].Seq != uint64(i+1) {
				return fmt.Sprintf("%s: %s event %d is %d/%s, acked %s", nd.ID, dev, i, evs[i].Seq,
					evs[i].ID, id)
			}
		}
	}
	return ""
}

// checkAcked waits until every running node holds every acked event, in local and
// consistent reads.
func checkAcked(t *testing.T, c *lab.Cluster, fleet *lab.Fleet, step string) {
	t.Helper()
	want := ackedIDs(fleet)
	n := 0
	for _, ids := range want {
		n += len(ids)
	}
	for _, nd := range c.Running() {
		for _, consistent := range []bool{true, false} {
			var last string
			err := lab.WaitFor(30*time.Second, "", func() (bool, string) {
				last = holds(c, nd, want, consistent)
				return last == "", last
			})
			if err != nil {
				t.Errorf("%s: %s (consistent=%v) lacks acked events: %s\n%s", step, nd.ID,
					consistent, last, statusLine(c))
			}
		}
	}
	t.Logf("%s: %d acked events on every running node; %s", step, n, statusLine(c))
}

// compareNodes checks, once the publisher stopped and every event is acked, that every
// running node holds the same events, device records and deviations (local reads) and
// no deviation twice.
func compareNodes(t *testing.T, c *lab.Cluster, fleet *lab.Fleet, step string) {
	t.Helper()
	leader, err := c.Leader(10 * time.Second)
	check(t, err)
	var lst upgradeStatus
	check(t, c.Get(leader, "/v1/cluster", &lst))
	// Wait for every node to apply what the leader committed.
	waitFor(t, 30*time.Second, "every node applies the leader's commit index", func() (bool, string) {
		for _, nd := range c.Running() {
			var st upgradeStatus
			if err := c.Get(nd, "/v1/cluster", &st); err != nil {
				return false, err.Error()
			}
			if st.AppliedIndex < lst.CommitIndex {
				return false, statusLine(c)
			}
		}
		return true, ""
	})
	type view struct {
		events  map[string]json.RawMessage
		devices map[string]map[string]any
		devs    []map[string]any
	}
	read := func(nd *lab.Node) (view, error) {
		v := view{events: map[string]json.RawMessage{}, devices: map[string]map[string]any{}}
		for _, d := range fleet.Devices() {
			var evs json.RawMessage
			if err := c.Get(nd, "/v1/tenants/acme/devices/"+d.Device+"/events?limit=100000", &evs); err != nil {
				return v, err
			}
			v.events[d.Device] = evs
			var dev map[string]any
			if err := c.Get(nd, "/v1/tenants/acme/devices/"+d.Device, &dev); err != nil {
				return v, err
			}
			v.devices[d.Device] = dev
		}
		return v, c.Get(nd, "/v1/tenants/acme/deviations", &v.devs)
	}
	ref, err := read(leader)
	check(t, err)
	seen := map[string]bool{}
	for _, dv := range ref.devs {
		k := fmt.Sprint(dv["event_id"], dv["rule"])
		if seen[k] {
			t.Errorf("%s: duplicate deviation %v", step, dv)
		}
		seen[k] = true
	}
	changes := 0
	for _, d := range fleet.Devices() {
		changes += len(d.IDs) - 1
	}
	if len(ref.devs) != changes {
		t.Errorf("%s: %d deviations on the leader, want one per change: %d", step, len(ref.devs), changes)
	}
	for _, nd := range c.Running() {
		if nd == leader {
			continue
		}
		v, err := read(nd)
		if err != nil {
			t.Errorf("%s: %s: %v", step, nd.ID, err)
			continue
		}
		for dev := range ref.events {
			if !bytes.Equal(v.events[dev], ref.events[dev]) {
				t.Errorf("%s: %s's events of %s differ from the leader's (%d vs %d bytes)", step,
					nd.ID, dev, len(v.events[dev]), len(ref.events[dev]))
			}
			if !reflect.DeepEqual(v.devices[dev], ref.devices[dev]) {
				t.Errorf("%s: %s's device %s differs from the leader's:\n%v\n%v", step, nd.ID, dev,
					v.devices[dev], ref.devices[dev])
			}
		}
		if len(v.devs) != len(ref.devs) {
			t.Errorf("%s: %s has %d deviations, the leader %d", step, nd.ID, len(v.devs), len(ref.devs))
		}
	}
	t.Logf("%s: nodes compared (%d deviations); %s", step, len(ref.devs), statusLine(c))
}

func ctlBin(dir string, c *lab.Cluster, nd *lab.Node, args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, "ip", append([]string{"netns", "exec", c.Netns,
		filepath.Join(dir, "fencectl")}, args...)...)
	cmd.Env = append(os.Environ(), "FENCELINE_SERVER="+nd.API, "FENCELINE_TOKEN="+c.Token)
	out, err := cmd.CombinedOutput()
	return string(out), err
}

func TestUpgradeRollingLeaderLast(t *testing.T)  { upgradeRolling(t, false) }
func TestUpgradeRollingLeaderFirst(t *testing.T) { upgradeRolling(t, true) }

func upgradeRolling(t *testing.T, leaderFirst bool) {
	oldBin, newBin := upgradeBins(t)
	l := newLab(t, "mosquitto")
	c, err := l.Cluster(3, lab.ClusterOptions{Bins: []string{oldBin, oldBin, oldBin},
		Env: []string{"FENCELINE_RAFT_SNAPSHOT_THRESHOLD=400",
			"FENCELINE_RAFT_SNAPSHOT_INTERVAL=1s", "FENCELINE_RAFT_TRAILING_LOGS=200"}})
	check(t, err)
	defer logProblems(t, l, c)
	leader, err := c.Leader(10 * time.Second)
	check(t, err)
	fleet, err := lab.NewFleet(c.Broker, lab.NetnsDialer(c.Netns))
	check(t, err)
	t.Cleanup(fleet.Close)
	for i := range 6 {
		d, err := fleet.Enroll(c.Poster(leader), clusterTenant, fmt.Sprintf("fw%02d", i))
		check(t, err)
		check(t, fleet.Seal(d, ""))
		check(t, fleet.Publish(d, 1, 1))
	}
	pub := startPublisher(t, fleet, 100*time.Millisecond)
	stopped := false
	defer func() {
		if !stopped {
			pub.Stop()
		}
	}()
	time.Sleep(3 * time.Second)
	checkAcked(t, c, fleet, "old cluster")

	order := []*lab.Node{}
	for _, nd := range c.Nodes {
		if nd != leader {
			order = append(order, nd)
		}
	}
	if leaderFirst {
		order = append([]*lab.Node{leader}, order...)
	} else {
		order = append(order, leader)
	}
	for i, nd := range order {
		step := fmt.Sprintf("step %d: %s upgraded", i+1, nd.ID)
		if leaderFirst {
			nd.Kill() // and SIGKILL in this order: the old state file has no marker
		} else {
			nd.Stop()
		}
		c.SetBin(nd, newBin)
		time.Sleep(time.Second) // events flow while it is down
		if err := c.Restart(nd); err != nil {
			t.Fatalf("%s: %v\n%s", step, err, nd.Tail(30))
		}
		time.Sleep(6 * time.Second) // more than one format check of the leader
		checkAcked(t, c, fleet, step)
	}
	waitFor(t, 40*time.Second, "cluster log format 2 on every node", func() (bool, string) {
		for _, nd := range c.Nodes {
			var st upgradeStatus
			if err := c.Get(nd, "/v1/cluster", &st); err != nil {
				return false, err.Error()
			}
			if st.ClusterLogFormat == nil || *st.ClusterLogFormat != 2 {
				return false, statusLine(c)
			}
		}
		return true, ""
	})
	time.Sleep(4 * time.Second) // binary entries now
	checkAcked(t, c, fleet, "format 2")
	pub.Stop()
	stopped = true
	check(t, fleet.WaitAcked(60*time.Second, 2*time.Second))
	compareNodes(t, c, fleet, "upgraded")
	if leaderFirst {
		return
	}
	out, err := c.Ctl(c.Nodes[0], "", "cluster", "status")
	t.Logf("fencectl cluster status: %v\n%s", err, out)

	// A fresh node of the earlier version asks to join (cluster.join).
	leader, err = c.Leader(10 * time.Second)
	check(t, err)
	n4, err := c.AddNode(oldBin, leader)
	check(t, err)
	time.Sleep(8 * time.Second)
	var st upgradeStatus
	check(t, c.Get(leader, "/v1/cluster", &st))
	if len(st.Members) != 3 {
		t.Errorf("an old node joined with --join: %d members", len(st.Members))
	}
	t.Logf("old node with --join: members %d; its log:\n%s", len(st.Members), n4.Tail(8))
	n4.Stop()
	// By hand, with fencectl of both versions.
	for _, dir := range []string{newBin, oldBin} {
		out, err := ctlBin(dir, c, leader, "cluster", "join", "--id", n4.ID, "--raft-addr",
			n4.RaftAddr, "--api", n4.API)
		t.Logf("fencectl (%s) cluster join of the stopped old node: %v\n%s", dir, err, out)
	}
	n5, err := c.AddNode(oldBin, nil, "FENCELINE_CLUSTER_BOOTSTRAP=false")
	check(t, err)
	waitFor(t, 20*time.Second, "node-5 API", func() (bool, string) {
		var x map[string]any
		err := c.Get(n5, "/v1/cluster", &x)
		return err == nil, fmt.Sprint(err)
	})
	for _, dir := range []string{newBin, oldBin} {
		out, err := ctlBin(dir, c, leader, "cluster", "join", "--id", n5.ID, "--raft-addr",
			n5.RaftAddr, "--api", n5.API)
		t.Logf("fencectl (%s) cluster join of a running old node: %v\n%s", dir, err, out)
		if err == nil {
			t.Errorf("fencectl (%s) joined an old node", dir)
		}
	}
	check(t, c.Get(leader, "/v1/cluster", &st))
	if len(st.Members) != 3 {
		t.Errorf("an old node joined by hand: %d members", len(st.Members))
	}
	n5.Stop()

	// Downgrade a follower after format 2.
	follower := c.Follower(leader) // one of the first three: the others were added later
	follower.Stop()
	c.SetBin(follower, oldBin)
	check(t, follower.Restart())
	stopped = false
	pub = startPublisher(t, fleet, 100*time.Millisecond)
	time.Sleep(8 * time.Second)
	pub.Stop()
	stopped = true
	check(t, fleet.WaitAcked(60*time.Second, 2*time.Second))
	time.Sleep(2 * time.Second)
	t.Logf("after downgrading %s: %s", follower.ID, statusLine(c))
	want := ackedIDs(fleet)
	t.Logf("downgraded %s local read: %q; consistent: %q", follower.ID,
		holds(c, follower, want, false), holds(c, follower, want, true))
	sout, err := ctlBin(oldBin, c, follower, "cluster", "status")
	t.Logf("old fencectl cluster status on %s: %v\n%s", follower.ID, err, sout)
	t.Logf("downgraded node's log:\n%s", follower.Tail(25))

	// Upgraded again: the entries it skipped stay skipped?
	follower.Stop()
	c.SetBin(follower, newBin)
	check(t, c.Restart(follower))
	time.Sleep(3 * time.Second)
	t.Logf("re-upgraded %s: local read: %q; %s", follower.ID, holds(c, follower, want, false),
		statusLine(c))
}

// logProblems logs every node's WARN and ERROR lines.
func logProblems(t *testing.T, l *lab.Lab, c *lab.Cluster) {
	for _, nd := range c.Nodes {
		b, _ := os.ReadFile(filepath.Join(l.Dir, nd.ID+".log"))
		var lines []string
		for _, ln := range strings.Split(string(b), "\n") {
			if (strings.Contains(ln, "level=WARN") || strings.Contains(ln, "level=ERROR") ||
				strings.Contains(ln, "rebuild") || strings.Contains(ln, "log format")) &&
				!strings.Contains(ln, "heartbeat") && !strings.Contains(ln, "appendEntries") {
				lines = append(lines, ln)
			}
		}
		if len(lines) > 30 {
			lines = append(lines[:30], fmt.Sprintf("... %d more", len(lines)-30))
		}
		t.Logf("%s problems:\n%s", nd.ID, strings.Join(lines, "\n"))
	}
}
