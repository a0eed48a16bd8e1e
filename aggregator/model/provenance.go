package model

import "github.com/fenceline/fenceline/shared/ruleset"

// Rule provenance sources.
const (
	// SourceBaseline: the rule was there when the device was enrolled (or when a full
	// state replaced what the aggregator knew).
	SourceBaseline = "baseline"
	// SourceCR: a CR authorized the rule.
	SourceCR = "cr"
	// SourceUnauthorized: the rule came without authorization (Deviation says how).
	SourceUnauthorized = "unauthorized"
)

// Origin is where a rule now on a device came from.
type Origin struct {
	Source string `json:"source"`
	// CR authorized the rule (SourceCR, or a deviation resolved by a retroactive CR).
	CR string `json:"cr,omitempty"`
	// Deviation was raised when the rule appeared.
	Deviation string `json:"deviation,omitempty"`
	// Event and Seq name the event that carried the rule; Observed is its time.
	Event    string `json:"event,omitempty"`
	Seq      uint64 `json:"seq,string,omitempty"`
	Observed string `json:"observed,omitempty"`
}

// DeviceState is the aggregator's running view of a device's ruleset, kept by applying
// each event's changes to the last full state, with the origin of every rule.
type DeviceState struct {
	Tenant string `json:"tenant"`
	Device string `json:"device"`
	// Seq is the last event applied.
	Seq uint64 `json:"seq,string"`
	// Exact reports whether the state's digest matched the digest the device reported
	// for it; when false, the state is the best reconstruction from the changes.
	Exact   bool             `json:"exact"`
	Ruleset *ruleset.Ruleset `json:"ruleset"`
	// Origins holds, per "family table chain", one origin per rule in chain order.
	Origins map[string][]Origin `json:"origins"`
}

// RuleProvenance is one rule on a device with its origin, as `fencectl rules` shows it.
type RuleProvenance struct {
	Family   string `json:"family"`
	Table    string `json:"table"`
	Chain    string `json:"chain"`
	Position int    `json:"position"`
	Rule     string `json:"rule"`
	Origin
	// DeviationState is the state of the origin's deviation, if any.
	DeviationState DeviationState `json:"deviation_state,omitempty"`
}
