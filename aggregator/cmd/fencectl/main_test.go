package main

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/fenceline/fenceline/aggregator/api"
	"github.com/fenceline/fenceline/aggregator/internal/testenv"
	"github.com/fenceline/fenceline/aggregator/internal/teststore"
	"github.com/fenceline/fenceline/aggregator/model"
	"github.com/fenceline/fenceline/shared/event"
	"github.com/fenceline/fenceline/shared/ruleset"
)

type ctl struct {
	t      *testing.T
	server string
	token  string
}

// run runs fencectl with the global flags for the test server and tenant acme.
func (c *ctl) run(args ...string) (string, error) {
	c.t.Helper()
	var out, errOut bytes.Buffer
	all := append([]string{"--server", c.server, "--token", c.token, "--tenant", "acme"}, args...)
	err := run(context.Background(), all, &out, &errOut)
	return out.String(), err
}

func (c *ctl) ok(args ...string) string {
	c.t.Helper()
	out, err := c.run(args...)
	if err != nil {
		c.t.Fatalf("fencectl %s: %v", strings.Join(args, " "), err)
	}
	return out
}

func (c *ctl) json(v any, args ...string) {
	c.t.Helper()
	out := c.ok(append(args, "-o", "json")...)
	if err := json.Unmarshal([]byte(out), v); err != nil {
		c.t.Fatalf("fencectl %s: %v\n%s", strings.Join(args, " "), err, out)
	}
}

