// Package api is the aggregator's HTTP JSON API for operators, auditors and enrolling
// agents.
//
// Every handler returns an error; the client sees {"error": "..."} with a status that
// fits, and the log gets the detail. All /v1 endpoints except POST /v1/enroll need the
// admin bearer token; /v1/enroll is authorized by its one-time token. Writes go through
// the replicated store with the API's wall-clock time inside the command.
// TODO: TLS, and API tokens scoped to a tenant and a role.
package api

import (
	"crypto/subtle"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/fenceline/fenceline/aggregator/store"
	"github.com/fenceline/fenceline/shared/event"
)

// Config configures the API.
type Config struct {
	// AdminToken is the bearer token of the administrator (all tenants).
	AdminToken string
	// BrokerURL is the MQTT broker agents are told to use at enrollment.
	BrokerURL string
	// EnrollTTL is how long an enrollment token is valid when the request names no ttl.
	EnrollTTL time.Duration
	// Gatherer serves /metrics; nil serves the default registry.
	Gatherer prometheus.Gatherer
	// IngestStats returns the ingest counters for /v1/stats; nil leaves them out.
	IngestStats func() any
	// IngestHealth reports whether ingest is working (on the leader: connected to the
	// broker); /healthz answers 503 with its error. nil leaves it out.
	IngestHealth func() error
	// OnEnroll is called after a device enrolled (the ingester resets a re-enrolled
	// device's retained ack).
	OnEnroll func(store.EnrollResult)
	// Now is the clock; nil is time.Now.
	Now func() time.Time
	// NoForward makes a follower refuse writes (503 naming the leader) instead of
	// forwarding them to the leader (forward.go).
	NoForward bool
	// EmbeddedBroker is set when this node runs the embedded MQTT broker, which cannot
	// serve a cluster: joins are refused.
	EmbeddedBroker bool
}

// MaxEnrollTTL bounds how long an enrollment token may be valid.
const MaxEnrollTTL = 30 * 24 * time.Hour

// maxBody bounds a request body.
const maxBody = 1 << 20

// Server is the API's http.Handler.
type Server struct {
	cfg   Config
	store *store.Store
	log   *slog.Logger
	mux   *http.ServeMux
	fwd   http.RoundTripper // to the leader
	probe store.MemberProbe // asks a joining node its log format
}

// New returns the API for st.
func New(cfg Config, st *store.Store, log *slog.Logger) *Server {
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.EnrollTTL <= 0 {
		cfg.EnrollTTL = 24 * time.Hour
	}
	if cfg.Gatherer == nil {
		cfg.Gatherer = prometheus.DefaultGatherer
	}
	s := &Server{cfg: cfg, store: st, log: log.With("component", "api"), mux: http.NewServeMux(),
		fwd: newForwardTransport(st)}
	s.probe = newMemberProbe(cfg.AdminToken, s.fwd)
	s.routes()
	return s
}

func (s *Server) routes() {
	admin, open := true, false
	s.clusterRoutes()
	s.handle("POST /v1/tenants/{tenant}/enrollments", admin, s.createEnrollment)
	s.handle("POST /v1/enroll", open, s.enroll)
	s.handle("GET /v1/ack-key", open, s.getAckKey)
	s.changeRoutes(admin)
	s.handle("GET /v1/tenants/{tenant}/devices", admin, s.listDevices)
	s.handle("GET /v1/tenants/{tenant}/devices/{device}", admin, s.getDevice)
	s.handle("GET /v1/tenants/{tenant}/devices/{device}/events", admin, s.listEvents)
	s.handle("GET /v1/tenants/{tenant}/devices/{device}/ruleset", admin, s.getRuleset)
	s.handle("GET /v1/stats", admin, s.stats)
	s.handle("GET /healthz", open, s.healthz)
	s.mux.Handle("GET /metrics", promhttp.HandlerFor(s.cfg.Gatherer, promhttp.HandlerOpts{}))
	s.handle("/", open, func(http.ResponseWriter, *http.Request) error {
		return errorf(http.StatusNotFound, "no such endpoint")
	})
}

type handlerFunc func(w http.ResponseWriter, r *http.Request) error

