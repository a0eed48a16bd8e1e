package e2e

import (
	"crypto/ed25519"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/anishathalye/porcupine"

	"github.com/fenceline/fenceline/scripts/lab"
)

// Cluster tests: three aggregator processes with raft over TCP on 127.0.0.11-13 and a
// real Mosquitto, inside a network namespace of the test's own (partitions are nftables
// rules in that namespace). Agents are simulated by lab.Fleet: real signed chains from
// enrolled keys over MQTT, kept until acked and resent from the acked head.

func newCluster(t *testing.T, env ...string) (*lab.Lab, *lab.Cluster) {
	t.Helper()
	l := newLab(t, "mosquitto")
	c, err := l.Cluster(3, lab.ClusterOptions{Env: env})
	check(t, err)
	return l, c
}

const clusterTenant = "acme"

type clusterEvent struct {
	Seq uint64 `json:"seq,string"`
	ID  string `json:"id"`
}

type clusterDeviation struct {
	Device  string `json:"device"`
	Rule    string `json:"rule"`
	EventID string `json:"event_id"`
}

type clusterCR struct {
	ID    string `json:"id"`
	State string `json:"state"`
}

// crRequest is a CR for fw-elsewhere, a device that sends nothing (enrollElsewhere
// enrolls it: CRs are refused for devices not enrolled, and for windows already over).
func crRequest(id string) map[string]any {
	now := time.Now().UTC()
	return map[string]any{"id": id, "title": "open ssh", "requester": "alice",
		"device": "fw-elsewhere", "window_start": now.Format(time.RFC3339),
		"window_end": now.Add(2 * time.Hour).Format(time.RFC3339),
		"changes": []map[string]string{{"action": "add", "chain": "inet filter input",
			"rule": "tcp dport 22 accept"}}}
}

// enrollElsewhere enrolls fw-elsewhere, the target of the CRs of crRequest.
func enrollElsewhere(t *testing.T, post lab.Poster) {
	t.Helper()
	var tok struct {
		Token string `json:"token"`
	}
	check(t, post("POST", "/v1/tenants/acme/enrollments", map[string]string{"device": "fw-elsewhere"}, &tok))
	pub, _, err := ed25519.GenerateKey(nil) // nil: crypto/rand
	check(t, err)
	check(t, post("POST", "/v1/enroll", map[string]string{"token": tok.Token,
		"public_key": base64.StdEncoding.EncodeToString(pub)}, nil))
}

