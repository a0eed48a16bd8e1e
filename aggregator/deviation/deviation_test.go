package deviation

import (
	"reflect"
	"testing"
	"time"

	"github.com/fenceline/fenceline/aggregator/model"
	"github.com/fenceline/fenceline/shared/ruleset"
)

var t0 = time.Date(2025, 6, 1, 10, 0, 0, 0, time.UTC)

func cr(id string, state model.CRState, device string, changes ...model.PlannedChange) *model.CR {
	return &model.CR{
		Tenant: "acme", ID: id, Device: device, Devices: []string{device}, State: state,
		WindowStart: t0, WindowEnd: t0.Add(time.Hour), Changes: changes,
	}
}

func add(chain, rule string) model.PlannedChange {
	return model.PlannedChange{Action: model.ActionAdd, Chain: chain, Rule: rule}
}

func del(chain, rule string) model.PlannedChange {
	return model.PlannedChange{Action: model.ActionDelete, Chain: chain, Rule: rule}
}

func ruleChange(kind ruleset.ChangeKind, fam, table, chain, rule string) ruleset.Change {
	return ruleset.Change{Kind: kind, Family: fam, Table: table, Chain: chain, Position: 1, Rule: rule}
}

var (
	add443 = add("inet filter input", "tcp dport 443 accept")
	del80  = del("inet filter input", "tcp dport 80 accept")
)

func approved(id string, changes ...model.PlannedChange) *model.CR {
	return cr(id, model.CRApproved, "fw1", changes...)
}

