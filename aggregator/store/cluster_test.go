package store_test

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/raft"

	"github.com/fenceline/fenceline/aggregator/internal/testenv"
	"github.com/fenceline/fenceline/aggregator/internal/teststore"
	"github.com/fenceline/fenceline/aggregator/store"
	"github.com/fenceline/fenceline/shared/event"
	"github.com/fenceline/fenceline/shared/ruleset"
)

// crIDs lists a tenant's CR ids with their states, as read from one node.
func crIDs(t *testing.T, s *store.Store) []string {
	t.Helper()
	crs, err := s.CRs("acme")
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, cr := range crs {
		out = append(out, cr.ID+"="+string(cr.State))
	}
	return out
}

func waitSame(t *testing.T, what string, ref *store.Store, nodes ...*teststore.Node) {
	t.Helper()
	want := crIDs(t, ref)
	for _, n := range nodes {
		testenv.WaitFor(t, 15*time.Second, what+" on "+n.Cfg.NodeID, func() bool {
			return slices.Equal(crIDs(t, n.Store), want)
		})
	}
}

// TestJoinAfterSnapshot grows a cluster one node at a time after the leader has taken a
// snapshot and dropped the log before it: the new nodes catch up by InstallSnapshot
// (their state is replaced from the snapshot stream) and then follow the log.
func TestJoinAfterSnapshot(t *testing.T) {
	tweak := func(c *store.Config) { c.TrailingLogs = 5; c.SnapshotThreshold = 1 << 20 }
	nodes := make([]*teststore.Node, 3)
	for i := range nodes {
		cfg := teststore.ClusterNodeConfig(t, i)
		tweak(&cfg)
		nodes[i] = teststore.StartNode(t, cfg)
	}
	first := nodes[0].Store
	teststore.Leader(t, nodes[:1])
	a := testenv.NewAgent("acme", "fw1")
	teststore.Enroll(t, first, a)
	now := time.Now()
	for i := 0; i < 40; i++ {
		env, _ := a.Next(event.Change, ruleset.Change{Kind: ruleset.RuleAdded, Family: "ip",
			Table: "f", Chain: "in", Rule: fmt.Sprintf("tcp dport %d drop", 1000+i)})
		if _, err := first.AppendEvent(ctx, "acme", "fw1", env, now); err != nil {
			t.Fatal(err)
		}
		if i%4 == 0 {
			if _, err := first.CreateCR(ctx, testCR(now), now); err != nil {
				t.Fatal(err)
			}
		}
	}
	if err := first.Snapshot(); err != nil {
		t.Fatal(err)
	}
	teststore.Join(t, nodes[0], nodes[1])
	teststore.Join(t, nodes[0], nodes[2])
	waitSame(t, "catch-up", first, nodes[1:]...)
	for _, n := range nodes[1:] {
		if _, restored, _ := n.Store.SnapshotStats(); restored != 1 {
			t.Fatalf("%s restored %d snapshots, want 1 (InstallSnapshot)", n.Cfg.NodeID, restored)
		}
		evs, err := n.Store.Events("acme", "fw1", store.EventQuery{})
		if err != nil || len(evs) != 40 {
			t.Fatalf("%s has %d events (%v), want 40", n.Cfg.NodeID, len(evs), err)
		}
		devs, _ := n.Store.Deviations("acme", store.DeviationFilter{})
		if len(devs) != 40 {
			t.Fatalf("%s has %d deviations, want 40", n.Cfg.NodeID, len(devs))
		}
	}
	// After the snapshot the followers apply the log like everyone else.
	if _, err := first.CreateCR(ctx, testCR(now), now); err != nil {
		t.Fatal(err)
	}
	waitSame(t, "log after snapshot", first, nodes[1:]...)
	st, err := nodes[2].Store.Cluster()
	if err != nil {
		t.Fatal(err)
	}
	// The joined nodes' API URLs are in the node table (the leader records its own when
	// its leader duties run: TestLeaderDutiesMoveWithLeadership).
	if len(st.Members) != 3 || st.Leader.ID != "node-1" ||
		st.Members[2].APIURL != nodes[2].Cfg.APIURL {
		t.Fatalf("cluster status on node-3: %+v", st)
	}
}

