// Package outbox is the agent's durable queue of signed events. An event is written and
// fsynced here before it is published, and leaves only when the aggregator's ack says it
// is committed. The outbox also numbers events (per-device sequence, previous event id)
// and remembers the last state reported, so a restarted agent continues the chain and
// can tell what changed while it was down.
//
// The outbox is bounded: Append refuses with ErrFull beyond Config.MaxBytes of pending
// events, and Fold then replaces the pending events with one state event. Fold is not
// bounded: its event is stored whatever its size (a state may be larger than the bound),
// so reaching the bound is never fatal. Nothing is dropped silently.
package outbox

import (
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"time"

	bolt "go.etcd.io/bbolt"
)

var (
	bucketEvents = []byte("events") // big-endian seq → record (see encodeRecord)
	bucketMeta   = []byte("meta")

	keyHead  = []byte("head")  // Head as JSON
	keyState = []byte("state") // opaque state blob of the last appended state event
)

// Errors. Callers act on them with errors.Is.
var (
	// ErrNotFound: State was called before any state was stored.
	ErrNotFound = errors.New("outbox: no state")
	// ErrFull: the event would take the pending bytes beyond Config.MaxBytes.
	ErrFull = errors.New("outbox: full")
	// ErrCorrupt: the file is not a readable outbox.
	ErrCorrupt = errors.New("outbox: corrupt file")
	// ErrAckBeyondHead: the aggregator acknowledged a sequence this outbox never wrote.
	ErrAckBeyondHead = errors.New("outbox: ack beyond head")
	// ErrFork: the aggregator acknowledged a different event at a sequence this outbox
	// holds.
	ErrFork = errors.New("outbox: ack names another event")
)

// Head is the newest event in the chain and the newest the aggregator acknowledged.
type Head struct {
	Seq   uint64 `json:"seq"`
	ID    string `json:"id"`
	Acked uint64 `json:"acked"`
	// AckedID is the id of event Acked (empty before the first ack, or when the
	// aggregator's ack named none).
	AckedID string `json:"acked_id,omitempty"`
	// AckedAt is the newest signed send time (Unix milliseconds, the aggregator's clock)
	// of an ack that advanced Acked; 0 when the aggregator's acks carry none.
	AckedAt int64 `json:"acked_at,omitempty"`
	// Count and Bytes describe the pending (unacknowledged) events.
	Count int   `json:"count"`
	Bytes int64 `json:"bytes"`
}

// Entry is one pending event.
type Entry struct {
	Seq        uint64
	ID         string
	Envelope   []byte
	AppendedAt time.Time
}

// Config bounds the outbox.
type Config struct {
	// MaxBytes bounds the envelope bytes of pending events; 0 means no bound.
	MaxBytes int64
}

// Outbox is a bbolt-backed queue. It is safe for concurrent use.
type Outbox struct {
	db  *bolt.DB
	cfg Config
	now func() time.Time
}

// Open opens or creates the outbox file and checks its consistency. A file that is not a
// readable outbox gives an error wrapping ErrCorrupt.
func Open(path string, cfg Config) (ob *Outbox, err error) {
	db, err := bolt.Open(path, 0o600, &bolt.Options{Timeout: 5 * time.Second})
	if err != nil {
		if errors.Is(err, bolt.ErrTimeout) {
			return nil, fmt.Errorf("open %s: locked by another process: %w", path, err)
		}
		return nil, fmt.Errorf("open %s: %w: %v", path, ErrCorrupt, err)
	}
	// bbolt panics on some kinds of page corruption; treat that as corruption too.
	defer func() {
		if r := recover(); r != nil {
			db.Close()
			ob, err = nil, fmt.Errorf("open %s: %w: %v", path, ErrCorrupt, r)
		}
	}()
	if err := check(db); err != nil {
		db.Close()
		return nil, fmt.Errorf("open %s: %w: %v", path, ErrCorrupt, err)
	}
	err = db.Update(func(tx *bolt.Tx) error {
		for _, b := range [][]byte{bucketEvents, bucketMeta} {
			if _, err := tx.CreateBucketIfNotExists(b); err != nil {
				return err
			}
		}
		_, err := readHead(tx.Bucket(bucketMeta))
		return err
	})
	if err != nil {
		db.Close()
		return nil, fmt.Errorf("open %s: %w: %v", path, ErrCorrupt, err)
	}
	return &Outbox{db: db, cfg: cfg, now: time.Now}, nil
}