func TestEvaluate(t *testing.T) {
	added := ruleChange(ruleset.RuleAdded, "inet", "filter", "input", "tcp dport 443 accept")
	removed := ruleChange(ruleset.RuleRemoved, "inet", "filter", "input", "tcp dport 80 accept")
	tests := []struct {
		name        string
		crs         []*model.CR
		observed    time.Time
		changes     []ruleset.Change
		deviations  int
		kind        model.DeviationKind // of every deviation; default unauthorized
		implemented []string            // ids of updated CRs that are implemented
		updated     int
	}{
		{
			name:       "no CR",
			changes:    []ruleset.Change{added},
			deviations: 1,
		},
		{
			name:        "approved CR in window",
			crs:         []*model.CR{approved("CR-1", add443)},
			changes:     []ruleset.Change{added},
			implemented: []string{"CR-1"},
			updated:     1,
		},
		{
			name:        "whitespace differs",
			crs:         []*model.CR{approved("CR-1", add(" inet  filter\tinput ", "tcp  dport 443\taccept "))},
			changes:     []ruleset.Change{added},
			implemented: []string{"CR-1"},
			updated:     1,
		},
		{
			name:       "submitted, not approved",
			crs:        []*model.CR{cr("CR-1", model.CRSubmitted, "fw1", add443)},
			changes:    []ruleset.Change{added},
			deviations: 1, kind: model.Unapproved,
		},
		{
			name:       "other device",
			crs:        []*model.CR{cr("CR-1", model.CRApproved, "fw2", add443)},
			changes:    []ruleset.Change{added},
			deviations: 1,
		},
		{
			name:       "before the window",
			crs:        []*model.CR{approved("CR-1", add443)},
			observed:   t0.Add(-time.Second),
			changes:    []ruleset.Change{added},
			deviations: 1, kind: model.OutOfWindow,
		},
		{
			name:       "after the window",
			crs:        []*model.CR{approved("CR-1", add443)},
			observed:   t0.Add(time.Hour + time.Nanosecond),
			changes:    []ruleset.Change{added},
			deviations: 1, kind: model.OutOfWindow,
		},
		{
			name:        "window end is inclusive",
			crs:         []*model.CR{approved("CR-1", add443)},
			observed:    t0.Add(time.Hour),
			changes:     []ruleset.Change{added},
			implemented: []string{"CR-1"},
			updated:     1,
		},
		{
			name:       "wrong action",
			crs:        []*model.CR{approved("CR-1", del("inet filter input", "tcp dport 443 accept"))},
			changes:    []ruleset.Change{added},
			deviations: 1,
		},
		{
			name:       "other chain",
			crs:        []*model.CR{approved("CR-1", add("ip filter input", "tcp dport 443 accept"))},
			changes:    []ruleset.Change{added},
			deviations: 1,
		},
		{
			name:       "other rule",
			crs:        []*model.CR{approved("CR-1", add("inet filter input", "tcp dport 8443 accept"))},
			changes:    []ruleset.Change{added},
			deviations: 1, kind: model.DiffersFromSpec, updated: 1,
		},
		{
			name: "partly implemented stays approved",
			crs: []*model.CR{cr("CR-1", model.CRApproved, "fw1",
				add443, del80)},
			changes: []ruleset.Change{added},
			updated: 1,
		},
		{
			name: "add and delete in one event",
			crs: []*model.CR{cr("CR-1", model.CRApproved, "fw1",
				add443, del80)},
			changes:     []ruleset.Change{added, removed},
			implemented: []string{"CR-1"},
			updated:     1,
		},
		{
			name:       "a planned change covers one observed change",
			crs:        []*model.CR{approved("CR-1", add443)},
			changes:    []ruleset.Change{added, added},
			deviations: 1, implemented: []string{"CR-1"}, updated: 1,
		},
		{
			name: "already observed change is not covered again",
			crs: []*model.CR{func() *model.CR {
				c := cr("CR-1", model.CRImplemented, "fw1", add443)
				c.Changes[0].ObservedEvent = "e0"
				c.Changes[0].Observations = []model.Observation{{Device: "fw1", Outcome: model.Landed, Event: "e0"}}
				return c
			}()},
			changes:    []ruleset.Change{added},
			deviations: 1,
		},
		{
			name: "set element and table changes are unauthorized",
			changes: []ruleset.Change{
				{Kind: ruleset.ElementAdded, Family: "inet", Table: "filter", Set: "allow", Element: "10.0.0.1"},
				{Kind: ruleset.TableAdded, Family: "inet", Table: "marker"},
				{Kind: ruleset.ChainPolicy, Family: "inet", Table: "filter", Chain: "input", Before: "drop", After: "accept"},
			},
			deviations: 3,
		},
		{
			name: "first matching CR in order wins",
			crs: []*model.CR{
				approved("CR-1", add443),
				approved("CR-2", add443),
			},
			changes:     []ruleset.Change{added},
			implemented: []string{"CR-1"},
			updated:     1,
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			obs := tc.observed
			if obs.IsZero() {
				obs = t0.Add(time.Minute)
			}
			before := make([]model.CR, len(tc.crs))
			for i, c := range tc.crs {
				before[i] = *c.Clone()
			}
			res := Evaluate(Observation{
				Tenant: "acme", Device: &model.Device{Tenant: "acme", Device: "fw1"}, EventID: "e1", Seq: 7, Observed: obs,
				ObservedText: obs.Format(time.RFC3339Nano), Received: obs, Changes: tc.changes,
			}, Input{CRs: tc.crs})
			if len(res.Deviations) != tc.deviations {
				t.Errorf("%d deviations, want %d: %+v", len(res.Deviations), tc.deviations, res.Deviations)
			}
			if len(res.Updated) != tc.updated {
				t.Errorf("%d updated CRs, want %d", len(res.Updated), tc.updated)
			}
			var impl []string
			for _, c := range res.Updated {
				if c.State == model.CRImplemented {
					impl = append(impl, c.ID)
					if !c.ImplementedAt.Equal(obs) {
						t.Errorf("%s implemented at %v, want %v", c.ID, c.ImplementedAt, obs)
					}
				}
			}
			if len(impl) != len(tc.implemented) || (len(impl) > 0 && impl[0] != tc.implemented[0]) {
				t.Errorf("implemented %v, want %v", impl, tc.implemented)
			}
			for i, c := range tc.crs {
				if c.State != before[i].State || c.Changes[0].ObservedEvent != before[i].Changes[0].ObservedEvent {
					t.Errorf("input CR %s was modified", c.ID)
				}
			}
			kind := tc.kind
			if kind == "" {
				kind = model.Unauthorized
			}
			for _, d := range res.Deviations {
				if d.Kind != kind || d.State != model.DeviationOpen || d.EventID != "e1" ||
					d.Seq != 7 || d.Tenant != "acme" || d.Device != "fw1" || d.Change == "" {
					t.Errorf("deviation %+v", d)
				}
			}
		})
	}
}

