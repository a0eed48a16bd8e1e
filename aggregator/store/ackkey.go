package store

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"fmt"
	"sync/atomic"

	bolt "go.etcd.io/bbolt"
)

// The aggregator signs the acks it publishes with one Ed25519 key, the same on every node
// of a cluster, so that an agent can tell the aggregator's acks from anyone else's on its
// acks topic. The key is kept in the replicated state (its seed in the meta bucket): the
// first leader that needs it proposes a fresh one, and the first proposal wins. Agents
// learn the public half in the enrollment response.
//
// The seed travels through the raft log and lives in the state file and snapshots, which
// are as sensitive as the store itself.

const cmdSetAckKey = "set_ack_key"

var keyAckSeed = []byte("ack_key_seed") // in bucketMeta

// setAckKeyCmd proposes a seed; it is kept only when none is set.
type setAckKeyCmd struct {
	Seed []byte `json:"seed"`
}

func applySetAckKey(tx *bolt.Tx, c *setAckKeyCmd) (any, error) {
	meta := tx.Bucket(bucketMeta)
	if v := meta.Get(keyAckSeed); len(v) == ed25519.SeedSize {
		return nil, nil
	}
	if len(c.Seed) != ed25519.SeedSize {
		return nil, fmt.Errorf("%w: ack key seed of %d bytes", ErrInvalid, len(c.Seed))
	}
	return nil, meta.Put(keyAckSeed, c.Seed)
}

// ackKeyCache holds the key once read: it never changes after it is set.
type ackKeyCache struct {
	key atomic.Pointer[ed25519.PrivateKey]
}

// AckKey returns the aggregator's ack signing key from this node's state, or nil while
// none is set.
func (s *Store) AckKey() ed25519.PrivateKey {
	if k := s.ackKey.key.Load(); k != nil {
		return *k
	}
	var seed []byte
	s.fsm.view(func(tx *bolt.Tx) error {
		if v := tx.Bucket(bucketMeta).Get(keyAckSeed); len(v) == ed25519.SeedSize {
			seed = append([]byte(nil), v...)
		}
		return nil
	})
	if seed == nil {
		return nil
	}
	k := ed25519.NewKeyFromSeed(seed)
	s.ackKey.key.Store(&k)
	return k
}

// EnsureAckKey returns the ack key's public half, proposing a fresh key first when the
// state has none (on the leader; a follower's proposal fails with the leader's address).
func (s *Store) EnsureAckKey(ctx context.Context) (ed25519.PublicKey, error) {
	if k := s.AckKey(); k != nil {
		return k.Public().(ed25519.PublicKey), nil
	}
	seed := make([]byte, ed25519.SeedSize)
	if _, err := rand.Read(seed); err != nil {
		return nil, fmt.Errorf("ack key: %w", err)
	}
	if _, err := s.apply(ctx, cmdSetAckKey, &setAckKeyCmd{Seed: seed}); err != nil {
		return nil, fmt.Errorf("ack key: %w", err)
	}
	k := s.AckKey()
	if k == nil {
		return nil, fmt.Errorf("ack key: not in the state after it was set")
	}
	return k.Public().(ed25519.PublicKey), nil
}