// OpenOrRecover opens the outbox; if the file is corrupt it is renamed aside (to
// path.corrupt-TIMESTAMP) and a new, empty outbox is created. moved names the file that
// was moved aside, or is empty.
func OpenOrRecover(path string, cfg Config) (ob *Outbox, moved string, err error) {
	ob, err = Open(path, cfg)
	if !errors.Is(err, ErrCorrupt) {
		return ob, "", err
	}
	moved = fmt.Sprintf("%s.corrupt-%s", path, time.Now().UTC().Format("20060102T150405Z"))
	if rerr := os.Rename(path, moved); rerr != nil {
		return nil, "", fmt.Errorf("%w; moving it aside failed: %v", err, rerr)
	}
	ob, err = Open(path, cfg)
	return ob, moved, err
}

func check(db *bolt.DB) error {
	return db.View(func(tx *bolt.Tx) error {
		for err := range tx.Check() {
			return err
		}
		return nil
	})
}

// Close closes the file.
func (o *Outbox) Close() error { return o.db.Close() }

// Sealer signs the event with the given sequence number and previous event id, and
// returns the envelope bytes and the new event's id.
type Sealer func(seq uint64, prev string) (envelope []byte, id string, err error)

// Append seals the next event of the chain and stores it, together with the state it
// reports (nil keeps the stored state), in one fsynced transaction. It returns the new
// event's sequence number, or an error wrapping ErrFull when the bound would be exceeded.
func (o *Outbox) Append(seal Sealer, state []byte) (uint64, error) {
	seqs, err := o.AppendBatch([]Item{{Seal: seal, State: state}})
	if err != nil {
		return 0, err
	}
	return seqs[0], nil
}

// Item is one event for AppendBatch.
type Item struct {
	Seal  Sealer
	State []byte // nil keeps the stored state
}

// AppendBatch appends several events in order in one fsynced transaction: all or none.
// Batching is what makes bursts cheap (one commit costs two fsyncs).
func (o *Outbox) AppendBatch(items []Item) ([]uint64, error) {
	seqs := make([]uint64, 0, len(items))
	err := o.db.Update(func(tx *bolt.Tx) error {
		seqs = seqs[:0]
		meta := tx.Bucket(bucketMeta)
		h, err := readHead(meta)
		if err != nil {
			return err
		}
		for _, it := range items {
			env, id, err := it.Seal(h.Seq+1, h.ID)
			if err != nil {
				return fmt.Errorf("seal event %d: %w", h.Seq+1, err)
			}
			if o.cfg.MaxBytes > 0 && h.Count > 0 && h.Bytes+int64(len(env)) > o.cfg.MaxBytes {
				return fmt.Errorf("%w: %d pending bytes, bound %d", ErrFull, h.Bytes, o.cfg.MaxBytes)
			}
			if err := o.put(tx, &h, h.Seq+1, id, env); err != nil {
				return err
			}
			if it.State != nil {
				if err := meta.Put(keyState, it.State); err != nil {
					return err
				}
			}
			seqs = append(seqs, h.Seq)
		}
		return writeHead(meta, h)
	})
	if err != nil {
		return nil, fmt.Errorf("append: %w", err)
	}
	return seqs, nil
}

// put stores one record as the new head.
func (o *Outbox) put(tx *bolt.Tx, h *Head, seq uint64, id string, env []byte) error {
	rec, err := encodeRecord(o.now(), id, env)
	if err != nil {
		return err
	}
	if err := tx.Bucket(bucketEvents).Put(seqKey(seq), rec); err != nil {
		return err
	}
	h.Seq, h.ID = seq, id
	h.Count++
	h.Bytes += int64(len(env))
	return nil
}

// FoldSealer seals the event that replaces count pending events, the first of which is
// first; seq and prev continue the chain from the event before first.
type FoldSealer func(seq uint64, prev string, first Entry, count int) (envelope []byte, id string, err error)

