package store

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/url"
	"slices"
	"strconv"
	"time"

	"github.com/hashicorp/raft"
	bolt "go.etcd.io/bbolt"

	"github.com/fenceline/fenceline/shared/event"
)

// Cluster membership. Raft's own configuration knows each server's id and raft address;
// the replicated node table adds what the API needs to forward a request to the leader:
// its HTTP address. The leader writes its own entry each time it takes office, and Join
// writes the joining node's.

// bucketNodes holds the node table: node id → Node.
var bucketNodes = []byte("nodes")

// Cluster command types (see commands.go for the rules every command type follows).
const (
	cmdSetNode    = "set_node"
	cmdRemoveNode = "remove_node"
)

// Node is one aggregator in the node table.
type Node struct {
	ID       string `json:"id"`
	RaftAddr string `json:"raft_addr"`
	// APIURL is the node's HTTP API as the other nodes reach it; empty if unknown.
	APIURL string `json:"api_url,omitempty"`
	// LogFormat is the newest raft log format the node said it reads when it joined (or
	// took office); 0 for a node that did not say, which reads format 1.
	LogFormat int       `json:"log_format,omitempty"`
	UpdatedAt time.Time `json:"updated_at"`
}

// setNodeCmd writes a node's entry.
type setNodeCmd struct {
	Node Node `json:"node"`
}

// removeNodeCmd deletes a node's entry.
type removeNodeCmd struct {
	ID string `json:"id"`
}

// clusterHandlers are the state machine's handlers for the commands defined outside
// commands.go; fsm.handler consults this table first.
var clusterHandlers = map[string]func(*bolt.Tx, []byte) (any, error){
	cmdSetNode: func(tx *bolt.Tx, p []byte) (any, error) {
		return decodeAndRun(tx, p, applySetNode)
	},
	cmdRemoveNode: func(tx *bolt.Tx, p []byte) (any, error) {
		return decodeAndRun(tx, p, applyRemoveNode)
	},
	cmdTick: func(tx *bolt.Tx, p []byte) (any, error) {
		return decodeAndRun(tx, p, applyTick)
	},
	cmdSetLogFormat: func(tx *bolt.Tx, p []byte) (any, error) {
		return decodeAndRun(tx, p, applySetLogFormat)
	},
}

func applySetNode(tx *bolt.Tx, c *setNodeCmd) (any, error) {
	if !event.ValidName(c.Node.ID) || c.Node.RaftAddr == "" {
		return nil, fmt.Errorf("%w: node %q at %q", ErrInvalid, c.Node.ID, c.Node.RaftAddr)
	}
	b, err := tx.CreateBucketIfNotExists(bucketNodes)
	if err != nil {
		return nil, err
	}
	return nil, putJSON(b, []byte(c.Node.ID), &c.Node)
}

func applyRemoveNode(tx *bolt.Tx, c *removeNodeCmd) (any, error) {
	b, err := tx.CreateBucketIfNotExists(bucketNodes)
	if err != nil {
		return nil, err
	}
	return nil, b.Delete([]byte(c.ID))
}

// nodes reads the node table.
func (s *Store) nodes() (map[string]Node, error) {
	out := map[string]Node{}
	err := s.fsm.view(func(tx *bolt.Tx) error {
		b := tx.Bucket(bucketNodes)
		if b == nil {
			return nil
		}
		return b.ForEach(func(_, v []byte) error {
			var n Node
			if err := json.Unmarshal(v, &n); err != nil {
				return fmt.Errorf("decode node: %w", err)
			}
			out[n.ID] = n
			return nil
		})
	})
	return out, err
}

// LeaderInfo names a leader: its raft id and address, and its API URL if known.
type LeaderInfo struct {
	ID       string `json:"id,omitempty"`
	RaftAddr string `json:"raft_addr,omitempty"`
	APIURL   string `json:"api_url,omitempty"`
	// Stale is true when no leader is known now and this is the last one seen.
	Stale bool `json:"stale,omitempty"`
}

