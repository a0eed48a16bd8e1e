package store

import (
	"fmt"
	"slices"
	"strings"

	"github.com/fenceline/fenceline/aggregator/model"
	"github.com/fenceline/fenceline/shared/ruleset"
)

// PlanWarnings checks a CR's planned changes against the rulesets its target devices last
// reported and says, per device, what cannot apply as planned: a table, chain or set that
// is not there, a position past the end of the chain, a rule or element to delete that is
// not there, a policy for a chain without a hook, a configuration object that is not
// there (or a device without any). These are warnings, not refusals: the
// devices may change before the window, and a CR may plan for what another creates first.
// Devices with no reported state yet are not checked.
func (s *Store) PlanWarnings(cr *model.CR) ([]string, error) {
	states, err := s.targetStates(cr)
	if err != nil {
		return nil, err
	}
	var out []string
	for _, st := range states {
		if st.Ruleset == nil {
			continue
		}
		for i := range cr.Changes {
			if w := planWarning(st.Ruleset, &cr.Changes[i]); w != "" {
				out = append(out, fmt.Sprintf("%s: change %d: %s (as the device last reported)",
					st.Device, i+1, w))
			}
		}
	}
	return out, nil
}

// planWarning says why p cannot apply to rs as planned, or "".
func planWarning(rs *ruleset.Ruleset, p *model.PlannedChange) string {
	if p.Action == model.ActionConfig {
		return configWarning(rs, p)
	}
	ref := p.Chain
	if p.Action == model.ActionAddElement || p.Action == model.ActionDeleteElement {
		ref = p.Set
	}
	f := strings.Fields(ref)
	if len(f) != 3 || f[0] == "snmp" {
		return ""
	}
	t := rs.Table(f[0], f[1])
	if t == nil {
		return fmt.Sprintf("table %s %s does not exist", f[0], f[1])
	}
	switch p.Action {
	case model.ActionAdd, model.ActionDelete, model.ActionPolicy:
		c := t.Chain(f[2])
		if c == nil {
			return fmt.Sprintf("chain %s does not exist", ref)
		}
		switch {
		case p.Action == model.ActionAdd && p.Position > len(c.Rules)+1:
			n := fmt.Sprintf("%d rules", len(c.Rules))
			if len(c.Rules) == 1 {
				n = "1 rule"
			}
			return fmt.Sprintf("position %d is past the end of chain %s (%s)", p.Position, ref, n)
		case p.Action == model.ActionDelete && p.Canonical != "" &&
			!slices.ContainsFunc(c.Rules, func(r *ruleset.Rule) bool { return r.Text == p.Canonical }):
			return fmt.Sprintf("rule %q is not in chain %s", p.Canonical, ref)
		case p.Action == model.ActionPolicy && !c.IsBase():
			return fmt.Sprintf("chain %s has no hook, so no policy", ref)
		}
	case model.ActionAddElement, model.ActionDeleteElement:
		set := t.Set(f[2])
		if set == nil {
			return fmt.Sprintf("set %s does not exist", ref)
		}
		// An added element may merge with others, so only deletions are checked.
		if p.Action == model.ActionDeleteElement && p.Canonical != "" && !set.Dynamic &&
			!slices.Contains(set.Elements, p.Canonical) {
			return fmt.Sprintf("element %s is not in set %s", p.Canonical, ref)
		}
	}
	return ""
}

// configWarning checks a planned configuration change: the device has configuration
// objects (an SNMP device's rows and scalars, or a ruleset's named objects), and the one
// the plan names, if any, is one of them. A new row is a change too, so a missing object
// is a warning, not a refusal.
func configWarning(rs *ruleset.Ruleset, p *model.PlannedChange) string {
	found, any := false, false
	for _, t := range rs.Tables {
		for _, o := range t.Objects {
			any = true
			if p.Object != "" && model.NormalizeText(o.Type+" "+o.Name) == p.Text() {
				found = true
			}
		}
	}
	switch {
	case !any:
		return "the device has no configuration objects (rows, scalars or named objects) " +
			"for a config change to touch"
	case p.Object != "" && !found:
		return fmt.Sprintf("object %q is not on the device", p.Object)
	}
	return ""
}
