package e2e

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/fenceline/fenceline/aggregator/model"
)

// TestChangeManagementCLI drives change management as an operator does, with fencectl
// against a running aggregator and a real agent watching a namespace: a policy with
// members and two approvals, a tagged device, a CR with its window in local time,
// approvals (the requester's refused), the change made with nft, rule provenance,
// and a deviation acknowledged and resolved.
func TestChangeManagementCLI(t *testing.T) {
	l := newLab(t)
	const tenant, device = "acme", "fw-cli"
	ns, err := l.Netns("fl-cmcli")
	check(t, err)
	base := filepath.Join(t.TempDir(), "base.nft")
	check(t, os.WriteFile(base, []byte(cmBase), 0o600))
	nft(t, ns, "-f", base)
	a, err := l.Aggregator("aggregator", "")
	check(t, err)
	_, err = l.Agent(a, tenant, device, ns)
	check(t, err)
	waitFor(t, 30*time.Second, "baseline", func() (bool, string) {
		var h []historyEntry
		if err := a.CtlJSON(tenant, &h, "device", "history", device); err != nil {
			return false, err.Error()
		}
		return len(h) > 0, fmt.Sprintf("%d events", len(h))
	})

	policy := filepath.Join(t.TempDir(), "policy.json")
	check(t, os.WriteFile(policy, []byte(`{"time_zone": "Europe/Berlin",
		"approvals": {"normal": {"count": 2, "roles": ["approver"]}, "emergency": {"count": 1},
		              "standard": {"count": 1}},
		"emergency_review": "72h", "silence_after": "10m",
		"members": [{"name": "alice", "roles": ["requester"]}, {"name": "bob", "roles": ["approver"]},
		            {"name": "carol", "roles": ["approver"]}, {"name": "dave", "roles": ["auditor"]}]}`), 0o600))
	var pol model.Policy
	check(t, a.CtlJSON(tenant, &pol, "policy", "set", "--file", policy, "--by", "admin"))
	if pol.TimeZone != "Europe/Berlin" || pol.UpdatedBy != "admin" {
		t.Fatalf("policy %+v", pol)
	}
	var dev model.Device
	check(t, a.CtlJSON(tenant, &dev, "device", "tag", device, "--tag", "edge,branch"))
	if strings.Join(dev.Tags, ",") != "branch,edge" {
		t.Fatalf("tags %v", dev.Tags)
	}

	// A parse error names the position.
	_, err = a.Ctl(tenant, "cr", "create", "--tag", "edge", "--title", "bad", "--requester", "alice",
		"--window-start", "now", "--window-end", "+1h", "--add", "inet filter input|tcp dport 443 acept")
	if err == nil || !strings.Contains(err.Error(), "column 15") || !strings.Contains(err.Error(), "^^^^^") {
		t.Fatalf("bad rule: %v", err)
	}

	berlin, _ := time.LoadLocation("Europe/Berlin")
	now := time.Now().In(berlin)
	start, end := now.Add(-time.Minute).Format("2006-01-02T15:04"), now.Add(time.Hour).Format("2006-01-02T15:04")
	var cr model.CR
	check(t, a.CtlJSON(tenant, &cr, "cr", "create", "--tag", "edge", "--title", "Open HTTPS",
		"--requester", "alice", "--justification", "web shop", "--rollback", "delete the rule",
		"--window-start", start, "--window-end", end, "--add", "inet filter input|tcp dport 443 accept"))
	if cr.TimeZone != "Europe/Berlin" || cr.WindowStart.In(berlin).Format("2006-01-02T15:04") != start ||
		len(cr.Devices) != 1 || cr.Changes[0].Canonical != "tcp dport 443 accept" {
		t.Fatalf("created %+v", cr)
	}
	if _, err := a.Ctl(tenant, "cr", "approve", cr.ID, "--by", "alice"); err == nil ||
		!strings.Contains(err.Error(), "own change request") {
		t.Fatalf("self approval: %v", err)
	}
	if _, err := a.Ctl(tenant, "cr", "approve", cr.ID, "--by", "dave"); err == nil ||
		!strings.Contains(err.Error(), "roles") {
		t.Fatalf("approval by an auditor: %v", err)
	}
	check(t, a.CtlJSON(tenant, &cr, "cr", "approve", cr.ID, "--by", "bob", "--why", "ok"))
	if cr.State != model.CRSubmitted {
		t.Fatalf("after one of two approvals: %s", cr.State)
	}
	check(t, a.CtlJSON(tenant, &cr, "cr", "approve", cr.ID, "--by", "carol"))
	if cr.State != model.CRApproved || len(cr.Approvals) != 2 || cr.Approvals[1].Role != "approver" {
		t.Fatalf("after two approvals: %+v", cr)
	}

	nft(t, ns, "add", "rule", "inet", "filter", "input", "tcp", "dport", "443", "accept")
	waitFor(t, 15*time.Second, "CR implemented", func() (bool, string) {
		check(t, a.CtlJSON(tenant, &cr, "cr", "show", cr.ID))
		return cr.State == model.CRImplemented, string(cr.State)
	})
	nft(t, ns, "add", "rule", "inet", "filter", "input", "tcp", "dport", "23", "accept")
	var devs []model.Deviation
	waitFor(t, 15*time.Second, "unauthorized rule", func() (bool, string) {
		check(t, a.CtlJSON(tenant, &devs, "deviations", "--device", device, "--kind", "unauthorized"))
		return len(devs) == 1, fmt.Sprintf("%d deviations", len(devs))
	})

	var rules []model.RuleProvenance
	check(t, a.CtlJSON(tenant, &rules, "rules", "--device", device))
	got := map[string]string{}
	for _, r := range rules {
		got[r.Rule] = r.Source + " " + r.CR + r.Deviation
	}
	for rule, want := range map[string]string{
		"tcp dport 22 accept":  "baseline ",
		"tcp dport 443 accept": "cr " + cr.ID,
		"tcp dport 23 accept":  "unauthorized " + devs[0].ID,
	} {
		if got[rule] != want {
			t.Errorf("rule %q: %q, want %q", rule, got[rule], want)
		}
	}
	table, err := a.Ctl(tenant, "rules", "--device", device)
	check(t, err)
	if !strings.Contains(string(table), devs[0].ID+" (open)") {
		t.Errorf("rules table:\n%s", table)
	}

	var d model.Deviation
	check(t, a.CtlJSON(tenant, &d, "deviation", "acknowledge", devs[0].ID, "--by", "bob", "--why", "checking"))
	if d.State != model.DeviationAcknowledged {
		t.Fatalf("acknowledged: %+v", d)
	}
	if _, err := a.Ctl(tenant, "deviation", "resolve", devs[0].ID, "--by", "bob", "--why", "x",
		"--resolution", "it_is_fine"); err == nil {
		t.Fatal("unknown resolution accepted")
	}
	check(t, a.CtlJSON(tenant, &d, "deviation", "resolve", devs[0].ID, "--by", "bob",
		"--why", "lab access until Friday", "--resolution", "accepted_risk"))
	if d.State != model.DeviationResolved || d.Resolution != model.ResolvedAcceptedRisk || len(d.History) != 2 {
		t.Fatalf("resolved: %+v", d)
	}
	show, err := a.Ctl(tenant, "deviation", "show", devs[0].ID)
	check(t, err)
	if !strings.Contains(string(show), "accepted_risk") || !strings.Contains(string(show), "lab access") {
		t.Errorf("deviation show:\n%s", show)
	}

	// Every event kind is a valid history filter.
	var h []historyEntry
	check(t, a.CtlJSON(tenant, &h, "device", "history", device, "--kind", "resync,fold,baseline"))
	if len(h) != 1 || h[0].Kind != "baseline" {
		t.Errorf("history of resync, fold and baseline events: %+v", h)
	}
	out, err := a.Ctl(tenant, "cr", "show", cr.ID)
	check(t, err)
	for _, want := range []string{"(Europe/Berlin)", "bob (approver)", "landed", "Open HTTPS"} {
		if !strings.Contains(string(out), want) {
			t.Errorf("cr show lacks %q:\n%s", want, out)
		}
	}
}
