// Package store is the aggregator's replicated state: hashicorp/raft over TCP, with the
// raft log and stable store in one raft-boltdb file, file snapshots, and the state
// machine's own bbolt file (see fsm.go for its determinism contract).
//
// Writes are commands proposed through raft on the leader and answered once committed
// and applied; on a follower they fail with a *NotLeaderError that names the leader
// (cluster.go). Reads go straight to the local state file; ConsistentRead first makes sure
// that this node leads and has applied everything committed before the call.
//
// A cluster starts as one node that bootstraps itself; the others start with NoBootstrap
// and are added on the leader with Join (and taken out with Remove). Components that must
// run on exactly one node at a time (MQTT ingest, the deadline ticker) use RunWhileLeader.
package store

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/raft"
	raftboltdb "github.com/hashicorp/raft-boltdb/v2"
	bolt "go.etcd.io/bbolt"

	"github.com/fenceline/fenceline/aggregator/model"
	"github.com/fenceline/fenceline/shared/event"
)

// Files and directories inside Config.Dir.
const (
	raftFile  = "raft.db"  // raft log and stable store
	stateFile = "state.db" // the state machine
	// Snapshots go to Dir/snapshots (raft's file snapshot store names that directory).
)

// Config configures a store.
type Config struct {
	// Dir holds the raft log, snapshots and state file.
	Dir string
	// RaftListen is the TCP address raft binds and advertises, e.g. 127.0.0.1:7000. It
	// must name a concrete IP address; keep it stable across restarts.
	RaftListen string
	// NodeID names this node in the raft configuration.
	NodeID string
	// ApplyTimeout bounds how long a write waits to be committed when its context has
	// no deadline. Zero means 10 s.
	ApplyTimeout time.Duration
	// HeartbeatTimeout, ElectionTimeout and LeaderLeaseTimeout override raft's defaults
	// when set (tests make a single node elect itself faster).
	HeartbeatTimeout   time.Duration
	ElectionTimeout    time.Duration
	LeaderLeaseTimeout time.Duration
	// SnapshotThreshold overrides how many log entries trigger a snapshot.
	SnapshotThreshold uint64
	// SnapshotInterval overrides how often raft checks whether to snapshot.
	SnapshotInterval time.Duration
	// TrailingLogs overrides how many log entries are kept after a snapshot (followers
	// further behind than that catch up by InstallSnapshot).
	TrailingLogs uint64
	// NoBootstrap makes a node without raft state wait until a leader adds it (Join)
	// instead of bootstrapping a new cluster of itself.
	NoBootstrap bool
	// APIURL is this node's HTTP API as the other nodes reach it, e.g.
	// http://127.0.0.11:8443. The leader records it in the replicated node table so that
	// followers can forward writes to it.
	APIURL string
}

func (c *Config) validate() error {
	switch {
	case c.Dir == "":
		return errors.New("store: no directory")
	case c.NodeID == "":
		return errors.New("store: no node id")
	}
	if _, err := net.ResolveTCPAddr("tcp", c.RaftListen); err != nil {
		return fmt.Errorf("store: raft listen %q: %w", c.RaftListen, err)
	}
	return nil
}

// Store is the aggregator's state behind business methods.
type Store struct {
	cfg       Config
	log       *slog.Logger
	fsm       *fsm
	ackKey    ackKeyCache
	raft      *raft.Raft
	logStore  *raftboltdb.BoltStore
	layer     *tcpLayer
	transport *raft.NetworkTransport
	metrics   *metrics
	leader    *leadership
	fresh     bool     // no raft state at Open
	devices   sync.Map // tenant/device → *decodedDevice (deviceRO)
	// membership serializes Join with raising the log format (logformat.go).
	membership sync.Mutex
	// binaryEvents: the cluster's log format allows binary append_event entries.
	binaryEvents atomic.Bool
	// startIndex is the newest raft index this node held at Open; caughtUp is set once
	// the state machine has applied up to it (CaughtUp).
	startIndex uint64
	caughtUp   atomic.Bool
}

