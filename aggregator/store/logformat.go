package store

import (
	"context"
	"encoding/binary"
	"fmt"
	"time"

	bolt "go.etcd.io/bbolt"
)

// Raft log formats: how entries are written and what applying them does. Format 1: every
// entry is a JSON command. Format 2: append_event entries in a binary form (commands.go),
// and a change of an indicator object decided with the first other change of its event
// (deviation.Input.GroupIndicators). A node of an earlier version would refuse the
// binary entries as invalid commands, and would decide the indicators alone: its state
// would differ from the others'. So the leader writes and applies format 2 only once the
// cluster's replicated log format is 2, which it raises only when every member of the
// raft configuration says it reads format 2 (RunLeaderDuties asks them); the raise is a
// log entry, so every node switches at the same point of the log, and a log replayed
// later switches there again. From then on Join refuses a node that reads less. An entry
// in a format this version does not know stops its state machine (ErrFSMFailed) instead
// of being skipped. Any later change of what applying an entry does needs a new format.
const LogFormat = 2

// formatIndicatorGroups is the format from which indicator changes go with their event.
const formatIndicatorGroups = 2

const cmdSetLogFormat = "set_log_format"

// keyLogFormat in the meta bucket: the cluster's log format, big-endian; absent means 1.
var keyLogFormat = []byte("log_format")

// setLogFormatCmd raises the cluster's log format.
type setLogFormatCmd struct {
	Format int `json:"format"`
}

func readLogFormat(tx *bolt.Tx) int {
	v := tx.Bucket(bucketMeta).Get(keyLogFormat)
	if len(v) != 8 {
		return 1
	}
	return int(binary.BigEndian.Uint64(v))
}

// applySetLogFormat raises the format; it never lowers it.
func applySetLogFormat(tx *bolt.Tx, c *setLogFormatCmd) (any, error) {
	switch cur := readLogFormat(tx); {
	case c.Format > LogFormat:
		return nil, fmt.Errorf("%w: log format %d is newer than this node reads (%d)",
			ErrInvalid, c.Format, LogFormat)
	case c.Format <= cur:
		return nil, nil
	}
	return nil, tx.Bucket(bucketMeta).Put(keyLogFormat, u64(uint64(c.Format)))
}

// ClusterLogFormat is the raft log format the cluster's leader writes.
func (s *Store) ClusterLogFormat() int {
	f := 1
	if err := s.fsm.view(func(tx *bolt.Tx) error {
		f = readLogFormat(tx)
		return nil
	}); err != nil {
		return 1
	}
	return f
}

// writesBinaryEvents reports whether append_event entries may go into the log in the
// binary form. The format only rises, so once true it is remembered.
func (s *Store) writesBinaryEvents() bool {
	if s.binaryEvents.Load() {
		return true
	}
	if s.ClusterLogFormat() >= 2 {
		s.binaryEvents.Store(true)
		return true
	}
	return false
}

// MemberProbe asks a member of the cluster (through its API) which raft log format it
// reads; a node that does not say reads format 1.
type MemberProbe func(ctx context.Context, n Node) (int, error)

// RaiseLogFormat writes the cluster's log format up to LogFormat once every member of
// the raft configuration reads it (probe asks the others; a cluster of this node alone
// needs none). It runs on the leader (RunLeaderDuties calls it); it reports whether the
// cluster is at LogFormat, or why not yet.
func (s *Store) RaiseLogFormat(ctx context.Context, probe MemberProbe) (bool, error) {
	s.membership.Lock()
	defer s.membership.Unlock()
	if s.ClusterLogFormat() >= LogFormat {
		return true, nil
	}
	cfg, err := s.configuration()
	if err != nil {
		return false, err
	}
	nodes, err := s.nodes()
	if err != nil {
		return false, err
	}
	for _, srv := range cfg.Servers {
		id := string(srv.ID)
		if id == s.cfg.NodeID {
			continue
		}
		n, ok := nodes[id]
		switch {
		case !ok || n.APIURL == "":
			return false, fmt.Errorf("member %s has no API address to ask", id)
		case probe == nil:
			return false, fmt.Errorf("member %s cannot be asked", id)
		}
		pctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		f, err := probe(pctx, n)
		cancel()
		if err != nil {
			return false, fmt.Errorf("member %s: %w", id, err)
		}
		if f < LogFormat {
			return false, fmt.Errorf("member %s reads log format %d", id, max(f, 1))
		}
	}
	if _, err := s.apply(ctx, cmdSetLogFormat, &setLogFormatCmd{Format: LogFormat}); err != nil {
		return false, err
	}
	s.log.Info("every member reads the newer raft log format; the leader writes it from now on",
		"log_format", LogFormat)
	return true, nil
}
