package store

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/raft"
	bolt "go.etcd.io/bbolt"
)

// fsm is the replicated state machine. Its state lives in its own bbolt file: every
// Apply commits the state change together with the raft index it came from, so after a
// restart the entries raft replays at or below that index are skipped rather than applied
// twice.
//
// Durability. The raft log is synced at every write; the state file is not (see
// unsynced.go): a commit reaches the page cache, which outlives a crashed or killed
// process but not the machine. A marker file names the boot whose unsynced writes the
// state file holds; opened after the machine restarted, the file is discarded and raft
// rebuilds it from the newest snapshot (synced) and the log after it. A clean close
// syncs the file and removes the marker.
//
// Determinism contract. Apply must compute the same state from the same log on every
// node, today and when the log is replayed by a later version. Inside Apply and
// everything it calls:
//   - no wall clock: times come inside the command (the proposer's clock);
//   - no randomness: ids are numbered from counters in the state, tokens are hashed
//     by the proposer;
//   - no I/O other than the bbolt transaction: no network, no files, no logging that
//     changes behaviour;
//   - no iteration over Go maps where the order reaches the state or the result;
//   - every rejection is decided from the command and the state alone, and a rejected
//     command writes nothing but the applied index;
//   - a change of what applying an entry decides or writes takes effect only from a
//     raised log format (logformat.go): nodes of two versions, and an old log replayed,
//     must agree.
//
// Readers use the same bbolt file through view; Restore swaps the file under the write
// lock.
type fsm struct {
	path string
	log  *slog.Logger

	mu sync.RWMutex // guards db against Restore; Apply and view hold it shared
	db *bolt.DB

	// applied is the last raft index written to the state file. Only the FSM goroutine
	// (Apply, Restore) writes it.
	applied atomic.Uint64
	// failed is set when a state write failed; the FSM then applies nothing more until
	// restarted, so the file never skips an entry.
	failed atomic.Pointer[error]
	// bootID names the machine's current boot; empty when it cannot be read, and then
	// every commit is synced.
	bootID string
}

// applyResult is what Apply returns through the raft future.
type applyResult struct {
	value any
	err   error
}

// errRejected makes a handler's transaction roll back while its value is still returned
// (a duplicate or out-of-sequence event: an answer, not an error).
var errRejected = errors.New("rejected")

// boltOptions open the raft log, which is synced at every write.
var boltOptions = &bolt.Options{Timeout: 5 * time.Second}

func openFSM(path string, log *slog.Logger) (*fsm, error) {
	f := &fsm{path: path, log: log, bootID: readBootID()}
	if err := f.checkUnsynced(); err != nil {
		return nil, err
	}
	if err := f.open(); err != nil {
		return nil, err
	}
	return f, nil
}

func (f *fsm) open() error {
	db, err := bolt.Open(f.path, 0o600, &bolt.Options{
		Timeout: 5 * time.Second,
		NoSync:  f.bootID != "",
		// The free list is rebuilt by a scan at open instead of written at every
		// commit; a map keeps it cheap to search as the file grows.
		NoFreelistSync: true,
		FreelistType:   bolt.FreelistMapType,
	})
	if err != nil {
		return fmt.Errorf("open state %s: %w", f.path, err)
	}
	var applied uint64
	err = db.Update(func(tx *bolt.Tx) error {
		if err := createBuckets(tx); err != nil {
			return err
		}
		applied = readApplied(tx)
		return nil
	})
	if err != nil {
		db.Close()
		return fmt.Errorf("init state %s: %w", f.path, err)
	}
	f.db = db
	f.applied.Store(applied)
	return nil
}

func (f *fsm) close() error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.db == nil {
		return nil
	}
	forgetDevCache(f.db)
	var errs []error
	if f.db.NoSync {
		errs = append(errs, f.db.Sync())
	}
	errs = append(errs, f.db.Close())
	f.db = nil
	if err := errors.Join(errs...); err != nil {
		return err // the marker stays: the file is not known to be synced
	}
	return f.markSynced()
}

// appliedIndex is the last raft index in the state file.
func (f *fsm) appliedIndex() uint64 { return f.applied.Load() }

// err is the write failure that stopped the state machine, or nil.
func (f *fsm) err() error {
	if p := f.failed.Load(); p != nil {
		return *p
	}
	return nil
}

// view runs fn in a read transaction.
func (f *fsm) view(fn func(tx *bolt.Tx) error) error {
	f.mu.RLock()
	defer f.mu.RUnlock()
	if f.db == nil {
		return ErrClosed
	}
	return f.db.View(fn)
}

// Apply applies one committed log entry.
func (f *fsm) Apply(l *raft.Log) any {
	if l.Type != raft.LogCommand {
		return nil
	}
	f.mu.RLock()
	defer f.mu.RUnlock()
	if err := f.err(); err != nil {
		return &applyResult{err: fmt.Errorf("%w: %v", ErrFSMFailed, err)}
	}
	if l.Index <= f.applied.Load() {
		// Replayed after a restart: the state file has it already.
		return &applyResult{}
	}
	handler := f.handler
	cmd, derr := decodeCommand(l.Data)
	if errors.Is(derr, errEntryFormat) {
		return f.stop(l.Index, derr)
	}
	if derr != nil {
		handler = func(*bolt.Tx, command) (any, error) {
			return nil, fmt.Errorf("%w: command: %v", ErrInvalid, derr)
		}
	}
	var res applyResult
	refused := false
	err := f.db.Update(func(tx *bolt.Tx) error {
		res.value, res.err = handler(tx, cmd)
		if res.err != nil {
			refused = true
			return res.err
		}
		return putApplied(tx, l.Index)
	})
	if refused {
		// The handler refused (a decision, the same on every node): nothing of it was
		// written, only the index moves.
		if errors.Is(res.err, errRejected) {
			res.err = nil
		}
		err = f.db.Update(func(tx *bolt.Tx) error { return putApplied(tx, l.Index) })
	}
	if err != nil {
		// The state file could not be written. Stop applying: the raft log still holds
		// this entry and everything after it, and a restart applies them again.
		f.failed.Store(&err)
		f.log.Error("state machine write failed; restart the node", "index", l.Index, "err", err)
		return &applyResult{err: fmt.Errorf("%w: %v", ErrFSMFailed, err)}
	}
	f.applied.Store(l.Index)
	return &res
}