// Open opens (or creates) the store in cfg.Dir and starts its raft node. A node without
// raft state bootstraps a single-node cluster of itself, unless cfg.NoBootstrap says to
// wait for a leader to add it; a node with state rejoins its cluster.
func Open(cfg Config, log *slog.Logger) (*Store, error) {
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	if cfg.ApplyTimeout <= 0 {
		cfg.ApplyTimeout = 10 * time.Second
	}
	log = log.With("component", "store")
	if err := os.MkdirAll(cfg.Dir, 0o700); err != nil {
		return nil, fmt.Errorf("store dir: %w", err)
	}
	s := &Store{cfg: cfg, log: log, metrics: newMetrics()}
	var err error
	defer func() {
		if err != nil {
			s.closeFiles()
		}
	}()
	if s.fsm, err = openFSM(filepath.Join(cfg.Dir, stateFile), log); err != nil {
		return nil, err
	}
	s.logStore, err = raftboltdb.New(raftboltdb.Options{
		Path:        filepath.Join(cfg.Dir, raftFile),
		BoltOptions: boltOptions,
		// NoSync stays false: a committed entry must survive a power cut.
	})
	if err != nil {
		return nil, fmt.Errorf("open raft log: %w", err)
	}
	hlog := newRaftLogger(log)
	snaps, err := raft.NewFileSnapshotStoreWithLogger(cfg.Dir, 2, hlog)
	if err != nil {
		return nil, fmt.Errorf("snapshot store: %w", err)
	}
	if s.startIndex, err = newestIndex(s.logStore, snaps); err != nil {
		return nil, err
	}
	if s.layer, err = newTCPLayer(cfg.RaftListen); err != nil {
		return nil, err
	}
	s.transport = raft.NewNetworkTransportWithConfig(&raft.NetworkTransportConfig{
		Stream: s.layer, MaxPool: 3, Timeout: 10 * time.Second, Logger: hlog,
	})

	notify := make(chan bool, 16)
	rc := s.raftConfig(hlog, notify)
	// The state file is durable by itself. Raft restores the newest snapshot at start
	// only when the file is behind it (lost or replaced); otherwise it just replays the
	// log after the snapshot and the state machine skips what it has.
	rc.NoSnapshotRestoreOnStart, err = stateCoversSnapshots(snaps, s.fsm.appliedIndex())
	if err != nil {
		return nil, err
	}

	hasState, err := raft.HasExistingState(s.logStore, s.logStore, snaps)
	if err != nil {
		return nil, fmt.Errorf("raft state: %w", err)
	}
	s.fresh = !hasState
	s.leader = newLeadership(notify)
	s.raft, err = raft.NewRaft(rc, &instrumentedFSM{fsm: s.fsm, m: s.metrics}, s.logStore,
		s.logStore, snaps, s.transport)
	if err != nil {
		return nil, fmt.Errorf("start raft: %w", err)
	}
	s.leader.start(s.raft, log)
	switch {
	case hasState:
	case cfg.NoBootstrap:
		log.Info("no raft state; waiting for a leader to add this node", "node_id", cfg.NodeID,
			"raft_addr", s.transport.LocalAddr())
	default:
		boot := raft.Configuration{Servers: []raft.Server{{
			Suffrage: raft.Voter, ID: rc.LocalID, Address: s.transport.LocalAddr(),
		}}}
		if err = s.raft.BootstrapCluster(boot).Error(); err != nil {
			s.raft.Shutdown()
			s.leader.stop()
			return nil, fmt.Errorf("bootstrap raft: %w", err)
		}
		log.Info("bootstrapped single-node raft cluster", "node_id", cfg.NodeID,
			"raft_addr", s.transport.LocalAddr())
	}
	log.Info("store open", "dir", cfg.Dir, "node_id", cfg.NodeID,
		"applied_index", s.fsm.appliedIndex())
	return s, nil
}

