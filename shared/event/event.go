// Package event defines the signed change event that agents send and the aggregator
// verifies: its payload, the canonical JSON it is serialized as, and the DSSE envelope
// (Ed25519) that carries it.
//
// An event's ID is the SHA-256 of the DSSE pre-authentication encoding of its payload;
// Event.Prev is the ID of the previous event of the same device, so a device's events
// form a hash chain that the aggregator checks link by link.
package event

import (
	"crypto/sha256"
	"fmt"
	"time"

	"github.com/fenceline/fenceline/shared/ruleset"
)

// PayloadType is the DSSE payload type of every Fenceline event.
const PayloadType = "application/vnd.fenceline.event.v1+json"

// Version is the payload version this package writes and accepts.
const Version = 1

// Kind says what an event reports.
type Kind string

// Event kinds.
const (
	// Baseline is the first event after enrollment (or after the outbox was lost): the
	// full ruleset, accepted as the device's starting state.
	Baseline Kind = "baseline"
	// Change reports one committed nftables generation (or SNMP configuration change)
	// with its rule-level diff.
	Change Kind = "change"
	// Heartbeat carries the current ruleset digest so the aggregator sees the live state
	// and notices silence.
	Heartbeat Kind = "heartbeat"
	// Reconcile follows a period the agent could not observe (it was down, or kernel
	// notifications were lost): the diff against the last reported state, and the full
	// ruleset.
	Reconcile Kind = "reconcile"
	// Fold replaces pending events the agent could no longer keep (its outbox reached
	// its disk bound while the aggregator was unreachable): Before is the digest before
	// the first folded event, After the state now, Folded how many events it replaces,
	// Ruleset the full state. The aggregator raises it as a deviation: the individual
	// changes inside it were not observed one by one.
	Fold Kind = "fold"
	// Resync continues the chain from the aggregator's head after the agent lost events
	// it had not delivered (a corrupted outbox moved aside, or a chain the aggregator
	// does not know). It carries the full ruleset and no diff: the aggregator diffs it
	// against the last state it holds and raises the loss as a gap deviation.
	Resync Kind = "resync"
)

// Known reports whether k is a kind this version understands.
func (k Kind) Known() bool {
	switch k {
	case Baseline, Change, Heartbeat, Reconcile, Fold, Resync:
		return true
	}
	return false
}

// CarriesRuleset reports whether events of kind k carry the full ruleset.
func (k Kind) CarriesRuleset() bool {
	return k == Baseline || k == Reconcile || k == Fold || k == Resync
}

// Source names what the agent observed.
const (
	SourceNftables = "nftables"
	SourceSNMP     = "snmp"
)

// Committer is who committed a change, as far as the kernel says.
type Committer struct {
	PID      uint32 `json:"pid,omitempty"`
	Comm     string `json:"comm,omitempty"`
	LoginUID string `json:"loginuid,omitempty"`
	Session  string `json:"session,omitempty"`
}

// Event is the signed payload. Its JSON form is canonical (RFC 8785) within a safe subset:
// ASCII keys, no floats, no nulls, integers below 2^53, 64-bit values as strings, times in
// RFC 3339 UTC.
type Event struct {
	V      int    `json:"v"`
	Kind   Kind   `json:"kind"`
	Tenant string `json:"tenant"`
	Device string `json:"device"`
	KeyID  string `json:"key_id"`
	// Seq numbers the device's events from 1 without gaps.
	Seq uint64 `json:"seq,string"`
	// Prev is the ID of event Seq-1; empty for Seq 1.
	Prev string `json:"prev,omitempty"`
	// Observed is when the agent saw the state, RFC 3339 UTC with nanoseconds.
	Observed string `json:"observed"`
	Source   string `json:"source"`
	// Generation is the nftables generation id the state was read at.
	Generation uint32 `json:"generation,omitempty"`
	// Before and After are ruleset digests (ruleset.Sum.String); Before is empty for a
	// baseline.
	Before string `json:"before,omitempty"`
	After  string `json:"after"`
	// Changes is the rule-level diff from Before to After.
	Changes   []ruleset.Change `json:"changes,omitempty"`
	Committer *Committer       `json:"committer,omitempty"`
	// Ruleset is the full state, carried by the kinds for which CarriesRuleset is true.
	Ruleset *ruleset.Ruleset `json:"ruleset,omitempty"`
	// MissedGenerations lists generation ids a reconcile event could not observe one by
	// one, as "first-last" ranges.
	MissedGenerations []string `json:"missed_generations,omitempty"`
	// Note explains a reconcile, fold or resync in words (agent restart, notification
	// overrun, outbox full …).
	Note string `json:"note,omitempty"`
	// Folded is how many pending events a fold event replaces.
	Folded uint64 `json:"folded,string,omitempty"`
}

