package model

import (
	"slices"
	"strings"
	"time"
)

// CRType is the ITIL type of a change request; the tenant's policy says what each type
// needs.
type CRType string

// CR types.
const (
	// CRStandard is a routine change made from a pre-approved template.
	CRStandard CRType = "standard"
	// CRNormal needs the approvals the policy asks for before its window.
	CRNormal CRType = "normal"
	// CREmergency may be approved by fewer people and must be reviewed after the fact
	// within the policy's review deadline.
	CREmergency CRType = "emergency"
)

// Valid reports whether t is a known type.
func (t CRType) Valid() bool { return t == CRStandard || t == CRNormal || t == CREmergency }

// CRState is where a change request is in its life:
//
//	draft → submitted → approved | rejected
//	approved → implemented → verified → closed
//	approved | implemented → failed (window closed incomplete or different)
//	draft | submitted | approved → cancelled;  failed → closed
type CRState string

// CR states.
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

// Final reports whether no further transition but closing is possible.
func (s CRState) Final() bool {
	switch s {
	case CRRejected, CRClosed, CRCancelled:
		return true
	}
	return false
}

// Authorizing reports whether a CR in this state authorizes the changes it plans.
func (s CRState) Authorizing() bool { return s == CRApproved || s == CRImplemented }

// Planned change actions.
const (
	// ActionAdd adds a rule to a chain, at Position when set.
	ActionAdd = "add"
	// ActionDelete deletes a rule from a chain.
	ActionDelete = "delete"
	// ActionAddElement adds an element to a named set or map.
	ActionAddElement = "add_element"
	// ActionDeleteElement removes an element from a named set or map.
	ActionDeleteElement = "delete_element"
	// ActionPolicy changes a base chain's policy.
	ActionPolicy = "policy"
	// ActionConfig is a configuration change on a device watched over SNMP (or to named
	// objects of a ruleset): any change to its configuration objects in the window, or
	// only to the one Object names ("ifEntry 2", "scalar sysContact").
	ActionConfig = "config"
)

// Actions lists the planned change actions.
var Actions = []string{ActionAdd, ActionDelete, ActionAddElement, ActionDeleteElement,
	ActionPolicy, ActionConfig}

// CR is a change request.
type CR struct {
	Tenant string `json:"tenant"`
	// ID is the aggregator's number (CR-000001) or the external ticket id it was created
	// with (a ServiceNow CHG number).
	ID            string `json:"id"`
	Number        uint64 `json:"number"` // creation order within the tenant
	Title         string `json:"title"`
	Justification string `json:"justification,omitempty"`
	Requester     string `json:"requester"`
	Type          CRType `json:"type"`
	// Template names the policy's standard-change template a standard CR follows.
	Template string `json:"template,omitempty"`
	// Device is the target device of a CR that names one; Targets holds the general form.
	Device  string  `json:"device,omitempty"`
	Targets Targets `json:"targets"`
	// Devices are the target devices the CR covers, resolved from Targets (names and tag
	// selection) when it was approved, sorted.
	Devices []string `json:"devices,omitempty"`
	// WindowStart and WindowEnd bound the window (inclusive), as instants; TimeZone is
	// the IANA zone the window was written in and is shown in.
	WindowStart time.Time       `json:"window_start"`
	WindowEnd   time.Time       `json:"window_end"`
	TimeZone    string          `json:"time_zone,omitempty"`
	Changes     []PlannedChange `json:"changes"`
	Rollback    string          `json:"rollback,omitempty"`
	State       CRState         `json:"state"`
	Approvals   []Approval      `json:"approvals,omitempty"`
	// History records every transition: who, when, why.
	History   []Transition `json:"history,omitempty"`
	CreatedAt time.Time    `json:"created_at"`
	UpdatedAt time.Time    `json:"updated_at"`
	// ImplementedAt is the observed time of the event that completed the CR.
	ImplementedAt time.Time `json:"implemented_at,omitzero"`
	// ReviewDue is when an emergency CR's post-implementation review is due.
	ReviewDue    time.Time     `json:"review_due,omitzero"`
	Review       *Review       `json:"review,omitempty"`
	Verification *Verification `json:"verification,omitempty"`
}

