package model

import (
	"fmt"
	"slices"
	"strings"
	"time"
)

// Policy is a tenant's change-management policy.
type Policy struct {
	Tenant string `json:"tenant"`
	// TimeZone is the IANA zone the tenant's windows are written and shown in.
	TimeZone string `json:"time_zone"`
	// Approvals says, per CR type, how many approvals a CR needs and from which roles.
	// A requester never approves their own CR.
	Approvals map[CRType]ApprovalRule `json:"approvals"`
	// Templates are the standard changes: a standard CR that follows one is approved
	// when it is submitted.
	Templates []Template `json:"templates,omitempty"`
	// EmergencyReview is how long after implementation an emergency CR must be reviewed
	// (a Go duration, e.g. "72h").
	EmergencyReview string `json:"emergency_review"`
	// SilenceAfter is how long a device may send nothing (heartbeats included) before it
	// counts as silent.
	SilenceAfter string `json:"silence_after"`
	// Members are the tenant's people and the roles they hold. When the list is empty,
	// anyone but the requester may approve (the caller's token decides who may call).
	Members   []Member  `json:"members,omitempty"`
	UpdatedAt time.Time `json:"updated_at,omitzero"`
	UpdatedBy string    `json:"updated_by,omitempty"`
}

// ApprovalRule is what one CR type needs: Count approvals by people holding one of Roles
// (any role that may approve when empty).
type ApprovalRule struct {
	Count int      `json:"count"`
	Roles []string `json:"roles,omitempty"`
}

// Template is a pre-approved standard change: the planned changes it allows and the
// devices it may target.
type Template struct {
	Name        string `json:"name"`
	Description string `json:"description,omitempty"`
	// Changes are the allowed planned changes; a CR following the template may plan
	// only changes that match one of them.
	Changes []TemplateChange `json:"changes"`
	// DeviceTags restricts the template to devices carrying all these tags.
	DeviceTags []string `json:"device_tags,omitempty"`
}

// TemplateChange allows planned changes of one action in one set or chain. Set and
// Chain match a full "family table name" or a bare name in any table; Rule, when set,
// is the only rule text allowed (canonical form).
type TemplateChange struct {
	Action string `json:"action"`
	Set    string `json:"set,omitempty"`
	Chain  string `json:"chain,omitempty"`
	Rule   string `json:"rule,omitempty"`
}

// Member is one person of the tenant and the roles they hold (requester, approver,
// auditor, viewer, or any name the approval rules use, such as "cab" or "security").
type Member struct {
	Name  string   `json:"name"`
	Roles []string `json:"roles"`
}

// Member returns the member called name (case-insensitive), or nil.
func (p *Policy) Member(name string) *Member {
	for i := range p.Members {
		if strings.EqualFold(p.Members[i].Name, name) {
			return &p.Members[i]
		}
	}
	return nil
}

// Policy defaults.
const (
	DefaultEmergencyReview = "72h"
	DefaultSilenceAfter    = "2m"
)

// DefaultPolicy is the policy of a tenant that has not set one: one approval for normal
// and emergency CRs by someone other than the requester, standard CRs only from
// templates (there are none), UTC.
func DefaultPolicy(tenant string) *Policy {
	return &Policy{
		Tenant:   tenant,
		TimeZone: "UTC",
		Approvals: map[CRType]ApprovalRule{
			CRStandard:  {Count: 1},
			CRNormal:    {Count: 1},
			CREmergency: {Count: 1},
		},
		EmergencyReview: DefaultEmergencyReview,
		SilenceAfter:    DefaultSilenceAfter,
	}
}

// ApprovalRuleFor returns the rule for a CR type.
func (p *Policy) ApprovalRuleFor(t CRType) ApprovalRule {
	if r, ok := p.Approvals[t]; ok {
		return r
	}
	return ApprovalRule{Count: 1}
}

// Template returns the named template, or nil.
func (p *Policy) Template(name string) *Template {
	for i := range p.Templates {
		if p.Templates[i].Name == name {
			return &p.Templates[i]
		}
	}
	return nil
}

// EmergencyReviewDuration and SilenceDuration parse the policy's durations; Validate
// made sure they do.
func (p *Policy) EmergencyReviewDuration() time.Duration {
	d, err := time.ParseDuration(p.EmergencyReview)
	if err != nil {
		d, _ = time.ParseDuration(DefaultEmergencyReview)
	}
	return d
}

