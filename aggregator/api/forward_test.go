package api_test

import (
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/fenceline/fenceline/aggregator/api"
	"github.com/fenceline/fenceline/aggregator/internal/testenv"
	"github.com/fenceline/fenceline/aggregator/internal/teststore"
	"github.com/fenceline/fenceline/aggregator/store"
)

// clusterAPI runs three real nodes, each with its API on its own loopback address.
type clusterAPI struct {
	nodes []*teststore.Node
	urls  []string
}

func newClusterAPI(t *testing.T, noForward bool) *clusterAPI {
	c := &clusterAPI{}
	for i := range 3 {
		ip := fmt.Sprintf("127.0.0.%d", 11+i)
		ln, err := net.Listen("tcp", ip+":0")
		if err != nil {
			t.Fatal(err)
		}
		cfg := teststore.ClusterNodeConfig(t, i)
		cfg.APIURL = "http://" + ln.Addr().String()
		n := teststore.StartNode(t, cfg)
		h := api.New(api.Config{AdminToken: adminToken, Gatherer: prometheus.NewRegistry(),
			NoForward: noForward}, n.Store, testenv.Logger(t))
		srv := httptest.NewUnstartedServer(h)
		srv.Listener.Close()
		srv.Listener = ln
		srv.Start()
		t.Cleanup(srv.Close)
		c.nodes = append(c.nodes, n)
		c.urls = append(c.urls, cfg.APIURL)
		if i == 0 {
			teststore.Leader(t, c.nodes)
			// The leader records its own API URL when its duties start.
			go n.Store.RunLeaderDuties(t.Context(), time.Second, api.MemberProbe(adminToken, n.Store))
			testenv.WaitFor(t, 10*time.Second, "leader in the node table", func() bool {
				return n.Store.Leader().APIURL == cfg.APIURL
			})
			continue
		}
		// Joining through the API of the first node, as fencectl does.
		body := fmt.Sprintf(`{"id":%q,"raft_addr":%q,"api_url":%q}`, cfg.NodeID,
			cfg.RaftListen, cfg.APIURL)
		if status, out, _ := clusterCall(t, "POST", c.urls[0]+"/v1/cluster/join", body); status != 200 {
			t.Fatalf("join %s: %d %s", cfg.NodeID, status, out)
		}
	}
	for _, n := range c.nodes[1:] {
		testenv.WaitFor(t, 10*time.Second, "followers to know the leader's API", func() bool {
			return n.Store.Leader().APIURL == c.urls[0]
		})
	}
	return c
}

func clusterCall(t *testing.T, method, url, body string) (int, string, http.Header) {
	t.Helper()
	req, err := http.NewRequest(method, url, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer "+adminToken)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b), resp.Header
}

// clusterWriteBody is a write that needs nothing else in the state: a tenant policy.
const clusterWriteBody = `{"time_zone":"Europe/Berlin","emergency_review":"72h",
	"silence_after":"2m","approvals":{"normal":{"count":1}}}`

// TestFollowerForwardsWrites: a write on a follower is forwarded to the leader and
// answered as the leader answers it; a linearizable read on a follower is too; a plain
// read is local.
func TestFollowerForwardsWrites(t *testing.T) {
	c := newClusterAPI(t, false)
	follower := c.urls[2]
	status, out, _ := clusterCall(t, "PUT", follower+"/v1/tenants/acme/policy", clusterWriteBody)
	if status != http.StatusOK {
		t.Fatalf("write on a follower: %d %s", status, out)
	}
	status, out, _ = clusterCall(t, "GET", follower+"/v1/tenants/acme/policy?consistent=true", "")
	if status != http.StatusOK || !strings.Contains(out, "Europe/Berlin") {
		t.Fatalf("linearizable read on a follower: %d %s", status, out)
	}
	status, out, _ = clusterCall(t, "GET", follower+"/v1/cluster", "")
	var st store.ClusterStatus
	if err := json.Unmarshal([]byte(out), &st); err != nil || status != 200 {
		t.Fatalf("cluster status: %d %s", status, out)
	}
	if st.NodeID != "node-3" || st.State != "Follower" || len(st.Members) != 3 ||
		st.Leader.APIURL != c.urls[0] {
		t.Fatalf("cluster status on a follower: %+v", st)
	}
	// Bad input is refused by the leader, and the follower relays the refusal.
	if status, out, _ := clusterCall(t, "POST", follower+"/v1/tenants/acme/crs", `{"title":""}`); status !=
		http.StatusBadRequest {
		t.Fatalf("bad write through a follower: %d %s", status, out)
	}
	// Removal, through a follower too.
	if status, out, _ := clusterCall(t, "POST", c.urls[1]+"/v1/cluster/remove",
		`{"id":"node-3"}`); status != 200 || strings.Contains(out, `"node-3",`) {
		t.Fatalf("remove through a follower: %d %s", status, out)
	}
}

// TestFollowerRefusesWithoutForwarding: with forwarding off, a follower answers 503 and
// names the leader.
func TestFollowerRefusesWithoutForwarding(t *testing.T) {
	c := newClusterAPI(t, true)
	status, out, hdr := clusterCall(t, "PUT", c.urls[1]+"/v1/tenants/acme/policy", clusterWriteBody)
	if status != http.StatusServiceUnavailable || hdr.Get(api.HeaderLeader) != c.urls[0] {
		t.Fatalf("write on a follower: %d %s %v", status, out, hdr)
	}
	var nl api.NotLeaderResponse
	if err := json.Unmarshal([]byte(out), &nl); err != nil || nl.Leader.ID != "node-1" ||
		nl.Leader.APIURL != c.urls[0] || !strings.Contains(nl.Error, "leader is node-1") {
		t.Fatalf("refusal body: %s", out)
	}
	// The snapshot endpoint is local. Raft refuses a snapshot (409) until the node has
	// applied the newest configuration entry, which a follower may not have done yet
	// right after the last join.
	testenv.WaitFor(t, 10*time.Second, "a snapshot on a follower", func() bool {
		status, out, _ := clusterCall(t, "POST", c.urls[1]+"/v1/cluster/snapshot", "")
		if status != 200 && !strings.Contains(out, "cannot take snapshot now") {
			t.Fatalf("snapshot on a follower: %d %s", status, out)
		}
		return status == 200
	})
	if status, _, _ := clusterCall(t, "PUT", c.urls[0]+"/v1/tenants/acme/policy", clusterWriteBody); status != 200 {
		t.Fatalf("write on the leader: %d", status)
	}
}