// TestFailover stops the leader of three: a new one is elected, every acknowledged
// write is on it, writes on a follower are refused with the new leader's name and
// address, and the old leader catches up when it comes back.
func TestFailover(t *testing.T) {
	nodes := teststore.Cluster(t, 3, nil)
	leader := teststore.Leader(t, nodes)
	teststore.Enroll(t, leader.Store, testenv.NewAgent("acme", "fw1")) // the CRs' target
	now := time.Now()
	var acked []string
	for range 10 {
		cr, err := leader.Store.CreateCR(ctx, testCR(now), now)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := leader.Store.ApproveCR(ctx, "acme", cr.ID, "bob", now); err != nil {
			t.Fatal(err)
		}
		acked = append(acked, cr.ID+"=approved")
	}
	if err := leader.Store.ConsistentRead(ctx); err != nil {
		t.Fatalf("linearizable read on the leader: %v", err)
	}
	leader.Stop()
	var rest []*teststore.Node
	for _, n := range nodes {
		if n != leader {
			rest = append(rest, n)
		}
	}
	next := teststore.Leader(t, rest)
	if got := crIDs(t, next.Store); !slices.Equal(got, acked) {
		t.Fatalf("new leader has %v, want %v", got, acked)
	}
	var follower *teststore.Node
	for _, n := range rest {
		if n != next {
			follower = n
		}
	}
	testenv.WaitFor(t, 10*time.Second, "follower to know the new leader", func() bool {
		return follower.Store.Leader().ID == next.Cfg.NodeID
	})
	_, err := follower.Store.CreateCR(ctx, testCR(now), now)
	var nl *store.NotLeaderError
	if !errors.As(err, &nl) || !errors.Is(err, raft.ErrNotLeader) {
		t.Fatalf("write on a follower: %v", err)
	}
	if nl.LeaderID != next.Cfg.NodeID || nl.LeaderAddr != next.Cfg.RaftListen ||
		nl.LeaderAPI != next.Cfg.APIURL {
		t.Fatalf("not-leader error names %+v, want %s at %s", nl, next.Cfg.NodeID,
			next.Cfg.RaftListen)
	}
	if err := follower.Store.ConsistentRead(ctx); !errors.Is(err, raft.ErrNotLeader) {
		t.Fatalf("linearizable read on a follower: %v", err)
	}
	cr, err := next.Store.CreateCR(ctx, testCR(now), now)
	if err != nil {
		t.Fatal(err)
	}
	if want := fmt.Sprintf("CR-%06d", 11); cr.ID != want {
		t.Fatalf("CR after failover numbered %s, want %s", cr.ID, want)
	}
	// The old leader comes back on its files and catches up as a follower.
	back := teststore.StartNode(t, leader.Cfg)
	waitSame(t, "old leader catching up", next.Store, &teststore.Node{Cfg: leader.Cfg, Store: back.Store})
}

// TestRemoveNode takes a follower out: the cluster goes on with two voters.
func TestRemoveNode(t *testing.T) {
	nodes := teststore.Cluster(t, 3, nil)
	leader := teststore.Leader(t, nodes)
	var victim *teststore.Node
	for _, n := range nodes {
		if n != leader {
			victim = n
			break
		}
	}
	if err := leader.Store.Remove(ctx, victim.Cfg.NodeID); err != nil {
		t.Fatal(err)
	}
	victim.Stop()
	st, err := leader.Store.Cluster()
	if err != nil {
		t.Fatal(err)
	}
	if len(st.Members) != 2 || slices.ContainsFunc(st.Members, func(m store.Member) bool {
		return m.ID == victim.Cfg.NodeID
	}) {
		t.Fatalf("members after removal: %+v", st.Members)
	}
	if err := leader.Store.Remove(ctx, victim.Cfg.NodeID); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("removing again: %v", err)
	}
	now := time.Now()
	teststore.Enroll(t, leader.Store, testenv.NewAgent("acme", "fw1")) // the CR's target
	if _, err := leader.Store.CreateCR(ctx, testCR(now), now); err != nil {
		t.Fatalf("write with two of two voters: %v", err)
	}
}