func TestFencectl(t *testing.T) {
	st := teststore.NewStore(t)
	srv := httptest.NewServer(api.New(api.Config{AdminToken: "secret", BrokerURL: "tcp://b:1883"},
		st, testenv.Logger(t)))
	t.Cleanup(srv.Close)
	c := &ctl{t: t, server: srv.URL, token: "secret"}

	// enroll prints the bare token in table mode; an agent redeems it.
	tok := strings.TrimSpace(c.ok("enroll", "--device", "fw1", "--ttl", "1h"))
	a := testenv.NewAgent("acme", "fw1")
	body, _ := json.Marshal(api.EnrollRequest{Token: tok,
		PublicKey: base64.StdEncoding.EncodeToString(a.Public())})
	resp, err := http.Post(srv.URL+"/v1/enroll", "application/json", bytes.NewReader(body))
	if err != nil || resp.StatusCode != 200 {
		t.Fatalf("enroll with the printed token: %v %v", resp.Status, err)
	}
	resp.Body.Close()
	var enr api.EnrollmentResponse
	c.json(&enr, "enroll", "--device", "fw2")
	if enr.Token == "" || enr.Device != "fw2" {
		t.Fatalf("enroll -o json: %+v", enr)
	}

	var cr model.CR
	c.json(&cr, "cr", "create", "--device", "fw1", "--title", "Open HTTPS", "--requester", "alice",
		"--window-start", "-1m", "--window-end", "+1h",
		"--add", `ip filter TCP|iifname "br0" tcp dport 443 counter accept`,
		"--delete", "ip filter input|tcp dport 80 accept")
	if cr.ID != "CR-000001" || cr.State != model.CRSubmitted || len(cr.Changes) != 2 ||
		cr.Changes[0].Action != "add" || cr.Changes[1].Action != "delete" ||
		cr.Changes[0].Rule != `iifname "br0" tcp dport 443 counter accept` {
		t.Fatalf("cr create: %+v", cr)
	}
	// The same from a file, with the id given.
	file := filepath.Join(t.TempDir(), "cr.json")
	now := time.Now().UTC()
	os.WriteFile(file, []byte(`{"id":"CHG-7","title":"t","requester":"carol","device":"fw1",
		"window_start":"`+now.Format(time.RFC3339)+`","window_end":"`+now.Add(time.Hour).Format(time.RFC3339)+`",
		"changes":[{"action":"add","chain":"ip filter input","rule":"tcp dport 25 accept"}]}`), 0o600)
	out := c.ok("cr", "create", "--file", file)
	if !strings.Contains(out, "CHG-7") || !strings.Contains(out, "tcp dport 25 accept") {
		t.Fatalf("cr create --file:\n%s", out)
	}

	if _, err := c.run("cr", "approve", "CR-000001", "--approver", "alice"); err == nil ||
		!strings.Contains(err.Error(), "own change request") || !strings.Contains(err.Error(), "403") {
		t.Fatalf("self approval: %v", err)
	}
	c.json(&cr, "cr", "approve", "CR-000001", "--approver", "bob")
	if cr.State != model.CRApproved {
		t.Fatalf("approve: %+v", cr)
	}

	for _, env := range [][]byte{
		first(a.Next(event.Baseline)),
		first(a.Next(event.Change,
			ruleset.Change{Kind: ruleset.RuleAdded, Family: "ip", Table: "filter", Chain: "TCP",
				Position: 1, Rule: `iifname "br0" tcp dport 443 counter accept`},
			ruleset.Change{Kind: ruleset.RuleAdded, Family: "ip", Table: "filter", Chain: "input",
				Position: 5, Rule: "tcp dport 23 accept"})),
	} {
		if _, err := st.AppendEvent(context.Background(), "acme", "fw1", env, time.Now()); err != nil {
			t.Fatal(err)
		}
	}

	var devs []model.Deviation
	c.json(&devs, "deviations", "--device", "fw1", "--state", "open")
	if len(devs) != 1 || devs[0].Rule != "tcp dport 23 accept" || devs[0].Change != "rule_added" {
		t.Fatalf("deviations: %+v", devs)
	}
	out = c.ok("deviations")
	lines := strings.Split(strings.TrimSpace(out), "\n")
	if len(lines) != 2 || !strings.HasPrefix(lines[0], "ID ") ||
		!strings.Contains(lines[1], "unauthorized") || !strings.Contains(lines[1], "tcp dport 23 accept") {
		t.Fatalf("deviations table:\n%s", out)
	}
	// Columns line up: every row has the CHANGE column at the same offset.
	if strings.Index(lines[0], "CHANGE") != strings.Index(lines[1], "rule_added") {
		t.Fatalf("deviations table not aligned:\n%s", out)
	}

	out = c.ok("cr", "show", "CR-000001")
	if !strings.Contains(out, "STATE        approved") || !strings.Contains(out, "seq 2") {
		t.Fatalf("cr show:\n%s", out)
	}
	var crs []model.CR
	c.json(&crs, "cr", "list")
	if len(crs) != 2 {
		t.Fatalf("cr list: %+v", crs)
	}
	if out := c.ok("cr", "list"); !strings.Contains(out, "1/2") {
		t.Fatalf("cr list table:\n%s", out)
	}

	var hist []struct {
		Seq  string `json:"seq"`
		Kind string `json:"kind"`
	}
	c.json(&hist, "device", "history", "fw1")
	if len(hist) != 2 || hist[0].Kind != "baseline" || hist[1].Seq != "2" {
		t.Fatalf("history: %+v", hist)
	}
	out = c.ok("device", "history", "fw1")
	if !strings.Contains(out, "ip filter TCP #1") || strings.Count(out, "\n") != 4 {
		t.Fatalf("history table:\n%s", out)
	}
	var dl []model.Device
	c.json(&dl, "device", "list")
	if len(dl) != 1 || dl[0].HeadSeq != 2 { // fw2 has a token but did not enroll
		t.Fatalf("device list: %+v", dl)
	}
	if out := c.ok("device", "list"); !strings.Contains(out, "fw1") {
		t.Fatalf("device list table:\n%s", out)
	}

	// A plan that cannot apply to the device as it last reported is created with a warning
	// on stderr (a typo in the table name, a position past the end of the chain).
	var stdout, stderr bytes.Buffer
	err = run(context.Background(), []string{"--server", c.server, "--token", c.token,
		"--tenant", "acme", "cr", "create", "--device", "fw1", "--title", "typo",
		"--requester", "alice", "--window-start", "now", "--window-end", "+1h",
		"--add", "ip filtre input|tcp dport 25 accept", "--add", "ip filter TCP#9|tcp dport 26 accept"},
		&stdout, &stderr)
	if err != nil || !strings.Contains(stdout.String(), "CR-000003") ||
		!strings.Contains(stderr.String(), "warning: fw1: change 1: table ip filtre does not exist") ||
		!strings.Contains(stderr.String(), "warning: fw1: change 2: position 9 is past the end of chain ip filter TCP (1 rule)") {
		t.Fatalf("cr create with an unreachable plan: %v\nstdout:\n%s\nstderr:\n%s", err, stdout.String(), stderr.String())
	}
	var created api.CRCreated
	c.json(&created, "cr", "create", "--device", "fw1", "--title", "typo", "--requester", "alice",
		"--window-start", "now", "--window-end", "+1h", "--add", "ip filtre input|tcp dport 25 accept")
	if created.CR == nil || created.ID != "CR-000004" || len(created.Warnings) != 1 ||
		!strings.Contains(created.Warnings[0], "table ip filtre does not exist") {
		t.Fatalf("cr create -o json: %+v", created)
	}
	// Approval checks the plan again, against the devices it resolved.
	stdout.Reset()
	stderr.Reset()
	err = run(context.Background(), []string{"--server", c.server, "--token", c.token,
		"--tenant", "acme", "cr", "approve", "CR-000004", "--by", "bob"}, &stdout, &stderr)
	if err != nil || !strings.Contains(stdout.String(), "approved") ||
		!strings.Contains(stderr.String(), "warning: fw1: change 1: table ip filtre does not exist") {
		t.Fatalf("cr approve with an unreachable plan: %v\nstdout:\n%s\nstderr:\n%s", err,
			stdout.String(), stderr.String())
	}

	// A tenant with nothing (a typo) reads as empty, with a note on stderr; a known one
	// has no note.
	stdout.Reset()
	stderr.Reset()
	err = run(context.Background(), []string{"--server", c.server, "--token", c.token,
		"--tenant", "acm", "deviations"}, &stdout, &stderr)
	if err != nil || !strings.Contains(stderr.String(), `note: tenant "acm" has no devices`) {
		t.Fatalf("unknown tenant: %v\nstdout:\n%s\nstderr:\n%s", err, stdout.String(), stderr.String())
	}
	stderr.Reset()
	if err := run(context.Background(), []string{"--server", c.server, "--token", c.token,
		"--tenant", "acme", "deviations"}, &stdout, &stderr); err != nil || stderr.Len() != 0 {
		t.Fatalf("known tenant: %v, stderr %q", err, stderr.String())
	}

	// Errors are clear.
	if _, err := c.run("cr", "show", "CR-404"); err == nil || !strings.Contains(err.Error(), "404") {
		t.Fatalf("missing CR: %v", err)
	}
	if _, err := c.run("cr", "create", "--add", "no-separator"); err == nil ||
		!strings.Contains(err.Error(), "family table chain|rule") {
		t.Fatalf("bad --add: %v", err)
	}
	if _, err := c.run("deviations", "-o", "yaml"); err == nil {
		t.Fatal("-o yaml accepted")
	}
	var out2, errOut bytes.Buffer
	err = run(context.Background(), []string{"--server", srv.URL, "--token", "secret", "cr", "list"},
		&out2, &errOut)
	if err == nil || !strings.Contains(err.Error(), "no tenant") {
		t.Fatalf("no tenant: %v", err)
	}
}

