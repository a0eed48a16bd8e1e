package e2e

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"math/rand/v2"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/fenceline/fenceline/scripts/lab"
)

// Durability trials of the unsynced state file (commit ac01cd5): a node's state.db is
// not synced at every commit, and a marker naming another boot makes the node discard it
// and rebuild from the newest snapshot and the raft log. A power cut is simulated on a
// killed node: its marker is made to name another boot, and state.db is damaged the way
// a machine restart can leave it (an older copy, zeroed pages, a truncated file, none).
// They run only with FENCELINE_DURABILITY_TRIALS=1 (about 3 minutes on 2 cores).

const fakeBoot = "00000000-0000-4000-8000-00000000dead"

func storeDir(nd *lab.Node) string   { return filepath.Join(nd.DataDir, "store") }
func statePath(nd *lab.Node) string  { return filepath.Join(storeDir(nd), "state.db") }
func markerPath(nd *lab.Node) string { return statePath(nd) + ".unsynced" }
func readState(t *testing.T, nd *lab.Node) []byte {
	t.Helper()
	b, err := os.ReadFile(statePath(nd))
	check(t, err)
	return b
}

// powerCut simulates on a killed node what a machine restart leaves: the marker of the
// old boot and a state file that lost writes. mode: "older" (older, when given, replaces
// the file), "zero" (pages zeroed), "truncate", "delete".
func powerCut(t *testing.T, nd *lab.Node, mode string, older []byte) {
	t.Helper()
	if !nd.Exited() {
		t.Fatalf("%s still runs", nd.ID)
	}
	if _, err := os.Stat(markerPath(nd)); err != nil {
		t.Fatalf("%s: no marker after a kill: %v", nd.ID, err)
	}
	check(t, os.WriteFile(markerPath(nd), []byte(fakeBoot), 0o600))
	p := statePath(nd)
	switch mode {
	case "older":
		check(t, os.WriteFile(p, older, 0o600))
	case "zero":
		b := readState(t, nd)
		// Zero every other 4 KiB page after the meta pages, and the second meta page.
		for off := 4096; off < len(b); off += 8192 {
			end := min(off+4096, len(b))
			clear(b[off:end])
		}
		check(t, os.WriteFile(p, b, 0o600))
	case "truncate":
		check(t, os.Truncate(p, 4096*3))
	case "delete":
		check(t, os.Remove(p))
	default:
		t.Fatalf("mode %q", mode)
	}
	t.Logf("power cut on %s: state.db %s", nd.ID, mode)
}

// trialBurst seals n changes per device and publishes them in the background; approvals of
// the given CRs go through via, one after another. It returns a wait function.
type trialBurst struct {
	approved sync.Map
	wg       sync.WaitGroup
}

func startTrialBurst(c *lab.Cluster, fleet *lab.Fleet, via *lab.Node, crs []string, pause time.Duration) *trialBurst {
	b := &trialBurst{}
	b.wg.Add(1)
	go func() {
		defer b.wg.Done()
		for _, id := range crs {
			for attempt := 0; attempt < 20; attempt++ {
				nd := via
				if nd.Exited() {
					if r := c.Running(); len(r) > 0 {
						nd = r[0]
					}
				}
				status, _, _, err := c.Do(nd, "POST", "/v1/tenants/acme/crs/"+id+"/approve",
					map[string]string{"approver": "bob"})
				if err == nil && status == http.StatusOK {
					b.approved.Store(id, true)
					break
				}
				if err == nil && status == http.StatusConflict {
					break // already approved by an attempt whose answer was lost
				}
				time.Sleep(200 * time.Millisecond)
			}
			time.Sleep(pause)
		}
	}()
	acked := fleet.Snapshot()
	for _, d := range fleet.Devices() {
		d := d
		b.wg.Add(1)
		go func() {
			defer b.wg.Done()
			fleet.Publish(d, acked[d.Tenant+"/"+d.Device]+1, uint64(len(d.IDs)))
		}()
	}
	return b
}

func sealAll(t *testing.T, fleet *lab.Fleet, n int) {
	t.Helper()
	for i, d := range fleet.Devices() {
		base := len(d.IDs)
		for j := 0; j < n; j++ {
			check(t, fleet.Seal(d, fmt.Sprintf("tcp dport %d drop", 20000+1000*i+base+j)))
		}
	}
}