// Fold replaces the pending events after sequence after with the one event seal returns,
// and stores state with it. Events up to after are kept: they may already be at the
// aggregator (published, not yet acknowledged), and replacing them would fork the chain.
// after below the acknowledged sequence means the acknowledged sequence; with nothing
// after it, Fold folds every pending event. The fold event is stored even when it takes
// the pending bytes beyond Config.MaxBytes. It returns how many events were folded.
func (o *Outbox) Fold(after uint64, seal FoldSealer, state []byte) (int, error) {
	var folded int
	err := o.db.Update(func(tx *bolt.Tx) error {
		meta := tx.Bucket(bucketMeta)
		h, err := readHead(meta)
		if err != nil {
			return err
		}
		after = max(after, h.Acked)
		if after >= h.Seq {
			after = h.Acked
		}
		if h.Count == 0 || after >= h.Seq {
			return nil
		}
		b := tx.Bucket(bucketEvents)
		prev := h.AckedID
		if after > h.Acked {
			k := seqKey(after)
			e, err := decodeRecord(k, b.Get(k))
			if err != nil {
				return err
			}
			prev = e.ID
		}
		c := b.Cursor()
		k, v := c.Seek(seqKey(after + 1))
		first, err := decodeRecord(k, v)
		if err != nil {
			return err
		}
		first.Envelope = append([]byte(nil), first.Envelope...)
		for k, v := c.Seek(seqKey(after + 1)); k != nil; k, v = c.Seek(seqKey(after + 1)) {
			h.Count--
			h.Bytes -= int64(len(v) - recordHeader)
			if err := c.Delete(); err != nil {
				return err
			}
			folded++
		}
		env, id, err := seal(after+1, prev, first, folded)
		if err != nil {
			return fmt.Errorf("seal: %w", err)
		}
		h.Seq = after
		if err := o.put(tx, &h, after+1, id, env); err != nil {
			return err
		}
		if state != nil {
			if err := meta.Put(keyState, state); err != nil {
				return err
			}
		}
		return writeHead(meta, h)
	})
	if err != nil {
		return 0, fmt.Errorf("fold: %w", err)
	}
	return folded, nil
}

// Reanchor forgets every pending event and continues the chain after the aggregator's
// head (seq, id), which it has acknowledged. The stored state is kept. It returns how many
// pending events were dropped: they are lost, and the caller must report that.
func (o *Outbox) Reanchor(seq uint64, id string) (int, error) {
	var dropped int
	err := o.db.Update(func(tx *bolt.Tx) error {
		meta := tx.Bucket(bucketMeta)
		h, err := readHead(meta)
		if err != nil {
			return err
		}
		c := tx.Bucket(bucketEvents).Cursor()
		for k, _ := c.First(); k != nil; k, _ = c.First() {
			if err := c.Delete(); err != nil {
				return err
			}
		}
		dropped = h.Count
		h = Head{Seq: seq, ID: id, Acked: seq, AckedID: id, AckedAt: h.AckedAt}
		return writeHead(meta, h)
	})
	if err != nil {
		return 0, fmt.Errorf("reanchor: %w", err)
	}
	return dropped, nil
}

// Head returns the chain head, the acknowledged sequence and the pending totals.
func (o *Outbox) Head() (Head, error) {
	var h Head
	err := o.db.View(func(tx *bolt.Tx) error {
		var err error
		h, err = readHead(tx.Bucket(bucketMeta))
		return err
	})
	return h, err
}

// State returns the state stored with the newest state event.
func (o *Outbox) State() ([]byte, error) {
	var out []byte
	err := o.db.View(func(tx *bolt.Tx) error {
		v := tx.Bucket(bucketMeta).Get(keyState)
		if v == nil {
			return ErrNotFound
		}
		out = append([]byte(nil), v...)
		return nil
	})
	return out, err
}

