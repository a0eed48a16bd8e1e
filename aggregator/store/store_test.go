package store_test

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/raft"

	"github.com/fenceline/fenceline/aggregator/internal/testenv"
	"github.com/fenceline/fenceline/aggregator/internal/teststore"
	"github.com/fenceline/fenceline/aggregator/model"
	"github.com/fenceline/fenceline/aggregator/store"
	"github.com/fenceline/fenceline/shared/event"
	"github.com/fenceline/fenceline/shared/ruleset"
)

var ctx = context.Background()

func TestEnrollmentToken(t *testing.T) {
	s := teststore.NewStore(t)
	now := time.Now()
	tok, enr, err := s.CreateEnrollment(ctx, "acme", "fw1", time.Hour, now)
	if err != nil {
		t.Fatal(err)
	}
	if enr.TokenHash != store.TokenHash(tok) || enr.Tenant != "acme" || enr.Device != "fw1" {
		t.Fatalf("enrollment = %+v", enr)
	}
	a := testenv.NewAgent("acme", "fw1")
	if _, err := s.Enroll(ctx, "not-a-token", a.Public(), now); !errors.Is(err, store.ErrTokenUnknown) {
		t.Fatalf("unknown token: err = %v", err)
	}
	if _, err := s.Enroll(ctx, tok, a.Public(), now.Add(2*time.Hour)); !errors.Is(err, store.ErrTokenExpired) {
		t.Fatalf("expired token: err = %v", err)
	}
	res, err := s.Enroll(ctx, tok, a.Public(), now)
	if err != nil {
		t.Fatal(err)
	}
	if res.Reenrolled || res.Device.KeyID != a.Signer.KeyID() {
		t.Fatalf("enroll result = %+v", res)
	}
	if _, err := s.Enroll(ctx, tok, a.Public(), now); !errors.Is(err, store.ErrTokenUsed) {
		t.Fatalf("used token: err = %v", err)
	}
	if _, err := s.KeyFor("acme", "fw1", a.Signer.KeyID()); err != nil {
		t.Fatal(err)
	}
	if _, err := s.KeyFor("acme", "fw2", a.Signer.KeyID()); !errors.Is(err, event.ErrUnknownKey) {
		t.Fatalf("key of another device: err = %v", err)
	}
}

