package api_test

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/fenceline/fenceline/aggregator/api"
	"github.com/fenceline/fenceline/aggregator/internal/testenv"
	"github.com/fenceline/fenceline/aggregator/internal/teststore"
	"github.com/fenceline/fenceline/aggregator/model"
	"github.com/fenceline/fenceline/aggregator/store"
	"github.com/fenceline/fenceline/shared/event"
	"github.com/fenceline/fenceline/shared/ruleset"
)

const adminToken = "test-admin-token"

type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *clock) add(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

type env struct {
	t      *testing.T
	srv    *httptest.Server
	store  *store.Store
	clock  *clock
	enroll []store.EnrollResult
}

func newEnv(t *testing.T) *env {
	e := &env{t: t, store: teststore.NewStore(t), clock: &clock{t: time.Now().UTC()}}
	reg := prometheus.NewRegistry()
	reg.MustRegister(prometheus.NewGoCollector())
	h := api.New(api.Config{
		AdminToken: adminToken, BrokerURL: "tcp://127.0.0.1:1883", Gatherer: reg,
		Now: e.clock.now, IngestStats: func() any { return map[string]int{"received": 0} },
		OnEnroll: func(r store.EnrollResult) { e.enroll = append(e.enroll, r) },
	}, e.store, testenv.Logger(t))
	e.srv = httptest.NewServer(h)
	t.Cleanup(e.srv.Close)
	return e
}

// do sends a request and decodes a JSON answer into out (if not nil); it returns the
// status and, for errors, the message.
func (e *env) do(method, path, token string, body any, out any) (int, string) {
	e.t.Helper()
	var rd io.Reader
	switch b := body.(type) {
	case nil:
	case string:
		rd = strings.NewReader(b)
	default:
		raw, _ := json.Marshal(b)
		rd = bytes.NewReader(raw)
	}
	req, _ := http.NewRequest(method, e.srv.URL+path, rd)
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		e.t.Fatal(err)
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	if resp.StatusCode >= 300 {
		var er struct {
			Error string `json:"error"`
		}
		if json.Unmarshal(raw, &er) != nil || er.Error == "" {
			e.t.Fatalf("%s %s: %s without a JSON error: %s", method, path, resp.Status, raw)
		}
		return resp.StatusCode, er.Error
	}
	if out != nil {
		if err := json.Unmarshal(raw, out); err != nil {
			e.t.Fatalf("%s %s: decode %s: %v", method, path, raw, err)
		}
	}
	return resp.StatusCode, ""
}

func (e *env) admin(method, path string, body, out any) (int, string) {
	e.t.Helper()
	return e.do(method, path, adminToken, body, out)
}

func expect(t *testing.T, what string, status, want int, msg, wantMsg string) {
	t.Helper()
	if status != want || !strings.Contains(msg, wantMsg) {
		t.Fatalf("%s: %d %q, want %d containing %q", what, status, msg, want, wantMsg)
	}
}

func TestAuth(t *testing.T) {
	e := newEnv(t)
	st, msg := e.do("GET", "/v1/tenants/acme/crs", "", nil, nil)
	expect(t, "no token", st, 401, msg, "bearer token")
	st, msg = e.do("GET", "/v1/tenants/acme/crs", "wrong", nil, nil)
	expect(t, "wrong token", st, 401, msg, "bearer token")
	st, _ = e.admin("GET", "/v1/tenants/acme/crs", nil, nil)
	expect(t, "admin", st, 200, "", "")
	st, msg = e.admin("GET", "/v1/tenants/a%20b/crs", nil, nil)
	expect(t, "bad tenant", st, 400, msg, "invalid tenant")
	var h map[string]string
	st, _ = e.do("GET", "/healthz", "", nil, &h)
	if st != 200 || h["raft_state"] != "Leader" {
		t.Fatalf("healthz: %d %v", st, h)
	}
	st, msg = e.admin("GET", "/v1/nothing", nil, nil)
	expect(t, "unknown path", st, 404, msg, "no such endpoint")
	resp, err := http.Get(e.srv.URL + "/metrics")
	if err != nil || resp.StatusCode != 200 {
		t.Fatalf("metrics: %v %v", resp, err)
	}
	resp.Body.Close()
}

func TestEnrollment(t *testing.T) {
	e := newEnv(t)
	st, msg := e.admin("POST", "/v1/tenants/acme/enrollments", map[string]string{"device": "a/b"}, nil)
	expect(t, "bad device", st, 400, msg, "invalid device name")
	st, msg = e.admin("POST", "/v1/tenants/acme/enrollments",
		map[string]string{"device": "fw1", "ttl": "forever"}, nil)
	expect(t, "bad ttl", st, 400, msg, "invalid ttl")
	st, msg = e.admin("POST", "/v1/tenants/acme/enrollments", `{"device":"fw1","extra":1}`, nil)
	expect(t, "unknown field", st, 400, msg, "unknown field")

	var tok api.EnrollmentResponse
	st, _ = e.admin("POST", "/v1/tenants/acme/enrollments",
		map[string]string{"device": "fw1", "ttl": "1h"}, &tok)
	if st != 201 || tok.Tenant != "acme" || tok.Device != "fw1" || len(tok.Token) != 43 ||
		!tok.Expires.Equal(e.clock.now().Add(time.Hour)) {
		t.Fatalf("enrollment: %d %+v", st, tok)
	}

	a := testenv.NewAgent("acme", "fw1")
	pub := base64.StdEncoding.EncodeToString(a.Public())
	st, msg = e.do("POST", "/v1/enroll", "", map[string]string{"token": "nope", "public_key": pub}, nil)
	expect(t, "unknown token", st, 403, msg, "unknown")
	st, msg = e.do("POST", "/v1/enroll", "", map[string]string{"token": tok.Token, "public_key": "abc"}, nil)
	expect(t, "bad key", st, 400, msg, "public_key")
	var res api.EnrollResponse
	st, _ = e.do("POST", "/v1/enroll", "", map[string]string{"token": tok.Token, "public_key": pub}, &res)
	if st != 200 || res.KeyID != a.Signer.KeyID() || res.BrokerURL != "tcp://127.0.0.1:1883" ||
		res.Tenant != "acme" || res.Device != "fw1" || len(res.AckKey) != 44 {
		t.Fatalf("enroll: %d %+v", st, res)
	}
	st, msg = e.do("POST", "/v1/enroll", "", map[string]string{"token": tok.Token, "public_key": pub}, nil)
	expect(t, "reused token", st, 403, msg, "already used")
	// Agents enrolled before the response named the key ask for it, without a token.
	var ak api.AckKeyResponse
	if st, _ = e.do("GET", "/v1/ack-key", "", nil, &ak); st != 200 || ak.AckKey != res.AckKey {
		t.Fatalf("ack key: %d %+v, want the enrollment's %s", st, ak, res.AckKey)
	}

	// Expired: a token issued now, redeemed after its ttl.
	e.admin("POST", "/v1/tenants/acme/enrollments", map[string]string{"device": "fw1", "ttl": "1m"}, &tok)
	e.clock.add(2 * time.Minute)
	st, msg = e.do("POST", "/v1/enroll", "", map[string]string{"token": tok.Token, "public_key": pub}, nil)
	expect(t, "expired token", st, 403, msg, "expired")

	// Re-enrollment with a new key and a new token.
	b := testenv.NewAgent("acme", "fw1")
	e.admin("POST", "/v1/tenants/acme/enrollments", map[string]string{"device": "fw1"}, &tok)
	st, _ = e.do("POST", "/v1/enroll", "", map[string]string{
		"token": tok.Token, "public_key": base64.StdEncoding.EncodeToString(b.Public())}, &res)
	if st != 200 || res.KeyID != b.Signer.KeyID() {
		t.Fatalf("re-enroll: %d %+v", st, res)
	}
	if len(e.enroll) != 2 || e.enroll[0].Reenrolled || !e.enroll[1].Reenrolled {
		t.Fatalf("OnEnroll calls: %+v", e.enroll)
	}
	var devs []model.Device
	e.admin("GET", "/v1/tenants/acme/devices", nil, &devs)
	if len(devs) != 1 || devs[0].KeyID != b.Signer.KeyID() || devs[0].Enrollments != 2 {
		t.Fatalf("devices: %+v", devs)
	}
}

func crBody(now time.Time) map[string]any {
	return map[string]any{
		"title": "Open HTTPS", "requester": "alice", "device": "fw1",
		"window_start": now.Add(-time.Minute).Format(time.RFC3339),
		"window_end":   now.Add(time.Hour).Format(time.RFC3339),
		"changes": []map[string]string{
			{"action": "add", "chain": "inet filter input", "rule": "tcp dport 443 accept"},
		},
	}
}

func TestCRValidation(t *testing.T) {
	e := newEnv(t)
	now := e.clock.now()
	cases := []struct {
		name  string
		edit  func(map[string]any)
		wants string
	}{
		{"no title", func(b map[string]any) { delete(b, "title") }, "title is required"},
		{"no requester", func(b map[string]any) { b["requester"] = " " }, "requester is required"},
		{"bad device", func(b map[string]any) { b["device"] = "" }, "device"},
		{"bad start", func(b map[string]any) { b["window_start"] = "tomorrow" }, "window_start"},
		{"no end", func(b map[string]any) { delete(b, "window_end") }, "window_end is required"},
		{"end before start", func(b map[string]any) {
			b["window_end"] = now.Add(-time.Hour).Format(time.RFC3339)
		}, "window_end must be after"},
		{"no changes", func(b map[string]any) { b["changes"] = []any{} }, "at least one"},
		{"bad action", func(b map[string]any) {
			b["changes"] = []map[string]string{{"action": "replace", "chain": "inet filter input", "rule": "accept"}}
		}, "action"},
		{"bad chain", func(b map[string]any) {
			b["changes"] = []map[string]string{{"action": "add", "chain": "filter input", "rule": "accept"}}
		}, "family table chain"},
		{"no rule", func(b map[string]any) {
			b["changes"] = []map[string]string{{"action": "add", "chain": "ip filter input"}}
		}, "rule is empty"},
		{"bad id", func(b map[string]any) { b["id"] = "CR 1" }, "id"},
	}
	for _, tc := range cases {
		b := crBody(now)
		tc.edit(b)
		st, msg := e.admin("POST", "/v1/tenants/acme/crs", b, nil)
		expect(t, tc.name, st, 400, msg, tc.wants)
	}
	st, msg := e.admin("POST", "/v1/tenants/acme/crs", "{not json", nil)
	expect(t, "bad json", st, 400, msg, "invalid JSON")
	st, msg = e.admin("POST", "/v1/tenants/acme/crs", "", nil)
	expect(t, "empty body", st, 400, msg, "empty request body")
}

// TestCRFlow creates and approves a CR over the API, sends events into the store as
// ingest would, and reads the outcome over the API.
func TestCRFlow(t *testing.T) {
	e := newEnv(t)
	now := e.clock.now()
	a := testenv.NewAgent("acme", "fw1")
	teststore.Enroll(t, e.store, a) // CRs are refused for devices not enrolled
	var cr model.CR
	st, _ := e.admin("POST", "/v1/tenants/acme/crs", crBody(now), &cr)
	if st != 201 || cr.ID != "CR-000001" || cr.State != model.CRSubmitted {
		t.Fatalf("create: %d %+v", st, cr)
	}
	b := crBody(now)
	b["id"] = "CHG-42"
	st, _ = e.admin("POST", "/v1/tenants/acme/crs", b, &cr)
	if st != 201 || cr.ID != "CHG-42" {
		t.Fatalf("create with id: %d %+v", st, cr)
	}
	st, msg := e.admin("POST", "/v1/tenants/acme/crs", b, nil)
	expect(t, "duplicate id", st, 409, msg, "already exists")

	st, msg = e.admin("POST", "/v1/tenants/acme/crs/CR-000001/approve", map[string]string{"approver": "alice"}, nil)
	expect(t, "self approval", st, 403, msg, "own change request")
	st, msg = e.admin("POST", "/v1/tenants/acme/crs/CR-000001/approve", map[string]string{}, nil)
	expect(t, "no approver", st, 400, msg, "approver is required")
	st, msg = e.admin("POST", "/v1/tenants/acme/crs/CR-9/approve", map[string]string{"approver": "bob"}, nil)
	expect(t, "unknown CR", st, 404, msg, "not found")
	st, _ = e.admin("POST", "/v1/tenants/acme/crs/CR-000001/approve", map[string]string{"approver": "bob"}, &cr)
	if st != 200 || cr.State != model.CRApproved || len(cr.Approvals) != 1 {
		t.Fatalf("approve: %d %+v", st, cr)
	}
	st, msg = e.admin("POST", "/v1/tenants/acme/crs/CR-000001/approve", map[string]string{"approver": "bob"}, nil)
	expect(t, "approve twice", st, 409, msg, "only a submitted one")

	ctx := context.Background()
	for _, env := range [][]byte{
		first(a.Next(event.Baseline)),
		first(a.Next(event.Change, ruleset.Change{Kind: ruleset.RuleAdded, Family: "inet",
			Table: "filter", Chain: "input", Position: 2, Rule: "tcp dport 443 accept"})),
		first(a.Next(event.Change, ruleset.Change{Kind: ruleset.RuleAdded, Family: "inet",
			Table: "filter", Chain: "input", Position: 3, Rule: "tcp dport 23 accept"})),
		first(a.Next(event.Heartbeat)),
	} {
		if _, err := e.store.AppendEvent(ctx, "acme", "fw1", env, time.Now()); err != nil {
			t.Fatal(err)
		}
	}
	e.admin("GET", "/v1/tenants/acme/crs/CR-000001", nil, &cr)
	if cr.State != model.CRImplemented {
		t.Fatalf("CR state %s, want implemented", cr.State)
	}
	var crs []model.CR
	e.admin("GET", "/v1/tenants/acme/crs", nil, &crs)
	if len(crs) != 2 || crs[0].ID != "CR-000001" || crs[1].ID != "CHG-42" {
		t.Fatalf("CR list: %+v", crs)
	}

	var devs []model.Deviation
	e.admin("GET", "/v1/tenants/acme/deviations?device=fw1&state=open", nil, &devs)
	if len(devs) != 1 || devs[0].Rule != "tcp dport 23 accept" || devs[0].Chain != "input" ||
		devs[0].Change != ruleset.RuleAdded || devs[0].Seq != 3 {
		t.Fatalf("deviations: %+v", devs)
	}
	e.admin("GET", "/v1/tenants/acme/deviations?device=fw2", nil, &devs)
	if len(devs) != 0 {
		t.Fatalf("deviations of fw2: %+v", devs)
	}
	st, msg = e.admin("GET", "/v1/tenants/acme/deviations?state=closed", nil, nil)
	expect(t, "bad state filter", st, 400, msg, "invalid state")
	e.admin("GET", "/v1/tenants/globex/deviations", nil, &devs)
	if len(devs) != 0 {
		t.Fatalf("another tenant sees deviations: %+v", devs)
	}

	var evs []model.Event
	e.admin("GET", "/v1/tenants/acme/devices/fw1/events", nil, &evs)
	if len(evs) != 4 || evs[0].Kind != event.Baseline || evs[3].Kind != event.Heartbeat ||
		evs[0].Envelope != nil {
		t.Fatalf("history: %+v", evs)
	}
	e.admin("GET", "/v1/tenants/acme/devices/fw1/events?limit=2&envelopes=true", nil, &evs)
	if len(evs) != 2 || evs[0].Seq != 3 || evs[1].Seq != 4 || len(evs[1].Envelope) == 0 {
		t.Fatalf("history limit 2: %+v", evs)
	}
	e.admin("GET", "/v1/tenants/acme/devices/fw1/events?kind=change", nil, &evs)
	if len(evs) != 2 {
		t.Fatalf("history of changes: %d events", len(evs))
	}
	st, msg = e.admin("GET", "/v1/tenants/acme/devices/fw1/events?limit=-1", nil, nil)
	expect(t, "bad limit", st, 400, msg, "invalid limit")
	st, msg = e.admin("GET", "/v1/tenants/acme/devices/fw9/events", nil, nil)
	expect(t, "unknown device", st, 404, msg, "not found")

	var rs ruleset.Ruleset
	if st, _ := e.admin("GET", "/v1/tenants/acme/devices/fw1/ruleset", nil, &rs); st != 200 {
		t.Fatalf("ruleset: %d", st)
	}
	var stats struct {
		Store  store.Stats    `json:"store"`
		Ingest map[string]int `json:"ingest"`
	}
	e.admin("GET", "/v1/stats", nil, &stats)
	if stats.Store.EventsAccepted != 4 || stats.Store.DeviationsRaised != 1 || stats.Ingest == nil {
		t.Fatalf("stats: %+v", stats)
	}
}

func first(b []byte, _ string) []byte { return b }

// TestDeviationFilters: a misspelt filter is an error, not an empty list that reads as
// "all clear".
func TestDeviationFilters(t *testing.T) {
	e := newEnv(t)
	st, msg := e.admin("GET", "/v1/tenants/acme/deviations?kind=unauthorised", nil, nil)
	expect(t, "unknown kind", st, http.StatusBadRequest, msg, "invalid kind")
	st, msg = e.admin("GET", "/v1/tenants/acme/deviations?state=closed", nil, nil)
	expect(t, "unknown state", st, http.StatusBadRequest, msg, "invalid state")
	var devs []any
	st, msg = e.admin("GET", "/v1/tenants/acme/deviations?kind=unauthorized", nil, &devs)
	expect(t, "known kind", st, http.StatusOK, msg, "")
}