// TestClusterKillLeaderDuringBurst kills the leader with SIGKILL while ten agents send a
// burst of signed events and CRs are being approved: every event and approval that was
// acknowledged is on the new leader, every event is stored exactly once, and each change
// raised exactly one deviation.
func TestClusterKillLeaderDuringBurst(t *testing.T) {
	_, c := newCluster(t, "FENCELINE_RAFT_SNAPSHOT_THRESHOLD=300",
		"FENCELINE_RAFT_SNAPSHOT_INTERVAL=500ms", "FENCELINE_RAFT_TRAILING_LOGS=100")
	leader, err := c.Leader(10 * time.Second)
	check(t, err)
	follower := c.Follower(leader)
	fleet, err := lab.NewFleet(c.Broker, lab.NetnsDialer(c.Netns))
	check(t, err)
	t.Cleanup(fleet.Close)
	const devices, changes = 10, 60
	for i := range devices {
		d, err := fleet.Enroll(c.Poster(follower), clusterTenant, fmt.Sprintf("fw%02d", i))
		check(t, err)
		for j := 0; j <= changes; j++ {
			check(t, fleet.Seal(d, fmt.Sprintf("tcp dport %d drop", 10000+100*i+j)))
		}
	}
	const crs = 30
	enrollElsewhere(t, c.Poster(follower))
	for i := range crs {
		check(t, c.Poster(follower)("POST", "/v1/tenants/acme/crs", crRequest(
			fmt.Sprintf("CR-BURST-%02d", i)), nil))
	}

	// The burst: all events at once, approvals one after another through the follower.
	var approved sync.Map // id → true when the API said 200
	approvals := make(chan struct{})
	go func() {
		defer close(approvals)
		for i := range crs {
			id := fmt.Sprintf("CR-BURST-%02d", i)
			status, _, _, err := c.Do(follower, "POST", "/v1/tenants/acme/crs/"+id+"/approve",
				map[string]string{"approver": "bob"})
			if err == nil && status == http.StatusOK {
				approved.Store(id, true)
			}
			time.Sleep(30 * time.Millisecond)
		}
	}()
	for _, d := range fleet.Devices() {
		go fleet.Publish(d, 1, uint64(len(d.IDs)))
	}
	waitFor(t, 30*time.Second, "a third of the events acked", func() (bool, string) {
		left := fleet.Unacked()
		return left < devices*(changes+1)*2/3, fmt.Sprintf("%d unacked", left)
	})
	ackedAtKill := fleet.Snapshot()
	leader.Kill()
	t.Logf("killed leader %s with %d of %d events unacked", leader.ID, fleet.Unacked(),
		devices*(changes+1))
	check(t, fleet.WaitAcked(90*time.Second, 2*time.Second))
	// The new leader signs acks with the same key, kept in the replicated state.
	if n := fleet.BadAcks.Load(); n != 0 {
		t.Fatalf("%d acks not signed with the ack key the devices enrolled with", n)
	}
	<-approvals
	next, err := c.Leader(10 * time.Second)
	check(t, err)
	if next == leader {
		t.Fatal("the killed node is the leader")
	}

	// Everything acked, before and after the kill, is on the new leader, once.
	get := func(path string, v any) { check(t, c.Get(next, path+"?consistent=true", v)) }
	for _, d := range fleet.Devices() {
		var evs []clusterEvent
		get("/v1/tenants/acme/devices/"+d.Device+"/events", &evs)
		if len(evs) != len(d.IDs) {
			t.Fatalf("%s: %d events stored, want %d", d.Device, len(evs), len(d.IDs))
		}
		for i, e := range evs {
			if e.Seq != uint64(i+1) || e.ID != d.IDs[i] {
				t.Fatalf("%s: event %d is seq %d id %s, want seq %d id %s", d.Device, i, e.Seq,
					e.ID, i+1, d.IDs[i])
			}
		}
		if ackedAtKill[clusterTenant+"/"+d.Device] > uint64(len(evs)) {
			t.Fatalf("%s: acked %d before the kill, %d stored", d.Device,
				ackedAtKill[clusterTenant+"/"+d.Device], len(evs))
		}
	}
	var devs []clusterDeviation
	get("/v1/tenants/acme/deviations", &devs)
	seen := map[string]bool{}
	for _, dv := range devs {
		if seen[dv.EventID+dv.Rule] {
			t.Fatalf("duplicate deviation for %s %q", dv.Device, dv.Rule)
		}
		seen[dv.EventID+dv.Rule] = true
	}
	if len(devs) != devices*changes {
		t.Fatalf("%d deviations, want one per change: %d", len(devs), devices*changes)
	}
	approvedN := 0
	approved.Range(func(k, _ any) bool {
		approvedN++
		var cr clusterCR
		get("/v1/tenants/acme/crs/"+k.(string), &cr)
		if cr.State != "approved" {
			t.Errorf("%s was approved (200) but is %s on the new leader", k, cr.State)
		}
		return true
	})
	t.Logf("%d of %d approvals acknowledged; all on the new leader", approvedN, crs)

	// The killed node comes back and catches up from snapshot and log.
	check(t, c.Restart(leader))
	var want []clusterCR
	get("/v1/tenants/acme/crs", &want)
	waitFor(t, 30*time.Second, "the restarted node to catch up", func() (bool, string) {
		var got []clusterCR
		if err := c.Get(leader, "/v1/tenants/acme/crs", &got); err != nil {
			return false, err.Error()
		}
		return slices.Equal(got, want), fmt.Sprintf("%d CRs", len(got))
	})
}

