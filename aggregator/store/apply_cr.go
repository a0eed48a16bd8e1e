package store

import (
	"bytes"
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/fenceline/fenceline/aggregator/deviation"
	"github.com/fenceline/fenceline/aggregator/model"
	"github.com/fenceline/fenceline/shared/event"
)

// families are the nftables table families a planned change may name.
var families = map[string]bool{
	"ip": true, "ip6": true, "inet": true, "arp": true, "bridge": true, "netdev": true,
}

// ValidateCR checks a new CR's form: names, type, targets, window, planned changes. The
// API calls it to answer with a clear message; the state machine calls it again. What
// depends on the state (the devices and tags exist, the window is not over, the policy's
// template) the state machine checks.
func ValidateCR(cr *model.CR) error {
	switch {
	case !event.ValidName(cr.Tenant):
		return fmt.Errorf("%w: tenant %q", ErrInvalid, cr.Tenant)
	case cr.ID != "" && !event.ValidName(cr.ID):
		return fmt.Errorf("%w: id %q: use 1 to 64 letters, digits, '.', '_' or '-'", ErrInvalid, cr.ID)
	case strings.TrimSpace(cr.Title) == "":
		return fmt.Errorf("%w: title is required", ErrInvalid)
	case strings.TrimSpace(cr.Requester) == "":
		return fmt.Errorf("%w: requester is required", ErrInvalid)
	case cr.Type != "" && !cr.Type.Valid():
		return fmt.Errorf("%w: type %q: want standard, normal or emergency", ErrInvalid, cr.Type)
	case cr.Device != "" && !event.ValidName(cr.Device):
		return fmt.Errorf("%w: device %q", ErrInvalid, cr.Device)
	case len(cr.NamedDevices()) == 0 && len(cr.Targets.Tags) == 0:
		return fmt.Errorf("%w: no target: name devices or a tag selector", ErrInvalid)
	case cr.WindowStart.IsZero() || cr.WindowEnd.IsZero():
		return fmt.Errorf("%w: window_start and window_end are required", ErrInvalid)
	case !cr.WindowEnd.After(cr.WindowStart):
		return fmt.Errorf("%w: window_end must be after window_start", ErrInvalid)
	case strings.ContainsAny(cr.TimeZone, " \t"):
		return fmt.Errorf("%w: time_zone %q", ErrInvalid, cr.TimeZone)
	case len(cr.Changes) == 0:
		return fmt.Errorf("%w: at least one planned change is required", ErrInvalid)
	}
	for _, d := range cr.Targets.Devices {
		if !event.ValidName(d) {
			return fmt.Errorf("%w: target device %q", ErrInvalid, d)
		}
	}
	for _, tag := range cr.Targets.Tags {
		if !event.ValidName(tag) {
			return fmt.Errorf("%w: target tag %q", ErrInvalid, tag)
		}
	}
	for i, c := range cr.Changes {
		if err := validatePlanned(c); err != nil {
			return fmt.Errorf("%w: change %d: %v", ErrInvalid, i+1, err)
		}
	}
	return nil
}

func validatePlanned(c model.PlannedChange) error {
	place := func(what, v string) error {
		f := strings.Fields(v)
		if len(f) != 3 || !families[f[0]] {
			return fmt.Errorf("%s %q: want \"family table %s\", e.g. \"inet filter %s\"", what, v,
				what, map[string]string{"chain": "input", "set": "blocklist"}[what])
		}
		return nil
	}
	switch c.Action {
	case model.ActionAdd, model.ActionDelete:
		if err := place("chain", c.Chain); err != nil {
			return err
		}
		if strings.TrimSpace(c.Rule) == "" {
			return fmt.Errorf("rule is empty")
		}
		if c.Position < 0 || (c.Position > 0 && c.Action == model.ActionDelete) {
			return fmt.Errorf("position %d: only an added rule has a position (1 or more)", c.Position)
		}
	case model.ActionAddElement, model.ActionDeleteElement:
		if err := place("set", c.Set); err != nil {
			return err
		}
		if strings.TrimSpace(c.Element) == "" {
			return fmt.Errorf("element is empty")
		}
	case model.ActionConfig:
		if strings.ContainsAny(c.Object, "|\n") {
			return fmt.Errorf("object %q: one object name, e.g. \"ifEntry 2\"", c.Object)
		}
	case model.ActionPolicy:
		if err := place("chain", c.Chain); err != nil {
			return err
		}
		if c.Policy != "accept" && c.Policy != "drop" {
			return fmt.Errorf("policy %q: want accept or drop", c.Policy)
		}
	default:
		return fmt.Errorf("action %q: want one of %s", c.Action, strings.Join(model.Actions, ", "))
	}
	return nil
}