// Leader returns the current leader as this node sees it, or the last one it saw.
func (s *Store) Leader() LeaderInfo {
	addr, id := s.raft.LeaderWithID()
	li := LeaderInfo{ID: string(id), RaftAddr: string(addr)}
	if id == "" {
		lid, laddr := s.leader.last()
		li = LeaderInfo{ID: string(lid), RaftAddr: string(laddr), Stale: lid != ""}
	}
	if li.ID != "" {
		if nodes, err := s.nodes(); err == nil {
			li.APIURL = nodes[li.ID].APIURL
		}
	}
	return li
}

// notLeader is the error for a write or linearizable read on a node that does not lead.
func (s *Store) notLeader() *NotLeaderError {
	li := s.Leader()
	return &NotLeaderError{LeaderID: li.ID, LeaderAddr: li.RaftAddr, LeaderAPI: li.APIURL,
		Stale: li.Stale}
}

// ConsistentRead returns nil once a read of the local state can see every write that
// completed before the call: this node must be the leader, and a barrier through the log
// (committed by a quorum, so no other leader can have taken over) makes sure that
// everything committed before is applied here. On a follower it returns a
// *NotLeaderError; the API forwards such reads to the leader.
func (s *Store) ConsistentRead(ctx context.Context) error {
	if s.raft.State() != raft.Leader {
		return s.notLeader()
	}
	timeout := s.cfg.ApplyTimeout
	if dl, ok := ctx.Deadline(); ok {
		timeout = time.Until(dl)
	}
	if err := s.raft.Barrier(timeout).Error(); err != nil {
		if errors.Is(err, raft.ErrNotLeader) || errors.Is(err, raft.ErrLeadershipLost) {
			return s.notLeader()
		}
		return fmt.Errorf("read barrier: %w", err)
	}
	return nil
}

// Join adds a node to the cluster as a voter and records its API URL. It runs on the
// leader (elsewhere it returns a *NotLeaderError). Joining again with the same id and
// address is harmless; an id that is a member at another address moves there. A node
// that reads an older raft log format than the cluster writes is refused (n.LogFormat).
func (s *Store) Join(ctx context.Context, n Node, now time.Time) error {
	if !event.ValidName(n.ID) {
		return fmt.Errorf("%w: node id %q", ErrInvalid, n.ID)
	}
	if err := checkRaftAddr(n.RaftAddr); err != nil {
		return err
	}
	if n.APIURL != "" {
		if u, err := url.Parse(n.APIURL); err != nil || (u.Scheme != "http" &&
			u.Scheme != "https") || u.Host == "" {
			return fmt.Errorf("%w: api url %q: want http://host:port", ErrInvalid, n.APIURL)
		}
	}
	if s.raft.State() != raft.Leader {
		return s.notLeader()
	}
	s.membership.Lock()
	defer s.membership.Unlock()
	switch cur := s.ClusterLogFormat(); {
	case n.LogFormat == 0 && cur > 1:
		return fmt.Errorf("%w: node %s did not say which raft log format it reads (a node of "+
			"an earlier version does not), and this cluster writes format %d: give its API URL "+
			"so that the leader can ask it, and run this version on it", ErrInvalid, n.ID, cur)
	case n.LogFormat > 0 && n.LogFormat < cur:
		return fmt.Errorf("%w: node %s reads raft log format %d, and this cluster writes "+
			"format %d: run this version on it before it joins", ErrInvalid, n.ID,
			n.LogFormat, cur)
	}
	cfg, err := s.configuration()
	if err != nil {
		return err
	}
	for _, srv := range cfg.Servers {
		if string(srv.Address) == n.RaftAddr && string(srv.ID) != n.ID {
			return fmt.Errorf("raft address %s belongs to node %s: %w", n.RaftAddr, srv.ID,
				ErrExists)
		}
	}
	timeout := s.timeout(ctx)
	f := s.raft.AddVoter(raft.ServerID(n.ID), raft.ServerAddress(n.RaftAddr), 0, timeout)
	if err := f.Error(); err != nil {
		if errors.Is(err, raft.ErrNotLeader) {
			return s.notLeader()
		}
		return fmt.Errorf("add voter %s: %w", n.ID, err)
	}
	n.UpdatedAt = now.UTC()
	if _, err := s.apply(ctx, cmdSetNode, &setNodeCmd{Node: n}); err != nil {
		return err
	}
	s.log.Info("node joined the cluster", "joined_id", n.ID, "joined_raft_addr", n.RaftAddr,
		"joined_api", n.APIURL)
	return nil
}