func appendEvent(t *testing.T, s *store.Store, a *testenv.Agent, env []byte) *store.AppendResult {
	t.Helper()
	res, err := s.AppendEvent(ctx, a.Tenant, a.Device, env, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	return res
}

func TestSequenceRules(t *testing.T) {
	s := teststore.NewStore(t)
	a := testenv.NewAgent("acme", "fw1")
	teststore.Enroll(t, s, a)

	b1, id1 := a.Next(event.Baseline)
	if r := appendEvent(t, s, a, b1); r.Outcome != store.Accepted || r.Head != (event.Ack{Seq: 1, ID: id1}) {
		t.Fatalf("baseline: %+v", r)
	}
	if r := appendEvent(t, s, a, b1); r.Outcome != store.Duplicate || r.Head.Seq != 1 {
		t.Fatalf("resent baseline: %+v", r)
	}
	// seq 3 while the head is 1.
	gap := a.Event(event.Heartbeat)
	gap.Seq, gap.Prev = 3, strings.Repeat("0", 64)
	g, _ := a.Seal(gap)
	if r := appendEvent(t, s, a, g); r.Outcome != store.Gap || r.Head.Seq != 1 {
		t.Fatalf("gap: %+v", r)
	}
	// seq 2 pointing at something other than the head.
	broken := a.Event(event.Heartbeat)
	broken.Prev = strings.Repeat("f", 64)
	bb, _ := a.Seal(broken)
	if r := appendEvent(t, s, a, bb); r.Outcome != store.BrokenChain || r.Head.Seq != 1 {
		t.Fatalf("broken chain: %+v", r)
	}
	h2, id2 := a.Next(event.Heartbeat)
	if r := appendEvent(t, s, a, h2); r.Outcome != store.Accepted || r.Head.ID != id2 {
		t.Fatalf("heartbeat: %+v", r)
	}
	evs, err := s.Events("acme", "fw1", store.EventQuery{Envelopes: true})
	if err != nil {
		t.Fatal(err)
	}
	if len(evs) != 2 || evs[0].ID != id1 || evs[1].ID != id2 || evs[1].Prev != id1 {
		t.Fatalf("events = %+v", evs)
	}
	if string(evs[0].Envelope) != string(b1) {
		t.Fatal("stored envelope differs from the one received")
	}
	d, err := s.Device("acme", "fw1")
	if err != nil {
		t.Fatal(err)
	}
	if d.HeadSeq != 2 || d.LastHeartbeat.IsZero() || d.Digest != testenv.Digest || d.RulesetSeq != 1 {
		t.Fatalf("device = %+v", d)
	}
	if _, dup := s.SeenBefore("acme", "fw1", 2); !dup {
		t.Fatal("SeenBefore(2) = false after head 2")
	}
}

func TestEventOnAnotherDevicesCommand(t *testing.T) {
	s := teststore.NewStore(t)
	a := testenv.NewAgent("acme", "fw1")
	teststore.Enroll(t, s, a)
	b := testenv.NewAgent("acme", "fw2")
	teststore.Enroll(t, s, b)
	env, _ := a.Next(event.Baseline)
	r, err := s.AppendEvent(ctx, "acme", "fw2", env, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	if r.Outcome != store.TopicMismatch {
		t.Fatalf("outcome = %s", r.Outcome)
	}
	if evs, _ := s.Events("acme", "fw2", store.EventQuery{}); len(evs) != 0 {
		t.Fatalf("stored %d events", len(evs))
	}
}

func TestReenrollment(t *testing.T) {
	s := teststore.NewStore(t)
	old := testenv.NewAgent("acme", "fw1")
	teststore.Enroll(t, s, old)
	for _, k := range []event.Kind{event.Baseline, event.Heartbeat, event.Heartbeat} {
		env, _ := old.Next(k)
		appendEvent(t, s, old, env)
	}
	late, _ := old.Next(event.Heartbeat) // signed before the re-enrollment, arrives after

	// A new key, and an agent that lost its outbox: its chain starts at 1 again.
	fresh := testenv.NewAgent("acme", "fw1")
	teststore.Enroll(t, s, fresh)
	if _, err := s.KeyFor("acme", "fw1", old.Signer.KeyID()); !errors.Is(err, event.ErrUnknownKey) {
		t.Fatalf("old key after re-enrollment: %v", err)
	}
	if r := appendEvent(t, s, old, late); r.Outcome != store.UnknownKey {
		t.Fatalf("old key's event: %+v", r)
	}
	b1, id := fresh.Next(event.Baseline)
	if r := appendEvent(t, s, fresh, b1); r.Outcome != store.Accepted || r.Head.Seq != 1 {
		t.Fatalf("new chain: %+v", r)
	}
	if r := appendEvent(t, s, fresh, b1); r.Outcome != store.Duplicate {
		t.Fatalf("new chain resent: %+v", r)
	}
	evs, _ := s.Events("acme", "fw1", store.EventQuery{})
	if len(evs) != 4 || evs[3].ID != id {
		t.Fatalf("history has %d events, want 4 ending in the new baseline", len(evs))
	}

	// A re-enrolled agent that kept its outbox continues the old chain.
	again := testenv.NewAgent("acme", "fw1")
	again.Seq, again.Prev = fresh.Seq, fresh.Prev
	teststore.Enroll(t, s, again)
	env, _ := again.Next(event.Heartbeat)
	if r := appendEvent(t, s, again, env); r.Outcome != store.Accepted || r.Head.Seq != 2 {
		t.Fatalf("continued chain: %+v", r)
	}
}

func TestCRLifecycleAndDeviations(t *testing.T) {
	s := teststore.NewStore(t)
	a := testenv.NewAgent("acme", "fw1")
	teststore.Enroll(t, s, a)
	env, _ := a.Next(event.Baseline)
	appendEvent(t, s, a, env)

	now := time.Now().UTC()
	in := &model.CR{
		Tenant: "acme", Title: "open https", Requester: "alice", Device: "fw1",
		WindowStart: now.Add(-time.Minute), WindowEnd: now.Add(time.Hour),
		Changes: []model.PlannedChange{
			{Action: "add", Chain: "inet filter input", Rule: "tcp dport 443 accept"},
			{Action: "delete", Chain: "inet  filter input", Rule: "tcp dport 80   accept"},
		},
	}
	cr, err := s.CreateCR(ctx, in, now)
	if err != nil {
		t.Fatal(err)
	}
	if cr.ID != "CR-000001" || cr.State != model.CRSubmitted {
		t.Fatalf("created %+v", cr)
	}
	if _, err := s.CreateCR(ctx, &model.CR{Tenant: "acme", ID: "CR-000001", Title: "x",
		Requester: "x", Device: "fw1", WindowStart: now, WindowEnd: now.Add(time.Hour),
		Changes: in.Changes}, now); !errors.Is(err, store.ErrExists) {
		t.Fatalf("duplicate id: %v", err)
	}
	if _, err := s.ApproveCR(ctx, "acme", cr.ID, "alice", now); !errors.Is(err, store.ErrSelfApproval) {
		t.Fatalf("self approval: %v", err)
	}
	if _, err := s.ApproveCR(ctx, "acme", "CR-404", "bob", now); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("approve missing: %v", err)
	}

	added := ruleset.Change{Kind: ruleset.RuleAdded, Family: "inet", Table: "filter",
		Chain: "input", Position: 3, Rule: "tcp dport 443 accept"}
	removed := ruleset.Change{Kind: ruleset.RuleRemoved, Family: "inet", Table: "filter",
		Chain: "input", Position: 2, Rule: "tcp dport 80 accept"}

	// Before approval the planned add is unauthorized.
	env, _ = a.Next(event.Change, added)
	r := appendEvent(t, s, a, env)
	if len(r.Deviations) != 1 {
		t.Fatalf("unapproved change raised %v", r.Deviations)
	}

	if cr, err = s.ApproveCR(ctx, "acme", cr.ID, "bob", now); err != nil || cr.State != model.CRApproved {
		t.Fatalf("approve: %+v %v", cr, err)
	}
	if _, err := s.ApproveCR(ctx, "acme", cr.ID, "carol", now); !errors.Is(err, store.ErrState) {
		t.Fatalf("second approval: %v", err)
	}
	other := ruleset.Change{Kind: ruleset.RuleAdded, Family: "inet", Table: "filter",
		Chain: "input", Position: 4, Rule: "tcp dport 23 accept"}
	env, id := a.Next(event.Change, added, other)
	r = appendEvent(t, s, a, env)
	if len(r.Deviations) != 1 || len(r.Implemented) != 0 {
		t.Fatalf("half-implemented: %+v", r)
	}
	env, _ = a.Next(event.Change, removed)
	r = appendEvent(t, s, a, env)
	if len(r.Deviations) != 0 || len(r.Implemented) != 1 {
		t.Fatalf("completing change: %+v", r)
	}
	cr, _ = s.CR("acme", cr.ID)
	if cr.State != model.CRImplemented || cr.Changes[0].ObservedEvent != id {
		t.Fatalf("CR after implementation: %+v", cr)
	}

	devs, err := s.Deviations("acme", store.DeviationFilter{Device: "fw1", State: model.DeviationOpen})
	if err != nil {
		t.Fatal(err)
	}
	if len(devs) != 2 || devs[0].ID != "DEV-000001" || devs[1].Rule != "tcp dport 23 accept" ||
		devs[1].EventID != id || devs[1].Seq != 3 || devs[1].Position != 4 {
		t.Fatalf("deviations = %+v", devs)
	}
	if other, _ := s.Deviations("other", store.DeviationFilter{}); len(other) != 0 {
		t.Fatalf("another tenant sees %d deviations", len(other))
	}
}

// TestRestart stops the node and starts it again on the same files: the state is there,
// and the raft log replayed at start is not applied a second time.
func TestRestart(t *testing.T) {
	cfg := teststore.StoreConfig(t.TempDir(), testenv.FreeAddr(t))
	s := teststore.OpenStore(t, cfg)
	a := testenv.NewAgent("acme", "fw1")
	teststore.Enroll(t, s, a)
	for _, k := range []event.Kind{event.Baseline, event.Change, event.Heartbeat} {
		env, _ := a.Next(k, ruleset.Change{Kind: ruleset.TableAdded, Family: "inet", Table: "t"})
		appendEvent(t, s, a, env)
	}
	now := time.Now()
	if _, err := s.CreateCR(ctx, testCR(now), now); err != nil {
		t.Fatal(err)
	}
	before := snapshotOf(t, s)
	if err := s.Shutdown(ctx); err != nil {
		t.Fatal(err)
	}

	s = teststore.OpenStore(t, cfg)
	// A write after the restart is applied after the replayed entries.
	cr, err := s.CreateCR(ctx, testCR(now), now)
	if err != nil {
		t.Fatal(err)
	}
	if cr.ID != "CR-000002" {
		t.Fatalf("CR after restart numbered %s, want CR-000002", cr.ID)
	}
	after := snapshotOf(t, s)
	if after.events != before.events || after.deviations != before.deviations ||
		after.accepted != before.accepted || after.crs != before.crs+1 {
		t.Fatalf("before restart %+v, after %+v", before, after)
	}
	env, _ := a.Next(event.Heartbeat)
	if r := appendEvent(t, s, a, env); r.Outcome != store.Accepted || r.Head.Seq != 4 {
		t.Fatalf("event after restart: %+v", r)
	}
}

// storeWithSnapshot opens a store, enrolls acme/fw1, appends its baseline, takes a
// snapshot, then appends one change event per table added.
func storeWithSnapshot(t *testing.T, tables ...string) (store.Config, *store.Store) {
	t.Helper()
	cfg := teststore.StoreConfig(t.TempDir(), testenv.FreeAddr(t))
	s := teststore.OpenStore(t, cfg)
	a := testenv.NewAgent("acme", "fw1")
	teststore.Enroll(t, s, a)
	env, _ := a.Next(event.Baseline)
	appendEvent(t, s, a, env)
	if err := s.Snapshot(); err != nil {
		t.Fatal(err)
	}
	for _, table := range tables {
		env, _ = a.Next(event.Change,
			ruleset.Change{Kind: ruleset.TableAdded, Family: "ip", Table: table})
		appendEvent(t, s, a, env)
	}
	return cfg, s
}

// TestSnapshotRestore takes a raft snapshot, loses the state file, and restarts: raft
// restores the snapshot and replays the log after it. The state file is lost either by
// removal or by a machine restart before its writes were synced (a marker from another
// boot: the store discards the damaged file itself).
func TestSnapshotRestore(t *testing.T) {
	for _, lose := range []struct {
		name string
		do   func(dir string) error
	}{
		{"removed", func(dir string) error { return os.Remove(filepath.Join(dir, "state.db")) }},
		{"unsynced at a machine restart", func(dir string) error {
			// Pages lost in the power cut: the file as bbolt cannot read it.
			if err := os.WriteFile(filepath.Join(dir, "state.db"), make([]byte, 8192),
				0o600); err != nil {
				return err
			}
			return os.WriteFile(filepath.Join(dir, "state.db.unsynced"), []byte("another-boot"),
				0o600)
		}},
	} {
		t.Run(lose.name, func(t *testing.T) {
			cfg, s := storeWithSnapshot(t, "x")
			before := snapshotOf(t, s)
			if err := s.Shutdown(ctx); err != nil {
				t.Fatal(err)
			}
			if err := lose.do(cfg.Dir); err != nil {
				t.Fatal(err)
			}

			s = teststore.OpenStore(t, cfg)
			testenv.WaitFor(t, 5*time.Second, "log replay", func() bool {
				return snapshotOf(t, s) == before
			})
			d, err := s.Device("acme", "fw1")
			if err != nil || d.HeadSeq != 2 {
				t.Fatalf("device after restore: %+v %v", d, err)
			}
		})
	}
}

// TestCaughtUpAfterRestart: a node whose state file was rebuilt after a machine restart
// holds only its snapshot until raft has replayed the log after it; until then it says it
// is catching up (and is unhealthy), so that its local reads do not go back in time.
func TestCaughtUpAfterRestart(t *testing.T) {
	cfg, s := storeWithSnapshot(t, "x", "y")
	if err := s.Shutdown(ctx); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(cfg.Dir, "state.db.unsynced"), []byte("another-boot"),
		0o600); err != nil {
		t.Fatal(err)
	}

	// Slow to elect itself, so that the replay waits.
	cfg.HeartbeatTimeout, cfg.ElectionTimeout = 2*time.Second, 2*time.Second
	cfg.LeaderLeaseTimeout = time.Second
	s, err := store.Open(cfg, testenv.Logger(t))
	if err != nil {
		t.Fatal(err)
	}
	defer s.Shutdown(ctx)
	var cu *store.CatchingUpError
	if err := s.CaughtUp(); !errors.As(err, &cu) || cu.Applied >= cu.Target {
		t.Fatalf("right after the restart: %v", err)
	}
	testenv.WaitFor(t, 10*time.Second, "the log replayed", func() bool {
		return s.CaughtUp() == nil && s.Health() == nil
	})
	evs, err := s.Events("acme", "fw1", store.EventQuery{})
	if err != nil || len(evs) != 3 {
		t.Fatalf("events once caught up: %d %v", len(evs), err)
	}
}