func (s *Store) raftConfig(hlog hclog.Logger, notify chan<- bool) *raft.Config {
	cfg := s.cfg
	rc := raft.DefaultConfig()
	rc.LocalID = raft.ServerID(cfg.NodeID)
	rc.Logger = hlog
	// Raft blocks on this channel; the leadership watcher drains it at once.
	rc.NotifyCh = notify
	// Group commit: commands proposed while the leader writes the log wait in a buffered
	// channel and go into the next log write and replication round together (up to
	// MaxAppendEntries), and the state machine applies them in one transaction. With the
	// default unbuffered channel a group holds only the proposers blocked at that moment.
	rc.BatchApplyCh = true
	rc.MaxAppendEntries = 512
	if cfg.HeartbeatTimeout > 0 {
		rc.HeartbeatTimeout = cfg.HeartbeatTimeout
	}
	if cfg.ElectionTimeout > 0 {
		rc.ElectionTimeout = cfg.ElectionTimeout
	}
	if cfg.LeaderLeaseTimeout > 0 {
		rc.LeaderLeaseTimeout = cfg.LeaderLeaseTimeout
	}
	if cfg.SnapshotThreshold > 0 {
		rc.SnapshotThreshold = cfg.SnapshotThreshold
	}
	if cfg.SnapshotInterval > 0 {
		rc.SnapshotInterval = cfg.SnapshotInterval
	}
	if cfg.TrailingLogs > 0 {
		rc.TrailingLogs = cfg.TrailingLogs
	}
	return rc
}

// stateCoversSnapshots reports whether the state file is at or past the newest snapshot.
func stateCoversSnapshots(snaps raft.SnapshotStore, applied uint64) (bool, error) {
	list, err := snaps.List()
	if err != nil {
		return false, fmt.Errorf("list snapshots: %w", err)
	}
	return len(list) == 0 || list[0].Index <= applied, nil
}

// Health returns nil when the node can serve: its state machine works and a leader is
// known.
func (s *Store) Health() error {
	if err := s.fsm.err(); err != nil {
		return fmt.Errorf("%w: %v", ErrFSMFailed, err)
	}
	if addr, _ := s.raft.LeaderWithID(); addr == "" {
		return errors.New("no raft leader")
	}
	if err := s.CaughtUp(); err != nil {
		return err
	}
	return nil
}

// newestIndex is the newest raft index a node holds: the end of its log, or its newest
// snapshot's when that is further (a log compacted after InstallSnapshot).
func newestIndex(logs raft.LogStore, snaps raft.SnapshotStore) (uint64, error) {
	last, err := logs.LastIndex()
	if err != nil {
		return 0, fmt.Errorf("raft log: %w", err)
	}
	list, err := snaps.List()
	if err != nil {
		return 0, fmt.Errorf("list snapshots: %w", err)
	}
	if len(list) > 0 {
		last = max(last, list[0].Index)
	}
	return last, nil
}

// CaughtUp returns nil once the state machine holds what this node held when it
// started: every entry of its raft log and newest snapshot, or, when a leader has cut off
// a tail of that log that was never committed, every entry the log now holds. Until then
// (a *CatchingUpError) its local reads could show an older state than it served before it
// stopped: all of it after a machine restart, when the state file is rebuilt.
func (s *Store) CaughtUp() error {
	if s.caughtUp.Load() {
		return nil
	}
	applied, target := s.fsm.appliedIndex(), min(s.startIndex, s.raft.LastIndex())
	if applied >= target {
		s.caughtUp.Store(true)
		return nil
	}
	return &CatchingUpError{Applied: applied, Target: target}
}

// CatchingUpError says that a node's state is behind what it held before it restarted.
type CatchingUpError struct{ Applied, Target uint64 }

func (e *CatchingUpError) Error() string {
	return fmt.Sprintf("state catching up after a restart: applied %d of %d raft entries",
		e.Applied, e.Target)
}

// RaftState is the node's raft role: Leader, Follower, Candidate or Shutdown.
func (s *Store) RaftState() string { return s.raft.State().String() }

// AppliedIndex is the last raft index in the state file.
func (s *Store) AppliedIndex() uint64 { return s.fsm.appliedIndex() }

// Snapshot asks raft to take a snapshot now.
func (s *Store) Snapshot() error { return s.raft.Snapshot().Error() }

// Shutdown stops raft and closes the files, or gives up when ctx ends.
func (s *Store) Shutdown(ctx context.Context) error {
	done := make(chan error, 1)
	go func() {
		err := s.raft.Shutdown().Error()
		s.leader.stop()
		done <- errors.Join(err, s.closeFiles())
	}()
	select {
	case err := <-done:
		if err != nil {
			return fmt.Errorf("store shutdown: %w", err)
		}
		s.log.Info("store closed")
		return nil
	case <-ctx.Done():
		return fmt.Errorf("store shutdown: %w", ctx.Err())
	}
}