type trial struct {
	t     *testing.T
	c     *lab.Cluster
	fleet *lab.Fleet
	crs   []string
	next  int
	// approved: every CR whose approval was answered 200.
	approved map[string]bool
}

func newTrial(t *testing.T, devices, crs int, env ...string) *trial {
	if os.Getenv("FENCELINE_DURABILITY_TRIALS") == "" {
		t.Skip("durability trials (about 3 minutes): set FENCELINE_DURABILITY_TRIALS=1")
	}
	_, c := newCluster(t, env...)
	leader, err := c.Leader(10 * time.Second)
	check(t, err)
	fleet, err := lab.NewFleet(c.Broker, lab.NetnsDialer(c.Netns))
	check(t, err)
	t.Cleanup(fleet.Close)
	tr := &trial{t: t, c: c, fleet: fleet, approved: map[string]bool{}}
	for i := range devices {
		_, err := fleet.Enroll(c.Poster(leader), clusterTenant, fmt.Sprintf("fw%02d", i))
		check(t, err)
	}
	enrollElsewhere(t, c.Poster(leader))
	for i := range crs {
		id := fmt.Sprintf("CR-D-%03d", i)
		check(t, c.Poster(leader)("POST", "/v1/tenants/acme/crs", crRequest(id), nil))
		tr.crs = append(tr.crs, id)
	}
	return tr
}

// takeCRs returns the next n CRs to approve.
func (tr *trial) takeCRs(n int) []string {
	n = min(n, len(tr.crs)-tr.next)
	out := tr.crs[tr.next : tr.next+n]
	tr.next += n
	return out
}

func (tr *trial) collect(b *trialBurst) {
	b.wg.Wait()
	b.approved.Range(func(k, _ any) bool { tr.approved[k.(string)] = true; return true })
}

func (tr *trial) node(pred func(nd *lab.Node, leader bool) bool) *lab.Node {
	leader, err := tr.c.Leader(30 * time.Second)
	check(tr.t, err)
	for _, nd := range tr.c.Nodes {
		if pred(nd, nd == leader) {
			return nd
		}
	}
	tr.t.Fatal("no such node")
	return nil
}

func (tr *trial) restart(nds ...*lab.Node) {
	tr.t.Helper()
	before, cut := make([]int, len(nds)), make([]bool, len(nds))
	for i, nd := range nds {
		before[i], cut[i] = rebuilds(nd), markerWasFake(nd)
	}
	var wg sync.WaitGroup
	errs := make([]error, len(nds))
	for i, nd := range nds {
		wg.Add(1)
		go func() { defer wg.Done(); errs[i] = tr.c.Restart(nd) }()
	}
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			tr.t.Fatalf("restart %s: %v\n%s", nds[i].ID, err, nds[i].Tail(40))
		}
	}
	for i, nd := range nds {
		if cut[i] && rebuilds(nd) == before[i] {
			tr.t.Errorf("%s: no 'rebuilding it' line after a power cut", nd.ID)
		}
	}
}

func rebuilds(nd *lab.Node) int { return strings.Count(nd.Tail(1<<30), "rebuilding it") }

func markerWasFake(nd *lab.Node) bool {
	b, err := os.ReadFile(markerPath(nd))
	return err == nil && string(b) == fakeBoot
}

// localGet reads path from nd's own state (no forwarding).
func (tr *trial) localGet(nd *lab.Node, path string) ([]byte, error) {
	status, body, _, err := tr.c.Do(nd, "GET", path, nil)
	if err != nil {
		return nil, err
	}
	if status != http.StatusOK {
		return nil, fmt.Errorf("GET %s on %s: %d %s", path, nd.ID, status, body)
	}
	return body, nil
}