func TestNotLeaderError(t *testing.T) {
	err := error(&store.NotLeaderError{LeaderID: "n2", LeaderAddr: "127.0.0.2:7000"})
	if !errors.Is(err, raft.ErrNotLeader) {
		t.Fatal("NotLeaderError does not match raft.ErrNotLeader")
	}
}

func testCR(now time.Time) *model.CR {
	return &model.CR{
		Tenant: "acme", Title: "t", Requester: "alice", Device: "fw1",
		WindowStart: now, WindowEnd: now.Add(time.Hour),
		Changes: []model.PlannedChange{{Action: "add", Chain: "ip filter input", Rule: "accept"}},
	}
}

type counts struct {
	events, deviations, crs int
	accepted                uint64
}

func snapshotOf(t *testing.T, s *store.Store) counts {
	t.Helper()
	evs, err := s.Events("acme", "fw1", store.EventQuery{})
	if err != nil {
		t.Fatal(err)
	}
	devs, _ := s.Deviations("acme", store.DeviationFilter{})
	crs, _ := s.CRs("acme")
	st, _ := s.Stats()
	return counts{events: len(evs), deviations: len(devs), crs: len(crs), accepted: st.EventsAccepted}
}

// TestPolicySilenceFloor: a silence limit shorter than heartbeats can keep is refused, so
// a policy cannot make healthy agents silent.
func TestPolicySilenceFloor(t *testing.T) {
	s := teststore.NewStore(t)
	ctx := context.Background()
	p, err := s.Policy("acme")
	if err != nil {
		t.Fatal(err)
	}
	p.SilenceAfter = "1ms"
	if _, err := s.SetPolicy(ctx, p, "admin", time.Now()); !errors.Is(err, store.ErrInvalid) {
		t.Fatalf("silence_after 1ms: %v, want invalid", err)
	}
	p.SilenceAfter = "5m"
	if _, err := s.SetPolicy(ctx, p, "admin", time.Now()); err != nil {
		t.Fatalf("silence_after 5m: %v", err)
	}
}