func (s *Store) closeFiles() error {
	var errs []error
	if s.transport != nil {
		errs = append(errs, s.transport.Close())
	}
	if s.logStore != nil {
		errs = append(errs, s.logStore.Close())
	}
	if s.fsm != nil {
		errs = append(errs, s.fsm.close())
	}
	return errors.Join(errs...)
}

// apply proposes a command and returns the state machine's answer once it is committed
// and applied on this node.
func (s *Store) apply(ctx context.Context, typ string, payload any) (any, error) {
	return s.propose(ctx, typ, payload).wait()
}

// pending is a proposed command whose outcome is not known yet.
type pending struct {
	s     *Store
	typ   string
	f     raft.ApplyFuture
	err   error // the proposal failed before reaching raft
	start time.Time
}

// propose hands a command to raft without waiting for it to commit. Commands proposed
// one after another from one goroutine enter the log in that order.
func (s *Store) propose(ctx context.Context, typ string, payload any) *pending {
	p := &pending{s: s, typ: typ, start: time.Now()}
	var b []byte
	var err error
	if c, ok := payload.(*appendEventCmd); ok && typ == cmdAppendEvent && s.writesBinaryEvents() {
		b = encodeAppendEvent(c)
	} else {
		b, err = encodeJSONCommand(typ, payload)
	}
	if err != nil {
		p.err = err
		return p
	}
	timeout := s.cfg.ApplyTimeout
	if dl, ok := ctx.Deadline(); ok {
		timeout = time.Until(dl)
	}
	p.f = s.raft.Apply(b, timeout)
	return p
}

// wait blocks until the command is applied on this node or has failed.
func (p *pending) wait() (any, error) {
	if p.err != nil {
		return nil, p.err
	}
	if err := p.f.Error(); err != nil {
		switch {
		case errors.Is(err, raft.ErrNotLeader):
			return nil, p.s.notLeader()
		case errors.Is(err, raft.ErrRaftShutdown):
			return nil, ErrClosed
		}
		// ErrLeadershipLost among others: the command may still commit under the next
		// leader. Callers must treat the outcome as unknown.
		return nil, fmt.Errorf("raft apply %s: %w", p.typ, err)
	}
	p.s.metrics.applyLatency.Observe(time.Since(p.start).Seconds())
	res, ok := p.f.Response().(*applyResult)
	if !ok {
		return nil, fmt.Errorf("raft apply %s: unexpected response %T", p.typ, p.f.Response())
	}
	return res.value, res.err
}

// TokenHash is the hex SHA-256 under which an enrollment token is stored.
func TokenHash(token string) string {
	s := sha256.Sum256([]byte(token))
	return hex.EncodeToString(s[:])
}

// CreateEnrollment issues a one-time enrollment token for device, valid for ttl from
// now. Only the token's hash is stored; the token is returned once.
func (s *Store) CreateEnrollment(ctx context.Context, tenant, device string, ttl time.Duration,
	now time.Time) (string, model.Enrollment, error) {
	raw := make([]byte, 32)
	if _, err := rand.Read(raw); err != nil {
		return "", model.Enrollment{}, fmt.Errorf("token: %w", err)
	}
	token := base64.RawURLEncoding.EncodeToString(raw)
	v, err := s.apply(ctx, cmdCreateEnrollment, &createEnrollmentCmd{
		TokenHash: TokenHash(token), Tenant: tenant, Device: device,
		CreatedAt: now.UTC(), Expires: now.Add(ttl).UTC(),
	})
	if err != nil {
		return "", model.Enrollment{}, err
	}
	return token, v.(model.Enrollment), nil
}

// Enroll redeems a one-time token for the device's public key. The device's previous
// key, if any, is no longer accepted.
func (s *Store) Enroll(ctx context.Context, token string, pub ed25519.PublicKey,
	now time.Time) (EnrollResult, error) {
	v, err := s.apply(ctx, cmdEnroll, &enrollCmd{
		TokenHash: TokenHash(token), PublicKey: pub, At: now.UTC(),
	})
	if err != nil {
		return EnrollResult{}, err
	}
	res := v.(EnrollResult)
	s.log.Info("device enrolled", "tenant", res.Device.Tenant, "device", res.Device.Device,
		"key_id", res.Device.KeyID, "reenrolled", res.Reenrolled)
	return res, nil
}