func TestUnauthorizedFields(t *testing.T) {
	ch := ruleset.Change{Kind: ruleset.RuleRemoved, Family: "ip", Table: "filter", Chain: "input",
		Position: 4, Rule: "ct state invalid counter drop"}
	res := Evaluate(Observation{Tenant: "acme", Device: &model.Device{Tenant: "acme", Device: "fw1"}, EventID: "e9", Seq: 12,
		Observed: t0, ObservedText: "2025-06-01T10:00:00Z", Received: t0.Add(time.Second),
		Changes: []ruleset.Change{ch}, FirstDeviation: 1}, Input{})
	want := model.Deviation{
		Tenant: "acme", ID: "DEV-000001", Kind: model.Unauthorized, State: model.DeviationOpen, Device: "fw1",
		Change: ruleset.RuleRemoved, Family: "ip", Table: "filter", Chain: "input", Position: 4,
		Rule: "ct state invalid counter drop", EventID: "e9", Seq: 12,
		Observed: "2025-06-01T10:00:00Z", Raised: t0.Add(time.Second),
	}
	if len(res.Deviations) != 1 || !reflect.DeepEqual(res.Deviations[0], want) {
		t.Fatalf("got %+v\nwant %+v", res.Deviations, want)
	}
}

// TestValueChangedBack: an object's value changed without approval and changed back
// (an SNMP scalar, say) resolves the deviation as a rollback, as a rule put back does;
// changing it to a third value does not.
func TestValueChangedBack(t *testing.T) {
	dev := &model.Device{Tenant: "acme", Device: "fw1"}
	change := func(before, after string) ruleset.Change {
		return ruleset.Change{Kind: ruleset.ObjectChanged, Family: "snmp", Table: "system",
			Object: "scalar sysContact", Before: before, After: after}
	}
	first := Evaluate(Observation{Tenant: "acme", Device: dev, EventID: "e1", Seq: 2,
		Observed: t0, Received: t0, Changes: []ruleset.Change{change(`"root"`, `"noc"`)},
		FirstDeviation: 1}, Input{})
	if len(first.Deviations) != 1 {
		t.Fatalf("first change: %+v", first.Deviations)
	}
	open := first.Deviations[0]
	open.ID = DeviationID(1)
	third := Evaluate(Observation{Tenant: "acme", Device: dev, EventID: "e2", Seq: 3,
		Observed: t0, Received: t0, Changes: []ruleset.Change{change(`"noc"`, `"ops"`)},
		FirstDeviation: 2}, Input{Open: []*model.Deviation{&open}})
	if len(third.Resolved) != 0 || len(third.Deviations) != 1 {
		t.Fatalf("changed to a third value: resolved %d, raised %d", len(third.Resolved),
			len(third.Deviations))
	}
	back := Evaluate(Observation{Tenant: "acme", Device: dev, EventID: "e3", Seq: 3,
		Observed: t0, Received: t0, Changes: []ruleset.Change{change(`"noc"`, `"root"`)},
		FirstDeviation: 2}, Input{Open: []*model.Deviation{&open}})
	if len(back.Resolved) != 1 || back.Resolved[0].ID != open.ID || len(back.Deviations) != 0 ||
		back.Resolved[0].Resolution != model.ResolvedRollback {
		t.Fatalf("changed back: resolved %+v, raised %+v", back.Resolved, back.Deviations)
	}
	if !UndoKeys([]ruleset.Change{change(`"noc"`, `"root"`)})[KeyWithoutKind(IndexKey(&open))] {
		t.Fatal("the store's index would not find the deviation the change undoes")
	}
}

