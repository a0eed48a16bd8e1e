package api

import (
	"net/http"
	"slices"
	"strings"
	"time"

	"github.com/fenceline/fenceline/aggregator/model"
	"github.com/fenceline/fenceline/aggregator/store"
)

// Change management: CRs through their life, the tenant's policy, device tags,
// deviations through theirs, and rule provenance.
func (s *Server) changeRoutes(auth bool) {
	s.handle("POST /v1/tenants/{tenant}/crs", auth, s.createCR)
	s.handle("GET /v1/tenants/{tenant}/crs", auth, s.listCRs)
	s.handle("GET /v1/tenants/{tenant}/crs/{id}", auth, s.getCR)
	s.handle("POST /v1/tenants/{tenant}/crs/{id}/{action}", auth, s.crAction)
	s.handle("GET /v1/tenants/{tenant}/policy", auth, s.getPolicy)
	s.handle("PUT /v1/tenants/{tenant}/policy", auth, s.putPolicy)
	s.handle("PUT /v1/tenants/{tenant}/devices/{device}/tags", auth, s.putTags)
	s.handle("GET /v1/tenants/{tenant}/devices/{device}/rules", auth, s.getRules)
	s.handle("GET /v1/tenants/{tenant}/deviations", auth, s.listDeviations)
	s.handle("GET /v1/tenants/{tenant}/deviations/{id}", auth, s.getDeviation)
	s.handle("POST /v1/tenants/{tenant}/deviations/{id}/{action}", auth, s.deviationAction)
}

// CRRequest is the body of POST /v1/tenants/{tenant}/crs.
type CRRequest struct {
	ID            string `json:"id,omitempty"`
	Title         string `json:"title"`
	Justification string `json:"justification,omitempty"`
	Requester     string `json:"requester"`
	// Type is standard, normal (the default) or emergency; a standard CR names its
	// Template.
	Type     string `json:"type,omitempty"`
	Template string `json:"template,omitempty"`
	// Device, Devices and Tags select the targets: named devices, and devices carrying
	// every tag.
	Device  string   `json:"device,omitempty"`
	Devices []string `json:"devices,omitempty"`
	Tags    []string `json:"tags,omitempty"`
	// WindowStart and WindowEnd are RFC 3339 times, or local times
	// ("2026-03-29T01:30") in TimeZone (default: the tenant's).
	WindowStart string                `json:"window_start"`
	WindowEnd   string                `json:"window_end"`
	TimeZone    string                `json:"time_zone,omitempty"`
	Changes     []model.PlannedChange `json:"changes"`
	Rollback    string                `json:"rollback,omitempty"`
	// Draft creates the CR as a draft instead of submitting it.
	Draft bool `json:"draft,omitempty"`
}

func (s *Server) createCR(w http.ResponseWriter, r *http.Request) error {
	var req CRRequest
	if err := decode(w, r, &req); err != nil {
		return err
	}
	tenant := r.PathValue("tenant")
	cr := &model.CR{
		Tenant: tenant, ID: req.ID, Title: req.Title, Justification: req.Justification,
		Requester: req.Requester, Type: model.CRType(req.Type), Template: req.Template,
		Device: req.Device, Targets: model.Targets{Devices: req.Devices, Tags: req.Tags},
		Changes: req.Changes, Rollback: req.Rollback,
	}
	zone := req.TimeZone
	if zone == "" {
		p, err := s.store.Policy(tenant)
		if err != nil {
			return err
		}
		zone = p.TimeZone
	}
	loc, err := time.LoadLocation(zone)
	if err != nil || zone == "Local" {
		return errorf(http.StatusBadRequest, "time_zone %q is not an IANA zone such as "+
			"Europe/Berlin", zone)
	}
	cr.TimeZone = zone
	if cr.WindowStart, err = parseWindow("window_start", req.WindowStart, loc); err != nil {
		return err
	}
	if cr.WindowEnd, err = parseWindow("window_end", req.WindowEnd, loc); err != nil {
		return err
	}
	for i := range cr.Changes {
		// Observations are the aggregator's to record.
		p := &cr.Changes[i]
		p.ObservedEvent, p.ObservedSeq, p.Observations, p.Canonical = "", 0, nil, ""
	}
	create := s.store.CreateCR
	if req.Draft {
		create = s.store.CreateDraftCR
	}
	out, err := create(r.Context(), cr, s.cfg.Now())
	if err != nil {
		return err
	}
	s.log.Info("change request created", "tenant", out.Tenant, "cr", out.ID, "state", out.State,
		"devices", strings.Join(out.Devices, ","), "requester", out.Requester, "changes", len(out.Changes))
	warnings, err := s.store.PlanWarnings(out)
	if err != nil {
		// The CR exists; the advice is only lost.
		s.log.Warn("checking a new CR against its devices", "tenant", out.Tenant, "cr", out.ID,
			"err", err)
	}
	writeJSON(w, http.StatusCreated, CRCreated{CR: out, Warnings: warnings})
	return nil
}