// Targets selects the devices a CR is for: named devices, and devices that carry all of
// the tags.
type Targets struct {
	Devices []string `json:"devices,omitempty"`
	Tags    []string `json:"tags,omitempty"`
}

// Transition is one change of a CR's state.
type Transition struct {
	From CRState   `json:"from,omitempty"`
	To   CRState   `json:"to"`
	By   string    `json:"by"`
	Why  string    `json:"why,omitempty"`
	At   time.Time `json:"at"`
}

// Approval is one approver's approval.
type Approval struct {
	Approver string    `json:"approver"`
	Role     string    `json:"role,omitempty"`
	Note     string    `json:"note,omitempty"`
	At       time.Time `json:"at"`
}

// Review is the post-implementation review of an emergency CR.
type Review struct {
	By   string    `json:"by"`
	Note string    `json:"note,omitempty"`
	At   time.Time `json:"at"`
}

// PlannedChange is one change a CR authorizes.
type PlannedChange struct {
	Action string `json:"action"`
	// Chain is "family table chain" for rule and policy changes.
	Chain string `json:"chain,omitempty"`
	// Set is "family table set" for element changes.
	Set string `json:"set,omitempty"`
	// Rule is the rule in nft syntax as written, Element the element.
	Rule    string `json:"rule,omitempty"`
	Element string `json:"element,omitempty"`
	// Policy is the new policy of a chain: accept or drop.
	Policy string `json:"policy,omitempty"`
	// Object narrows a config change to one object (an SNMP row or scalar, as events
	// name it: "ifEntry 2"); empty: any configuration object of the device.
	Object string `json:"object,omitempty"`
	// Position is where an added rule goes (1-based); zero means anywhere.
	Position int `json:"position,omitempty"`
	// Canonical is the rule or element in the agent's canonical form, as the aggregator
	// parsed it when the CR was created. Empty for policy changes and for CRs stored
	// before parsing existed (their text is compared with whitespace collapsed).
	Canonical string `json:"canonical,omitempty"`
	// Observations record, per target device, the event that carried this change.
	Observations []Observation `json:"observations,omitempty"`
	// ObservedEvent and ObservedSeq name the first event that carried this change.
	ObservedEvent string `json:"observed_event,omitempty"`
	ObservedSeq   uint64 `json:"observed_seq,string,omitempty"`
}

// Observation outcomes.
const (
	// Landed: the change was observed as planned.
	Landed = "landed"
	// LandedDifferently: a similar change landed instead (a differs_from_spec deviation).
	LandedDifferently = "differs"
	// RolledBack: the change landed and was undone inside the window.
	RolledBack = "rolled_back"
)

// Observation is a planned change seen (or its look-alike) on one device.
type Observation struct {
	Device   string `json:"device"`
	Outcome  string `json:"outcome"`
	Event    string `json:"event"`
	Seq      uint64 `json:"seq,string"`
	Observed string `json:"observed"` // the event's observed time
	// Actual is what landed, when it differs from the plan.
	Actual    string `json:"actual,omitempty"`
	Deviation string `json:"deviation,omitempty"`
	// UndoneEvent and UndoneSeq name the event that rolled the change back.
	UndoneEvent string `json:"undone_event,omitempty"`
	UndoneSeq   uint64 `json:"undone_seq,string,omitempty"`
}

// Observed reports whether the planned change has been seen on any device.
func (p *PlannedChange) Observed() bool { return p.ObservedEvent != "" }

// On returns the observation of the change on device, or nil.
func (p *PlannedChange) On(device string) *Observation {
	for i := range p.Observations {
		if p.Observations[i].Device == device {
			return &p.Observations[i]
		}
	}
	return nil
}

// Text is what an observed change is compared with: the canonical form, or the text as
// written with whitespace collapsed.
func (p *PlannedChange) Text() string {
	switch {
	case p.Canonical != "":
		return p.Canonical
	case p.Action == ActionAddElement || p.Action == ActionDeleteElement:
		return NormalizeText(p.Element)
	case p.Action == ActionPolicy:
		return p.Policy
	case p.Action == ActionConfig && p.Object == "":
		return "any"
	case p.Action == ActionConfig:
		return NormalizeText(p.Object)
	}
	return NormalizeText(p.Rule)
}

// Where is the chain or set the change is in, whitespace collapsed.
func (p *PlannedChange) Where() string {
	if p.Action == ActionAddElement || p.Action == ActionDeleteElement {
		return NormalizeText(p.Set)
	}
	return NormalizeText(p.Chain)
}

