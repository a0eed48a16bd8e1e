package store

import (
	"errors"
	"fmt"

	"github.com/hashicorp/raft"
	bolt "go.etcd.io/bbolt"
)

// errBatchRefused aborts a batch transaction at a command its handler refused.
var errBatchRefused = errors.New("batch: command refused")

// batchEntry is one command of a batch, decoded.
type batchEntry struct {
	pos   int // in the batch raft handed over
	index uint64
	cmd   command
	bad   error // the command did not decode
}

// ApplyBatch applies committed entries in one bbolt transaction (one commit, one fsync
// pair, for as many entries as raft hands over together: up to MaxAppendEntries). It
// computes exactly what Apply would for each entry one by one. A refused command must
// leave nothing behind but the applied index, and a transaction cannot be rolled back
// partly; so when a handler refuses, the transaction is abandoned, the commands before
// the refused one are applied again in a transaction of their own (the same state and
// commands give the same results), the refused one records only its index, and the
// batch goes on after it. Refusals are rare on the hot path (the ingester drops known
// duplicates before proposing), so the common batch costs one transaction.
func (f *fsm) ApplyBatch(logs []*raft.Log) []any {
	out := make([]any, len(logs))
	f.mu.RLock()
	defer f.mu.RUnlock()
	if err := f.err(); err != nil {
		for i := range out {
			out[i] = &applyResult{err: fmt.Errorf("%w: %v", ErrFSMFailed, err)}
		}
		return out
	}
	applied := f.applied.Load()
	var entries []batchEntry
	var unread *batchEntry
	for i, l := range logs {
		if l.Type != raft.LogCommand {
			continue
		}
		if l.Index <= applied {
			// Replayed after a restart: the state file has it already.
			out[i] = &applyResult{}
			continue
		}
		e := batchEntry{pos: i, index: l.Index}
		var err error
		if e.cmd, err = decodeCommand(l.Data); errors.Is(err, errEntryFormat) {
			// Apply what comes before it, then stop there.
			unread = &batchEntry{pos: i, index: l.Index, bad: err}
			break
		} else if err != nil {
			e.bad = fmt.Errorf("%w: command: %v", ErrInvalid, err)
		}
		entries = append(entries, e)
	}
	for len(entries) > 0 {
		n, refused, err := f.applyRun(entries, out)
		if err != nil {
			f.failed.Store(&err)
			f.log.Error("state machine write failed; restart the node",
				"index", entries[0].index, "err", err)
			for _, e := range entries {
				out[e.pos] = &applyResult{err: fmt.Errorf("%w: %v", ErrFSMFailed, err)}
			}
			return out
		}
		if refused != nil {
			out[entries[n].pos] = refused
			n++
		}
		entries = entries[n:]
	}
	if unread != nil {
		out[unread.pos] = f.stop(unread.index, unread.bad)
		for i := unread.pos + 1; i < len(out); i++ {
			out[i] = &applyResult{err: fmt.Errorf("%w: %v", ErrFSMFailed, unread.bad)}
		}
	}
	return out
}

// applyRun applies entries from the first on in one transaction, up to the first that
// is refused. It returns how many were applied, and the refused one's result (nil when
// all were applied). Their results go into out.
func (f *fsm) applyRun(entries []batchEntry, out []any) (int, *applyResult, error) {
	var results []applyResult
	stop := -1
	var refused applyResult
	run := func(tx *bolt.Tx, upto int) error {
		results = results[:0]
		for k := 0; k < upto; k++ {
			e := entries[k]
			var res applyResult
			if e.bad != nil {
				res.err = e.bad
			} else {
				res.value, res.err = f.handler(tx, e.cmd)
			}
			if res.err != nil {
				stop, refused = k, res
				return errBatchRefused
			}
			results = append(results, res)
		}
		return nil
	}
	err := f.db.Update(func(tx *bolt.Tx) error {
		if err := run(tx, len(entries)); err != nil {
			return err
		}
		return putApplied(tx, entries[len(entries)-1].index)
	})
	switch {
	case err == nil:
		f.publish(entries, results, out)
		return len(entries), nil, nil
	case !errors.Is(err, errBatchRefused):
		return 0, nil, err
	}
	// Apply the entries before the refused one again, and move the applied index past
	// the refused one in the same transaction.
	upto := stop
	err = f.db.Update(func(tx *bolt.Tx) error {
		if err := run(tx, upto); err != nil {
			return fmt.Errorf("batch: entry %d refused on the second pass", entries[stop].index)
		}
		return putApplied(tx, entries[upto].index)
	})
	if err != nil {
		return 0, nil, err
	}
	f.publish(entries[:upto], results, out)
	f.applied.Store(entries[upto].index)
	if errors.Is(refused.err, errRejected) {
		refused.err = nil
	}
	return upto, &refused, nil
}

// publish hands out the results of applied entries and moves the applied index.
func (f *fsm) publish(entries []batchEntry, results []applyResult, out []any) {
	for k, e := range entries {
		r := results[k]
		out[e.pos] = &r
	}
	if len(entries) > 0 {
		f.applied.Store(entries[len(entries)-1].index)
	}
}
