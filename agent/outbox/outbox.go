// Package outbox is the agent's durable queue of signed events. An event is written and
// fsynced here before it is published, and leaves only when the aggregator's ack says it
// is committed. The outbox also numbers events (per-device sequence, previous event id)
// and remembers the last state reported, so a restarted agent continues the chain and
// can tell what changed while it was down.
package outbox

import (
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	bolt "go.etcd.io/bbolt"
)

var (
	bucketEvents = []byte("events") // big-endian seq → envelope bytes
	bucketMeta   = []byte("meta")

	keyHead  = []byte("head")  // Head as JSON
	keyState = []byte("state") // opaque state blob of the last appended event
)

// ErrNotFound is returned by State when nothing has been appended yet.
var ErrNotFound = errors.New("outbox: no state")

// Head is the newest event in the chain and the newest the aggregator acknowledged.
type Head struct {
	Seq   uint64 `json:"seq"`
	ID    string `json:"id"`
	Acked uint64 `json:"acked"`
}

// Entry is one pending event.
type Entry struct {
	Seq      uint64
	Envelope []byte
}

// Outbox is a bbolt-backed queue. It is safe for concurrent use.
type Outbox struct {
	db *bolt.DB
}

// Open opens or creates the outbox file.
func Open(path string) (*Outbox, error) {
	db, err := bolt.Open(path, 0o600, &bolt.Options{Timeout: 5 * time.Second})
	if err != nil {
		return nil, fmt.Errorf("open outbox %s: %w", path, err)
	}
	err = db.Update(func(tx *bolt.Tx) error {
		for _, b := range [][]byte{bucketEvents, bucketMeta} {
			if _, err := tx.CreateBucketIfNotExists(b); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		db.Close()
		return nil, fmt.Errorf("init outbox %s: %w", path, err)
	}
	return &Outbox{db: db}, nil
}

// Close closes the file.
func (o *Outbox) Close() error { return o.db.Close() }

// Sealer signs the event with the given sequence number and previous event id, and
// returns the envelope bytes and the new event's id.
type Sealer func(seq uint64, prev string) (envelope []byte, id string, err error)

// Append seals the next event of the chain and stores it, together with the state it
// reports, in one fsynced transaction. It returns the new event's sequence number.
func (o *Outbox) Append(seal Sealer, state []byte) (uint64, error) {
	var seq uint64
	err := o.db.Update(func(tx *bolt.Tx) error {
		meta := tx.Bucket(bucketMeta)
		h, err := readHead(meta)
		if err != nil {
			return err
		}
		env, id, err := seal(h.Seq+1, h.ID)
		if err != nil {
			return fmt.Errorf("seal event %d: %w", h.Seq+1, err)
		}
		h.Seq, h.ID = h.Seq+1, id
		if err := tx.Bucket(bucketEvents).Put(seqKey(h.Seq), env); err != nil {
			return err
		}
		if state != nil {
			if err := meta.Put(keyState, state); err != nil {
				return err
			}
		}
		seq = h.Seq
		return writeHead(meta, h)
	})
	if err != nil {
		return 0, fmt.Errorf("outbox append: %w", err)
	}
	return seq, nil
}

// Head returns the chain head and the acknowledged sequence.
func (o *Outbox) Head() (Head, error) {
	var h Head
	err := o.db.View(func(tx *bolt.Tx) error {
		var err error
		h, err = readHead(tx.Bucket(bucketMeta))
		return err
	})
	return h, err
}

// State returns the state stored with the newest event.
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
			out = append(out, Entry{Seq: binary.BigEndian.Uint64(k), Envelope: append([]byte(nil), v...)})
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("outbox pending: %w", err)
	}
	return out, nil
}

// Ack records that the aggregator committed every event up to seq and deletes them. An
// ack at or below the current one changes nothing; an ack beyond the head is an error
// (the aggregator knows events this outbox never wrote).
func (o *Outbox) Ack(seq uint64) (removed int, err error) {
	err = o.db.Update(func(tx *bolt.Tx) error {
		meta := tx.Bucket(bucketMeta)
		h, err := readHead(meta)
		if err != nil {
			return err
		}
		if seq > h.Seq {
			return fmt.Errorf("ack %d beyond head %d", seq, h.Seq)
		}
		if seq <= h.Acked {
			return nil
		}
		c := tx.Bucket(bucketEvents).Cursor()
		for k, _ := c.First(); k != nil && binary.BigEndian.Uint64(k) <= seq; k, _ = c.Next() {
			if err := c.Delete(); err != nil {
				return err
			}
			removed++
		}
		h.Acked = seq
		return writeHead(meta, h)
	})
	if err != nil {
		return 0, fmt.Errorf("outbox ack: %w", err)
	}
	return removed, nil
}

// Depth is the number of events not yet acknowledged.
func (o *Outbox) Depth() (int, error) {
	var n int
	err := o.db.View(func(tx *bolt.Tx) error {
		n = tx.Bucket(bucketEvents).Stats().KeyN
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
