package teststore

import (
	"context"
	"fmt"
	"net"
	"testing"
	"time"

	"github.com/fenceline/fenceline/aggregator/internal/testenv"
	"github.com/fenceline/fenceline/aggregator/store"
)

// Node is one member of a test cluster: a real store with raft over TCP on its own
// loopback address (127.0.0.11, .12, ...).
type Node struct {
	Cfg   store.Config
	Store *store.Store
}

// ClusterNodeConfig is the configuration of node i (0-based) of a test cluster: its own
// loopback IP, a free port, short raft timeouts, and no bootstrap except for node 0.
func ClusterNodeConfig(t testing.TB, i int) store.Config {
	t.Helper()
	ip := fmt.Sprintf("127.0.0.%d", 11+i)
	l, err := net.Listen("tcp", ip+":0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	return store.Config{
		Dir:                t.TempDir(),
		RaftListen:         addr,
		NodeID:             fmt.Sprintf("node-%d", i+1),
		HeartbeatTimeout:   200 * time.Millisecond,
		ElectionTimeout:    200 * time.Millisecond,
		LeaderLeaseTimeout: 100 * time.Millisecond,
		NoBootstrap:        i > 0,
		APIURL:             fmt.Sprintf("http://%s:%d", ip, 8000+i),
	}
}

// StartNode opens a store with cfg and shuts it down when the test ends.
func StartNode(t testing.TB, cfg store.Config) *Node {
	t.Helper()
	s, err := store.Open(cfg, testenv.Logger(t).With("node", cfg.NodeID))
	if err != nil {
		t.Fatal(err)
	}
	n := &Node{Cfg: cfg, Store: s}
	t.Cleanup(func() { n.Stop() })
	return n
}

// Stop shuts the node down (again harmlessly).
func (n *Node) Stop() {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	n.Store.Shutdown(ctx)
}

// Cluster starts n nodes: the first bootstraps, the others are joined through it.
func Cluster(t testing.TB, n int, tweak func(*store.Config)) []*Node {
	t.Helper()
	var nodes []*Node
	for i := range n {
		cfg := ClusterNodeConfig(t, i)
		if tweak != nil {
			tweak(&cfg)
		}
		nodes = append(nodes, StartNode(t, cfg))
		if i == 0 {
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			err := nodes[0].Store.WaitLeader(ctx)
			if err == nil {
				// As the leader's duties do at once in a cluster of one.
				_, err = nodes[0].Store.RaiseLogFormat(ctx, nil)
			}
			cancel()
			if err != nil {
				t.Fatal(err)
			}
			continue
		}
		Join(t, Leader(t, nodes), nodes[i])
	}
	return nodes
}

// Join adds node to the cluster through leader.
func Join(t testing.TB, leader, node *Node) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	err := leader.Store.Join(ctx, store.Node{ID: node.Cfg.NodeID, RaftAddr: node.Cfg.RaftListen,
		APIURL: node.Cfg.APIURL, LogFormat: store.LogFormat}, time.Now())
	if err != nil {
		t.Fatal(err)
	}
}

// Leader waits for one of the running nodes to lead and returns it.
func Leader(t testing.TB, nodes []*Node) *Node {
	t.Helper()
	var leader *Node
	testenv.WaitFor(t, 10*time.Second, "a leader", func() bool {
		for _, n := range nodes {
			if n.Store.RaftState() == "Leader" {
				leader = n
				return true
			}
		}
		return false
	})
	return leader
}