// verify: every event is acked and stored once, in order, on the leader (consistent
// reads through every node), each change raised one deviation, every acknowledged
// approval is approved, and every node's local state has the same events, heads,
// deviations and CRs.
func (tr *trial) verify(ackedBefore map[string]uint64) {
	t, c, fleet := tr.t, tr.c, tr.fleet
	t.Helper()
	check(t, fleet.WaitAcked(120*time.Second, 2*time.Second))
	if n := fleet.BadAcks.Load(); n != 0 {
		t.Errorf("%d acks with a bad signature", n)
	}
	leader, err := c.Leader(30 * time.Second)
	check(t, err)
	total := 0
	for _, via := range c.Nodes {
		for _, d := range fleet.Devices() {
			var evs []clusterEvent
			tr.getConsistent(via, "/v1/tenants/acme/devices/"+d.Device+
				"/events?limit=100000&consistent=true", &evs)
			if len(evs) != len(d.IDs) {
				t.Errorf("via %s: %s: %d events stored, want %d", via.ID, d.Device, len(evs), len(d.IDs))
				continue
			}
			for i, e := range evs {
				if e.Seq != uint64(i+1) || e.ID != d.IDs[i] {
					t.Errorf("via %s: %s: event %d is seq %d id %s, want %d %s", via.ID, d.Device,
						i, e.Seq, e.ID, i+1, d.IDs[i])
					break
				}
			}
			if a := ackedBefore[clusterTenant+"/"+d.Device]; a > uint64(len(evs)) {
				t.Errorf("%s: acked %d before the cut, %d stored", d.Device, a, len(evs))
			}
			if via == leader {
				total += len(evs)
			}
		}
	}
	// Deviations: one per change, none twice.
	var devs []map[string]any
	tr.getConsistent(leader, "/v1/tenants/acme/deviations?consistent=true", &devs)
	seen := map[string]int{}
	changes := 0
	for _, d := range fleet.Devices() {
		changes += len(d.IDs) - 1
	}
	unauth := 0
	for _, dv := range devs {
		k := fmt.Sprint(dv["kind"], dv["device"], dv["event_id"], dv["rule"], dv["seq"])
		seen[k]++
		if seen[k] == 2 {
			t.Errorf("duplicate deviation %s", k)
		}
		if dv["kind"] == "unauthorized" {
			unauth++
		}
	}
	if unauth != changes {
		t.Errorf("%d unauthorized deviations, want one per change: %d", unauth, changes)
	}
	for id := range tr.approved {
		var cr clusterCR
		tr.getConsistent(leader, "/v1/tenants/acme/crs/"+id+"?consistent=true", &cr)
		if cr.State != "approved" {
			t.Errorf("%s was approved (200) but is %s", id, cr.State)
		}
	}
	// Every node's own state is the same.
	paths := []string{"/v1/tenants/acme/crs", "/v1/tenants/acme/deviations", "/v1/tenants/acme/devices"}
	for _, d := range fleet.Devices() {
		paths = append(paths, "/v1/tenants/acme/devices/"+d.Device+"/events?limit=100000")
	}
	var last string
	err = lab.WaitFor(30*time.Second, "every node's state the same", func() (bool, string) {
		var st lab.ClusterStatus
		if err := c.Get(leader, "/v1/cluster", &st); err != nil {
			return false, err.Error()
		}
		for _, nd := range c.Nodes {
			var s lab.ClusterStatus
			if err := c.Get(nd, "/v1/cluster", &s); err != nil {
				return false, err.Error()
			}
			if s.AppliedIndex < st.CommitIndex {
				return false, fmt.Sprintf("%s applied %d < commit %d", nd.ID, s.AppliedIndex, st.CommitIndex)
			}
		}
		for _, p := range paths {
			want, err := tr.localGet(leader, p)
			if err != nil {
				return false, err.Error()
			}
			for _, nd := range c.Nodes {
				got, err := tr.localGet(nd, p)
				if err != nil {
					return false, err.Error()
				}
				if !bytes.Equal(got, want) {
					last = fmt.Sprintf("%s differs on %s from leader %s:\n%s\nleader:\n%s", p, nd.ID,
						leader.ID, clip(got), clip(want))
					return false, last
				}
			}
		}
		return true, ""
	})
	if err != nil {
		t.Errorf("divergence: %v", err)
	}
	out, err := c.Ctl(leader, clusterTenant, "cluster", "status")
	check(t, err)
	t.Logf("%d events, %d deviations, %d approvals acknowledged; cluster:\n%s", total, len(devs),
		len(tr.approved), out)
	for _, nd := range c.Nodes {
		out, err := c.Ctl(nd, clusterTenant, "deviations", "-o", "json")
		check(t, err)
		var dv []any
		check(t, json.Unmarshal(out, &dv))
		if len(dv) != len(devs) {
			t.Errorf("fencectl deviations on %s: %d, want %d", nd.ID, len(dv), len(devs))
		}
	}
}

