package api_test

import (
	"net/http"
	"net/http/httptest"
	"sync/atomic"
	"testing"
)

// TestJoinChecksLogFormat: the cluster writes raft log format 2 (a cluster of one raises
// it at once); a node that does not say which format it reads is asked through its API,
// with the admin token, and one of an earlier version (its status has no log_format) is
// refused, as is a node nobody can ask.
func TestJoinChecksLogFormat(t *testing.T) {
	e := newEnv(t)
	var asked atomic.Int32
	old := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/v1/cluster" || r.Header.Get("Authorization") != "Bearer "+adminToken {
			http.Error(w, `{"error":"unexpected"}`, http.StatusUnauthorized)
			return
		}
		asked.Add(1)
		w.Header().Set("Content-Type", "application/json")
		w.Write([]byte(`{"node_id":"agg-old","state":"Follower","members":[]}`))
	}))
	defer old.Close()

	status, msg := e.admin("POST", "/v1/cluster/join", map[string]any{
		"id": "agg-old", "raft_addr": "127.0.0.1:7999", "api_url": old.URL}, nil)
	expect(t, "join of an earlier version", status, http.StatusBadRequest, msg,
		"reads raft log format 1, and this cluster writes format 2")
	if asked.Load() != 1 {
		t.Errorf("the node's API was asked %d times", asked.Load())
	}
	status, msg = e.admin("POST", "/v1/cluster/join", map[string]any{
		"id": "agg-x", "raft_addr": "127.0.0.1:7998"}, nil)
	expect(t, "join of a node that does not say", status, http.StatusBadRequest, msg,
		"give its API URL")
	old.Close() // a node that is not running cannot be asked
	status, msg = e.admin("POST", "/v1/cluster/join", map[string]any{
		"id": "agg-old", "raft_addr": "127.0.0.1:7999", "api_url": old.URL}, nil)
	expect(t, "join of a node that is not running", status, http.StatusBadRequest, msg,
		"its API could not be asked")
}