// Pending returns up to max events with a sequence number above after, in order.
func (o *Outbox) Pending(after uint64, max int) ([]Entry, error) {
	var out []Entry
	err := o.db.View(func(tx *bolt.Tx) error {
		c := tx.Bucket(bucketEvents).Cursor()
		for k, v := c.Seek(seqKey(after + 1)); k != nil && len(out) < max; k, v = c.Next() {
			e, err := decodeRecord(k, v)
			if err != nil {
				return err
			}
			e.Envelope = append([]byte(nil), e.Envelope...)
			out = append(out, e)
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("read pending: %w", err)
	}
	return out, nil
}

// Oldest returns when the oldest pending event was appended, or the zero time.
func (o *Outbox) Oldest() (time.Time, error) {
	var t time.Time
	err := o.db.View(func(tx *bolt.Tx) error {
		k, v := tx.Bucket(bucketEvents).Cursor().First()
		if k == nil {
			return nil
		}
		e, err := decodeRecord(k, v)
		t = e.AppendedAt
		return err
	})
	return t, err
}

// Ack records that the aggregator committed every event up to seq, whose id is id, and
// deletes them. An ack at or below the current one changes nothing. An ack beyond the
// head returns ErrAckBeyondHead; an ack whose id differs from the pending event of that
// sequence returns ErrFork: in both cases the aggregator's chain is not this outbox's.
func (o *Outbox) Ack(seq uint64, id string) (removed int, err error) {
	return o.AckAt(seq, id, 0)
}

// AckAt is Ack for an ack the aggregator sent at time at (Unix milliseconds; 0: unknown),
// which becomes Head.AckedAt when the ack advances and is newer.
func (o *Outbox) AckAt(seq uint64, id string, at int64) (removed int, err error) {
	err = o.db.Update(func(tx *bolt.Tx) error {
		meta := tx.Bucket(bucketMeta)
		h, err := readHead(meta)
		if err != nil {
			return err
		}
		if seq > h.Seq {
			return fmt.Errorf("%w: ack %d, head %d", ErrAckBeyondHead, seq, h.Seq)
		}
		if seq <= h.Acked {
			return nil
		}
		b := tx.Bucket(bucketEvents)
		if v := b.Get(seqKey(seq)); v != nil && id != "" {
			e, err := decodeRecord(seqKey(seq), v)
			if err != nil {
				return err
			}
			if e.ID != id {
				return fmt.Errorf("%w: seq %d is %s here, %s at the aggregator", ErrFork, seq, e.ID, id)
			}
		}
		c := b.Cursor()
		for k, v := c.First(); k != nil && binary.BigEndian.Uint64(k) <= seq; k, v = c.First() {
			if binary.BigEndian.Uint64(k) == seq {
				e, err := decodeRecord(k, v)
				if err != nil {
					return err
				}
				id = e.ID
			}
			h.Count--
			h.Bytes -= int64(len(v) - recordHeader)
			if err := c.Delete(); err != nil {
				return err
			}
			removed++
		}
		h.Acked, h.AckedID, h.AckedAt = seq, id, max(h.AckedAt, at)
		return writeHead(meta, h)
	})
	if err != nil {
		return 0, fmt.Errorf("apply ack: %w", err)
	}
	return removed, nil
}

// Depth is the number of events not yet acknowledged.
func (o *Outbox) Depth() (int, error) {
	h, err := o.Head()
	return h.Count, err
}

// FileSize is the size of the outbox file on disk.
func (o *Outbox) FileSize() (int64, error) {
	var n int64
	err := o.db.View(func(tx *bolt.Tx) error {
		n = tx.Size()
		return nil
	})
	return n, err
}

func readHead(meta *bolt.Bucket) (Head, error) {
	var h Head
	if v := meta.Get(keyHead); v != nil {
		if err := json.Unmarshal(v, &h); err != nil {
			return h, fmt.Errorf("outbox head: %w", err)
		}
	}
	return h, nil
}

func writeHead(meta *bolt.Bucket, h Head) error {
	b, err := json.Marshal(h)
	if err != nil {
		return err
	}
	return meta.Put(keyHead, b)
}

func seqKey(seq uint64) []byte {
	var k [8]byte
	binary.BigEndian.PutUint64(k[:], seq)
	return k[:]
}

// A record is the append time (unix nanoseconds, big-endian), the raw 32-byte event id,
// and the envelope.
const recordHeader = 8 + 32

func encodeRecord(at time.Time, id string, env []byte) ([]byte, error) {
	raw, err := hex.DecodeString(id)
	if err != nil || len(raw) != 32 {
		return nil, fmt.Errorf("event id %q: not 32 hex bytes", id)
	}
	rec := make([]byte, recordHeader+len(env))
	binary.BigEndian.PutUint64(rec, uint64(at.UnixNano()))
	copy(rec[8:], raw)
	copy(rec[recordHeader:], env)
	return rec, nil
}

func decodeRecord(k, v []byte) (Entry, error) {
	if len(k) != 8 || len(v) < recordHeader {
		return Entry{}, fmt.Errorf("%w: record of %d bytes", ErrCorrupt, len(v))
	}
	return Entry{
		Seq:        binary.BigEndian.Uint64(k),
		AppendedAt: time.Unix(0, int64(binary.BigEndian.Uint64(v))),
		ID:         hex.EncodeToString(v[8:recordHeader]),
		Envelope:   v[recordHeader:],
	}, nil
}