// TestClusterPartition cuts a follower off: it refuses writes naming the leader, the
// majority goes on taking writes, and after the partition heals the follower catches up.
func TestClusterPartition(t *testing.T) {
	_, c := newCluster(t)
	leader, err := c.Leader(10 * time.Second)
	check(t, err)
	minority := c.Follower(leader)
	enrollElsewhere(t, c.Poster(leader))
	check(t, c.Poster(leader)("POST", "/v1/tenants/acme/crs", crRequest("CR-BEFORE"), nil))
	var leaderAPI string
	waitFor(t, 10*time.Second, "the leader's API in the node table", func() (bool, string) {
		var st lab.ClusterStatus
		if err := c.Get(minority, "/v1/cluster", &st); err != nil {
			return false, err.Error()
		}
		leaderAPI = st.Leader.APIURL
		return leaderAPI == leader.API, leaderAPI
	})
	check(t, c.Partition(minority))
	waitFor(t, 10*time.Second, "the minority to lose its leader", func() (bool, string) {
		var st lab.ClusterStatus
		if err := c.Get(minority, "/v1/cluster", &st); err != nil {
			return false, err.Error()
		}
		return st.Leader.Stale || st.Leader.ID == "", fmt.Sprintf("%+v", st.Leader)
	})
	status, body, hdr, err := c.Do(minority, "POST", "/v1/tenants/acme/crs",
		crRequest("CR-MINORITY"))
	check(t, err)
	if status != http.StatusServiceUnavailable || hdr.Get("X-Fenceline-Leader") != leader.API {
		t.Fatalf("write on the minority: %d %s (leader header %q)", status, body,
			hdr.Get("X-Fenceline-Leader"))
	}
	t.Logf("minority refused the write: %s", body)
	out, err := c.Ctl(minority, clusterTenant, "cr", "approve", "CR-BEFORE", "--approver", "bob")
	if err == nil {
		t.Fatalf("fencectl write on the minority succeeded: %s", out)
	}
	for i := range 20 {
		check(t, c.Poster(leader)("POST", "/v1/tenants/acme/crs",
			crRequest(fmt.Sprintf("CR-MAJORITY-%02d", i)), nil))
	}
	check(t, c.Poster(leader)("POST", "/v1/tenants/acme/crs/CR-BEFORE/approve",
		map[string]string{"approver": "bob"}, nil))
	var want []clusterCR
	check(t, c.Get(leader, "/v1/tenants/acme/crs?consistent=true", &want))
	if len(want) != 21 {
		t.Fatalf("majority has %d CRs, want 21", len(want))
	}
	check(t, c.Heal())
	waitFor(t, 30*time.Second, "the minority to catch up", func() (bool, string) {
		var got []clusterCR
		if err := c.Get(minority, "/v1/tenants/acme/crs", &got); err != nil {
			return false, err.Error()
		}
		return slices.Equal(got, want), fmt.Sprintf("%d CRs", len(got))
	})
	out, err = c.Ctl(minority, clusterTenant, "cluster", "status")
	check(t, err)
	t.Logf("after healing:\n%s", out)
}

// TestClusterRestartAll stops every node and starts them again: the state comes back
// from the snapshots plus the log after them.
func TestClusterRestartAll(t *testing.T) {
	_, c := newCluster(t, "FENCELINE_RAFT_TRAILING_LOGS=10")
	leader, err := c.Leader(10 * time.Second)
	check(t, err)
	post := c.Poster(leader)
	enrollElsewhere(t, post)
	for i := range 40 {
		check(t, post("POST", "/v1/tenants/acme/crs", crRequest(fmt.Sprintf("CR-R-%02d", i)), nil))
		if i%2 == 0 {
			check(t, post("POST", fmt.Sprintf("/v1/tenants/acme/crs/CR-R-%02d/approve", i),
				map[string]string{"approver": "bob"}, nil))
		}
	}
	var want []clusterCR
	check(t, c.Get(leader, "/v1/tenants/acme/crs?consistent=true", &want))
	for _, nd := range c.Nodes {
		waitFor(t, 10*time.Second, nd.ID+" caught up", func() (bool, string) {
			var got []clusterCR
			err := c.Get(nd, "/v1/tenants/acme/crs", &got)
			return err == nil && slices.Equal(got, want), fmt.Sprint(err)
		})
		check(t, c.Poster(nd)("POST", "/v1/cluster/snapshot", nil, nil))
	}
	for i := range 5 {
		check(t, post("POST", "/v1/tenants/acme/crs", crRequest(fmt.Sprintf("CR-AFTER-%d", i)), nil))
	}
	check(t, c.Get(leader, "/v1/tenants/acme/crs?consistent=true", &want))
	for _, nd := range c.Nodes {
		snaps, _ := filepath.Glob(filepath.Join(nd.DataDir, "store", "snapshots", "*", "state.bin"))
		if len(snaps) == 0 {
			t.Fatalf("%s has no snapshot on disk", nd.ID)
		}
		nd.Stop()
	}
	for _, nd := range c.Nodes {
		nd := nd
		go c.Restart(nd)
	}
	next, err := c.Leader(60 * time.Second)
	check(t, err)
	var got []clusterCR
	check(t, c.Get(next, "/v1/tenants/acme/crs?consistent=true", &got))
	if !slices.Equal(got, want) {
		t.Fatalf("after restarting all: %v, want %v", got, want)
	}
	// A write after the restart gets the next free number.
	check(t, c.Poster(next)("POST", "/v1/tenants/acme/crs", crRequest(""), nil))
	check(t, c.Get(next, "/v1/tenants/acme/crs?consistent=true", &got))
	if len(got) != len(want)+1 {
		t.Fatalf("%d CRs after one more write, want %d", len(got), len(want)+1)
	}
}