// Remove takes a node out of the cluster and the node table. It runs on the leader. The
// removed node is not told: stop it. Removing the leader itself makes it step down once
// the change is committed.
func (s *Store) Remove(ctx context.Context, id string) error {
	if s.raft.State() != raft.Leader {
		return s.notLeader()
	}
	cfg, err := s.configuration()
	if err != nil {
		return err
	}
	if !slices.ContainsFunc(cfg.Servers, func(srv raft.Server) bool {
		return string(srv.ID) == id
	}) {
		return fmt.Errorf("node %s: %w", id, ErrNotFound)
	}
	voters := 0
	for _, srv := range cfg.Servers {
		if srv.Suffrage == raft.Voter && string(srv.ID) != id {
			voters++
		}
	}
	if voters == 0 {
		return fmt.Errorf("%w: node %s is the cluster's last voter; a cluster cannot remove "+
			"its last voting node", ErrInvalid, id)
	}
	// The node table first: once this node has removed itself it can no longer write.
	if _, err := s.apply(ctx, cmdRemoveNode, &removeNodeCmd{ID: id}); err != nil {
		return err
	}
	if err := s.raft.RemoveServer(raft.ServerID(id), 0, s.timeout(ctx)).Error(); err != nil {
		if errors.Is(err, raft.ErrNotLeader) {
			return s.notLeader()
		}
		return fmt.Errorf("remove server %s: %w", id, err)
	}
	s.log.Info("node removed from the cluster", "removed_id", id)
	return nil
}

// registerSelf writes this node's entry in the node table if it is missing or stale. The
// leader calls it on taking office; a follower asks the leader to (SelfEntry).
func (s *Store) registerSelf(ctx context.Context, now time.Time) error {
	me, have, err := s.SelfEntry()
	if err != nil || sameEntry(me, have) {
		return err
	}
	me.UpdatedAt = now.UTC()
	_, err = s.apply(ctx, cmdSetNode, &setNodeCmd{Node: me})
	return err
}

// SelfEntry returns this node's entry as it should be in the node table (its raft and
// API addresses, the log format it reads), and the table's entry for it (nil when it has
// none: not joined yet, or removed). A follower restarted with another API address, or a
// newer version, is listed with the old until the leader writes the new entry: it asks
// with a join of itself, which is harmless otherwise.
func (s *Store) SelfEntry() (want Node, have *Node, err error) {
	want = Node{ID: s.cfg.NodeID, RaftAddr: string(s.transport.LocalAddr()),
		APIURL: s.cfg.APIURL, LogFormat: LogFormat}
	nodes, err := s.nodes()
	if err != nil {
		return want, nil, err
	}
	if n, ok := nodes[want.ID]; ok {
		have = &n
	}
	return want, have, nil
}

// sameEntry reports whether a node table entry says what want says.
func sameEntry(want Node, have *Node) bool {
	return have != nil && have.RaftAddr == want.RaftAddr && have.APIURL == want.APIURL &&
		have.LogFormat == want.LogFormat
}

