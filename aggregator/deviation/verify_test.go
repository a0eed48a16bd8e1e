package deviation

import (
	"strings"
	"testing"
	"time"

	"github.com/fenceline/fenceline/aggregator/model"
	"github.com/fenceline/fenceline/shared/ruleset"
)

func TestTableRemovedIsOneDeviation(t *testing.T) {
	var changes []ruleset.Change
	for i := range 300 {
		changes = append(changes, ruleset.Change{Kind: ruleset.RuleRemoved, Family: "ip", Table: "big",
			Chain: "in", Position: i + 1, Rule: "ip saddr 192.0.2.1 drop"})
	}
	changes = append(changes,
		ruleset.Change{Kind: ruleset.ChainRemoved, Family: "ip", Table: "big", Chain: "in"},
		ruleset.Change{Kind: ruleset.ElementRemoved, Family: "ip", Table: "big", Set: "s", Element: "10.0.0.1"},
		ruleset.Change{Kind: ruleset.SetRemoved, Family: "ip", Table: "big", Set: "s"},
		ruleset.Change{Kind: ruleset.TableRemoved, Family: "ip", Table: "big"},
		ruleset.Change{Kind: ruleset.RuleAdded, Family: "inet", Table: "filter", Chain: "input",
			Position: 1, Rule: "tcp dport 23 accept"})
	res := Evaluate(Observation{Tenant: "acme", Device: &model.Device{Tenant: "acme", Device: "fw1"},
		EventID: "e1", Seq: 2, Observed: t0, Received: t0, Changes: changes, FirstDeviation: 1}, Input{})
	if len(res.Deviations) != 2 {
		t.Fatalf("%d deviations, want 2 (the table, the rule elsewhere)", len(res.Deviations))
	}
	d := res.Deviations[0]
	if d.Change != ruleset.TableRemoved || d.Table != "big" || !strings.Contains(d.Detail, "303 changes") {
		t.Fatalf("table deviation %+v", d)
	}
	for i := range 303 {
		if res.Outcomes[i].Deviation != d.ID || !res.Grouped(i) {
			t.Fatalf("change %d: outcome %+v", i, res.Outcomes[i])
		}
	}
}

func TestCloseWindow(t *testing.T) {
	landed := func(dev string) model.Observation {
		return model.Observation{Device: dev, Outcome: model.Landed, Event: "e", Seq: 3}
	}
	mk := func(obs ...[]model.Observation) *model.CR {
		c := &model.CR{Tenant: "acme", ID: "CR-1", State: model.CRApproved, Devices: []string{"a", "b"},
			WindowStart: t0, WindowEnd: t0.Add(time.Hour)}
		for _, o := range obs {
			c.Changes = append(c.Changes, model.PlannedChange{Action: model.ActionAdd,
				Chain: "inet filter input", Rule: "accept", Observations: o})
		}
		return c
	}
	tests := []struct {
		name    string
		cr      *model.CR
		outcome string
		state   model.CRState
		missing string // the devices the incomplete deviation names
	}{
		{"all landed", mk([]model.Observation{landed("a"), landed("b")}), model.Verified, model.CRVerified, ""},
		{"one device missing", mk([]model.Observation{landed("a")}), model.Incomplete, model.CRFailed, "b"},
		{"differs", mk([]model.Observation{landed("a"), {Device: "b", Outcome: model.LandedDifferently}}),
			model.Differs, model.CRFailed, ""},
		{"rolled back", mk([]model.Observation{landed("a"), {Device: "b", Outcome: model.RolledBack}}),
			RolledBackOutcome, model.CRFailed, ""},
		{"nothing", mk(nil, nil), model.Incomplete, model.CRFailed, "a,b"},
	}
	for _, tc := range tests {
		c, d := CloseWindow(tc.cr, t0.Add(time.Hour+time.Second), 7, time.Hour)
		if c.Verification.Outcome != tc.outcome || c.State != tc.state {
			t.Errorf("%s: %s %s, want %s %s", tc.name, c.Verification.Outcome, c.State, tc.outcome, tc.state)
		}
		if (d != nil) != (tc.missing != "") || d != nil && (d.Device != tc.missing || d.ID != "DEV-000007" ||
			d.Kind != model.IncompleteCR) {
			t.Errorf("%s: deviation %+v, want one naming %q", tc.name, d, tc.missing)
		}
		if tc.cr.State != model.CRApproved || tc.cr.Verification != nil {
			t.Errorf("%s: input CR modified", tc.name)
		}
	}
	if c, _ := CloseWindow(&model.CR{State: model.CRSubmitted}, t0, 1, time.Hour); c != nil {
		t.Error("a CR never approved was verified")
	}
}