// stop makes the state machine apply nothing more: an entry it cannot read is not
// skipped, as the nodes that read it would hold a state this one does not.
func (f *fsm) stop(index uint64, err error) *applyResult {
	f.failed.Store(&err)
	f.log.Error("state machine stopped at a log entry it cannot read; run the cluster's "+
		"version on this node", "index", index, "err", err)
	return &applyResult{err: fmt.Errorf("%w: %v", ErrFSMFailed, err)}
}

// handler dispatches one command. It runs inside the write transaction.
func (f *fsm) handler(tx *bolt.Tx, cmd command) (any, error) {
	if h, ok := clusterHandlers[cmd.Type]; ok {
		return h(tx, cmd.Payload)
	}
	switch cmd.Type {
	case cmdCreateEnrollment:
		return decodeAndRun(tx, cmd.Payload, applyCreateEnrollment)
	case cmdEnroll:
		return decodeAndRun(tx, cmd.Payload, applyEnroll)
	case cmdAppendEvent:
		if cmd.event != nil {
			return applyAppendEvent(tx, cmd.event)
		}
		return decodeAndRun(tx, cmd.Payload, applyAppendEvent)
	case cmdCreateCR:
		return decodeAndRun(tx, cmd.Payload, applyCreateCR)
	case cmdApproveCR:
		return decodeAndRun(tx, cmd.Payload, applyApproveCR)
	case cmdCRAction:
		return decodeAndRun(tx, cmd.Payload, applyCRAction)
	case cmdSetPolicy:
		return decodeAndRun(tx, cmd.Payload, applySetPolicy)
	case cmdSetDeviceTags:
		return decodeAndRun(tx, cmd.Payload, applySetDeviceTags)
	case cmdDeviationAction:
		return decodeAndRun(tx, cmd.Payload, applyDeviationAction)
	case cmdRecordFinding:
		return decodeAndRun(tx, cmd.Payload, applyRecordFinding)
	case cmdSetAckKey:
		return decodeAndRun(tx, cmd.Payload, applySetAckKey)
	}
	return nil, fmt.Errorf("%w: unknown command type %q", ErrInvalid, cmd.Type)
}

func decodeAndRun[T any](tx *bolt.Tx, payload []byte,
	fn func(*bolt.Tx, *T) (any, error)) (any, error) {
	var p T
	if err := json.Unmarshal(payload, &p); err != nil {
		return nil, fmt.Errorf("%w: payload: %v", ErrInvalid, err)
	}
	return fn(tx, &p)
}

// Snapshot captures the state as of now: a read transaction that Persist streams out.
// A long Persist holds that transaction open, which makes writes that need to grow the
// file wait until it ends.
func (f *fsm) Snapshot() (raft.FSMSnapshot, error) {
	f.mu.RLock()
	defer f.mu.RUnlock()
	if err := f.err(); err != nil {
		// A snapshot now would claim entries the state file does not hold.
		return nil, fmt.Errorf("%w: %v", ErrFSMFailed, err)
	}
	tx, err := f.db.Begin(false)
	if err != nil {
		return nil, fmt.Errorf("snapshot: %w", err)
	}
	return &fsmSnapshot{tx: tx}, nil
}

// Restore replaces the whole state with a snapshot: the stream is a bbolt file, written
// next to the state file, synced, and renamed over it.
func (f *fsm) Restore(rc io.ReadCloser) error {
	defer rc.Close()
	tmp := f.path + ".restore"
	if err := writeSynced(tmp, rc); err != nil {
		return fmt.Errorf("restore: %w", err)
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.db != nil {
		forgetDevCache(f.db)
		if err := f.db.Close(); err != nil {
			return fmt.Errorf("restore: close state: %w", err)
		}
		f.db = nil
	}
	if err := os.Rename(tmp, f.path); err != nil {
		return fmt.Errorf("restore: %w", err)
	}
	if err := syncDir(filepath.Dir(f.path)); err != nil {
		return fmt.Errorf("restore: %w", err)
	}
	f.failed.Store(nil)
	if err := f.open(); err != nil {
		return fmt.Errorf("restore: %w", err)
	}
	f.log.Info("state restored from snapshot", "applied_index", f.applied.Load())
	return nil
}

type fsmSnapshot struct{ tx *bolt.Tx }

// Persist writes the bbolt file as of the snapshot's transaction to the sink.
func (s *fsmSnapshot) Persist(sink raft.SnapshotSink) error {
	if _, err := s.tx.WriteTo(sink); err != nil {
		sink.Cancel()
		return fmt.Errorf("persist snapshot: %w", err)
	}
	return sink.Close()
}

// Release ends the snapshot's read transaction.
func (s *fsmSnapshot) Release() { s.tx.Rollback() }

func writeSynced(path string, r io.Reader) error {
	out, err := os.OpenFile(path, os.O_CREATE|os.O_TRUNC|os.O_WRONLY, 0o600)
	if err != nil {
		return err
	}
	if _, err := io.Copy(out, r); err != nil {
		out.Close()
		os.Remove(path)
		return err
	}
	if err := out.Sync(); err != nil {
		out.Close()
		os.Remove(path)
		return err
	}
	return out.Close()
}

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}