// CRCreated is the answer to a CR's creation and to its approval: the CR, and what of its
// plan cannot apply to its devices as they last reported (see store.PlanWarnings).
type CRCreated struct {
	*model.CR
	Warnings []string `json:"warnings,omitempty"`
}

// localLayouts are the forms of a window time written in the window's time zone.
var localLayouts = []string{"2006-01-02T15:04:05", "2006-01-02T15:04", "2006-01-02 15:04:05",
	"2006-01-02 15:04"}

// parseWindow reads an RFC 3339 time, or a local time in loc. A local time that a
// daylight-saving change skips (it does not exist) or repeats (it names two instants) is
// refused: the caller gives an RFC 3339 time with its offset instead.
func parseWindow(field, v string, loc *time.Location) (time.Time, error) {
	if v == "" {
		return time.Time{}, errorf(http.StatusBadRequest, "%s is required (RFC 3339, or a local "+
			"time like 2026-03-29T01:30 in time_zone)", field)
	}
	if t, err := time.Parse(time.RFC3339, v); err == nil {
		return t.UTC(), nil
	}
	for _, l := range localLayouts {
		if t, err := time.ParseInLocation(l, v, loc); err == nil {
			if t.In(loc).Format(l) != v {
				return time.Time{}, errorf(http.StatusBadRequest, "%s %q does not exist in %s: "+
					"the clocks skip it at a daylight-saving change; give an RFC 3339 time with "+
					"its offset", field, v, loc)
			}
			for _, d := range []time.Duration{30 * time.Minute, time.Hour, 2 * time.Hour} {
				if t.Add(d).In(loc).Format(l) == v || t.Add(-d).In(loc).Format(l) == v {
					return time.Time{}, errorf(http.StatusBadRequest, "%s %q is ambiguous in %s: "+
						"it occurs twice at a daylight-saving change; give an RFC 3339 time with "+
						"its offset", field, v, loc)
				}
			}
			return t.UTC(), nil
		}
	}
	return time.Time{}, errorf(http.StatusBadRequest,
		"%s %q is neither an RFC 3339 time like 2026-06-01T10:00:00Z nor a local time like "+
			"2026-06-01T10:00 (in %s)", field, v, loc)
}

// CRActionRequest is the body of POST /v1/tenants/{tenant}/crs/{id}/{action}: who does
// it, why, and for approvals the role they approve in.
type CRActionRequest struct {
	By   string `json:"by"`
	Why  string `json:"why,omitempty"`
	Role string `json:"role,omitempty"`
	// Approver is By for approvals (older clients).
	Approver string `json:"approver,omitempty"`
}

// ApproveRequest is the body of POST /v1/tenants/{tenant}/crs/{id}/approve.
type ApproveRequest = CRActionRequest

func (s *Server) crAction(w http.ResponseWriter, r *http.Request) error {
	action := r.PathValue("action")
	if !slices.Contains(store.CRActions, action) {
		return errorf(http.StatusNotFound, "no CR action %q: want one of %s", action,
			strings.Join(store.CRActions, ", "))
	}
	var req CRActionRequest
	if err := decode(w, r, &req); err != nil {
		return err
	}
	if req.By == "" {
		req.By = req.Approver
	}
	if strings.TrimSpace(req.By) == "" {
		if action == store.CRApprove {
			return errorf(http.StatusBadRequest, "approver is required")
		}
		return errorf(http.StatusBadRequest, "by is required: who does this")
	}
	tenant, id := r.PathValue("tenant"), r.PathValue("id")
	cr, err := s.store.CRAction(r.Context(), store.CRActionRequest{Tenant: tenant, ID: id,
		Action: action, By: req.By, Role: req.Role, Why: req.Why}, s.cfg.Now())
	if err != nil {
		return err
	}
	s.log.Info("change request "+action, "tenant", tenant, "cr", id, "by", req.By, "state", cr.State)
	out := CRCreated{CR: cr}
	if action == store.CRApprove && cr.State == model.CRApproved {
		// Approval resolves tag targets: devices that joined since filing are checked now.
		if out.Warnings, err = s.store.PlanWarnings(cr); err != nil {
			s.log.Warn("checking an approved CR against its devices", "tenant", tenant, "cr", id,
				"err", err)
		}
	}
	writeJSON(w, http.StatusOK, out)
	return nil
}

func (s *Server) listCRs(w http.ResponseWriter, r *http.Request) error {
	crs, err := s.store.CRs(r.PathValue("tenant"))
	if err != nil {
		return err
	}
	q := r.URL.Query()
	out := crs[:0]
	for _, c := range crs {
		if (q.Get("state") == "" || string(c.State) == q.Get("state")) &&
			(q.Get("device") == "" || slices.Contains(c.Devices, q.Get("device"))) {
			out = append(out, c)
		}
	}
	writeJSON(w, http.StatusOK, out)
	return nil
}

