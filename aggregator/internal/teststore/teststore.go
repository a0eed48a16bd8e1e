// Package teststore runs a real single-node store for the aggregator's tests: raft over
// TCP on a free loopback port, state in a temporary directory.
package teststore

import (
	"context"
	"testing"
	"time"

	"github.com/fenceline/fenceline/aggregator/internal/testenv"
	"github.com/fenceline/fenceline/aggregator/store"
)

// StoreConfig is a store configuration for dir and raft address with timeouts short
// enough that a single node elects itself quickly.
func StoreConfig(dir, raftAddr string) store.Config {
	return store.Config{
		Dir:                dir,
		RaftListen:         raftAddr,
		NodeID:             "test-node",
		HeartbeatTimeout:   100 * time.Millisecond,
		ElectionTimeout:    100 * time.Millisecond,
		LeaderLeaseTimeout: 50 * time.Millisecond,
	}
}

// OpenStore opens a store with cfg, waits until it leads, and shuts it down when the test
// ends (a test may shut it down earlier itself).
func OpenStore(t testing.TB, cfg store.Config) *store.Store {
	t.Helper()
	s, err := store.Open(cfg, testenv.Logger(t))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Shutdown(context.Background()) })
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := s.WaitLeader(ctx); err != nil {
		t.Fatal(err)
	}
	// As the leader's duties do at once in a cluster of one.
	if _, err := s.RaiseLogFormat(ctx, nil); err != nil {
		t.Fatal(err)
	}
	return s
}

// NewStore opens a fresh store in a temporary directory.
func NewStore(t testing.TB) *store.Store {
	t.Helper()
	return OpenStore(t, StoreConfig(t.TempDir(), testenv.FreeAddr(t)))
}

// Enroll enrolls the agent's key with the store through a one-time token.
func Enroll(t testing.TB, s *store.Store, a *testenv.Agent) {
	t.Helper()
	ctx := context.Background()
	tok, _, err := s.CreateEnrollment(ctx, a.Tenant, a.Device, time.Hour, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.Enroll(ctx, tok, a.Public(), time.Now()); err != nil {
		t.Fatal(err)
	}
}