// loadPolicy returns the tenant's policy, or the default one.
func loadPolicy(tx *bolt.Tx, tenant string) (*model.Policy, error) {
	var p model.Policy
	ok, err := getJSON(tx.Bucket(bucketPolicies), []byte(tenant), &p)
	if err != nil {
		return nil, err
	}
	if !ok {
		return model.DefaultPolicy(tenant), nil
	}
	return &p, nil
}

// resolveTargets returns the devices the CR targets: the named ones (each must be
// enrolled) and those carrying all selected tags (the selector must select one).
func resolveTargets(tx *bolt.Tx, cr *model.CR) ([]string, error) {
	devs := tx.Bucket(bucketDevices)
	var out []string
	for _, name := range cr.NamedDevices() {
		if devs.Get(deviceKey(cr.Tenant, name)) == nil {
			return nil, fmt.Errorf("%w: target device %q is not enrolled in tenant %s", ErrInvalid,
				name, cr.Tenant)
		}
		out = append(out, name)
	}
	if len(cr.Targets.Tags) > 0 {
		n := 0
		err := forPrefix(devs, tenantPrefix(cr.Tenant), func(_, v []byte) error {
			var d model.Device
			if err := json.Unmarshal(v, &d); err != nil {
				return fmt.Errorf("decode device: %w", err)
			}
			if d.HasTags(cr.Targets.Tags) {
				out = append(out, d.Device)
				n++
			}
			return nil
		})
		if err != nil {
			return nil, err
		}
		if n == 0 {
			return nil, fmt.Errorf("%w: no device of tenant %s carries the tags %s", ErrInvalid,
				cr.Tenant, strings.Join(cr.Targets.Tags, ","))
		}
	}
	slices.Sort(out)
	return slices.Compact(out), nil
}

// templateAllows checks that a standard CR follows its template: every planned change is
// one the template allows, on devices carrying the template's tags.
func templateAllows(tx *bolt.Tx, p *model.Policy, cr *model.CR) error {
	if cr.Template == "" {
		return fmt.Errorf("%w: a standard change must name one of the policy's templates", ErrInvalid)
	}
	tpl := p.Template(cr.Template)
	if tpl == nil {
		return fmt.Errorf("%w: template %q is not in tenant %s's policy", ErrInvalid, cr.Template,
			cr.Tenant)
	}
	for i := range cr.Changes {
		ok := false
		for j := range tpl.Changes {
			if tpl.Changes[j].Allows(&cr.Changes[i]) {
				ok = true
				break
			}
		}
		if !ok {
			return fmt.Errorf("%w: change %d (%s) is not one template %s allows", ErrInvalid, i+1,
				cr.Changes[i].Describe(), tpl.Name)
		}
	}
	for _, name := range cr.Devices {
		var d model.Device
		if _, err := getJSON(tx.Bucket(bucketDevices), deviceKey(cr.Tenant, name), &d); err != nil {
			return err
		}
		if !d.HasTags(tpl.DeviceTags) {
			return fmt.Errorf("%w: template %s is only for devices tagged %s; %s is not", ErrInvalid,
				tpl.Name, strings.Join(tpl.DeviceTags, ","), name)
		}
	}
	return nil
}

