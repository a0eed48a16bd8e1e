package store_test

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/fenceline/fenceline/aggregator/internal/testenv"
	"github.com/fenceline/fenceline/aggregator/internal/teststore"
	"github.com/fenceline/fenceline/aggregator/store"
	"github.com/fenceline/fenceline/shared/event"
	"github.com/fenceline/fenceline/shared/ruleset"
)

// TestLogFormatGate: a cluster with a member of an earlier version (one that does not
// say which log format it reads) keeps writing events as JSON commands, which that member
// reads; once every member says it reads format 2 the leader raises the format and
// writes events in the binary form; from then on a node that does not say, or reads
// less, cannot join.
func TestLogFormatGate(t *testing.T) {
	n1 := teststore.StartNode(t, teststore.ClusterNodeConfig(t, 0))
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if err := n1.Store.WaitLeader(ctx); err != nil {
		t.Fatal(err)
	}
	cfg2 := teststore.ClusterNodeConfig(t, 1)
	n2 := teststore.StartNode(t, cfg2)
	// Joined as a node of an earlier version would be: no log format.
	if err := n1.Store.Join(ctx, store.Node{ID: cfg2.NodeID, RaftAddr: cfg2.RaftListen,
		APIURL: cfg2.APIURL}, time.Now()); err != nil {
		t.Fatal(err)
	}
	a := testenv.NewAgent("acme", "fw1")
	teststore.Enroll(t, n1.Store, a)
	appendAndCheck := func(first byte) {
		t.Helper()
		env, _ := a.Next(event.Change, ruleset.Change{Kind: ruleset.TableAdded, Family: "ip",
			Table: "t" + a.Device})
		appendEvent(t, n1.Store, a, env)
		b, err := store.LastEntry(n1.Store)
		if err != nil {
			t.Fatal(err)
		}
		if len(b) == 0 || b[0] != first {
			t.Fatalf("event entry starts with %q, want %q", b[:min(len(b), 1)], first)
		}
	}
	env, _ := a.Next(event.Baseline)
	appendEvent(t, n1.Store, a, env)
	appendAndCheck('{')

	says := map[string]int{cfg2.NodeID: 1}
	probe := func(_ context.Context, n store.Node) (int, error) {
		if n.APIURL != cfg2.APIURL {
			t.Errorf("asked %s at %s", n.ID, n.APIURL)
		}
		return says[n.ID], nil
	}
	done, err := n1.Store.RaiseLogFormat(ctx, probe)
	if done || err == nil || !strings.Contains(err.Error(), "node-2 reads log format 1") {
		t.Fatalf("raised with a member reading format 1: %v %v", done, err)
	}
	appendAndCheck('{')

	says[cfg2.NodeID] = 2
	if done, err := n1.Store.RaiseLogFormat(ctx, probe); !done || err != nil {
		t.Fatalf("not raised: %v %v", done, err)
	}
	appendAndCheck(0x01)
	testenv.WaitFor(t, 5*time.Second, "the follower to apply the format", func() bool {
		return n2.Store.ClusterLogFormat() == 2
	})
	// Both forms applied alike: the follower holds every event.
	testenv.WaitFor(t, 5*time.Second, "the follower to hold every event", func() bool {
		evs, err := n2.Store.Events("acme", "fw1", store.EventQuery{})
		return err == nil && len(evs) == 4
	})

	cfg3 := teststore.ClusterNodeConfig(t, 2)
	for _, f := range []int{0, 1} {
		err := n1.Store.Join(ctx, store.Node{ID: cfg3.NodeID, RaftAddr: cfg3.RaftListen,
			APIURL: cfg3.APIURL, LogFormat: f}, time.Now())
		if !errors.Is(err, store.ErrInvalid) || !strings.Contains(err.Error(), "format 2") {
			t.Errorf("join of a node reading format %d: %v", f, err)
		}
	}
	teststore.StartNode(t, cfg3)
	if err := n1.Store.Join(ctx, store.Node{ID: cfg3.NodeID, RaftAddr: cfg3.RaftListen,
		APIURL: cfg3.APIURL, LogFormat: store.LogFormat}, time.Now()); err != nil {
		t.Fatal(err)
	}
}
