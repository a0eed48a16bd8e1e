package store

import (
	"context"
	"fmt"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/raft"
	raftboltdb "github.com/hashicorp/raft-boltdb/v2"
	bolt "go.etcd.io/bbolt"

	"github.com/fenceline/fenceline/aggregator/deviation"
	"github.com/fenceline/fenceline/aggregator/internal/testenv"
	"github.com/fenceline/fenceline/aggregator/model"
	"github.com/fenceline/fenceline/shared/event"
	"github.com/fenceline/fenceline/shared/ruleset"
)

func replayRuleset(rules ...string) *ruleset.Ruleset {
	c := &ruleset.Chain{Name: "input", Type: "filter", Hook: "input", Priority: "filter", Policy: "accept"}
	for _, r := range rules {
		c.Rules = append(c.Rules, &ruleset.Rule{Text: r})
	}
	return &ruleset.Ruleset{Tables: []*ruleset.Table{
		{Family: "inet", Name: "filter", Chains: []*ruleset.Chain{c},
			Sets: []*ruleset.Set{{Name: "blocklist", Spec: []string{"type ipv4_addr"}}}},
		{Family: "ip", Name: "legacy", Chains: []*ruleset.Chain{{Name: "in", Rules: []*ruleset.Rule{
			{Text: "ip saddr 192.0.2.1 drop"}, {Text: "ip saddr 192.0.2.2 drop"}}}}},
	}}
}