func applyCreateCR(tx *bolt.Tx, c *createCRCmd) (any, error) {
	cr := c.CR.Clone()
	if cr.Type == "" {
		cr.Type = model.CRNormal
	}
	if err := ValidateCR(cr); err != nil {
		return nil, err
	}
	if !cr.WindowEnd.After(c.At) {
		return nil, fmt.Errorf("%w: the window ended at %s, before now (%s)", ErrInvalid,
			cr.WindowEnd.UTC().Format(time.RFC3339), c.At.UTC().Format(time.RFC3339))
	}
	devices, err := resolveTargets(tx, cr)
	if err != nil {
		return nil, err
	}
	cr.Devices = devices
	pol, err := loadPolicy(tx, cr.Tenant)
	if err != nil {
		return nil, err
	}
	if cr.Type == model.CRStandard {
		if err := templateAllows(tx, pol, cr); err != nil {
			return nil, err
		}
	}
	if cr.TimeZone == "" {
		cr.TimeZone = pol.TimeZone
	}
	b := tx.Bucket(bucketCRs)
	n, err := nextCounter(tx, cr.Tenant+"/"+counterCR)
	if err != nil {
		return nil, err
	}
	if cr.ID == "" {
		// Number it; skip numbers an explicitly named CR took.
		for cr.ID = fmt.Sprintf("CR-%06d", n); b.Get(tenantKey(cr.Tenant, cr.ID)) != nil; {
			if n, err = nextCounter(tx, cr.Tenant+"/"+counterCR); err != nil {
				return nil, err
			}
			cr.ID = fmt.Sprintf("CR-%06d", n)
		}
	} else if b.Get(tenantKey(cr.Tenant, cr.ID)) != nil {
		return nil, fmt.Errorf("change request %s: %w", cr.ID, ErrExists)
	}
	cr.Number = n
	cr.State = ""
	cr.Approvals, cr.History, cr.Review, cr.Verification = nil, nil, nil, nil
	cr.ImplementedAt, cr.ReviewDue = time.Time{}, time.Time{}
	cr.CreatedAt, cr.UpdatedAt = c.At, c.At
	for i := range cr.Changes {
		p := &cr.Changes[i]
		p.ObservedEvent, p.ObservedSeq, p.Observations = "", 0, nil
	}
	cr.SetState(model.CRDraft, cr.Requester, "created", c.At)
	if !c.Draft {
		submit(pol, cr, cr.Requester, "", c.At)
	}
	if err := putCR(tx, cr); err != nil {
		return nil, err
	}
	return cr, nil
}

// submit moves a draft to submitted; a standard CR following its template is approved
// at once (the template is the approval).
func submit(p *model.Policy, cr *model.CR, by, why string, at time.Time) {
	cr.SetState(model.CRSubmitted, by, why, at)
	if cr.Type == model.CRStandard && p.Template(cr.Template) != nil {
		cr.SetState(model.CRApproved, model.System, "standard change under pre-approved template "+
			cr.Template, at)
	}
}

// putCR stores a CR and keeps the window index: a CR whose window close or emergency
// review is still to be checked is in it.
func putCR(tx *bolt.Tx, cr *model.CR) error {
	key := tenantKey(cr.Tenant, cr.ID)
	if err := putJSON(tx.Bucket(bucketCRs), key, cr); err != nil {
		return err
	}
	w := tx.Bucket(bucketWindows)
	pending := (!cr.State.Final() && cr.Verification == nil) ||
		(!cr.ReviewDue.IsZero() && cr.Review == nil)
	if pending && cr.State != model.CRRejected && cr.State != model.CRCancelled {
		return w.Put(key, nil)
	}
	return w.Delete(key)
}

func getCR(tx *bolt.Tx, tenant, id string) (*model.CR, error) {
	var cr model.CR
	ok, err := getJSON(tx.Bucket(bucketCRs), tenantKey(tenant, id), &cr)
	switch {
	case err != nil:
		return nil, err
	case !ok:
		return nil, fmt.Errorf("change request %s: %w", id, ErrNotFound)
	}
	return &cr, nil
}

// CR actions.
const (
	CRSubmit  = "submit"
	CRApprove = "approve"
	CRReject  = "reject"
	CRCancel  = "cancel"
	CRReview  = "review"
	CRClose   = "close"
)

// CRActions lists the actions a person may take on a CR.
var CRActions = []string{CRSubmit, CRApprove, CRReject, CRCancel, CRReview, CRClose}

// applyApproveCR is the approve_cr command of older logs.
func applyApproveCR(tx *bolt.Tx, c *approveCRCmd) (any, error) {
	return applyCRAction(tx, &crActionCmd{Tenant: c.Tenant, ID: c.ID, Action: CRApprove,
		By: c.Approver, At: c.At})
}

