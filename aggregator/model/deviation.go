package model

import (
	"slices"
	"time"

	"github.com/fenceline/fenceline/shared/ruleset"
)

// DeviationKind names why reality and approval disagree.
type DeviationKind string

// Deviation kinds.
const (
	// Unauthorized: no CR covers this device and change.
	Unauthorized DeviationKind = "unauthorized"
	// Unapproved: a CR covers it but is not approved.
	Unapproved DeviationKind = "unapproved"
	// OutOfWindow: an approved CR covers it, but it was observed outside the window.
	OutOfWindow DeviationKind = "out_of_window"
	// DiffersFromSpec: a CR in its window planned a similar change in the same place, and
	// what landed differs (Fields shows planned against actual).
	DiffersFromSpec DeviationKind = "differs_from_spec"
	// IncompleteCR: the window closed with planned changes not observed.
	IncompleteCR DeviationKind = "incomplete"
	// EmergencyReviewDue: an emergency CR passed its review deadline without review.
	EmergencyReviewDue DeviationKind = "emergency_review_due"
	// AgentSilent: the device sent nothing, heartbeats included, for too long.
	AgentSilent DeviationKind = "agent_silent"
	// Gap: events of the device were lost (the agent resynchronized without them).
	Gap DeviationKind = "gap"
	// BrokenChain: an event did not link to the device's chain.
	BrokenChain DeviationKind = "broken_chain"
	// BadSignature: a message on the device's topic failed signature verification.
	BadSignature DeviationKind = "bad_signature"
	// Folded: the agent folded changes it could not deliver into one state; they were
	// not observed one by one.
	Folded DeviationKind = "folded"
)

// DeviationKinds lists every kind, for checking filters.
var DeviationKinds = []DeviationKind{Unauthorized, Unapproved, OutOfWindow, DiffersFromSpec,
	IncompleteCR, EmergencyReviewDue, AgentSilent, Gap, BrokenChain, BadSignature, Folded}

// Trust reports whether the kind says the record itself cannot be trusted, rather than
// that a change disagrees with approval.
func (k DeviationKind) Trust() bool {
	switch k {
	case AgentSilent, Gap, BrokenChain, BadSignature, Folded:
		return true
	}
	return false
}

// Undoable reports whether the kind records a change that undoing it resolves.
func (k DeviationKind) Undoable() bool {
	switch k {
	case Unauthorized, Unapproved, OutOfWindow, DiffersFromSpec:
		return true
	}
	return false
}

// DeviationState is where a deviation is in its life: open → acknowledged → resolved.
type DeviationState string

// Deviation states.
const (
	DeviationOpen         DeviationState = "open"
	DeviationAcknowledged DeviationState = "acknowledged"
	DeviationResolved     DeviationState = "resolved"
)

// Resolutions of a deviation.
const (
	// ResolvedRetroactiveCR: a CR approved after the fact covers the change.
	ResolvedRetroactiveCR = "retroactive_cr"
	// ResolvedRollback: the change was undone (observed by the aggregator).
	ResolvedRollback = "rollback_observed"
	// ResolvedAcceptedRisk: someone accepted the deviation as it is.
	ResolvedAcceptedRisk = "accepted_risk"
	// ResolvedRecovered: the condition ended by itself (a silent agent reported again).
	ResolvedRecovered = "recovered"
	// ResolvedReviewed: the overdue post-implementation review of an emergency CR was
	// recorded (late; the deviation shows when it fell due).
	ResolvedReviewed = "reviewed_late"
)

// Resolutions lists the resolutions a person may give.
var Resolutions = []string{ResolvedRetroactiveCR, ResolvedRollback, ResolvedAcceptedRisk}

// System is the actor of what the aggregator does by itself.
const System = "fenceline"

// Deviation is an observed change, or a finding about the record, that no approval
// covers.
type Deviation struct {
	Tenant string         `json:"tenant"`
	ID     string         `json:"id"`
	Kind   DeviationKind  `json:"kind"`
	State  DeviationState `json:"state"`
	Device string         `json:"device"`
	// Change is the kind of ruleset change; the fields after it say where it happened
	// and which of them are set depends on it. Findings about the record leave it empty.
	Change   ruleset.ChangeKind `json:"change,omitempty"`
	Family   string             `json:"family,omitempty"`
	Table    string             `json:"table,omitempty"`
	Chain    string             `json:"chain,omitempty"`
	Position int                `json:"position,omitempty"`
	Rule     string             `json:"rule,omitempty"`
	Set      string             `json:"set,omitempty"`
	Element  string             `json:"element,omitempty"`
	Object   string             `json:"object,omitempty"`
	Before   string             `json:"before,omitempty"`
	After    string             `json:"after,omitempty"`
	// CR is the change request concerned (the one that does not cover the change, or the
	// one whose window or review it is about); Planned is its planned change, as text.
	CR      string `json:"cr,omitempty"`
	Planned string `json:"planned,omitempty"`
	// Fields shows a differs_from_spec deviation field by field.
	Fields []FieldDiff `json:"fields,omitempty"`
	// RuleOrigin is the origin of the rule a rule_removed deviation took away, so that
	// putting the rule back restores it.
	RuleOrigin *Origin `json:"rule_origin,omitempty"`
	// Detail explains the deviation in words.
	Detail   string    `json:"detail,omitempty"`
	EventID  string    `json:"event_id,omitempty"`
	Seq      uint64    `json:"seq,string,omitempty"`
	Observed string    `json:"observed,omitempty"` // the event's observed time
	Raised   time.Time `json:"raised"`             // when the aggregator raised it
	// Count is how often a finding was seen while the deviation was open; LastSeen when.
	Count    uint64    `json:"count,omitempty"`
	LastSeen time.Time `json:"last_seen,omitzero"`
	// History records every state change: who, when, why.
	History    []DeviationTransition `json:"history,omitempty"`
	Resolution string                `json:"resolution,omitempty"`
	// ResolvedBy names the CR of a retroactive_cr resolution or the event of a rollback.
	ResolvedBy string `json:"resolved_by,omitempty"`
}

// FieldDiff is one field of a rule, element or policy as planned and as it landed; an
// empty side means the field is not there.
type FieldDiff struct {
	Field   string `json:"field"`
	Planned string `json:"planned"`
	Actual  string `json:"actual"`
}

// DeviationTransition is one change of a deviation's state.
type DeviationTransition struct {
	From       DeviationState `json:"from"`
	To         DeviationState `json:"to"`
	By         string         `json:"by"`
	Why        string         `json:"why,omitempty"`
	Resolution string         `json:"resolution,omitempty"`
	At         time.Time      `json:"at"`
}

// SetState moves the deviation to a new state and records the transition.
func (d *Deviation) SetState(to DeviationState, by, why, resolution string, at time.Time) {
	d.History = append(d.History, DeviationTransition{From: d.State, To: to, By: by, Why: why,
		Resolution: resolution, At: at})
	d.State = to
	if to == DeviationResolved {
		d.Resolution = resolution
	}
}

// Clone returns a deep copy.
func (d *Deviation) Clone() *Deviation {
	out := *d
	out.Fields = slices.Clone(d.Fields)
	out.History = slices.Clone(d.History)
	if d.RuleOrigin != nil {
		o := *d.RuleOrigin
		out.RuleOrigin = &o
	}
	return &out
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
	case d.Table != "":
		return "table " + d.Family + " " + d.Table
	}
	return d.Detail
}
