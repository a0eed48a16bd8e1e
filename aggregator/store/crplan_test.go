package store

import (
	"testing"

	"github.com/fenceline/fenceline/aggregator/model"
	"github.com/fenceline/fenceline/shared/ruleset"
)

// TestPlanWarning: each planned change is checked against the device's ruleset; what can
// apply as planned gets no warning.
func TestPlanWarning(t *testing.T) {
	rs := replayRuleset("tcp dport 22 accept", "tcp dport 80 accept")
	rs.Table("inet", "filter").Set("blocklist").Elements = []string{"192.0.2.7"}
	for _, tc := range []struct {
		p    model.PlannedChange
		want string
	}{
		{model.PlannedChange{Action: model.ActionAdd, Chain: "inet filter input", Position: 3}, ""},
		{model.PlannedChange{Action: model.ActionAdd, Chain: "inet filter input"}, ""},
		{model.PlannedChange{Action: model.ActionAdd, Chain: "inet filter input", Position: 4},
			"position 4 is past the end of chain inet filter input (2 rules)"},
		{model.PlannedChange{Action: model.ActionAdd, Chain: "inet filter inptu"},
			"chain inet filter inptu does not exist"},
		{model.PlannedChange{Action: model.ActionAdd, Chain: "ip filter input"},
			"table ip filter does not exist"},
		{model.PlannedChange{Action: model.ActionDelete, Chain: "inet filter input",
			Canonical: "tcp dport 80 accept"}, ""},
		{model.PlannedChange{Action: model.ActionDelete, Chain: "inet filter input",
			Canonical: "tcp dport 81 accept"}, `rule "tcp dport 81 accept" is not in chain inet filter input`},
		{model.PlannedChange{Action: model.ActionPolicy, Chain: "inet filter input", Policy: "drop"}, ""},
		{model.PlannedChange{Action: model.ActionPolicy, Chain: "ip legacy in", Policy: "drop"},
			"chain ip legacy in has no hook, so no policy"},
		{model.PlannedChange{Action: model.ActionAddElement, Set: "inet filter blocklist",
			Canonical: "192.0.2.8"}, ""},
		{model.PlannedChange{Action: model.ActionAddElement, Set: "inet filter blocklst",
			Canonical: "192.0.2.8"}, "set inet filter blocklst does not exist"},
		{model.PlannedChange{Action: model.ActionDeleteElement, Set: "inet filter blocklist",
			Canonical: "192.0.2.7"}, ""},
		{model.PlannedChange{Action: model.ActionDeleteElement, Set: "inet filter blocklist",
			Canonical: "192.0.2.9"}, "element 192.0.2.9 is not in set inet filter blocklist"},
		{model.PlannedChange{Action: model.ActionConfig},
			"the device has no configuration objects (rows, scalars or named objects) for a config change to touch"},
	} {
		if got := planWarning(rs, &tc.p); got != tc.want {
			t.Errorf("%+v: warning %q, want %q", tc.p, got, tc.want)
		}
	}
	// An SNMP device: rows and scalars.
	snmp := &ruleset.Ruleset{Tables: []*ruleset.Table{{Family: "snmp", Name: "ifTable",
		Objects: []*ruleset.Object{{Type: "ifEntry", Name: "2"}, {Type: "ifEntry", Name: "3"}}}}}
	for _, tc := range []struct {
		object, want string
	}{
		{"", ""},
		{"ifEntry 2", ""},
		{"ifEntry  3", ""},
		{"ifEntri 2", `object "ifEntri 2" is not on the device`},
		{"ifEntry 99", `object "ifEntry 99" is not on the device`},
	} {
		p := model.PlannedChange{Action: model.ActionConfig, Object: tc.object}
		if got := planWarning(snmp, &p); got != tc.want {
			t.Errorf("config %q: warning %q, want %q", tc.object, got, tc.want)
		}
	}
}