// SilenceDuration is how long a device may be silent.
func (p *Policy) SilenceDuration() time.Duration {
	d, err := time.ParseDuration(p.SilenceAfter)
	if err != nil {
		d, _ = time.ParseDuration(DefaultSilenceAfter)
	}
	return d
}

// ApproverRoles are the roles whose holders may approve CRs.
var ApproverRoles = []Role{RoleApprover, RoleAdmin}

// Validate checks the policy's form. The time zone is checked against the tz database by
// whoever proposes the policy, not here (the state machine must not depend on the host).
func (p *Policy) Validate() error {
	if p.TimeZone == "" || strings.ContainsAny(p.TimeZone, " \t") {
		return fmt.Errorf("time_zone %q: want an IANA zone such as Europe/Berlin", p.TimeZone)
	}
	for t, r := range p.Approvals {
		if !t.Valid() {
			return fmt.Errorf("approvals: unknown CR type %q", t)
		}
		if r.Count < 0 || r.Count > 10 {
			return fmt.Errorf("approvals for %s: count %d, want 0 to 10", t, r.Count)
		}
		for _, role := range r.Roles {
			if strings.TrimSpace(role) == "" {
				return fmt.Errorf("approvals for %s: empty role", t)
			}
		}
	}
	for _, f := range []struct{ name, v string }{{"emergency_review", p.EmergencyReview},
		{"silence_after", p.SilenceAfter}} {
		if d, err := time.ParseDuration(f.v); err != nil || d <= 0 {
			return fmt.Errorf("%s %q: want a duration such as 72h or 90s", f.name, f.v)
		}
	}
	for _, m := range p.Members {
		if strings.TrimSpace(m.Name) == "" || len(m.Roles) == 0 {
			return fmt.Errorf("members: each needs a name and at least one role (%q)", m.Name)
		}
	}
	names := map[string]bool{}
	for _, tpl := range p.Templates {
		if tpl.Name == "" || names[tpl.Name] {
			return fmt.Errorf("templates: names must be set and unique (%q)", tpl.Name)
		}
		names[tpl.Name] = true
		if len(tpl.Changes) == 0 {
			return fmt.Errorf("template %s: no changes", tpl.Name)
		}
		for _, c := range tpl.Changes {
			if !slices.Contains(Actions, c.Action) {
				return fmt.Errorf("template %s: action %q", tpl.Name, c.Action)
			}
		}
	}
	return nil
}

// Satisfiable reports, for a policy that lists members, an approval rule that not enough
// members could ever meet (two approvals by the role "cab" with one member holding it).
// Approval by a requester of their own CR aside, a member holding any role meets a rule
// without roles.
func (p *Policy) Satisfiable() error {
	if len(p.Members) == 0 {
		return nil
	}
	for _, t := range []CRType{CRStandard, CRNormal, CREmergency} {
		r, ok := p.Approvals[t]
		if !ok || r.Count == 0 {
			continue
		}
		n := 0
		for _, m := range p.Members {
			if len(r.Roles) == 0 || slices.ContainsFunc(m.Roles, func(role string) bool {
				return slices.Contains(r.Roles, role)
			}) {
				n++
			}
		}
		if n < r.Count {
			roles := "any role"
			if len(r.Roles) > 0 {
				roles = "a role of " + strings.Join(r.Roles, ", ")
			}
			return fmt.Errorf("approvals for %s: %d needed from members holding %s, but %d "+
				"member(s) do", t, r.Count, roles, n)
		}
	}
	return nil
}

// Allows reports whether the template allows planned change p in the "family table
// name" where it goes.
func (tc *TemplateChange) Allows(p *PlannedChange) bool {
	if tc.Action != p.Action {
		return false
	}
	match := func(pattern, where string) bool {
		if pattern == "" {
			return true
		}
		pattern = NormalizeText(pattern)
		if strings.Contains(pattern, " ") {
			return pattern == where
		}
		f := strings.Fields(where)
		return len(f) == 3 && f[2] == pattern
	}
	switch p.Action {
	case ActionAddElement, ActionDeleteElement:
		return match(tc.Set, p.Where())
	}
	if !match(tc.Chain, p.Where()) {
		return false
	}
	return tc.Rule == "" || NormalizeText(tc.Rule) == p.Text()
}