// Linearizability. Each CR id is a register with three states; clients create, approve
// and read (consistent=true) concurrently through any node while the leader is killed.
const (
	crAbsent = iota
	crSubmitted
	crApproved
)

type linInput struct {
	op  string // create, approve, read
	key string
}

type linOutput struct {
	result  string // created, exists, approved, notfound, conflict; a read's state
	unknown bool   // the outcome is not known (timeout, leader change)
}

var crModel = porcupine.NondeterministicModel{
	Partition: func(history []porcupine.Operation) [][]porcupine.Operation {
		by := map[string][]porcupine.Operation{}
		var keys []string
		for _, op := range history {
			k := op.Input.(linInput).key
			if _, ok := by[k]; !ok {
				keys = append(keys, k)
			}
			by[k] = append(by[k], op)
		}
		var out [][]porcupine.Operation
		for _, k := range keys {
			out = append(out, by[k])
		}
		return out
	},
	Init: func() []any { return []any{crAbsent} },
	Step: func(state, input, output any) []any {
		s, in, out := state.(int), input.(linInput), output.(linOutput)
		switch in.op {
		case "create":
			switch {
			case out.unknown && s == crAbsent:
				return []any{crAbsent, crSubmitted}
			case out.unknown:
				return []any{s}
			case out.result == "created" && s == crAbsent:
				return []any{crSubmitted}
			case out.result == "exists" && s != crAbsent:
				return []any{s}
			}
		case "approve":
			switch {
			case out.unknown && s == crSubmitted:
				return []any{crSubmitted, crApproved}
			case out.unknown:
				return []any{s}
			case out.result == "approved" && s == crSubmitted:
				return []any{crApproved}
			case out.result == "notfound" && s == crAbsent:
				return []any{s}
			case out.result == "conflict" && s == crApproved:
				return []any{s}
			}
		case "read":
			if out.result == [...]string{"absent", "submitted", "approved"}[s] {
				return []any{s}
			}
		}
		return nil
	},
	DescribeOperation: func(input, output any) string {
		in, out := input.(linInput), output.(linOutput)
		if out.unknown {
			return fmt.Sprintf("%s(%s) -> ?", in.op, in.key)
		}
		return fmt.Sprintf("%s(%s) -> %s", in.op, in.key, out.result)
	},
}

