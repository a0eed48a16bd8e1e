package api

import (
	"crypto/ed25519"
	"encoding/base64"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/fenceline/fenceline/aggregator/model"
	"github.com/fenceline/fenceline/aggregator/store"
	"github.com/fenceline/fenceline/shared/event"
)

// EnrollmentRequest is the body of POST /v1/tenants/{tenant}/enrollments.
type EnrollmentRequest struct {
	Device string `json:"device"`
	TTL    string `json:"ttl,omitempty"` // Go duration, e.g. "1h"; default Config.EnrollTTL
}

// EnrollmentResponse carries the one-time token; it is shown once and stored only as a
// hash.
type EnrollmentResponse struct {
	Token   string    `json:"token"`
	Tenant  string    `json:"tenant"`
	Device  string    `json:"device"`
	Expires time.Time `json:"expires"`
}

func (s *Server) createEnrollment(w http.ResponseWriter, r *http.Request) error {
	var req EnrollmentRequest
	if err := decode(w, r, &req); err != nil {
		return err
	}
	tenant := r.PathValue("tenant")
	if !event.ValidName(req.Device) {
		return errorf(http.StatusBadRequest, "invalid device name %q: use 1 to 64 letters, "+
			"digits, '.', '_' or '-'", req.Device)
	}
	ttl := s.cfg.EnrollTTL
	if req.TTL != "" {
		d, err := time.ParseDuration(req.TTL)
		if err != nil || d <= 0 || d > MaxEnrollTTL {
			return errorf(http.StatusBadRequest, "invalid ttl %q: want a duration like \"1h\", "+
				"at most %s", req.TTL, MaxEnrollTTL)
		}
		ttl = d
	}
	tok, enr, err := s.store.CreateEnrollment(r.Context(), tenant, req.Device, ttl, s.cfg.Now())
	if err != nil {
		return err
	}
	s.log.Info("enrollment token issued", "tenant", tenant, "device", req.Device,
		"expires", enr.Expires)
	writeJSON(w, http.StatusCreated, EnrollmentResponse{
		Token: tok, Tenant: enr.Tenant, Device: enr.Device, Expires: enr.Expires,
	})
	return nil
}

// EnrollRequest is the body of POST /v1/enroll.
type EnrollRequest struct {
	Token     string `json:"token"`
	PublicKey string `json:"public_key"` // standard base64 of the raw Ed25519 key
}

// EnrollResponse tells the agent what it was enrolled as and where to send events.
type EnrollResponse struct {
	Tenant    string `json:"tenant"`
	Device    string `json:"device"`
	KeyID     string `json:"key_id"`
	BrokerURL string `json:"broker_url"`
}

func (s *Server) enroll(w http.ResponseWriter, r *http.Request) error {
	var req EnrollRequest
	if err := decode(w, r, &req); err != nil {
		return err
	}
	if req.Token == "" {
		return errorf(http.StatusBadRequest, "token is required")
	}
	pub, err := base64.StdEncoding.DecodeString(req.PublicKey)
	if err != nil || len(pub) != ed25519.PublicKeySize {
		return errorf(http.StatusBadRequest, "public_key must be a standard-base64 Ed25519 "+
			"public key (%d bytes)", ed25519.PublicKeySize)
	}
	res, err := s.store.Enroll(r.Context(), strings.TrimSpace(req.Token), pub, s.cfg.Now())
	if err != nil {
		return err
	}
	if s.cfg.OnEnroll != nil {
		s.cfg.OnEnroll(res)
	}
	writeJSON(w, http.StatusOK, EnrollResponse{
		Tenant: res.Device.Tenant, Device: res.Device.Device, KeyID: res.Device.KeyID,
		BrokerURL: s.cfg.BrokerURL,
	})
	return nil
}

// CRRequest is the body of POST /v1/tenants/{tenant}/crs.
type CRRequest struct {
	ID          string                `json:"id,omitempty"`
	Title       string                `json:"title"`
	Requester   string                `json:"requester"`
	Device      string                `json:"device"`
	WindowStart string                `json:"window_start"` // RFC 3339
	WindowEnd   string                `json:"window_end"`   // RFC 3339
	Changes     []model.PlannedChange `json:"changes"`
}