func (s *Server) getCR(w http.ResponseWriter, r *http.Request) error {
	cr, err := s.store.CR(r.PathValue("tenant"), r.PathValue("id"))
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, cr)
	return nil
}

func (s *Server) getPolicy(w http.ResponseWriter, r *http.Request) error {
	p, err := s.store.Policy(r.PathValue("tenant"))
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, p)
	return nil
}

// PolicyRequest is the body of PUT /v1/tenants/{tenant}/policy: the policy, and who sets
// it.
type PolicyRequest struct {
	model.Policy
	By string `json:"by,omitempty"`
}

func (s *Server) putPolicy(w http.ResponseWriter, r *http.Request) error {
	var req PolicyRequest
	if err := decode(w, r, &req); err != nil {
		return err
	}
	p := req.Policy
	p.Tenant = r.PathValue("tenant")
	by := req.By
	if by == "" {
		by = "admin"
	}
	out, err := s.store.SetPolicy(r.Context(), &p, by, s.cfg.Now())
	if err != nil {
		return err
	}
	s.log.Info("policy set", "tenant", p.Tenant, "by", by)
	writeJSON(w, http.StatusOK, out)
	return nil
}

// TagsRequest is the body of PUT /v1/tenants/{tenant}/devices/{device}/tags.
type TagsRequest struct {
	Tags []string `json:"tags"`
}

func (s *Server) putTags(w http.ResponseWriter, r *http.Request) error {
	var req TagsRequest
	if err := decode(w, r, &req); err != nil {
		return err
	}
	d, err := s.store.SetDeviceTags(r.Context(), r.PathValue("tenant"), r.PathValue("device"), req.Tags)
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, d)
	return nil
}

func (s *Server) getRules(w http.ResponseWriter, r *http.Request) error {
	rules, err := s.store.Rules(r.PathValue("tenant"), r.PathValue("device"))
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, rules)
	return nil
}

func (s *Server) listDeviations(w http.ResponseWriter, r *http.Request) error {
	q := r.URL.Query()
	f := store.DeviationFilter{Device: q.Get("device"), State: model.DeviationState(q.Get("state")),
		Kind: model.DeviationKind(q.Get("kind")), CR: q.Get("cr")}
	switch f.State {
	case "", model.DeviationOpen, model.DeviationAcknowledged, model.DeviationResolved:
	default:
		return errorf(http.StatusBadRequest, "invalid state %q: want open, acknowledged or resolved",
			f.State)
	}
	if f.Kind != "" && !slices.Contains(model.DeviationKinds, f.Kind) {
		var kinds []string
		for _, k := range model.DeviationKinds {
			kinds = append(kinds, string(k))
		}
		return errorf(http.StatusBadRequest, "invalid kind %q: want one of %s", f.Kind,
			strings.Join(kinds, ", "))
	}
	devs, err := s.store.Deviations(r.PathValue("tenant"), f)
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, devs)
	return nil
}

func (s *Server) getDeviation(w http.ResponseWriter, r *http.Request) error {
	d, err := s.store.Deviation(r.PathValue("tenant"), r.PathValue("id"))
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, d)
	return nil
}

// DeviationActionRequest is the body of POST /v1/tenants/{tenant}/deviations/{id}/
// acknowledge and …/resolve.
type DeviationActionRequest struct {
	By  string `json:"by"`
	Why string `json:"why,omitempty"`
	// Resolution is retroactive_cr (naming CR), rollback_observed or accepted_risk.
	Resolution string `json:"resolution,omitempty"`
	CR         string `json:"cr,omitempty"`
}

func (s *Server) deviationAction(w http.ResponseWriter, r *http.Request) error {
	action := r.PathValue("action")
	if action != store.DeviationAcknowledge && action != store.DeviationResolve {
		return errorf(http.StatusNotFound, "no deviation action %q: want acknowledge or resolve", action)
	}
	var req DeviationActionRequest
	if err := decode(w, r, &req); err != nil {
		return err
	}
	if strings.TrimSpace(req.By) == "" {
		return errorf(http.StatusBadRequest, "by is required: who does this")
	}
	tenant, id := r.PathValue("tenant"), r.PathValue("id")
	d, err := s.store.DeviationAction(r.Context(), store.DeviationActionRequest{Tenant: tenant,
		ID: id, Action: action, By: req.By, Why: req.Why, Resolution: req.Resolution, CR: req.CR},
		s.cfg.Now())
	if err != nil {
		return err
	}
	s.log.Info("deviation "+action, "tenant", tenant, "deviation", id, "by", req.By,
		"resolution", req.Resolution)
	writeJSON(w, http.StatusOK, d)
	return nil
}
