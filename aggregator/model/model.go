// Package model holds the aggregator's records as they are stored in the replicated state
// and shown by the HTTP API: enrollments, devices, events, change requests (CRs) and
// deviations. The records are plain data; the store decides how they change and the
// deviation engine decides what an observed change means.
package model

import (
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

// CRState is where a change request is in its life.
type CRState string

// CR states. Only submitted, approved and implemented are reached today.
// TODO: draft, rejected, verified, closed, cancelled and failed need the per-tenant
// policy and post-implementation review that come later.
const (
	CRDraft       CRState = "draft"
	CRSubmitted   CRState = "submitted"
	CRApproved    CRState = "approved"
	CRRejected    CRState = "rejected"
	CRImplemented CRState = "implemented"
	CRVerified    CRState = "verified"
	CRClosed      CRState = "closed"
	CRCancelled   CRState = "cancelled"
	CRFailed      CRState = "failed"
)

// Planned change actions.
const (
	ActionAdd    = "add"
	ActionDelete = "delete"
)

// CR is a change request.
type CR struct {
	Tenant      string          `json:"tenant"`
	ID          string          `json:"id"`
	Number      uint64          `json:"number"` // creation order within the tenant
	Title       string          `json:"title"`
	Requester   string          `json:"requester"`
	Device      string          `json:"device"`
	WindowStart time.Time       `json:"window_start"`
	WindowEnd   time.Time       `json:"window_end"`
	Changes     []PlannedChange `json:"changes"`
	State       CRState         `json:"state"`
	Approvals   []Approval      `json:"approvals,omitempty"`
	CreatedAt   time.Time       `json:"created_at"`
	UpdatedAt   time.Time       `json:"updated_at"`
	// ImplementedAt is the observed time of the event that completed the CR.
	ImplementedAt time.Time `json:"implemented_at,omitzero"`
}

// PlannedChange is one change a CR authorizes.
type PlannedChange struct {
	Action string `json:"action"` // ActionAdd or ActionDelete
	Chain  string `json:"chain"`  // "family table chain"
	Rule   string `json:"rule"`   // nft rule text
	// ObservedEvent and ObservedSeq name the event that carried this change, once seen.
	ObservedEvent string `json:"observed_event,omitempty"`
	ObservedSeq   uint64 `json:"observed_seq,string,omitempty"`
}

// Observed reports whether the planned change has been seen on the device.
func (p *PlannedChange) Observed() bool { return p.ObservedEvent != "" }

// Approval is one approver's approval.
type Approval struct {
	Approver string    `json:"approver"`
	At       time.Time `json:"at"`
}

// Clone returns a deep copy of the CR.
func (c *CR) Clone() *CR {
	out := *c
	out.Changes = append([]PlannedChange(nil), c.Changes...)
	out.Approvals = append([]Approval(nil), c.Approvals...)
	return &out
}

// DeviationKind names why a change is a deviation.
type DeviationKind string

// Deviation kinds. Only unauthorized is raised today.
// TODO: unapproved, out_of_window, differs_from_spec, incomplete, emergency_review_due and
// the record-trust kinds (agent_silent, gap, bad_signature) need CR policy, timers and
// ingest findings carried into the state machine.
const (
	Unauthorized DeviationKind = "unauthorized"
)

// DeviationState is where a deviation is in its life.
type DeviationState string

// Deviation states.
// TODO: acknowledging and resolving deviations (with who and why) is not built yet.
const (
	DeviationOpen         DeviationState = "open"
	DeviationAcknowledged DeviationState = "acknowledged"
	DeviationResolved     DeviationState = "resolved"
)

// Deviation is an observed change that no approval covers.
type Deviation struct {
	Tenant string         `json:"tenant"`
	ID     string         `json:"id"`
	Kind   DeviationKind  `json:"kind"`
	State  DeviationState `json:"state"`
	Device string         `json:"device"`
	// Change is the kind of ruleset change; the fields after it say where it happened
	// and which of them are set depends on it.
	Change   ruleset.ChangeKind `json:"change"`
	Family   string             `json:"family"`
	Table    string             `json:"table"`
	Chain    string             `json:"chain,omitempty"`
	Position int                `json:"position,omitempty"`
	Rule     string             `json:"rule,omitempty"`
	Set      string             `json:"set,omitempty"`
	Element  string             `json:"element,omitempty"`
	Object   string             `json:"object,omitempty"`
	Before   string             `json:"before,omitempty"`
	After    string             `json:"after,omitempty"`
	EventID  string             `json:"event_id"`
	Seq      uint64             `json:"seq,string"`
	Observed string             `json:"observed"` // the event's observed time
	Raised   time.Time          `json:"raised"`   // when the aggregator accepted the event
}

// What describes the changed item in a few words: the rule text, or the set element,
// set, object or chain.
func (d *Deviation) What() string {
	switch {
	case d.Rule != "":
		return d.Rule
	case d.Element != "":
		return "element " + d.Element + " in set " + d.Set
	case d.Set != "":
		return "set " + d.Set
	case d.Object != "":
		return d.Object
	case d.Chain != "":
		return "chain " + d.Chain
	}
	return "table " + d.Family + " " + d.Table
}

// NormalizeText collapses runs of whitespace to one space and trims the ends: the
// comparison form of rule texts and chain names.
func NormalizeText(s string) string { return strings.Join(strings.Fields(s), " ") }
