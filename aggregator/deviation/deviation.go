// Package deviation decides what an observed ruleset change means: which approved change
// request (CR) covers it, or which deviation it raises.
//
// Everything here is a pure function of its arguments. The store calls it from inside the
// replicated state machine, so it must stay deterministic: no clock, no randomness, no
// I/O, no iteration over maps whose order could leak into the result.
package deviation

import (
	"time"

	"github.com/fenceline/fenceline/aggregator/model"
	"github.com/fenceline/fenceline/shared/ruleset"
)

// Observation is one change or reconcile event, reduced to what the engine needs.
type Observation struct {
	Tenant   string
	Device   string
	EventID  string
	Seq      uint64
	Observed time.Time // the event's observed time; CR windows are checked against it
	// ObservedText is the observed time exactly as the event carried it.
	ObservedText string
	Received     time.Time
	Changes      []ruleset.Change
}

// Result is what an observation does.
type Result struct {
	// Updated holds copies of the CRs whose planned changes were observed, in the order
	// of the input; a CR whose every planned change is now observed is implemented.
	Updated []*model.CR
	// Deviations are the changes no CR covers, in the order of the changes, without ids
	// (the store numbers them).
	Deviations []model.Deviation
}

// Evaluate matches every change of o against crs. A change is covered by a planned
// change of a CR that
//   - is approved or implemented,
//   - targets o's device,
//   - has its window (inclusive) around o's observed time,
//   - has not been matched by an earlier change, and
//   - has the same action, chain and rule text (see Covers).
//
// CRs are tried in the order given (the store passes them in creation order), and a
// planned change covers at most one observed change. crs is not modified.
func Evaluate(o Observation, crs []*model.CR) Result {
	var res Result
	work := make([]*model.CR, len(crs))
	touched := make([]bool, len(crs))
	for i, c := range crs {
		work[i] = c
	}
	for _, ch := range o.Changes {
		i, j, ok := find(o, work, ch)
		if !ok {
			res.Deviations = append(res.Deviations, unauthorized(o, ch))
			continue
		}
		if !touched[i] {
			work[i] = work[i].Clone()
			touched[i] = true
		}
		cr := work[i]
		cr.Changes[j].ObservedEvent = o.EventID
		cr.Changes[j].ObservedSeq = o.Seq
		if allObserved(cr) && cr.State == model.CRApproved {
			cr.State = model.CRImplemented
			cr.ImplementedAt = o.Observed
		}
		cr.UpdatedAt = o.Received
	}
	for i, c := range work {
		if touched[i] {
			res.Updated = append(res.Updated, c)
		}
	}
	return res
}

// find returns the CR index and planned change index covering ch.
func find(o Observation, crs []*model.CR, ch ruleset.Change) (int, int, bool) {
	for i, cr := range crs {
		if !eligible(o, cr) {
			continue
		}
		for j := range cr.Changes {
			p := &cr.Changes[j]
			if !p.Observed() && Covers(*p, ch) {
				return i, j, true
			}
		}
	}
	return 0, 0, false
}

func eligible(o Observation, cr *model.CR) bool {
	if cr.State != model.CRApproved && cr.State != model.CRImplemented {
		return false
	}
	if cr.Tenant != o.Tenant || cr.Device != o.Device {
		return false
	}
	return !o.Observed.Before(cr.WindowStart) && !o.Observed.After(cr.WindowEnd)
}

// Covers reports whether planned change p describes the observed change ch: rule_added
// for "add", rule_removed for "delete", the same "family table chain", and the same rule
// text after collapsing whitespace.
//
// TODO: compare through a real nft-syntax parser into the canonical form, so that specs
// written differently from nft's own listing (spacing inside quotes, implicit
// defaults, set notation) still match; text comparison is exact apart from whitespace.
func Covers(p model.PlannedChange, ch ruleset.Change) bool {
	switch {
	case p.Action == model.ActionAdd && ch.Kind == ruleset.RuleAdded:
	case p.Action == model.ActionDelete && ch.Kind == ruleset.RuleRemoved:
	default:
		return false
	}
	chain := ruleset.ChainRef{Family: ch.Family, Table: ch.Table, Chain: ch.Chain}.String()
	return model.NormalizeText(p.Chain) == chain &&
		model.NormalizeText(p.Rule) == model.NormalizeText(ch.Rule)
}

func allObserved(cr *model.CR) bool {
	for i := range cr.Changes {
		if !cr.Changes[i].Observed() {
			return false
		}
	}
	return true
}

func unauthorized(o Observation, ch ruleset.Change) model.Deviation {
	return model.Deviation{
		Tenant:   o.Tenant,
		Kind:     model.Unauthorized,
		State:    model.DeviationOpen,
		Device:   o.Device,
		Change:   ch.Kind,
		Family:   ch.Family,
		Table:    ch.Table,
		Chain:    ch.Chain,
		Position: ch.Position,
		Rule:     ch.Rule,
		Set:      ch.Set,
		Element:  ch.Element,
		Object:   ch.Object,
		Before:   ch.Before,
		After:    ch.After,
		EventID:  o.EventID,
		Seq:      o.Seq,
		Observed: o.ObservedText,
		Raised:   o.Received,
	}
}