// SelfEntryStale reports whether the node table lists this node, but not as it is now.
func (s *Store) SelfEntryStale() (bool, error) {
	want, have, err := s.SelfEntry()
	return err == nil && have != nil && !sameEntry(want, have), err
}

func (s *Store) configuration() (raft.Configuration, error) {
	f := s.raft.GetConfiguration()
	if err := f.Error(); err != nil {
		return raft.Configuration{}, fmt.Errorf("raft configuration: %w", err)
	}
	return f.Configuration(), nil
}

func (s *Store) timeout(ctx context.Context) time.Duration {
	if dl, ok := ctx.Deadline(); ok {
		return time.Until(dl)
	}
	return s.cfg.ApplyTimeout
}

// Member is one server of the raft configuration with its node table entry.
type Member struct {
	Node
	// Suffrage is voter, nonvoter or staging.
	Suffrage string `json:"suffrage"`
	Leader   bool   `json:"leader"`
}

// ClusterStatus is the cluster as this node sees it.
type ClusterStatus struct {
	NodeID string `json:"node_id"`
	// State is this node's raft role: Leader, Follower, Candidate or Shutdown.
	State        string     `json:"state"`
	Term         uint64     `json:"term"`
	Leader       LeaderInfo `json:"leader"`
	CommitIndex  uint64     `json:"commit_index"`
	AppliedIndex uint64     `json:"applied_index"`
	LastIndex    uint64     `json:"last_index"`
	// LastContact is how long ago a follower last heard from its leader.
	LastContact string `json:"last_contact,omitempty"`
	// LogFormat is the newest raft log format this node reads; ClusterLogFormat the one
	// the cluster's leader writes (see LogFormat).
	LogFormat        int      `json:"log_format"`
	ClusterLogFormat int      `json:"cluster_log_format"`
	Members          []Member `json:"members"`
}

// Cluster returns the membership and this node's raft progress.
func (s *Store) Cluster() (ClusterStatus, error) {
	st := ClusterStatus{
		NodeID: s.cfg.NodeID, State: s.raft.State().String(), Term: s.raft.CurrentTerm(),
		Leader: s.Leader(), CommitIndex: s.raft.CommitIndex(),
		AppliedIndex: s.fsm.appliedIndex(), LastIndex: s.raft.LastIndex(),
		LogFormat: LogFormat, ClusterLogFormat: s.ClusterLogFormat(), Members: []Member{},
	}
	if st.State != raft.Leader.String() {
		if lc := s.raft.LastContact(); !lc.IsZero() {
			st.LastContact = time.Since(lc).Round(time.Millisecond).String()
		}
	}
	cfg, err := s.configuration()
	if err != nil {
		return st, err
	}
	nodes, err := s.nodes()
	if err != nil {
		return st, err
	}
	for _, srv := range cfg.Servers {
		m := Member{Node: nodes[string(srv.ID)], Suffrage: suffrage(srv.Suffrage),
			Leader: !st.Leader.Stale && string(srv.ID) == st.Leader.ID}
		m.ID, m.RaftAddr = string(srv.ID), string(srv.Address)
		st.Members = append(st.Members, m)
	}
	return st, nil
}

func suffrage(s raft.ServerSuffrage) string {
	switch s {
	case raft.Voter:
		return "voter"
	case raft.Nonvoter:
		return "nonvoter"
	case raft.Staging:
		return "staging"
	}
	return strconv.Itoa(int(s))
}

func checkRaftAddr(addr string) error {
	host, port, err := splitHostPort(addr)
	if err != nil || host == "" || port == "" {
		return fmt.Errorf("%w: raft address %q: want ip:port", ErrInvalid, addr)
	}
	return nil
}

// NodeID is this node's raft id.
func (s *Store) NodeID() string { return s.cfg.NodeID }

// Fresh reports whether the node had no raft state when it was opened: it has never been
// part of a cluster and may ask to join one.
func (s *Store) Fresh() bool { return s.fresh }