// applyCRAction moves a CR through its life, recording who, when and why.
func applyCRAction(tx *bolt.Tx, c *crActionCmd) (any, error) {
	cr, err := getCR(tx, c.Tenant, c.ID)
	if err != nil {
		return nil, err
	}
	// Submitting is the requester's own step, open to anyone who may call the API; who
	// holds which role matters for approvals (approverRole).
	by, pol, err := actor(tx, c.Tenant, c.By, c.Action != CRSubmit)
	if err != nil {
		return nil, err
	}
	wrong := func(want ...model.CRState) error {
		var ws []string
		for _, w := range want {
			ws = append(ws, string(w))
		}
		return fmt.Errorf("change request %s is %s; %s needs it %s: %w", cr.ID, cr.State, c.Action,
			strings.Join(ws, " or "), ErrState)
	}
	switch c.Action {
	case CRSubmit:
		if cr.State != model.CRDraft {
			return nil, wrong(model.CRDraft)
		}
		if !cr.WindowEnd.After(c.At) {
			return nil, fmt.Errorf("%w: the window ended at %s", ErrInvalid,
				cr.WindowEnd.UTC().Format(time.RFC3339))
		}
		submit(pol, cr, by, c.Why, c.At)
	case CRApprove:
		if err := approve(tx, pol, cr, c, by); err != nil {
			return nil, err
		}
	case CRReject:
		if cr.State != model.CRSubmitted {
			return nil, wrong(model.CRSubmitted)
		}
		if strings.TrimSpace(c.Why) == "" {
			return nil, fmt.Errorf("%w: a rejection needs a reason (why)", ErrInvalid)
		}
		cr.SetState(model.CRRejected, by, c.Why, c.At)
	case CRCancel:
		if cr.State != model.CRDraft && cr.State != model.CRSubmitted && cr.State != model.CRApproved {
			return nil, wrong(model.CRDraft, model.CRSubmitted, model.CRApproved)
		}
		if strings.TrimSpace(c.Why) == "" {
			return nil, fmt.Errorf("%w: a cancellation needs a reason (why)", ErrInvalid)
		}
		cr.SetState(model.CRCancelled, by, c.Why, c.At)
	case CRReview:
		switch {
		case cr.Type != model.CREmergency:
			return nil, fmt.Errorf("%w: only emergency changes are reviewed after the fact", ErrInvalid)
		case cr.Review != nil:
			return nil, fmt.Errorf("change request %s was reviewed already: %w", cr.ID, ErrState)
		case cr.ImplementedAt.IsZero() && cr.Verification == nil:
			return nil, fmt.Errorf("change request %s is neither implemented nor past its window: %w",
				cr.ID, ErrState)
		case strings.EqualFold(by, strings.TrimSpace(cr.Requester)):
			return nil, fmt.Errorf("%w: the requester cannot review their own emergency change",
				ErrSelfApproval)
		}
		cr.Review = &model.Review{By: by, Note: c.Why, At: c.At}
		if err := resolveOverdueReview(tx, cr, by, c.At); err != nil {
			return nil, err
		}
		cr.History = append(cr.History, model.Transition{From: cr.State, To: cr.State, By: by,
			Why: "post-implementation review: " + c.Why, At: c.At})
		cr.UpdatedAt = c.At
	case CRClose:
		if cr.State != model.CRVerified && cr.State != model.CRFailed {
			return nil, wrong(model.CRVerified, model.CRFailed)
		}
		if cr.Type == model.CREmergency && cr.Review == nil && !cr.ReviewDue.IsZero() {
			return nil, fmt.Errorf("%w: emergency change %s must be reviewed before it is closed",
				ErrState, cr.ID)
		}
		cr.SetState(model.CRClosed, by, c.Why, c.At)
	default:
		return nil, fmt.Errorf("%w: action %q: want one of %s", ErrInvalid, c.Action,
			strings.Join(CRActions, ", "))
	}
	if err := putCR(tx, cr); err != nil {
		return nil, err
	}
	return cr, nil
}

// actor checks who acts on a CR or deviation: someone must be named, and with members
// in the tenant's policy, one of them (when member is set). It returns the name and the
// policy.
func actor(tx *bolt.Tx, tenant, by string, member bool) (string, *model.Policy, error) {
	by = strings.TrimSpace(by)
	if by == "" {
		return "", nil, fmt.Errorf("%w: who (by) is required", ErrInvalid)
	}
	pol, err := loadPolicy(tx, tenant)
	if err != nil {
		return "", nil, err
	}
	if member && len(pol.Members) > 0 && pol.Member(by) == nil {
		return "", nil, fmt.Errorf("%w: %s is not a member of tenant %s's policy", ErrForbidden,
			by, pol.Tenant)
	}
	return by, pol, nil
}