// TestPolicyRefusedWhenUnsatisfiable: a policy whose approval rule no set of its members
// could meet is refused with the reason; a policy without the time zone says it is set
// whole.
func TestPolicyRefusedWhenUnsatisfiable(t *testing.T) {
	s := teststore.NewStore(t)
	ctx := context.Background()
	p, err := s.Policy("acme")
	if err != nil {
		t.Fatal(err)
	}
	p.Approvals[model.CRNormal] = model.ApprovalRule{Count: 2, Roles: []string{"cab"}}
	p.Members = []model.Member{{Name: "alice", Roles: []string{"engineer"}},
		{Name: "bob", Roles: []string{"cab"}}}
	if _, err := s.SetPolicy(ctx, p, "admin", time.Now()); !errors.Is(err, store.ErrInvalid) ||
		!strings.Contains(err.Error(), "2 needed from members holding a role of cab, but 1") {
		t.Fatalf("two cab approvals, one cab member: %v", err)
	}
	p.Members = append(p.Members, model.Member{Name: "carol", Roles: []string{"cab", "security"}})
	if _, err := s.SetPolicy(ctx, p, "admin", time.Now()); err != nil {
		t.Fatalf("two cab members: %v", err)
	}
	if _, err := s.SetPolicy(ctx, &model.Policy{Tenant: "acme", SilenceAfter: "5m"}, "admin",
		time.Now()); err == nil || !strings.Contains(err.Error(), "a policy is set whole") {
		t.Fatalf("partial policy: %v", err)
	}
}
