package store

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"time"

	bolt "go.etcd.io/bbolt"
)

// Leader-only timers. Deadlines (a CR window closing, an agent falling silent) are
// decided inside the state machine like everything else, from a time that travels in the
// log: the leader proposes a tick carrying its clock every TickInterval, and each
// committed tick runs the deadline checks with that time. A tick is a log entry, so the
// checks run on every node, in the same order, with the same time; and because a
// leadership change is only a change of proposer, the timers move with leadership.
//
// A deadline fires at most once: the state machine records each deadline key it fired
// (Deadlines.Fire), and ticks never move the state machine's clock backwards, so a new
// leader whose clock lags, or two leaders' ticks in the same term change, fire nothing
// twice.

// cmdTick is the tick command type.
const cmdTick = "tick"

// tickCmd carries the proposing leader's clock.
type tickCmd struct {
	At     time.Time `json:"at"`
	Leader string    `json:"leader"`
	// Since is when the proposing leader took office (zero: unknown). Devices whose
	// silence began before it get a full silence period from it: while no node was
	// leading, nobody listened to them.
	Since time.Time `json:"since,omitzero"`
}

var (
	// bucketDeadlines records fired deadlines: key → big-endian UnixNano of the tick.
	bucketDeadlines = []byte("deadlines")
	keyLastTick     = []byte("last_tick") // in bucketMeta: UnixNano of the newest tick
)

// DeadlineCheck is a deterministic check run on every committed tick (see the
// determinism contract in fsm.go: no clock but d.Now, no I/O but d.Tx). It fires the
// deadlines that are due through d.Fire and records their consequences in d.Tx, and
// returns what it fired for the log and the proposer.
type DeadlineCheck struct {
	Name  string
	Check func(d *Deadlines) error
}

// deadlineChecks run in this order on every committed tick: CR windows closing and
// emergency reviews falling due, then devices falling silent (apply_deadlines.go).
var deadlineChecks = []DeadlineCheck{
	{Name: "cr_windows", Check: windowChecks},
	{Name: "agent_silence", Check: silenceChecks},
}

// Deadlines is what a DeadlineCheck works with.
type Deadlines struct {
	Tx *bolt.Tx
	// Now is the tick's time: the leader's clock when it proposed the tick, never before
	// an earlier tick's.
	Now time.Time
	// LeaderSince is when the proposing leader took office, or zero.
	LeaderSince time.Time
	fired       []string
}

// Fire reports whether the deadline named key, due at due, fires now: it is due
// (due <= Now) and was never fired before. A true answer is recorded, so the same key
// never fires again. Keys must be unique per deadline, e.g. "window_close/acme/CR-000001".
func (d *Deadlines) Fire(key string, due time.Time) (bool, error) {
	if due.After(d.Now) {
		return false, nil
	}
	b, err := d.Tx.CreateBucketIfNotExists(bucketDeadlines)
	if err != nil {
		return false, err
	}
	if b.Get([]byte(key)) != nil {
		return false, nil
	}
	if err := b.Put([]byte(key), u64(uint64(d.Now.UnixNano()))); err != nil {
		return false, err
	}
	d.fired = append(d.fired, key)
	return true, nil
}

// Fired reports whether the deadline named key has fired.
func (d *Deadlines) Fired(key string) bool {
	b := d.Tx.Bucket(bucketDeadlines)
	return b != nil && b.Get([]byte(key)) != nil
}

// TickResult is what a tick did.
type TickResult struct {
	// Stale: the tick's time was not after the previous tick's; nothing ran.
	Stale bool
	// Fired are the keys of the deadlines fired by this tick.
	Fired []string
}

func applyTick(tx *bolt.Tx, c *tickCmd) (any, error) {
	meta := tx.Bucket(bucketMeta)
	at := c.At.UTC()
	if v := meta.Get(keyLastTick); len(v) == 8 &&
		at.UnixNano() <= int64(binary.BigEndian.Uint64(v)) {
		return &TickResult{Stale: true}, nil
	}
	if err := meta.Put(keyLastTick, u64(uint64(at.UnixNano()))); err != nil {
		return nil, err
	}
	d := &Deadlines{Tx: tx, Now: at, LeaderSince: c.Since.UTC()}
	for _, dc := range deadlineChecks {
		if err := dc.Check(d); err != nil {
			return nil, fmt.Errorf("deadline check %s: %w", dc.Name, err)
		}
	}
	return &TickResult{Fired: d.fired}, nil
}

// Tick proposes a tick at now and returns what it fired. Only the leader's ticks are
// accepted.
func (s *Store) Tick(ctx context.Context, now time.Time) (*TickResult, error) {
	return s.TickSince(ctx, now, time.Time{})
}

// TickSince proposes a tick at now from a leader that took office at since (see
// tickCmd.Since).
func (s *Store) TickSince(ctx context.Context, now, since time.Time) (*TickResult, error) {
	v, err := s.apply(ctx, cmdTick, &tickCmd{At: now.UTC(), Leader: s.cfg.NodeID, Since: since.UTC()})
	if err != nil {
		return nil, err
	}
	return v.(*TickResult), nil
}

// LastTick is the time of the newest tick this node has applied (zero before the first).
func (s *Store) LastTick() time.Time {
	var t time.Time
	s.fsm.view(func(tx *bolt.Tx) error {
		if v := tx.Bucket(bucketMeta).Get(keyLastTick); len(v) == 8 {
			t = time.Unix(0, int64(binary.BigEndian.Uint64(v))).UTC()
		}
		return nil
	})
	return t
}

// formatCheckInterval is how often the leader asks the members which raft log format
// they read, until all read the newest.
const formatCheckInterval = 5 * time.Second

// RunLeaderDuties does on the leader, until ctx ends, what only the leader does: it
// records its own API address in the node table on taking office, raises the cluster's
// raft log format once every member reads the newer one (asking them with probe), and
// proposes a tick every interval. Run it in a goroutine the caller owns.
func (s *Store) RunLeaderDuties(ctx context.Context, interval time.Duration, probe MemberProbe) {
	if interval <= 0 {
		interval = time.Second
	}
	s.RunWhileLeader(ctx, "leader_duties", func(ctx context.Context) {
		since := time.Now()
		if _, err := s.EnsureAckKey(ctx); err != nil && ctx.Err() == nil {
			s.log.Warn("no ack signing key yet; acks go out unsigned", "err", err)
		}
		if err := s.registerSelf(ctx, time.Now()); err != nil && ctx.Err() == nil {
			s.log.Warn("could not record this node in the node table", "err", err)
		}
		formatDone, formatWhy := false, ""
		var formatAsked time.Time
		t := time.NewTicker(interval)
		defer t.Stop()
		for {
			if !formatDone && time.Since(formatAsked) >= formatCheckInterval {
				formatAsked = time.Now()
				var err error
				formatDone, err = s.RaiseLogFormat(ctx, probe)
				if err != nil && ctx.Err() == nil && err.Error() != formatWhy {
					formatWhy = err.Error()
					s.log.Info("the cluster keeps the older raft log format for now",
						"log_format", s.ClusterLogFormat(), "reason", err)
				}
			}
			select {
			case <-ctx.Done():
				return
			case <-t.C:
			}
			res, err := s.TickSince(ctx, time.Now(), since)
			switch {
			case err != nil && (ctx.Err() != nil || errors.Is(err, ErrClosed)):
				return
			case err != nil:
				s.log.Debug("tick not committed", "err", err)
			case len(res.Fired) > 0:
				s.log.Info("deadlines fired", "count", len(res.Fired), "keys", res.Fired)
			}
		}
	})
}
