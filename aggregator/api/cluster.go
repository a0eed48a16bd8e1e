package api

import (
	"net/http"

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
	n := store.Node{ID: req.ID, RaftAddr: req.RaftAddr, APIURL: req.APIURL}
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