// UnknownTenantHeader is set on answers to reads of a tenant that has nothing yet (no
// device, CR, deviation or policy): its value is the tenant's name.
const UnknownTenantHeader = "Fenceline-Unknown-Tenant"

// handle registers h, behind the admin token when auth is set, and turns its error into
// the client's answer and a log record.
func (s *Server) handle(pattern string, auth bool, h handlerFunc) {
	s.mux.HandleFunc(pattern, func(w http.ResponseWriter, r *http.Request) {
		start := time.Now()
		err := s.authorize(r, auth)
		if err == nil {
			if t := r.PathValue("tenant"); t != "" && !event.ValidName(t) {
				err = errorf(http.StatusBadRequest, "invalid tenant name %q", t)
			}
		}
		if err == nil && r.Method == http.MethodGet {
			if t := r.PathValue("tenant"); t != "" && !s.store.TenantKnown(t) {
				// Not an error (a new tenant is empty), but a typo reads the same:
				// clients say so.
				w.Header().Set(UnknownTenantHeader, t)
			}
		}
		if err == nil {
			err = h(w, r)
		}
		if err == nil {
			s.log.Debug("request", "method", r.Method, "path", r.URL.Path,
				"duration", time.Since(start))
			return
		}
		status, msg := clientError(err)
		if nl := (*store.NotLeaderError)(nil); errors.As(err, &nl) {
			setLeaderHeader(w, nl)
		}
		attrs := []any{"method", r.Method, "path", r.URL.Path, "status", status, "err", err}
		switch {
		case status >= 500:
			s.log.Error("request failed", attrs...)
		case status == http.StatusUnauthorized || status == http.StatusForbidden:
			s.log.Warn("request refused", attrs...)
		default:
			s.log.Debug("request refused", attrs...)
		}
		writeJSON(w, status, map[string]string{"error": msg})
	})
}

func (s *Server) authorize(r *http.Request, required bool) error {
	if !required {
		return nil
	}
	tok, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
	if !ok || s.cfg.AdminToken == "" ||
		subtle.ConstantTimeCompare([]byte(strings.TrimSpace(tok)), []byte(s.cfg.AdminToken)) != 1 {
		return errorf(http.StatusUnauthorized, "missing or invalid bearer token")
	}
	return nil
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	enc.Encode(v)
}

// decode reads a JSON request body into v, refusing unknown fields and trailing data.
func decode(w http.ResponseWriter, r *http.Request, v any) error {
	d := json.NewDecoder(http.MaxBytesReader(w, r.Body, maxBody))
	d.DisallowUnknownFields()
	if err := d.Decode(v); err != nil {
		var tooBig *http.MaxBytesError
		if errors.As(err, &tooBig) {
			return errorf(http.StatusRequestEntityTooLarge, "request body over %d bytes", maxBody)
		}
		if errors.Is(err, io.EOF) {
			return errorf(http.StatusBadRequest, "empty request body; JSON expected")
		}
		return errorf(http.StatusBadRequest, "invalid JSON body: %v", err)
	}
	if d.More() {
		return errorf(http.StatusBadRequest, "invalid JSON body: trailing data")
	}
	return nil
}

func (s *Server) stats(w http.ResponseWriter, _ *http.Request) error {
	st, err := s.store.Stats()
	if err != nil {
		return fmt.Errorf("store stats: %w", err)
	}
	out := map[string]any{"store": st}
	if s.cfg.IngestStats != nil {
		out["ingest"] = s.cfg.IngestStats()
	}
	writeJSON(w, http.StatusOK, out)
	return nil
}

func (s *Server) healthz(w http.ResponseWriter, _ *http.Request) error {
	if err := s.store.Health(); err != nil {
		return &Error{Status: http.StatusServiceUnavailable, Msg: "unhealthy: " + err.Error()}
	}
	if s.cfg.IngestHealth != nil {
		if err := s.cfg.IngestHealth(); err != nil {
			return &Error{Status: http.StatusServiceUnavailable, Msg: "unhealthy: " + err.Error()}
		}
	}
	writeJSON(w, http.StatusOK, map[string]string{"status": "ok", "raft_state": s.store.RaftState()})
	return nil
}