func (s *Server) createCR(w http.ResponseWriter, r *http.Request) error {
	var req CRRequest
	if err := decode(w, r, &req); err != nil {
		return err
	}
	cr := &model.CR{
		Tenant: r.PathValue("tenant"), ID: req.ID, Title: req.Title, Requester: req.Requester,
		Device: req.Device, Changes: req.Changes,
	}
	var err error
	if cr.WindowStart, err = parseTime("window_start", req.WindowStart); err != nil {
		return err
	}
	if cr.WindowEnd, err = parseTime("window_end", req.WindowEnd); err != nil {
		return err
	}
	for i := range cr.Changes {
		// Observations are the aggregator's to record.
		cr.Changes[i].ObservedEvent, cr.Changes[i].ObservedSeq = "", 0
	}
	out, err := s.store.CreateCR(r.Context(), cr, s.cfg.Now())
	if err != nil {
		return err
	}
	s.log.Info("change request created", "tenant", out.Tenant, "cr", out.ID, "device", out.Device,
		"requester", out.Requester, "changes", len(out.Changes))
	writeJSON(w, http.StatusCreated, out)
	return nil
}

func parseTime(field, v string) (time.Time, error) {
	if v == "" {
		return time.Time{}, errorf(http.StatusBadRequest, "%s is required (RFC 3339)", field)
	}
	t, err := time.Parse(time.RFC3339, v)
	if err != nil {
		return time.Time{}, errorf(http.StatusBadRequest,
			"%s %q is not an RFC 3339 time like 2025-06-01T10:00:00Z", field, v)
	}
	return t.UTC(), nil
}

// ApproveRequest is the body of POST /v1/tenants/{tenant}/crs/{id}/approve.
type ApproveRequest struct {
	Approver string `json:"approver"`
}

func (s *Server) approveCR(w http.ResponseWriter, r *http.Request) error {
	var req ApproveRequest
	if err := decode(w, r, &req); err != nil {
		return err
	}
	if strings.TrimSpace(req.Approver) == "" {
		return errorf(http.StatusBadRequest, "approver is required")
	}
	tenant, id := r.PathValue("tenant"), r.PathValue("id")
	cr, err := s.store.ApproveCR(r.Context(), tenant, id, req.Approver, s.cfg.Now())
	if err != nil {
		return err
	}
	s.log.Info("change request approved", "tenant", tenant, "cr", id, "approver", req.Approver)
	writeJSON(w, http.StatusOK, cr)
	return nil
}

func (s *Server) listCRs(w http.ResponseWriter, r *http.Request) error {
	crs, err := s.store.CRs(r.PathValue("tenant"))
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, crs)
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

func (s *Server) listDeviations(w http.ResponseWriter, r *http.Request) error {
	q := r.URL.Query()
	f := store.DeviationFilter{Device: q.Get("device"), State: model.DeviationState(q.Get("state"))}
	switch f.State {
	case "", model.DeviationOpen, model.DeviationAcknowledged, model.DeviationResolved:
	default:
		return errorf(http.StatusBadRequest, "invalid state %q: want open, acknowledged or resolved",
			f.State)
	}
	devs, err := s.store.Deviations(r.PathValue("tenant"), f)
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, devs)
	return nil
}

func (s *Server) listDevices(w http.ResponseWriter, r *http.Request) error {
	devs, err := s.store.Devices(r.PathValue("tenant"))
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, devs)
	return nil
}

func (s *Server) getDevice(w http.ResponseWriter, r *http.Request) error {
	d, err := s.store.Device(r.PathValue("tenant"), r.PathValue("device"))
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, d)
	return nil
}

// Event listing bounds.
const (
	defaultEventLimit = 1000
	maxEventLimit     = 100000
)

func (s *Server) listEvents(w http.ResponseWriter, r *http.Request) error {
	q := r.URL.Query()
	eq := store.EventQuery{Limit: defaultEventLimit, Envelopes: q.Get("envelopes") == "true"}
	if v := q.Get("limit"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n <= 0 || n > maxEventLimit {
			return errorf(http.StatusBadRequest, "invalid limit %q: want 1 to %d", v, maxEventLimit)
		}
		eq.Limit = n
	}
	if v := q.Get("kind"); v != "" {
		for _, k := range strings.Split(v, ",") {
			switch kind := event.Kind(k); kind {
			case event.Baseline, event.Change, event.Heartbeat, event.Reconcile:
				eq.Kinds = append(eq.Kinds, kind)
			default:
				return errorf(http.StatusBadRequest, "invalid kind %q", k)
			}
		}
	}
	evs, err := s.store.Events(r.PathValue("tenant"), r.PathValue("device"), eq)
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, evs)
	return nil
}

func (s *Server) getRuleset(w http.ResponseWriter, r *http.Request) error {
	rs, seq, err := s.store.Ruleset(r.PathValue("tenant"), r.PathValue("device"))
	if err != nil {
		return err
	}
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Fenceline-Ruleset-Seq", strconv.FormatUint(seq, 10))
	w.WriteHeader(http.StatusOK)
	if _, err := w.Write(rs); err != nil {
		// The status is sent; all that is left is to note the client went away.
		s.log.Debug("write ruleset", "err", err)
	}
	return nil
}