// FormatTime renders t as the payload's time format.
func FormatTime(t time.Time) string { return t.UTC().Format(time.RFC3339Nano) }

// ObservedTime parses Observed.
func (e *Event) ObservedTime() (time.Time, error) {
	t, err := time.Parse(time.RFC3339Nano, e.Observed)
	if err != nil {
		return time.Time{}, fmt.Errorf("observed time: %w", err)
	}
	return t, nil
}

// Validate checks the fields every event must carry. Observed must be in the form that
// FormatTime writes.
func (e *Event) Validate() error {
	switch {
	case e.V != Version:
		return fmt.Errorf("%w: version %d", ErrInvalid, e.V)
	case !e.Kind.Known():
		return fmt.Errorf("%w: kind %q", ErrInvalid, e.Kind)
	case !ValidName(e.Tenant) || !ValidName(e.Device):
		return fmt.Errorf("%w: tenant %q device %q", ErrInvalid, e.Tenant, e.Device)
	case e.Seq == 0:
		return fmt.Errorf("%w: sequence 0", ErrInvalid)
	case e.Seq == 1 && e.Prev != "", e.Seq > 1 && e.Prev == "":
		return fmt.Errorf("%w: sequence %d with prev %q", ErrInvalid, e.Seq, e.Prev)
	case e.Prev != "" && !validID(e.Prev):
		return fmt.Errorf("%w: prev %q is not an event id", ErrInvalid, e.Prev)
	case e.Source != SourceNftables && e.Source != SourceSNMP:
		return fmt.Errorf("%w: source %q", ErrInvalid, e.Source)
	}
	if _, ok := ruleset.ParseSum(e.After); !ok {
		return fmt.Errorf("%w: after digest %q", ErrInvalid, e.After)
	}
	if e.Before != "" {
		if _, ok := ruleset.ParseSum(e.Before); !ok {
			return fmt.Errorf("%w: before digest %q", ErrInvalid, e.Before)
		}
	}
	// time.Parse is lenient (any offset, a one-digit hour, a comma before the fraction):
	// the payload's time must be exactly what FormatTime writes.
	t, err := e.ObservedTime()
	if err != nil {
		return fmt.Errorf("%w: %v", ErrInvalid, err)
	}
	if FormatTime(t) != e.Observed {
		return fmt.Errorf("%w: observed time %q is not in the form %q", ErrInvalid, e.Observed,
			FormatTime(t))
	}
	return nil
}

// validID reports whether s has the form of an event ID: 64 lower-case hex digits.
func validID(s string) bool {
	if len(s) != 2*sha256.Size {
		return false
	}
	for i := 0; i < len(s); i++ {
		if (s[i] < '0' || s[i] > '9') && (s[i] < 'a' || s[i] > 'f') {
			return false
		}
	}
	return true
}

// ValidName reports whether s can be a tenant or device name: 1 to 64 characters from
// letters, digits, '.', '_' and '-', not starting with '.' or '-'. Names appear in MQTT
// topics, so wildcards and separators are excluded.
func ValidName(s string) bool {
	if len(s) == 0 || len(s) > 64 || s[0] == '.' || s[0] == '-' {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9':
		case c == '.', c == '_', c == '-':
		default:
			return false
		}
	}
	return true
}
