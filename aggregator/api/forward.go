package api

import (
	"context"
	"errors"
	"net/http"
	"net/http/httputil"
	"net/url"
	"strings"
	"time"

	"github.com/fenceline/fenceline/aggregator/store"
)

// Requests on a follower. Writes (every method but GET and HEAD) and reads asked to be
// linearizable (?consistent=true) need the leader: a follower forwards them to the
// leader's API, as recorded in the replicated node table, and relays the answer. A
// request is forwarded at most once (HeaderForwardedBy marks it). When the leader is
// unknown, unreachable, or forwarding is off, the answer is 503 with the leader's
// address in HeaderLeader and in the body, so that a client can go there itself.
// Plain reads are served from the local state, which may lag the leader's; a node that
// restarted answers them with 503 until its state holds what it held before.

// Headers of forwarding.
const (
	// HeaderForwardedBy names the node that forwarded a request to the leader.
	HeaderForwardedBy = "X-Fenceline-Forwarded-By"
	// HeaderLeader carries the leader's API URL (or raft address) in refusals.
	HeaderLeader = "X-Fenceline-Leader"
)

// NotLeaderResponse is the body of a 503 from a node that cannot reach the leader.
type NotLeaderResponse struct {
	Error  string           `json:"error"`
	Leader store.LeaderInfo `json:"leader"`
}

// ServeHTTP implements http.Handler: forwarding and linearizable reads first, then the
// routes.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	consistent := r.URL.Query().Get("consistent") == "true"
	write := r.Method != http.MethodGet && r.Method != http.MethodHead &&
		!localOnly[r.URL.Path]
	if (write || consistent) && !s.store.IsLeader() {
		s.forward(w, r)
		return
	}
	if !write && !consistent && strings.HasPrefix(r.URL.Path, "/v1/") &&
		!strings.HasPrefix(r.URL.Path, "/v1/cluster") {
		// A node that restarted serves no local read until it holds again what it held:
		// an older state (an empty one after a machine restart) would go back in time.
		if err := s.store.CaughtUp(); err != nil {
			w.Header().Set("Retry-After", "1")
			writeJSON(w, http.StatusServiceUnavailable, map[string]string{"error": err.Error() +
				"; retry in a moment"})
			return
		}
	}
	if consistent {
		ctx, cancel := context.WithTimeout(r.Context(), 10*time.Second)
		err := s.store.ConsistentRead(ctx)
		cancel()
		var nl *store.NotLeaderError
		if errors.As(err, &nl) {
			s.forward(w, r)
			return
		}
		if err != nil {
			s.log.Warn("linearizable read refused", "path", r.URL.Path, "err", err)
			writeJSON(w, http.StatusServiceUnavailable,
				map[string]string{"error": "linearizable read failed; retry"})
			return
		}
	}
	s.mux.ServeHTTP(w, r)
}

// forward relays r to the leader, or refuses it naming the leader.
func (s *Server) forward(w http.ResponseWriter, r *http.Request) {
	li := s.store.Leader()
	switch {
	case r.Header.Get(HeaderForwardedBy) != "":
		s.refuse(w, r, li, "forwarded request reached a node that is not the leader")
		return
	case s.cfg.NoForward:
		s.refuse(w, r, li, "")
		return
	case li.ID == "" || li.Stale || li.APIURL == "":
		s.refuse(w, r, li, "")
		return
	}
	target, err := url.Parse(li.APIURL)
	if err != nil {
		s.refuse(w, r, li, "leader API URL invalid")
		return
	}
	s.log.Debug("forwarding to leader", "method", r.Method, "path", r.URL.Path,
		"leader_id", li.ID, "leader_api", li.APIURL)
	proxy := &httputil.ReverseProxy{
		Rewrite: func(pr *httputil.ProxyRequest) {
			pr.SetURL(target)
			pr.SetXForwarded()
			pr.Out.Header.Set(HeaderForwardedBy, s.nodeID())
		},
		Transport: s.fwd,
		ErrorHandler: func(w http.ResponseWriter, r *http.Request, err error) {
			s.log.Warn("forwarding to leader failed", "path", r.URL.Path, "leader_id", li.ID,
				"leader_api", li.APIURL, "err", err)
			s.refuse(w, r, li, "forwarding to the leader failed; the write may or may not "+
				"have been applied")
		},
	}
	proxy.ServeHTTP(w, r)
}

// refuse answers 503 naming the leader.
func (s *Server) refuse(w http.ResponseWriter, r *http.Request, li store.LeaderInfo,
	why string) {
	nl := &store.NotLeaderError{LeaderID: li.ID, LeaderAddr: li.RaftAddr,
		LeaderAPI: li.APIURL, Stale: li.Stale}
	msg := nl.Error()
	if why != "" {
		msg = why + ": " + msg
	}
	setLeaderHeader(w, nl)
	s.log.Debug("request refused: not the leader", "method", r.Method, "path", r.URL.Path,
		"leader_id", li.ID)
	writeJSON(w, http.StatusServiceUnavailable, NotLeaderResponse{Error: msg, Leader: li})
}

func setLeaderHeader(w http.ResponseWriter, nl *store.NotLeaderError) {
	switch {
	case nl.LeaderAPI != "":
		w.Header().Set(HeaderLeader, nl.LeaderAPI)
	case nl.LeaderAddr != "":
		w.Header().Set(HeaderLeader, nl.LeaderAddr)
	}
}

func (s *Server) nodeID() string { return s.store.NodeID() }

// newForwardTransport dials the leader from this node's cluster address.
func newForwardTransport(st *store.Store) http.RoundTripper {
	return &http.Transport{
		DialContext:           st.ClusterDialer().DialContext,
		MaxIdleConnsPerHost:   16,
		IdleConnTimeout:       90 * time.Second,
		ResponseHeaderTimeout: 30 * time.Second,
	}
}
