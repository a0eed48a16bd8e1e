package api

import (
	"crypto/ed25519"
	"encoding/base64"
	"net/http"
	"strconv"
	"strings"
	"time"

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
	// AckKey is the aggregator's public ack key (standard base64): the agent accepts only
	// acks signed with it.
	AckKey string `json:"ack_key,omitempty"`
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
	ackKey, err := s.store.EnsureAckKey(r.Context())
	if err != nil {
		return err
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
		BrokerURL: s.cfg.BrokerURL, AckKey: base64.StdEncoding.EncodeToString(ackKey),
	})
	return nil
}

// AckKeyResponse is the body of GET /v1/ack-key.
type AckKeyResponse struct {
	AckKey string `json:"ack_key"` // standard base64 of the raw Ed25519 public key
}

// getAckKey serves the public half of the ack key, for agents enrolled before the
// enrollment response carried it. It is public: acks are checked with it, not kept
// secret by it.
func (s *Server) getAckKey(w http.ResponseWriter, _ *http.Request) error {
	k := s.store.AckKey()
	if k == nil {
		return errorf(http.StatusServiceUnavailable, "no ack key yet: the cluster has not "+
			"elected its first leader")
	}
	writeJSON(w, http.StatusOK, AckKeyResponse{
		AckKey: base64.StdEncoding.EncodeToString(k.Public().(ed25519.PublicKey))})
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
			kind := event.Kind(strings.TrimSpace(k))
			if !kind.Known() {
				return errorf(http.StatusBadRequest, "invalid kind %q: want baseline, change, "+
					"heartbeat, reconcile, fold or resync", k)
			}
			eq.Kinds = append(eq.Kinds, kind)
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
