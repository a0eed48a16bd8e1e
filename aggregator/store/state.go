package store

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"fmt"

	bolt "go.etcd.io/bbolt"
)

// Layout of the state file. Tenant and device names never contain '/', so
// "tenant/device" and "tenant/id" keys are unambiguous and a tenant's records are the
// keys with the prefix "tenant/".
//
// TODO: an accepted event writes to about ten buckets (device, events and envelopes under
// the device, deviations, both open indexes, view header and records, counters,
// versions), so a commit writes about 1.7 pages per event in batches of 512 and about 20
// for a batch of one; without the fsync (fsm.go) that is still a third of the state
// machine's time in the cluster benchmark (scripts/bench/README.md), and decoding the
// envelope's JSON twice (envelope, then payload) about a seventh. Fewer, append-ordered
// buckets would write less; the leader could hand the decoded payload over in the entry.
var (
	bucketMeta        = []byte("meta")        // keyApplied → big-endian raft index
	bucketEnrollments = []byte("enrollments") // hex SHA-256 of token → model.Enrollment
	bucketDevices     = []byte("devices")     // tenant/device → model.Device
	bucketRulesets    = []byte("rulesets")    // tenant/device → ruleset JSON
	bucketEvents      = []byte("events")      // tenant/device → {big-endian record → model.Event}
	bucketEnvelopes   = []byte("envelopes")   // tenant/device → {big-endian record → envelope}
	bucketCRs         = []byte("crs")         // tenant/id → model.CR
	bucketDeviations  = []byte("deviations")  // tenant/big-endian number → model.Deviation
	bucketCounters    = []byte("counters")    // name → big-endian uint64
	bucketPolicies    = []byte("policies")    // tenant → model.Policy
	// bucketDevStates holds each device's view without its rules: tenant/device →
	// devHeader; the rules are in bucketDevRules (apply_state.go).
	bucketDevStates = []byte("devstates")
	// bucketDevRules holds one record per rule of each device's view:
	// tenant/device 0x00 "family table chain" 0x00 big-endian order key → devRule.
	bucketDevRules = []byte("devrules")
	// bucketDevElems holds one record per element of each named set of each device's
	// view: tenant/device 0x00 "family table set" 0x00 element → empty.
	bucketDevElems = []byte("develems")
	// bucketOpenDevs indexes the deviations not resolved: tenant/device/big-endian number
	// → deviation.IndexKey (kind, change and item), so that an event reads only the open
	// deviations it could undo. Findings not about one device use the device "".
	bucketOpenDevs = []byte("opendevs")
	// bucketOpenByKey indexes the same deviations by what an event could undo:
	// tenant/device + deviation.KeyWithoutKind(index key) + 0x00 + big-endian number →
	// empty, so that an event reads only the open deviations it could undo without
	// visiting the others (apply_deviation.go).
	bucketOpenByKey = []byte("openbykey")
	// bucketWindows indexes the CRs whose window close is still to be checked and the
	// emergency CRs whose review is due: tenant/id → empty.
	bucketWindows = []byte("windows")

	// bucketDevVersions counts the writes of each device's view: tenant/device →
	// big-endian count (apply_state.go keeps decoded views by it).
	bucketDevVersions = []byte("devversions")

	allBuckets = [][]byte{bucketMeta, bucketEnrollments, bucketDevices, bucketRulesets,
		bucketEvents, bucketEnvelopes, bucketCRs, bucketDeviations, bucketCounters,
		bucketPolicies, bucketDevStates, bucketOpenDevs, bucketWindows, bucketDevVersions,
		bucketDevRules, bucketDevElems, bucketOpenByKey}

	keyApplied = []byte("applied_index")
)

// Counter names. Per-tenant counters are "tenant/" + name.
const (
	counterCR              = "cr"
	counterDeviation       = "deviation"
	counterEventsAccepted  = "events_accepted"
	counterDeviationsRaise = "deviations_raised"
)

func deviceKey(tenant, device string) []byte { return []byte(tenant + "/" + device) }

func tenantKey(tenant, id string) []byte { return []byte(tenant + "/" + id) }

func tenantPrefix(tenant string) []byte { return []byte(tenant + "/") }

func numberKey(prefix []byte, n uint64) []byte {
	k := make([]byte, len(prefix)+8)
	copy(k, prefix)
	binary.BigEndian.PutUint64(k[len(prefix):], n)
	return k
}

func u64(n uint64) []byte { return binary.BigEndian.AppendUint64(nil, n) }

func createBuckets(tx *bolt.Tx) error {
	fillOpenByKey := tx.Bucket(bucketOpenByKey) == nil && tx.Bucket(bucketOpenDevs) != nil
	for _, b := range allBuckets {
		if _, err := tx.CreateBucketIfNotExists(b); err != nil {
			return fmt.Errorf("bucket %s: %w", b, err)
		}
	}
	if fillOpenByKey {
		// A state file from before that index: build it from the open index.
		return tx.Bucket(bucketOpenDevs).ForEach(func(k, v []byte) error {
			i := -1
			if len(k) > 8 {
				i = bytes.LastIndexByte(k[:len(k)-8], '/')
			}
			if i < 0 {
				return fmt.Errorf("open index key %q", k)
			}
			return tx.Bucket(bucketOpenByKey).Put(openByKey(k[:i], v, k[len(k)-8:]), nil)
		})
	}
	return nil
}

// getJSON decodes the value at key into v; it reports false when there is none. The
// value is decoded before the transaction ends, so nothing aliases bbolt's memory.
func getJSON(b *bolt.Bucket, key []byte, v any) (bool, error) {
	raw := b.Get(key)
	if raw == nil {
		return false, nil
	}
	if err := json.Unmarshal(raw, v); err != nil {
		return false, fmt.Errorf("decode %s: %w", key, err)
	}
	return true, nil
}

func putJSON(b *bolt.Bucket, key []byte, v any) error {
	raw, err := json.Marshal(v)
	if err != nil {
		return fmt.Errorf("encode %s: %w", key, err)
	}
	return b.Put(key, raw)
}

// forPrefix calls fn for every key with the prefix, in key order.
func forPrefix(b *bolt.Bucket, prefix []byte, fn func(k, v []byte) error) error {
	c := b.Cursor()
	for k, v := c.Seek(prefix); k != nil && bytes.HasPrefix(k, prefix); k, v = c.Next() {
		if err := fn(k, v); err != nil {
			return err
		}
	}
	return nil
}

func readCounter(tx *bolt.Tx, name string) uint64 {
	v := tx.Bucket(bucketCounters).Get([]byte(name))
	if len(v) != 8 {
		return 0
	}
	return binary.BigEndian.Uint64(v)
}

// nextCounter increments the named counter and returns its new value.
func nextCounter(tx *bolt.Tx, name string) (uint64, error) {
	n := readCounter(tx, name) + 1
	return n, tx.Bucket(bucketCounters).Put([]byte(name), u64(n))
}

func readApplied(tx *bolt.Tx) uint64 {
	v := tx.Bucket(bucketMeta).Get(keyApplied)
	if len(v) != 8 {
		return 0
	}
	return binary.BigEndian.Uint64(v)
}

func putApplied(tx *bolt.Tx, index uint64) error {
	return tx.Bucket(bucketMeta).Put(keyApplied, u64(index))
}