// TestLeaderDutiesMoveWithLeadership runs the leader's duties on every node: only the
// leader ticks, and after it stops the next leader ticks.
func TestLeaderDutiesMoveWithLeadership(t *testing.T) {
	nodes := teststore.Cluster(t, 3, nil)
	for _, n := range nodes {
		dctx, cancel := contextWithCancel()
		done := make(chan struct{})
		go func() {
			defer close(done)
			n.Store.RunLeaderDuties(dctx, 20*time.Millisecond, nil)
		}()
		t.Cleanup(func() { cancel(); <-done })
	}
	leader := teststore.Leader(t, nodes)
	testenv.WaitFor(t, 10*time.Second, "the leader's API URL in the node table", func() bool {
		return nodes[1].Store.Leader().APIURL == leader.Cfg.APIURL
	})
	var t1 time.Time
	testenv.WaitFor(t, 10*time.Second, "ticks from the leader", func() bool {
		t1 = leader.Store.LastTick()
		return !t1.IsZero()
	})
	leader.Stop()
	var rest []*teststore.Node
	for _, n := range nodes {
		if n != leader {
			rest = append(rest, n)
		}
	}
	next := teststore.Leader(t, rest)
	testenv.WaitFor(t, 10*time.Second, "ticks from the new leader", func() bool {
		return next.Store.LastTick().After(t1.Add(100 * time.Millisecond))
	})
}

func contextWithCancel() (context.Context, context.CancelFunc) {
	return context.WithCancel(context.Background())
}

// TestRemoveLastVoter: a single node refuses to remove itself, as an invalid request,
// and its state is untouched (no node-table write, still a member).
func TestRemoveLastVoter(t *testing.T) {
	s := teststore.NewStore(t)
	before, err := s.Cluster()
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Remove(context.Background(), before.NodeID); !errors.Is(err, store.ErrInvalid) {
		t.Fatalf("removing the last voter: %v, want ErrInvalid", err)
	}
	after, err := s.Cluster()
	if err != nil {
		t.Fatal(err)
	}
	if after.CommitIndex != before.CommitIndex || len(after.Members) != 1 ||
		after.Members[0] != before.Members[0] {
		t.Fatalf("cluster changed: %+v, was %+v", after, before)
	}
}

// TestSelfEntryStale: a follower restarted with another API address finds its node table
// entry stale until the leader writes it again (a join of itself); a removed node, which
// the table no longer lists, does not find it stale (it must not ask to join again).
func TestSelfEntryStale(t *testing.T) {
	nodes := teststore.Cluster(t, 2, nil)
	leader := teststore.Leader(t, nodes)
	f := nodes[0]
	if f == leader {
		f = nodes[1]
	}
	if stale, err := f.Store.SelfEntryStale(); stale || err != nil {
		t.Fatalf("after joining: stale %v %v", stale, err)
	}
	f.Stop()
	cfg := f.Cfg
	cfg.APIURL = "http://" + cfg.RaftListen[:strings.LastIndexByte(cfg.RaftListen, ':')] + ":9999"
	moved := teststore.StartNode(t, cfg)
	testenv.WaitFor(t, 10*time.Second, "the follower to catch up", func() bool {
		return moved.Store.CaughtUp() == nil
	})
	if stale, err := moved.Store.SelfEntryStale(); !stale || err != nil {
		t.Fatalf("after moving its API: stale %v %v", stale, err)
	}
	want, _, err := moved.Store.SelfEntry()
	if err != nil {
		t.Fatal(err)
	}
	if err := leader.Store.Join(ctx, want, time.Now()); err != nil {
		t.Fatal(err)
	}
	testenv.WaitFor(t, 10*time.Second, "the entry written again", func() bool {
		stale, err := moved.Store.SelfEntryStale()
		return !stale && err == nil
	})
	st, err := leader.Store.Cluster()
	if err != nil || !slices.ContainsFunc(st.Members, func(m store.Member) bool {
		return m.ID == cfg.NodeID && m.APIURL == cfg.APIURL && m.LogFormat == store.LogFormat
	}) {
		t.Fatalf("members %+v %v", st.Members, err)
	}

	if err := leader.Store.Remove(ctx, cfg.NodeID); err != nil {
		t.Fatal(err)
	}
	testenv.WaitFor(t, 10*time.Second, "the removal applied on the node", func() bool {
		_, have, err := moved.Store.SelfEntry()
		return err == nil && have == nil
	})
	if stale, err := moved.Store.SelfEntryStale(); stale || err != nil {
		t.Fatalf("after removal: stale %v %v", stale, err)
	}
}