// TestConfigChangePlans: a planned configuration change covers every change to the
// configuration objects it names (any, or one row) on its device in its window.
func TestConfigChangePlans(t *testing.T) {
	dev := &model.Device{Tenant: "acme", Device: "fw1"}
	obj := func(name string) ruleset.Change {
		return ruleset.Change{Kind: ruleset.ObjectChanged, Family: "snmp", Table: "interfaces",
			Object: name, Before: `"up"`, After: `"down"`}
	}
	obs := t0.Add(10 * time.Minute)
	eval := func(plan model.PlannedChange, changes ...ruleset.Change) Result {
		return Evaluate(Observation{Tenant: "acme", Device: dev, EventID: "e1", Seq: 2,
			Observed: obs, Received: obs, Changes: changes, FirstDeviation: 1},
			Input{CRs: []*model.CR{approved("CR-1", plan)}})
	}
	any := model.PlannedChange{Action: model.ActionConfig}
	res := eval(any, obj("ifEntry 2"), obj("ifEntry 3"))
	if len(res.Deviations) != 0 || len(res.Updated) != 1 || res.Updated[0].State != model.CRImplemented {
		t.Fatalf("any object: deviations %+v, updated %+v", res.Deviations, res.Updated)
	}
	row := model.PlannedChange{Action: model.ActionConfig, Object: "ifEntry 2"}
	res = eval(row, obj("ifEntry 2"), obj("ifEntry 3"))
	if len(res.Deviations) != 1 || res.Deviations[0].Object != "ifEntry 3" {
		t.Fatalf("one row planned: deviations %+v", res.Deviations)
	}
	rule := ruleset.Change{Kind: ruleset.RuleAdded, Family: "inet", Table: "filter",
		Chain: "input", Position: 1, Rule: "accept"}
	if res := eval(any, rule); len(res.Deviations) != 1 {
		t.Fatalf("a config change covered a rule: %+v", res.Deviations)
	}
}

// TestIndicatorGoesWithItsEvent: a change indicator (Cisco's time of last change) moves
// with every configuration change; it is decided with the first other change of its
// event (covered by the CR that covers it, or part of its deviation), and raises its own
// deviation only when nothing else changed. Without GroupIndicators it is decided alone.
func TestIndicatorGoesWithItsEvent(t *testing.T) {
	dev := &model.Device{Tenant: "acme", Device: "fw1"}
	indicator := ruleset.Change{Kind: ruleset.ObjectChanged, Family: "snmp", Table: "ccmHistory",
		Object: "indicator ccmHistoryRunningLastChanged", Before: "100", After: "150"}
	row := ruleset.Change{Kind: ruleset.ObjectChanged, Family: "snmp", Table: "ifTable",
		Object: "ifEntry 4", Before: "ifAdminStatus = up(1)", After: "ifAdminStatus = down(2)"}
	obs := t0.Add(10 * time.Minute)
	group := true
	eval := func(crs []*model.CR, changes ...ruleset.Change) Result {
		return Evaluate(Observation{Tenant: "acme", Device: dev, EventID: "e1", Seq: 2,
			Observed: obs, Received: obs, Changes: changes, FirstDeviation: 1},
			Input{CRs: crs, GroupIndicators: group})
	}
	plan := model.PlannedChange{Action: model.ActionConfig, Object: "ifEntry 4"}
	res := eval([]*model.CR{approved("CR-1", plan)}, indicator, row)
	if len(res.Deviations) != 0 || len(res.Updated) != 1 || res.Updated[0].State != model.CRImplemented ||
		res.Outcomes[0].CR != "CR-1" {
		t.Fatalf("planned row with its indicator: deviations %+v, outcomes %+v", res.Deviations,
			res.Outcomes)
	}
	res = eval(nil, indicator, row)
	if len(res.Deviations) != 1 || res.Deviations[0].Object != "ifEntry 4" ||
		res.Outcomes[0].Deviation != res.Outcomes[1].Deviation || res.Deviations[0].Detail != "" {
		t.Fatalf("unplanned row with its indicator: deviations %+v, outcomes %+v", res.Deviations,
			res.Outcomes)
	}
	res = eval(nil, indicator)
	if len(res.Deviations) != 1 || res.Deviations[0].Object != indicator.Object {
		t.Fatalf("indicator alone: %+v", res.Deviations)
	}
	res = eval([]*model.CR{approved("CR-1", model.PlannedChange{Action: model.ActionConfig})}, indicator)
	if len(res.Deviations) != 0 {
		t.Fatalf("indicator alone under a config-any CR: %+v", res.Deviations)
	}
	// Before the cluster's log format 2 (a node of an earlier version in the cluster),
	// every change is decided alone, as earlier versions do.
	group = false
	if res = eval(nil, indicator, row); len(res.Deviations) != 2 {
		t.Fatalf("without grouping: %+v", res.Deviations)
	}
}