func first(b []byte, _ string) []byte { return b }

// TestDecodeStrict: a misspelt field in a policy or CR file is an error, not dropped.
func TestDecodeStrict(t *testing.T) {
	var req api.PolicyRequest
	err := decodeStrict([]byte(`{"time_zone":"UTC","templates":[{"name":"bl","where":"x"}]}`), &req)
	if err == nil || !strings.Contains(err.Error(), `"where"`) {
		t.Fatalf("unknown field: %v", err)
	}
	if err := decodeStrict([]byte(`{"time_zone":"UTC"} {}`), &req); err == nil {
		t.Fatal("trailing data accepted")
	}
	if err := decodeStrict([]byte(`{"time_zone":"UTC","silence_after":"5m"}`), &req); err != nil ||
		req.SilenceAfter != "5m" {
		t.Fatalf("good file: %v %+v", err, req)
	}
}

func TestCommitterText(t *testing.T) {
	for _, c := range []struct {
		c    *event.Committer
		want string
	}{
		{nil, "-"},
		{&event.Committer{}, "-"},
		{&event.Committer{PID: 4242, Comm: "nft"}, "nft[4242]"},
		{&event.Committer{PID: 4242, Comm: "nft", LoginUID: "1000"}, "nft[4242] 1000"},
		{&event.Committer{LoginUID: "carol"}, "carol"},                            // an SNMP trap's user
		{&event.Committer{Comm: "junoscript", LoginUID: "bob"}, "junoscript bob"}, // and its source
	} {
		if got := committerText(c.c); got != c.want {
			t.Errorf("%+v: %q, want %q", c.c, got, c.want)
		}
	}
}
