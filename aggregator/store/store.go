// Package store is the aggregator's replicated state: hashicorp/raft over TCP, with the
// raft log and stable store in one raft-boltdb file, file snapshots, and the state
// machine's own bbolt file (see fsm.go for its determinism contract).
//
// Writes are commands proposed through raft and answered once committed and applied.
// Reads go straight to the local state file.
// TODO: clusters of 3 or 5 (joining, removal, forwarding writes to the leader);
// today one node bootstraps itself and is always the leader.
package store

import (
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
	"time"

	"github.com/hashicorp/raft"
	raftboltdb "github.com/hashicorp/raft-boltdb/v2"

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
	raft      *raft.Raft
	logStore  *raftboltdb.BoltStore
	transport *raft.NetworkTransport
}

// Open opens (or creates) the store in cfg.Dir and starts its raft node. A node without
// raft state bootstraps a single-node cluster of itself; one with state rejoins it.
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
	s := &Store{cfg: cfg, log: log}
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
	addr, err := net.ResolveTCPAddr("tcp", cfg.RaftListen)
	if err != nil {
		return nil, fmt.Errorf("raft listen: %w", err)
	}
	s.transport, err = raft.NewTCPTransportWithLogger(cfg.RaftListen, addr, 3, 10*time.Second, hlog)
	if err != nil {
		return nil, fmt.Errorf("raft transport: %w", err)
	}

	rc := raft.DefaultConfig()
	rc.LocalID = raft.ServerID(cfg.NodeID)
	rc.Logger = hlog
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
	s.raft, err = raft.NewRaft(rc, s.fsm, s.logStore, s.logStore, snaps, s.transport)
	if err != nil {
		return nil, fmt.Errorf("start raft: %w", err)
	}
	if !hasState {
		boot := raft.Configuration{Servers: []raft.Server{{
			Suffrage: raft.Voter, ID: rc.LocalID, Address: s.transport.LocalAddr(),
		}}}
		if err = s.raft.BootstrapCluster(boot).Error(); err != nil {
			s.raft.Shutdown()
			return nil, fmt.Errorf("bootstrap raft: %w", err)
		}
		log.Info("bootstrapped single-node raft cluster", "node_id", cfg.NodeID,
			"raft_addr", s.transport.LocalAddr())
	}
	log.Info("store open", "dir", cfg.Dir, "node_id", cfg.NodeID,
		"applied_index", s.fsm.appliedIndex())
	return s, nil
}

// stateCoversSnapshots reports whether the state file is at or past the newest snapshot.
func stateCoversSnapshots(snaps raft.SnapshotStore, applied uint64) (bool, error) {
	list, err := snaps.List()
	if err != nil {
		return false, fmt.Errorf("list snapshots: %w", err)
	}
	return len(list) == 0 || list[0].Index <= applied, nil
}

// WaitLeader waits until the cluster has a leader.
func (s *Store) WaitLeader(ctx context.Context) error {
	t := time.NewTicker(20 * time.Millisecond)
	defer t.Stop()
	for {
		if addr, _ := s.raft.LeaderWithID(); addr != "" {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("wait for raft leader: %w", ctx.Err())
		case <-t.C:
		}
	}
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
	return nil
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
	b, err := encodeCommand(typ, payload)
	if err != nil {
		return nil, err
	}
	timeout := s.cfg.ApplyTimeout
	if dl, ok := ctx.Deadline(); ok {
		timeout = time.Until(dl)
	}
	f := s.raft.Apply(b, timeout)
	if err := f.Error(); err != nil {
		if errors.Is(err, raft.ErrNotLeader) {
			addr, id := s.raft.LeaderWithID()
			return nil, &NotLeaderError{LeaderID: string(id), LeaderAddr: string(addr)}
		}
		if errors.Is(err, raft.ErrRaftShutdown) {
			return nil, ErrClosed
		}
		return nil, fmt.Errorf("raft apply %s: %w", typ, err)
	}
	res, ok := f.Response().(*applyResult)
	if !ok {
		return nil, fmt.Errorf("raft apply %s: unexpected response %T", typ, f.Response())
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
	v, err := s.apply(ctx, cmdAppendEvent, &appendEventCmd{
		Tenant: tenant, Device: device, Envelope: envelope, ReceivedAt: received.UTC(),
	})
	if err != nil {
		return nil, err
	}
	return v.(*AppendResult), nil
}

// CreateCR creates a change request in state submitted. An empty cr.ID is numbered.
func (s *Store) CreateCR(ctx context.Context, cr *model.CR, now time.Time) (*model.CR, error) {
	if err := ValidateCR(cr); err != nil {
		return nil, err
	}
	v, err := s.apply(ctx, cmdCreateCR, &createCRCmd{CR: *cr, At: now.UTC()})
	if err != nil {
		return nil, err
	}
	return v.(*model.CR), nil
}

// ApproveCR records approver's approval of the tenant's CR id.
func (s *Store) ApproveCR(ctx context.Context, tenant, id, approver string,
	now time.Time) (*model.CR, error) {
	v, err := s.apply(ctx, cmdApproveCR, &approveCRCmd{
		Tenant: tenant, ID: id, Approver: approver, At: now.UTC(),
	})
	if err != nil {
		return nil, err
	}
	return v.(*model.CR), nil
}

// KeyFor returns the public key enrolled for tenant/device if its id is keyID. Any other
// key id, or a device not enrolled, is event.ErrUnknownKey.
func (s *Store) KeyFor(tenant, device, keyID string) (ed25519.PublicKey, error) {
	d, err := s.Device(tenant, device)
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
	d, err := s.Device(tenant, device)
	if err != nil {
		return event.Ack{}, false
	}
	head := event.Ack{Seq: d.HeadSeq, ID: d.HeadID}
	if d.NewChain && seq == 1 {
		return head, false
	}
	return head, seq <= d.HeadSeq
}