// AppendEvent proposes a verified envelope received on tenant/device's topic and
// returns what the state machine made of it.
func (s *Store) AppendEvent(ctx context.Context, tenant, device string, envelope []byte,
	received time.Time) (*AppendResult, error) {
	return s.ProposeEvent(ctx, tenant, device, envelope, received).Wait()
}

// PendingEvent is an event proposed to raft and not yet known to be committed.
type PendingEvent struct{ p *pending }

// ProposeEvent proposes an event like AppendEvent without waiting for the commit, so that
// a caller can keep many events in flight: raft commits them in groups (one log write
// and one round of replication for many) and the state machine applies each group in
// one transaction. Events proposed one after another from one goroutine are committed in
// that order.
func (s *Store) ProposeEvent(ctx context.Context, tenant, device string, envelope []byte,
	received time.Time) *PendingEvent {
	return &PendingEvent{s.propose(ctx, cmdAppendEvent, &appendEventCmd{
		Tenant: tenant, Device: device, Envelope: envelope, ReceivedAt: received.UTC(),
	})}
}

// Wait returns what the state machine made of the event once it is committed and
// applied on this node.
func (p *PendingEvent) Wait() (*AppendResult, error) {
	v, err := p.p.wait()
	if err != nil {
		return nil, err
	}
	return v.(*AppendResult), nil
}

// CreateCR, CRAction and the other change-management writes are in commands.go.

// KeyFor returns the public key enrolled for tenant/device if its id is keyID. Any other
// key id, or a device not enrolled, is event.ErrUnknownKey.
func (s *Store) KeyFor(tenant, device, keyID string) (ed25519.PublicKey, error) {
	d, err := s.deviceRO(tenant, device)
	if errors.Is(err, ErrNotFound) {
		return nil, fmt.Errorf("%w: %s/%s not enrolled", event.ErrUnknownKey, tenant, device)
	}
	if err != nil {
		return nil, err
	}
	if d.KeyID != keyID {
		return nil, fmt.Errorf("%w: %s is not the key of %s/%s", event.ErrUnknownKey, keyID,
			tenant, device)
	}
	return ed25519.PublicKey(d.PublicKey), nil
}

// SeenBefore reports whether an event with sequence seq from tenant/device would be a
// duplicate, and the device's head. It reads the local state: on a follower the head may
// lag, which can only make it answer false, never a wrong true.
func (s *Store) SeenBefore(tenant, device string, seq uint64) (event.Ack, bool) {
	d, err := s.deviceRO(tenant, device)
	if err != nil {
		return event.Ack{}, false
	}
	head := event.Ack{Seq: d.HeadSeq, ID: d.HeadID}
	if d.NewChain && seq == 1 {
		return head, false
	}
	return head, seq <= d.HeadSeq
}

// deviceRO is Device for the ingester's two lookups per event (KeyFor, SeenBefore): the
// decoded record is kept with its bytes and reused while the stored bytes are the same.
// The caller must not change the result.
func (s *Store) deviceRO(tenant, device string) (*model.Device, error) {
	key := deviceKey(tenant, device)
	var d *model.Device
	err := s.fsm.view(func(tx *bolt.Tx) error {
		raw := tx.Bucket(bucketDevices).Get(key)
		if raw == nil {
			return fmt.Errorf("device %s/%s: %w", tenant, device, ErrNotFound)
		}
		if c, ok := s.devices.Load(string(key)); ok && bytes.Equal(c.(*decodedDevice).raw, raw) {
			d = c.(*decodedDevice).d
			return nil
		}
		var err error
		if d, err = decodeDevice(raw); err != nil {
			return err
		}
		s.devices.Store(string(key), &decodedDevice{raw: bytes.Clone(raw), d: d})
		return nil
	})
	return d, err
}

type decodedDevice struct {
	raw []byte
	d   *model.Device
}
