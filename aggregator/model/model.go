// Package model holds the aggregator's records as they are stored in the replicated state
// and shown by the HTTP API: enrollments, devices, events, change requests (CRs), tenant
// policies, API tokens, deviations and rule provenance. The records are plain data; the
// store decides how they change and the deviation engine decides what an observed change
// means.
package model

import (
	"slices"
	"strings"
	"time"

	"github.com/fenceline/fenceline/shared/event"
	"github.com/fenceline/fenceline/shared/ruleset"
)

// Enrollment is a one-time enrollment token as the store keeps it: only the SHA-256 of
// the token, never the token itself.
type Enrollment struct {
	TokenHash string    `json:"token_hash"`
	Tenant    string    `json:"tenant"`
	Device    string    `json:"device"`
	CreatedAt time.Time `json:"created_at"`
	Expires   time.Time `json:"expires"`
	Used      bool      `json:"used,omitempty"`
	UsedAt    time.Time `json:"used_at,omitzero"`
}

// Device is an enrolled device and what the aggregator knows of its live state.
type Device struct {
	Tenant     string    `json:"tenant"`
	Device     string    `json:"device"`
	PublicKey  []byte    `json:"public_key"` // raw Ed25519 public key
	KeyID      string    `json:"key_id"`
	EnrolledAt time.Time `json:"enrolled_at"`
	// Enrollments counts how often the device was enrolled; each enrollment replaces the
	// key.
	Enrollments int `json:"enrollments"`
	// NewChain is set by an enrollment and cleared by the first event accepted from the
	// new key. While it is set, an event with sequence 1 starts a new chain (an agent
	// that re-enrolled with an empty outbox) instead of counting as a duplicate.
	NewChain bool `json:"new_chain,omitempty"`
	// HeadSeq and HeadID are the newest event accepted in the device's chain.
	HeadSeq uint64 `json:"head_seq,string"`
	HeadID  string `json:"head_id,omitempty"`
	// Records counts the events stored for the device across all its chains.
	Records uint64 `json:"records,string"`
	// LastSeen is when the aggregator last accepted any event of the device;
	// LastHeartbeat when it last accepted a heartbeat. Both are aggregator times.
	LastSeen      time.Time `json:"last_seen,omitzero"`
	LastHeartbeat time.Time `json:"last_heartbeat,omitzero"`
	// Digest is the live ruleset digest as the newest event reported it.
	Digest string `json:"digest,omitempty"`
	// Tags group devices for CRs and standard-change templates that select devices by
	// tag (`edge`, `branch`). Sorted, unique.
	Tags []string `json:"tags,omitempty"`
	// Silent is the open agent_silent deviation of the device, if any; the next event
	// resolves it.
	Silent string `json:"silent,omitempty"`
	// RulesetSeq is the sequence number of the baseline or reconcile event whose full
	// ruleset is stored for the device.
	// TODO: apply change events to the stored ruleset so it stays current between full
	// states; today it is as of RulesetSeq while Digest is always current.
	RulesetSeq uint64 `json:"ruleset_seq,string,omitempty"`
}

// Event is one accepted event of a device's chain.
type Event struct {
	Tenant    string           `json:"tenant"`
	Device    string           `json:"device"`
	Seq       uint64           `json:"seq,string"`
	ID        string           `json:"id"`
	Prev      string           `json:"prev,omitempty"`
	Kind      event.Kind       `json:"kind"`
	Source    string           `json:"source"`
	KeyID     string           `json:"key_id"`
	Observed  string           `json:"observed"` // the agent's time, as signed
	Received  time.Time        `json:"received"` // the aggregator's time
	Before    string           `json:"before,omitempty"`
	After     string           `json:"after"`
	Changes   []ruleset.Change `json:"changes,omitempty"`
	Committer *event.Committer `json:"committer,omitempty"`
	Note      string           `json:"note,omitempty"`
	// Deviations lists the ids of the deviations this event raised.
	Deviations []string `json:"deviations,omitempty"`
	// Envelope is the DSSE envelope exactly as received, so auditors can verify the
	// signature later. It is filled only when asked for.
	Envelope []byte `json:"envelope,omitempty"`
}

// HasTags reports whether the device carries every one of tags.
func (d *Device) HasTags(tags []string) bool {
	for _, t := range tags {
		if !slices.Contains(d.Tags, t) {
			return false
		}
	}
	return true
}

// NormalizeText collapses runs of whitespace to one space and trims the ends: the
// comparison form of rule texts and chain names.
func NormalizeText(s string) string { return strings.Join(strings.Fields(s), " ") }
