package api

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"

	"github.com/fenceline/fenceline/aggregator/store"
)

// Cluster endpoints. Membership changes run on the leader (a follower forwards them);
// GET /v1/cluster answers with this node's view, and POST /v1/cluster/snapshot snapshots
// this node.

func (s *Server) clusterRoutes() {
	s.handle("GET /v1/cluster", true, s.clusterStatus)
	s.handle("POST /v1/cluster/join", true, s.clusterJoin)
	s.handle("POST /v1/cluster/remove", true, s.clusterRemove)
	s.handle("POST /v1/cluster/snapshot", true, s.clusterSnapshot)
}

// localOnly are the endpoints a follower answers itself even though they are not reads.
var localOnly = map[string]bool{"/v1/cluster/snapshot": true}

// JoinRequest is the body of POST /v1/cluster/join: the node to add.
type JoinRequest struct {
	ID       string `json:"id"`
	RaftAddr string `json:"raft_addr"`
	APIURL   string `json:"api_url"`
	// LogFormat is the newest raft log format the node reads (store.LogFormat). When it
	// is not given, the leader asks the node's API; a node that does not say reads 1.
	LogFormat int `json:"log_format,omitempty"`
}

// RemoveRequest is the body of POST /v1/cluster/remove.
type RemoveRequest struct {
	ID string `json:"id"`
}

// SnapshotResponse answers POST /v1/cluster/snapshot.
type SnapshotResponse struct {
	NodeID       string `json:"node_id"`
	AppliedIndex uint64 `json:"applied_index"`
	Snapshots    uint64 `json:"snapshots"`
	Restores     uint64 `json:"restores"`
	LastBytes    uint64 `json:"last_snapshot_bytes"`
}

func (s *Server) clusterStatus(w http.ResponseWriter, _ *http.Request) error {
	st, err := s.store.Cluster()
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, st)
	return nil
}

func (s *Server) clusterJoin(w http.ResponseWriter, r *http.Request) error {
	var req JoinRequest
	if err := decode(w, r, &req); err != nil {
		return err
	}
	if s.cfg.EmbeddedBroker {
		return errorf(http.StatusConflict, "this cluster's leader runs the embedded MQTT broker, "+
			"which serves one node only: set broker.url to an external broker (e.g. Mosquitto) "+
			"on every node before forming a cluster")
	}
	if req.LogFormat == 0 && req.APIURL != "" {
		f, err := s.probe(r.Context(), store.Node{ID: req.ID, APIURL: req.APIURL})
		if err != nil && s.store.ClusterLogFormat() > 1 {
			return errorf(http.StatusBadRequest, "node %s must say which raft log format it "+
				"reads before it joins, and its API could not be asked (%v): start it first",
				req.ID, err)
		}
		req.LogFormat = f // 0 after an error: the cluster is at format 1, which every node reads
	}
	n := store.Node{ID: req.ID, RaftAddr: req.RaftAddr, APIURL: req.APIURL,
		LogFormat: req.LogFormat}
	if err := s.store.Join(r.Context(), n, s.cfg.Now()); err != nil {
		return err
	}
	st, err := s.store.Cluster()
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, st)
	return nil
}

func (s *Server) clusterRemove(w http.ResponseWriter, r *http.Request) error {
	var req RemoveRequest
	if err := decode(w, r, &req); err != nil {
		return err
	}
	if err := s.store.Remove(r.Context(), req.ID); err != nil {
		return err
	}
	st, err := s.store.Cluster()
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, st)
	return nil
}

func (s *Server) clusterSnapshot(w http.ResponseWriter, _ *http.Request) error {
	if err := s.store.Snapshot(); err != nil {
		return errorf(http.StatusConflict, "snapshot: %v", err)
	}
	n, rs, b := s.store.SnapshotStats()
	st, err := s.store.Cluster()
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, SnapshotResponse{NodeID: st.NodeID,
		AppliedIndex: st.AppliedIndex, Snapshots: n, Restores: rs, LastBytes: b})
	return nil
}

// MemberProbe asks a member's API (GET /v1/cluster, with the admin token) which raft
// log format it reads; a member of an earlier version does not say, and reads format 1.
// It dials from this node's cluster address, as forwarding does.
func MemberProbe(token string, st *store.Store) store.MemberProbe {
	return newMemberProbe(token, newForwardTransport(st))
}

func newMemberProbe(token string, rt http.RoundTripper) store.MemberProbe {
	client := &http.Client{Transport: rt}
	return func(ctx context.Context, n store.Node) (int, error) {
		url := strings.TrimRight(n.APIURL, "/") + "/v1/cluster"
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
		if err != nil {
			return 0, fmt.Errorf("ask %s its log format: %w", n.ID, err)
		}
		req.Header.Set("Authorization", "Bearer "+token)
		resp, err := client.Do(req)
		if err != nil {
			return 0, fmt.Errorf("ask %s its log format: %w", n.ID, err)
		}
		defer resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			return 0, fmt.Errorf("ask %s its log format: %s", n.ID, resp.Status)
		}
		var st struct {
			LogFormat int `json:"log_format"`
		}
		if err := json.NewDecoder(io.LimitReader(resp.Body, maxBody)).Decode(&st); err != nil {
			return 0, fmt.Errorf("ask %s its log format: %w", n.ID, err)
		}
		return max(st.LogFormat, 1), nil
	}
}