// resolveOverdueReview resolves the emergency_review_due deviation of cr, if one is
// open, now that its review is recorded.
func resolveOverdueReview(tx *bolt.Tx, cr *model.CR, by string, at time.Time) error {
	for _, dev := range cr.Devices {
		prefix := deviation.KindPrefix(model.EmergencyReviewDue)
		open, err := openDeviations(tx, cr.Tenant, dev, func(key []byte) bool {
			return bytes.HasPrefix(key, []byte(prefix))
		})
		if err != nil {
			return err
		}
		for _, d := range open {
			if d.CR != cr.ID || d.State == model.DeviationResolved {
				continue
			}
			d.SetState(model.DeviationResolved, by, "post-implementation review recorded after "+
				"it fell due", model.ResolvedReviewed, at)
			if err := putDeviation(tx, d, false); err != nil {
				return err
			}
		}
	}
	return nil
}

// approve records one approval and approves the CR once it has the approvals the
// tenant's policy asks for its type.
func approve(tx *bolt.Tx, pol *model.Policy, cr *model.CR, c *crActionCmd, by string) error {
	switch {
	case strings.EqualFold(by, strings.TrimSpace(cr.Requester)):
		return ErrSelfApproval
	case cr.State != model.CRSubmitted:
		return fmt.Errorf("change request %s is %s, only a submitted one can be approved: %w",
			cr.ID, cr.State, ErrState)
	case !cr.WindowEnd.After(c.At):
		return fmt.Errorf("%w: the window of %s ended at %s", ErrInvalid, cr.ID,
			cr.WindowEnd.UTC().Format(time.RFC3339))
	}
	for _, a := range cr.Approvals {
		if strings.EqualFold(a.Approver, by) {
			return fmt.Errorf("%s approved %s already: %w", by, cr.ID, ErrState)
		}
	}
	rule := pol.ApprovalRuleFor(cr.Type)
	role, err := approverRole(pol, rule, by, c.Role)
	if err != nil {
		return err
	}
	cr.Approvals = append(cr.Approvals, model.Approval{Approver: by, Role: role, Note: c.Why, At: c.At})
	cr.UpdatedAt = c.At
	if len(cr.Approvals) < max(rule.Count, 1) {
		cr.History = append(cr.History, model.Transition{From: cr.State, To: cr.State, By: by,
			Why: fmt.Sprintf("approval %d of %d: %s", len(cr.Approvals), rule.Count, c.Why), At: c.At})
		return nil
	}
	devices, err := resolveTargets(tx, cr)
	if err != nil {
		return err
	}
	cr.Devices = devices
	cr.SetState(model.CRApproved, by, c.Why, c.At)
	return nil
}

// approverRole checks that by may approve under rule and returns the role they approve
// in. With members in the policy, the approver must be one holding the role.
func approverRole(pol *model.Policy, rule model.ApprovalRule, by, role string) (string, error) {
	var held []string
	if len(pol.Members) > 0 {
		m := pol.Member(by)
		if m == nil {
			return "", fmt.Errorf("%w: %s is not a member of tenant %s's policy", ErrForbidden, by,
				pol.Tenant)
		}
		held = m.Roles
	}
	allowed := func(r string) bool {
		return (len(rule.Roles) == 0 || slices.Contains(rule.Roles, r)) &&
			(held == nil || slices.Contains(held, r))
	}
	if role != "" {
		if !allowed(role) {
			return "", fmt.Errorf("%w: %s may not approve in role %q (allowed: %s)", ErrForbidden, by,
				role, strings.Join(rule.Roles, ","))
		}
		return role, nil
	}
	if len(rule.Roles) == 0 && held == nil {
		return "", nil
	}
	for _, r := range append(slices.Clone(rule.Roles), held...) {
		if allowed(r) {
			return r, nil
		}
	}
	return "", fmt.Errorf("%w: %s holds none of the roles that approve (%s)", ErrForbidden, by,
		strings.Join(rule.Roles, ","))
}