// TestClusterLinearizable records a concurrent history of CR create, approve and
// linearizable read operations, sent to random nodes while the leader is killed twice,
// and checks it with porcupine: zero violations.
func TestClusterLinearizable(t *testing.T) {
	_, c := newCluster(t)
	first, err := c.Leader(10 * time.Second)
	check(t, err)
	enrollElsewhere(t, c.Poster(first))
	const clients, keys = 6, 8
	run := time.Duration(8) * time.Second
	if s := os.Getenv("FENCELINE_LIN_SECONDS"); s != "" {
		var n int
		fmt.Sscan(s, &n)
		run = time.Duration(n) * time.Second
	}
	start := time.Now()
	var mu sync.Mutex
	var history []porcupine.Operation
	var stop atomic.Bool
	var wg sync.WaitGroup
	for id := range clients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			rng := rand.New(rand.NewPCG(uint64(id), 7))
			for !stop.Load() {
				running := c.Running()
				if len(running) == 0 {
					continue
				}
				nd := running[rng.IntN(len(running))]
				in := linInput{key: fmt.Sprintf("CR-LIN-%d", rng.IntN(keys))}
				call := time.Since(start).Nanoseconds()
				var status int
				var body []byte
				var err error
				switch r := rng.IntN(10); {
				case r < 3:
					in.op = "create"
					status, body, _, err = c.Do(nd, "POST", "/v1/tenants/acme/crs", crRequest(in.key))
				case r < 6:
					in.op = "approve"
					status, body, _, err = c.Do(nd, "POST", "/v1/tenants/acme/crs/"+in.key+
						"/approve", map[string]string{"approver": fmt.Sprintf("bob%d", id)})
				default:
					in.op = "read"
					status, body, _, err = c.Do(nd, "GET", "/v1/tenants/acme/crs/"+in.key+
						"?consistent=true", nil)
				}
				ret := time.Since(start).Nanoseconds()
				out, ok := linResult(in.op, status, body, err)
				if !ok {
					continue // a read without an answer, or a request that never arrived
				}
				if out.unknown {
					ret = math.MaxInt64 // may take effect at any time after the call
				}
				mu.Lock()
				history = append(history, porcupine.Operation{ClientId: id, Input: in,
					Call: call, Output: out, Return: ret})
				mu.Unlock()
			}
		}()
	}
	for _, at := range []time.Duration{run / 4, run * 5 / 8} {
		time.Sleep(time.Until(start.Add(at)))
		leader, err := c.Leader(10 * time.Second)
		check(t, err)
		leader.Kill()
		t.Logf("%s: killed leader %s", time.Since(start).Round(time.Millisecond), leader.ID)
		time.Sleep(time.Second)
		check(t, c.Restart(leader))
	}
	time.Sleep(time.Until(start.Add(run)))
	stop.Store(true)
	wg.Wait()
	known := 0
	for _, op := range history {
		if !op.Output.(linOutput).unknown {
			known++
		}
	}
	t.Logf("history: %d operations, %d with a known outcome", len(history), known)
	if known < 100 {
		t.Fatalf("only %d operations completed", known)
	}
	res, info := porcupine.CheckOperationsVerbose(crModel.ToModel(), history, time.Minute)
	if res != porcupine.Ok {
		path := filepath.Join(t.TempDir(), "linearizability.html")
		if f, err := os.Create(path); err == nil {
			porcupine.Visualize(crModel.ToModel(), info, f)
			f.Close()
		}
		t.Fatalf("history is not linearizable (%s); visualization in %s", res, path)
	}
}

// linResult turns an HTTP answer into an outcome; ok is false for operations to leave
// out of the history (they cannot have had an effect, or a read said nothing).
func linResult(op string, status int, body []byte, err error) (linOutput, bool) {
	if err != nil || status >= 500 {
		if op == "read" {
			return linOutput{}, false
		}
		// A refused connection never reached a node; anything else may have been applied.
		if err != nil && isRefused(err) {
			return linOutput{}, false
		}
		return linOutput{unknown: true}, true
	}
	switch op {
	case "create":
		switch status {
		case http.StatusCreated:
			return linOutput{result: "created"}, true
		case http.StatusConflict:
			return linOutput{result: "exists"}, true
		}
	case "approve":
		switch status {
		case http.StatusOK:
			return linOutput{result: "approved"}, true
		case http.StatusNotFound:
			return linOutput{result: "notfound"}, true
		case http.StatusConflict:
			return linOutput{result: "conflict"}, true
		}
	case "read":
		switch status {
		case http.StatusNotFound:
			return linOutput{result: "absent"}, true
		case http.StatusOK:
			var cr clusterCR
			if json.Unmarshal(body, &cr) == nil {
				return linOutput{result: cr.State}, true
			}
		}
	}
	return linOutput{unknown: true, result: fmt.Sprintf("%d %s", status, body)}, true
}

func isRefused(err error) bool { return errors.Is(err, syscall.ECONNREFUSED) }

// TestClusterFollowerMovesAPI: a follower restarted with its API on another port asks the
// leader to list it there (a join of itself): the node table is what followers forward
// with and what the leader asks members through.
func TestClusterFollowerMovesAPI(t *testing.T) {
	_, c := newCluster(t)
	leader, err := c.Leader(10 * time.Second)
	check(t, err)
	f := c.Follower(leader)
	f.Stop()
	c.MoveAPI(f, 8444)
	check(t, c.Restart(f))
	waitFor(t, 20*time.Second, "the leader to list the moved API", func() (bool, string) {
		var st struct {
			Members []struct {
				ID     string `json:"id"`
				APIURL string `json:"api_url"`
			} `json:"members"`
		}
		if err := c.Get(leader, "/v1/cluster", &st); err != nil {
			return false, err.Error()
		}
		for _, m := range st.Members {
			if m.ID == f.ID {
				return m.APIURL == f.API, "listed at " + m.APIURL
			}
		}
		return false, "not a member"
	})
}