// TestReplayIdentical runs a change-management history through a real store (raft over
// TCP, bbolt), then replays the raft log, entry by entry, into a fresh state machine: the
// deviations, CRs, devices and rule provenance it computes are identical to the store's.
func TestReplayIdentical(t *testing.T) {
	dir := t.TempDir()
	s, err := Open(Config{Dir: dir, RaftListen: testenv.FreeAddr(t), NodeID: "replay",
		HeartbeatTimeout: 100 * time.Millisecond, ElectionTimeout: 100 * time.Millisecond,
		LeaderLeaseTimeout: 50 * time.Millisecond}, testenv.Logger(t))
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	wctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	if err := s.WaitLeader(wctx); err != nil {
		t.Fatal(err)
	}
	must := func(_ any, err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	t0 := time.Date(2027, 5, 3, 8, 0, 0, 0, time.UTC)
	a := testenv.NewAgent("acme", "fw1")
	tok, _, err := s.CreateEnrollment(ctx, "acme", "fw1", time.Hour, t0)
	must(nil, err)
	must(s.Enroll(ctx, tok, a.Public(), t0))
	must(s.SetDeviceTags(ctx, "acme", "fw1", []string{"edge"}))
	p := model.DefaultPolicy("acme")
	p.TimeZone, p.EmergencyReview, p.SilenceAfter = "Europe/Berlin", "1h", "30m"
	p.Templates = []model.Template{{Name: "block", Changes: []model.TemplateChange{
		{Action: model.ActionAddElement, Set: "blocklist"}}}}
	must(s.SetPolicy(ctx, p, "admin", t0))

	rs := replayRuleset("tcp dport 22 accept", "tcp dport 80 accept")
	send := func(kind event.Kind, at time.Time, next *ruleset.Ruleset, edit func(*event.Event)) {
		t.Helper()
		e := a.Event(kind, ruleset.Diff(rs, next)...)
		e.Observed, e.After = event.FormatTime(at), next.Digest().String()
		if kind == event.Baseline {
			e.Changes, e.Before = nil, ""
		} else {
			e.Before = rs.Digest().String()
		}
		if kind.CarriesRuleset() {
			e.Ruleset = next
		}
		if kind == event.Fold || kind == event.Resync {
			e.Changes = nil
		}
		if edit != nil {
			edit(e)
		}
		env, _ := a.Seal(e)
		r, err := s.AppendEvent(ctx, "acme", "fw1", env, at)
		if err != nil || r.Outcome != Accepted {
			t.Fatalf("%s: %+v %v", kind, r, err)
		}
		rs = next
	}
	send(event.Baseline, t0, rs, nil)
	cr, err := s.CreateCR(ctx, &model.CR{Tenant: "acme", Title: "https", Requester: "alice",
		Device: "fw1", Type: model.CREmergency, WindowStart: t0.Add(time.Hour), WindowEnd: t0.Add(2 * time.Hour),
		Changes: []model.PlannedChange{
			{Action: model.ActionAdd, Chain: "inet filter input", Rule: "tcp dport 443 accept"},
			{Action: model.ActionAdd, Chain: "inet filter input", Rule: "tcp dport 8080 accept"}}}, t0)
	must(cr, err)
	must(s.ApproveCR(ctx, "acme", cr.ID, "bob", t0))
	std, err := s.CreateCR(ctx, &model.CR{Tenant: "acme", Title: "block", Requester: "alice",
		Targets: model.Targets{Tags: []string{"edge"}}, Type: model.CRStandard, Template: "block",
		WindowStart: t0, WindowEnd: t0.Add(3 * time.Hour), Changes: []model.PlannedChange{
			{Action: model.ActionAddElement, Set: "inet filter blocklist", Element: "192.0.2.7"}}}, t0)
	must(std, err)

	at := t0.Add(70 * time.Minute)
	send(event.Change, at, replayRuleset("tcp dport 22 accept", "tcp dport 80 accept",
		"tcp dport 443 accept", "tcp dport 23 accept"), nil) // one covered, one unauthorized
	send(event.Change, at.Add(time.Minute), replayRuleset("tcp dport 80 accept", "tcp dport 22 accept",
		"tcp dport 443 accept", "tcp dport 23 accept"), nil) // a move
	withElem := replayRuleset("tcp dport 80 accept", "tcp dport 22 accept", "tcp dport 443 accept",
		"tcp dport 23 accept")
	withElem.Tables[0].Sets[0].Elements = []string{"192.0.2.7"}
	send(event.Change, at.Add(2*time.Minute), withElem, nil)
	noLegacy := replayRuleset("tcp dport 80 accept", "tcp dport 22 accept", "tcp dport 443 accept",
		"tcp dport 23 accept", "tcp dport 8443 accept")
	noLegacy.Tables = noLegacy.Tables[:1]
	noLegacy.Tables[0].Sets[0].Elements = []string{"192.0.2.7"}
	send(event.Change, at.Add(3*time.Minute), noLegacy, nil) // 8443 differs; table removed
	s.Tick(ctx, t0.Add(150*time.Minute))                     // window close, silence
	s.Tick(ctx, t0.Add(5*time.Hour))                         // emergency review due
	folded := replayRuleset("tcp dport 80 accept", "tcp dport 22 accept", "tcp dport 443 accept",
		"tcp dport 8443 accept", "udp dport 53 accept")
	folded.Tables = folded.Tables[:1]
	send(event.Fold, t0.Add(6*time.Hour), folded, func(e *event.Event) { e.Folded = 7 })
	send(event.Resync, t0.Add(7*time.Hour), replayRuleset("tcp dport 22 accept",
		"tcp dport 443 accept"), nil)
	devs, err := s.Deviations("acme", DeviationFilter{State: model.DeviationOpen})
	must(devs, err)
	retro, err := s.CreateCR(ctx, &model.CR{Tenant: "acme", Title: "dns", Requester: "carol",
		Device: "fw1", WindowStart: t0.Add(5 * time.Hour), WindowEnd: t0.Add(8 * time.Hour),
		Changes: []model.PlannedChange{{Action: model.ActionAdd, Chain: "inet filter input",
			Rule: "udp dport 53 accept"}}}, t0.Add(7*time.Hour))
	must(retro, err)
	must(s.ApproveCR(ctx, "acme", retro.ID, "bob", t0.Add(7*time.Hour)))
	must(s.DeviationAction(ctx, DeviationActionRequest{Tenant: "acme", ID: devs[0].ID,
		Action: DeviationAcknowledge, By: "bob", Why: "seen"}, t0.Add(7*time.Hour)))
	must(s.DeviationAction(ctx, DeviationActionRequest{Tenant: "acme", ID: devs[1].ID,
		Action: DeviationResolve, By: "bob", Why: "fine", Resolution: model.ResolvedAcceptedRisk},
		t0.Add(7*time.Hour)))
	must(s.CRAction(ctx, CRActionRequest{Tenant: "acme", ID: cr.ID, Action: CRReview, By: "dave",
		Why: "ok"}, t0.Add(8*time.Hour)))
	must(s.RecordFinding(ctx, "acme", "fw1", model.BadSignature, "forged", 0, t0.Add(8*time.Hour)))

	kinds := map[model.DeviationKind]int{}
	devs, _ = s.Deviations("acme", DeviationFilter{})
	for _, d := range devs {
		kinds[d.Kind]++
	}
	for _, k := range []model.DeviationKind{model.Unauthorized, model.DiffersFromSpec,
		model.EmergencyReviewDue, model.AgentSilent, model.Folded, model.Gap, model.BadSignature} {
		if kinds[k] == 0 {
			t.Errorf("the history raised no %s deviation: %v", k, kinds)
		}
	}
	if err := s.Shutdown(ctx); err != nil {
		t.Fatal(err)
	}

	// Replay the raft log into a fresh state machine.
	logs, err := raftboltdb.New(raftboltdb.Options{Path: filepath.Join(dir, raftFile)})
	if err != nil {
		t.Fatal(err)
	}
	defer logs.Close()
	first, _ := logs.FirstIndex()
	last, _ := logs.LastIndex()
	if first != 1 {
		t.Fatalf("the log starts at %d (a snapshot compacted it)", first)
	}
	fresh := newTestFSM(t)
	n := 0
	for i := first; i <= last; i++ {
		var l raft.Log
		if err := logs.GetLog(i, &l); err != nil {
			t.Fatal(err)
		}
		if l.Type == raft.LogCommand {
			n++
		}
		fresh.Apply(&l)
	}
	orig, err := openFSM(filepath.Join(dir, stateFile), testenv.Logger(t))
	if err != nil {
		t.Fatal(err)
	}
	defer orig.close()
	for _, b := range [][]byte{bucketDeviations, bucketDevStates, bucketDevRules, bucketCRs,
		bucketDevices, bucketOpenDevs, bucketOpenByKey, bucketPolicies, bucketDeadlines} {
		if o, f := dumpBucket(t, orig, b), dumpBucket(t, fresh, b); o != f {
			t.Errorf("bucket %s differs after replaying %d commands:\n%s\n--- replayed ---\n%s", b, n, o, f)
		} else if o == "" {
			t.Errorf("bucket %s is empty", b)
		}
	}
	checkOpenIndexes(t, orig)
	// Provenance survived: the rule the CR added is credited to it.
	if !strings.Contains(dumpBucket(t, fresh, bucketDevRules), `"cr":"`+cr.ID+`"`) {
		t.Error("no rule credited to the CR in the replayed provenance")
	}
}

func dumpBucket(t *testing.T, f *fsm, name []byte) string {
	t.Helper()
	var b strings.Builder
	err := f.view(func(tx *bolt.Tx) error {
		bk := tx.Bucket(name)
		if bk == nil {
			return nil
		}
		return bk.ForEach(func(k, v []byte) error {
			fmt.Fprintf(&b, "%x=%s\n", k, v)
			return nil
		})
	})
	if err != nil {
		t.Fatal(err)
	}
	return b.String()
}

// checkOpenIndexes checks that reading the open deviations an event could undo through
// bucketOpenByKey gives what filtering every open deviation gives, and that a state file
// without that index gets it rebuilt, the same, when opened.
func checkOpenIndexes(t *testing.T, f *fsm) {
	t.Helper()
	checked := 0
	err := f.view(func(tx *bolt.Tx) error {
		return tx.Bucket(bucketOpenDevs).ForEach(func(k, v []byte) error {
			parts := strings.SplitN(string(k[:len(k)-9]), "/", 2)
			tenant, device := parts[0], parts[1]
			undo := map[string]bool{deviation.KeyWithoutKind(string(v)): true,
				"\x00no such key": true}
			want, err := openDeviations(tx, tenant, device, func(key []byte) bool {
				return undo[deviation.KeyWithoutKind(string(key))]
			})
			if err != nil {
				return err
			}
			got, err := openDeviationsUndone(tx, tenant, device, undo)
			if err != nil {
				return err
			}
			if fmt.Sprint(ids(want)) != fmt.Sprint(ids(got)) || len(got) == 0 {
				t.Errorf("%s/%s %q: by key %v, filtered %v", tenant, device, v, ids(got), ids(want))
			}
			checked++
			return nil
		})
	})
	if err != nil {
		t.Fatal(err)
	}
	if checked == 0 {
		t.Fatal("no open deviation to check")
	}
	before := dumpBucket(t, f, bucketOpenByKey)
	if err := f.db.Update(func(tx *bolt.Tx) error { return tx.DeleteBucket(bucketOpenByKey) }); err != nil {
		t.Fatal(err)
	}
	if err := f.close(); err != nil {
		t.Fatal(err)
	}
	if err := f.open(); err != nil {
		t.Fatal(err)
	}
	if after := dumpBucket(t, f, bucketOpenByKey); after != before {
		t.Errorf("open index rebuilt as\n%s\nwant\n%s", after, before)
	}
}

func ids(ds []*model.Deviation) []string {
	var out []string
	for _, d := range ds {
		out = append(out, d.ID)
	}
	return out
}