// getConsistent reads through nd, waiting out (and reporting) 503 answers of a node
// that cannot forward yet.
func (tr *trial) getConsistent(nd *lab.Node, path string, v any) {
	tr.t.Helper()
	start := time.Now()
	var first string
	for {
		status, body, _, err := tr.c.Do(nd, "GET", path, nil)
		check(tr.t, err)
		if status == http.StatusOK {
			if first != "" {
				tr.t.Logf("%s answered 503 for %s to a consistent read (%s)", nd.ID,
					time.Since(start).Round(time.Millisecond), first)
			}
			check(tr.t, json.Unmarshal(body, v))
			return
		}
		if status != http.StatusServiceUnavailable || time.Since(start) > 30*time.Second {
			tr.t.Fatalf("GET %s on %s: %d %s (503 since %s)", path, nd.ID, status, body, time.Since(start))
		}
		if first == "" {
			first = strings.Join(strings.Fields(string(body)), " ")
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func clip(b []byte) string {
	if len(b) > 600 {
		return string(b[:600]) + "…"
	}
	return string(b)
}

var durabilityEnv = []string{"FENCELINE_RAFT_SNAPSHOT_THRESHOLD=200",
	"FENCELINE_RAFT_SNAPSHOT_INTERVAL=500ms", "FENCELINE_RAFT_TRAILING_LOGS=50"}

// TestDurabilityFollowerOlderCopy: a follower's state.db is replaced by an older copy
// (taken after an earlier kill) and its marker names another boot.
func TestDurabilityFollowerOlderCopy(t *testing.T) {
	tr := newTrial(t, 6, 20, durabilityEnv...)
	sealAll(t, tr.fleet, 20)
	tr.collect(startTrialBurst(tr.c, tr.fleet, tr.c.Nodes[0], tr.takeCRs(5), 20*time.Millisecond))
	check(t, tr.fleet.WaitAcked(60*time.Second, 2*time.Second))
	f := tr.node(func(_ *lab.Node, leader bool) bool { return !leader })
	f.Kill()
	older := readState(t, f)
	tr.restart(f)
	sealAll(t, tr.fleet, 40)
	b := startTrialBurst(tr.c, tr.fleet, f, tr.takeCRs(10), 30*time.Millisecond)
	time.Sleep(1500 * time.Millisecond)
	f.Kill()
	acked := tr.fleet.Snapshot()
	tr.collect(b)
	powerCut(t, f, "older", older)
	tr.restart(f)
	tr.verify(acked)
}

// TestDurabilityLeaderCutDuringBurst: the leader is killed in a trialBurst of events and
// approvals, its state.db zeroed in places and its marker of another boot.
func TestDurabilityLeaderCutDuringBurst(t *testing.T) {
	for _, mode := range []string{"zero", "truncate"} {
		t.Run(mode, func(t *testing.T) {
			tr := newTrial(t, 8, 20, durabilityEnv...)
			sealAll(t, tr.fleet, 50)
			ld := tr.node(func(_ *lab.Node, leader bool) bool { return leader })
			via := tr.node(func(_ *lab.Node, leader bool) bool { return !leader })
			b := startTrialBurst(tr.c, tr.fleet, via, tr.takeCRs(20), 30*time.Millisecond)
			check(t, lab.WaitFor(30*time.Second, "a third acked", func() (bool, string) {
				return tr.fleet.Unacked() < 8*50*2/3, fmt.Sprint(tr.fleet.Unacked())
			}))
			ld.Kill()
			acked := tr.fleet.Snapshot()
			powerCut(t, ld, mode, nil)
			tr.collect(b)
			check(t, tr.fleet.WaitAcked(90*time.Second, 2*time.Second))
			tr.restart(ld)
			tr.verify(acked)
		})
	}
}

// TestDurabilityAllCut: all three nodes are killed at once in a trialBurst and power-cut,
// each with its state damaged another way (older copy, zeroed, none).
func TestDurabilityAllCut(t *testing.T) {
	tr := newTrial(t, 8, 30, durabilityEnv...)
	sealAll(t, tr.fleet, 20)
	tr.collect(startTrialBurst(tr.c, tr.fleet, tr.c.Nodes[1], tr.takeCRs(10), 10*time.Millisecond))
	check(t, tr.fleet.WaitAcked(60*time.Second, 2*time.Second))
	// Older copies: kill each node in turn and copy its file.
	olders := map[string][]byte{}
	for _, nd := range tr.c.Nodes {
		nd.Kill()
		olders[nd.ID] = readState(t, nd)
		tr.restart(nd)
		_, err := tr.c.Leader(30 * time.Second)
		check(t, err)
	}
	sealAll(t, tr.fleet, 60)
	b := startTrialBurst(tr.c, tr.fleet, tr.c.Nodes[2], tr.takeCRs(20), 20*time.Millisecond)
	check(t, lab.WaitFor(30*time.Second, "half acked", func() (bool, string) {
		return tr.fleet.Unacked() < 8*60/2, fmt.Sprint(tr.fleet.Unacked())
	}))
	var wg sync.WaitGroup
	for _, nd := range tr.c.Nodes {
		wg.Add(1)
		go func() { defer wg.Done(); nd.Kill() }()
	}
	wg.Wait()
	acked := tr.fleet.Snapshot()
	modes := []string{"older", "zero", "delete"}
	for i, nd := range tr.c.Nodes {
		powerCut(t, nd, modes[i], olders[nd.ID])
	}
	tr.restart(tr.c.Nodes...)
	tr.collect(b)
	tr.verify(acked)
}

// TestDurabilityCutAfterCompaction: snapshots on every node, the log compacted past an
// older copy of a follower's state, then that follower (and later the leader) power-cut.
func TestDurabilityCutAfterCompaction(t *testing.T) {
	tr := newTrial(t, 5, 20, "FENCELINE_RAFT_TRAILING_LOGS=10",
		"FENCELINE_RAFT_SNAPSHOT_THRESHOLD=100000", "FENCELINE_RAFT_SNAPSHOT_INTERVAL=1h")
	sealAll(t, tr.fleet, 10)
	tr.collect(startTrialBurst(tr.c, tr.fleet, tr.c.Nodes[0], tr.takeCRs(5), 10*time.Millisecond))
	check(t, tr.fleet.WaitAcked(60*time.Second, 2*time.Second))
	f := tr.node(func(_ *lab.Node, leader bool) bool { return !leader })
	f.Kill()
	older := readState(t, f)
	tr.restart(f)
	sealAll(t, tr.fleet, 30)
	tr.collect(startTrialBurst(tr.c, tr.fleet, tr.c.Nodes[0], tr.takeCRs(5), 10*time.Millisecond))
	check(t, tr.fleet.WaitAcked(60*time.Second, 2*time.Second))
	for _, nd := range tr.c.Nodes {
		out, err := tr.c.Ctl(nd, clusterTenant, "cluster", "snapshot")
		check(t, err)
		t.Logf("%s: %s", nd.ID, bytes.TrimSpace(out))
	}
	// More after the snapshot, so the node needs snapshot + log.
	sealAll(t, tr.fleet, 15)
	tr.collect(startTrialBurst(tr.c, tr.fleet, tr.c.Nodes[0], tr.takeCRs(5), 10*time.Millisecond))
	check(t, tr.fleet.WaitAcked(60*time.Second, 2*time.Second))
	f.Kill()
	acked := tr.fleet.Snapshot()
	powerCut(t, f, "older", older)
	tr.restart(f)
	tr.verify(acked)

	ld := tr.node(func(_ *lab.Node, leader bool) bool { return leader })
	ld.Kill()
	acked = tr.fleet.Snapshot()
	powerCut(t, ld, "delete", nil)
	sealAll(t, tr.fleet, 5)
	tr.collect(startTrialBurst(tr.c, tr.fleet, tr.c.Nodes[0], tr.takeCRs(3), 10*time.Millisecond))
	tr.restart(ld)
	tr.verify(acked)
}

// TestDurabilityKillDuringSnapshot: a node is killed while it takes a snapshot (asked
// with fencectl cluster snapshot), then power-cut.
func TestDurabilityKillDuringSnapshot(t *testing.T) {
	tr := newTrial(t, 8, 20, "FENCELINE_RAFT_TRAILING_LOGS=20",
		"FENCELINE_RAFT_SNAPSHOT_THRESHOLD=100000", "FENCELINE_RAFT_SNAPSHOT_INTERVAL=1h")
	sealAll(t, tr.fleet, 80)
	tr.collect(startTrialBurst(tr.c, tr.fleet, tr.c.Nodes[0], tr.takeCRs(10), 5*time.Millisecond))
	check(t, tr.fleet.WaitAcked(90*time.Second, 2*time.Second))
	for round, delay := range []time.Duration{20 * time.Millisecond, 60 * time.Millisecond,
		150 * time.Millisecond, 40 * time.Millisecond} {
		pick := round%2 == 1
		nd := tr.node(func(_ *lab.Node, leader bool) bool { return leader == pick })
		sealAll(t, tr.fleet, 20)
		b := startTrialBurst(tr.c, tr.fleet, tr.c.Nodes[(round+1)%3], tr.takeCRs(5), 10*time.Millisecond)
		done := make(chan struct{})
		go func() {
			defer close(done)
			out, err := tr.c.Ctl(nd, clusterTenant, "cluster", "snapshot")
			t.Logf("snapshot on %s: %s %v", nd.ID, bytes.TrimSpace(out), err)
		}()
		time.Sleep(delay)
		nd.Kill()
		<-done
		acked := tr.fleet.Snapshot()
		snaps, _ := filepath.Glob(filepath.Join(storeDir(nd), "snapshots", "*"))
		t.Logf("%s snapshots on disk: %v", nd.ID, snaps)
		powerCut(t, nd, "zero", nil)
		tr.collect(b)
		tr.restart(nd)
		tr.verify(acked)
	}
}

// TestDurabilityMarkerOddities: marker of another boot without state.db; the marker
// unreadable (mode 000, a directory, empty); the node comes up whole or fails clearly.
func TestDurabilityMarkerOddities(t *testing.T) {
	tr := newTrial(t, 4, 10, durabilityEnv...)
	sealAll(t, tr.fleet, 30)
	tr.collect(startTrialBurst(tr.c, tr.fleet, tr.c.Nodes[0], tr.takeCRs(4), 10*time.Millisecond))
	check(t, tr.fleet.WaitAcked(60*time.Second, 2*time.Second))

	f := tr.node(func(_ *lab.Node, leader bool) bool { return !leader })
	// 1. marker of another boot, no state.db.
	f.Kill()
	powerCut(t, f, "delete", nil)
	tr.restart(f)
	tr.verify(nil)

	// 2. marker empty (a power cut while it was written would leave that).
	f.Kill()
	check(t, os.WriteFile(markerPath(f), nil, 0o600))
	n := rebuilds(f)
	tr.restart(f)
	if rebuilds(f) == n {
		t.Errorf("empty marker: no rebuild")
	}
	tr.verify(nil)

	// 3. marker mode 000 (root reads it anyway: same boot, nothing to rebuild).
	f.Kill()
	check(t, os.Chmod(markerPath(f), 0))
	tr.restart(f)
	tr.verify(nil)

	// 4. a directory in the marker's place: the node must fail with a clear error or
	// come up whole, and keep its state file.
	f.Kill()
	check(t, os.Remove(markerPath(f)))
	check(t, os.Mkdir(markerPath(f), 0o700))
	sealAll(t, tr.fleet, 5)
	tr.collect(startTrialBurst(tr.c, tr.fleet, tr.node(func(n *lab.Node, _ bool) bool { return n != f }),
		tr.takeCRs(2), 10*time.Millisecond))
	err := tr.c.Restart(f)
	_, statErr := os.Stat(statePath(f))
	t.Logf("marker is a directory: restart err=%v; state.db after: %v\n%s", err, statErr, f.Tail(15))
	if statErr != nil {
		t.Errorf("state.db removed although no machine restart is known: %v", statErr)
	}
	if err == nil {
		tr.verify(nil)
	} else {
		if !f.Exited() {
			t.Errorf("%s neither healthy nor exited", f.ID)
			f.Kill()
		}
		check(t, os.Remove(markerPath(f)))
		tr.restart(f)
		tr.verify(nil)
	}
	if _, err := os.Stat(markerPath(f)); errors.Is(err, fs.ErrNotExist) {
		t.Errorf("no marker while running")
	}
	// 5. clean stop: marker gone, file synced; restart with the same boot.
	f.Stop()
	if _, err := os.Stat(markerPath(f)); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("marker after a clean stop: %v", err)
	}
	tr.restart(f)
	tr.verify(nil)
}

// TestDurabilitySoak: rounds of bursts in which a random node (sometimes two) is killed
// at a random moment and power-cut with random damage, sometimes killed again while it
// rebuilds; the cluster snapshots and compacts all the while.
func TestDurabilitySoak(t *testing.T) {
	const devices, rounds, perRound = 6, 10, 25
	tr := newTrial(t, devices, rounds*3, "FENCELINE_RAFT_SNAPSHOT_THRESHOLD=150",
		"FENCELINE_RAFT_SNAPSHOT_INTERVAL=300ms", "FENCELINE_RAFT_TRAILING_LOGS=30")
	rng := rand.New(rand.NewPCG(uint64(time.Now().UnixNano()), 7))
	modes := []string{"older", "zero", "truncate", "delete"}
	olders := map[string][]byte{}
	for r := range rounds {
		sealAll(t, tr.fleet, perRound)
		b := startTrialBurst(tr.c, tr.fleet, tr.c.Nodes[rng.IntN(3)], tr.takeCRs(3), 20*time.Millisecond)
		time.Sleep(time.Duration(rng.IntN(1500)) * time.Millisecond)
		victims := []*lab.Node{tr.c.Nodes[rng.IntN(3)]}
		if rng.IntN(3) == 0 {
			victims = append(victims, tr.c.Nodes[(slices.Index(tr.c.Nodes, victims[0])+1)%3])
		}
		for _, v := range victims {
			v.Kill()
		}
		for _, v := range victims {
			if rng.IntN(2) == 0 || olders[v.ID] == nil {
				olders[v.ID] = readState(t, v)
			}
			powerCut(t, v, modes[rng.IntN(len(modes))], olders[v.ID])
		}
		time.Sleep(time.Duration(rng.IntN(800)) * time.Millisecond)
		if rng.IntN(3) == 0 { // a second cut while it rebuilds
			v := victims[0]
			check(t, v.Restart())
			time.Sleep(time.Duration(50+rng.IntN(400)) * time.Millisecond)
			v.Kill()
			powerCut(t, v, modes[rng.IntN(len(modes))], olders[v.ID])
			t.Logf("round %d: %s cut again while rebuilding", r, v.ID)
		}
		tr.restart(victims...)
		tr.collect(b)
		check(t, tr.fleet.WaitAcked(120*time.Second, 2*time.Second))
	}
	tr.verify(nil)
}

// TestDurabilityCutDuringInstallSnapshot: a follower cut off long enough to need the
// leader's snapshot is killed while it installs it, and power-cut.
func TestDurabilityCutDuringInstallSnapshot(t *testing.T) {
	tr := newTrial(t, 8, 10, "FENCELINE_RAFT_SNAPSHOT_THRESHOLD=100",
		"FENCELINE_RAFT_SNAPSHOT_INTERVAL=300ms", "FENCELINE_RAFT_TRAILING_LOGS=20")
	sealAll(t, tr.fleet, 20)
	tr.collect(startTrialBurst(tr.c, tr.fleet, tr.c.Nodes[0], tr.takeCRs(2), 10*time.Millisecond))
	check(t, tr.fleet.WaitAcked(60*time.Second, 2*time.Second))
	// delay < 0: kill that long after the partition heals, without waiting for the copy.
	for round, delay := range []time.Duration{0, 3 * time.Millisecond, 15 * time.Millisecond,
		-20 * time.Millisecond} {
		f := tr.node(func(_ *lab.Node, leader bool) bool { return !leader })
		check(t, tr.c.Partition(f))
		sealAll(t, tr.fleet, 60)
		tr.collect(startTrialBurst(tr.c, tr.fleet, tr.node(func(n *lab.Node, _ bool) bool { return n != f }),
			tr.takeCRs(2), 10*time.Millisecond))
		check(t, tr.fleet.WaitAcked(60*time.Second, 2*time.Second))
		for _, nd := range tr.c.Nodes {
			if nd != f {
				tr.c.Ctl(nd, clusterTenant, "cluster", "snapshot")
			}
		}
		count := func(s string) int { return strings.Count(f.Tail(1<<30), s) }
		copied, restored := count("copied to local snapshot"), count("state restored from snapshot")
		check(t, tr.c.Heal())
		if delay < 0 {
			time.Sleep(-delay)
		} else {
			check(t, lab.WaitFor(20*time.Second, "the snapshot copied", func() (bool, string) {
				return count("copied to local snapshot") > copied, ""
			}))
			time.Sleep(delay)
		}
		f.Kill()
		t.Logf("round %d: %s killed at %s (copied: %v, restored: %v)", round, f.ID, delay,
			count("copied to local snapshot") > copied, count("state restored from snapshot") > restored)
		powerCut(t, f, "zero", nil)
		tr.restart(f)
		tr.verify(nil)
	}
}

// TestDurabilityRebuildWindow measures, with the default snapshot settings, how long a
// follower answers healthy while its local reads still lack what it held before: after
// a kill -9 (same boot) and after a power cut (state rebuilt from the log). A restarted
// node answers local reads with 503 until it holds again what it held, so no read may
// come from an empty state (a tenant it knew reported unknown).
func TestDurabilityRebuildWindow(t *testing.T) {
	tr := newTrial(t, 10, 2)
	sealAll(t, tr.fleet, 300)
	tr.collect(startTrialBurst(tr.c, tr.fleet, tr.c.Nodes[0], nil, 0))
	check(t, tr.fleet.WaitAcked(180*time.Second, 2*time.Second))
	f := tr.node(func(_ *lab.Node, leader bool) bool { return !leader })
	ld := tr.node(func(_ *lab.Node, leader bool) bool { return leader })
	var st lab.ClusterStatus
	check(t, tr.c.Get(f, "/v1/cluster", &st))
	for _, cut := range []bool{false, true} {
		f.Kill()
		if cut {
			powerCut(t, f, "delete", nil)
		}
		check(t, f.Restart())
		var healthy time.Time
		var staleReads, emptyReads int
		var last string
		err := lab.WaitFor(60*time.Second, "local state back", func() (bool, string) {
			want, err := tr.localGet(ld, "/v1/tenants/acme/devices")
			if err != nil {
				return false, err.Error()
			}
			if healthy.IsZero() {
				var h map[string]any
				if tr.c.Get(f, "/healthz", &h) != nil {
					return false, "not healthy"
				}
				healthy = time.Now()
			}
			status, body, hdr, err := tr.c.Do(f, "GET", "/v1/tenants/acme/devices", nil)
			if err != nil || status != http.StatusOK {
				return false, fmt.Sprint(status, err)
			}
			if !bytes.Equal(body, want) {
				staleReads++
				if hdr.Get("Fenceline-Unknown-Tenant") != "" {
					emptyReads++
				}
				last = fmt.Sprintf("follower:\n%s\nleader:\n%s", clip(body), clip(want))
				return false, "stale"
			}
			return true, ""
		})
		if err != nil {
			t.Fatalf("%v\n%s", err, last)
		}
		t.Logf("cut=%v: log of %d entries; healthy, then %d stale local reads (%d of them "+
			"'unknown tenant') for %s", cut, st.CommitIndex, staleReads, emptyReads,
			time.Since(healthy).Round(time.Millisecond))
		if emptyReads > 0 {
			t.Errorf("cut=%v: %d local reads from an empty state after the node was healthy",
				cut, emptyReads)
		}
	}
}