// Describe is a one-line description: "add inet filter input: tcp dport 443 accept".
func (p *PlannedChange) Describe() string {
	switch p.Action {
	case ActionConfig:
		if p.Object == "" {
			return "config change: any configuration object"
		}
		return "config change: " + p.Text()
	case ActionPolicy:
		return "policy " + p.Where() + ": " + p.Policy
	case ActionAddElement, ActionDeleteElement:
		return strings.ReplaceAll(p.Action, "_", " ") + " " + p.Where() + ": " + p.Text()
	}
	return p.Action + " " + p.Where() + ": " + p.Text()
}

// Verification is what the aggregator found when the CR's window closed.
type Verification struct {
	At time.Time `json:"at"`
	// Outcome is verified, incomplete, differs or rolled_back.
	Outcome  string     `json:"outcome"`
	Evidence []Evidence `json:"evidence,omitempty"`
	// Deviation is the incomplete deviation the verification raised, if any.
	Deviation string `json:"deviation,omitempty"`
}

// Verification outcomes.
const (
	Verified   = "verified"
	Incomplete = "incomplete"
	Differs    = "differs"
)

// Evidence is the verification's finding for one planned change on one device.
type Evidence struct {
	Device string `json:"device"`
	Change int    `json:"change"` // 1-based index into Changes
	// Status is landed, differs, rolled_back or missing.
	Status    string `json:"status"`
	Event     string `json:"event,omitempty"`
	Seq       uint64 `json:"seq,string,omitempty"`
	Observed  string `json:"observed,omitempty"`
	Deviation string `json:"deviation,omitempty"`
}

// Missing is the evidence status of a planned change never seen on a device.
const Missing = "missing"

// Clone returns a deep copy of the CR.
func (c *CR) Clone() *CR {
	out := *c
	out.Targets.Devices = slices.Clone(c.Targets.Devices)
	out.Targets.Tags = slices.Clone(c.Targets.Tags)
	out.Devices = slices.Clone(c.Devices)
	out.Changes = make([]PlannedChange, len(c.Changes))
	for i, p := range c.Changes {
		p.Observations = slices.Clone(p.Observations)
		out.Changes[i] = p
	}
	out.Approvals = slices.Clone(c.Approvals)
	out.History = slices.Clone(c.History)
	if c.Review != nil {
		r := *c.Review
		out.Review = &r
	}
	if c.Verification != nil {
		v := *c.Verification
		v.Evidence = slices.Clone(c.Verification.Evidence)
		out.Verification = &v
	}
	return &out
}

// SetState moves the CR to a new state and records the transition.
func (c *CR) SetState(to CRState, by, why string, at time.Time) {
	c.History = append(c.History, Transition{From: c.State, To: to, By: by, Why: why, At: at})
	c.State = to
	c.UpdatedAt = at
}

// NamedDevices are the devices the CR names (Device and Targets.Devices), sorted, unique.
func (c *CR) NamedDevices() []string {
	out := slices.Clone(c.Targets.Devices)
	if c.Device != "" {
		out = append(out, c.Device)
	}
	slices.Sort(out)
	return slices.Compact(out)
}

// Targets reports whether the CR is for device d: one of its resolved devices, or, before
// resolution, a named device or one carrying the selected tags.
func (c *CR) TargetsDevice(d *Device) bool {
	if len(c.Devices) > 0 {
		return slices.Contains(c.Devices, d.Device)
	}
	if slices.Contains(c.NamedDevices(), d.Device) {
		return true
	}
	return len(c.Targets.Tags) > 0 && d.HasTags(c.Targets.Tags)
}

// InWindow reports whether t lies in the window, ends included.
func (c *CR) InWindow(t time.Time) bool {
	return !t.Before(c.WindowStart) && !t.After(c.WindowEnd)
}

// Complete reports whether every planned change has landed, and is still in place, on
// every target device.
func (c *CR) Complete() bool {
	if len(c.Devices) == 0 {
		return false
	}
	for i := range c.Changes {
		for _, d := range c.Devices {
			o := c.Changes[i].On(d)
			if o == nil || o.Outcome != Landed {
				return false
			}
		}
	}
	return true
}
