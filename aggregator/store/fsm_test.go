package store

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/hashicorp/raft"
	bolt "go.etcd.io/bbolt"

	"github.com/fenceline/fenceline/aggregator/internal/testenv"
	"github.com/fenceline/fenceline/aggregator/model"
	"github.com/fenceline/fenceline/shared/event"
	"github.com/fenceline/fenceline/shared/ruleset"
)

// testLog builds a raft log of commands: an enrollment, a chain of events including a
// duplicate and a gap, CRs, and a command that fails.
func testLog(t *testing.T) []*raft.Log {
	t0 := time.Date(2025, 3, 1, 12, 0, 0, 0, time.UTC)
	a := testenv.NewAgent("acme", "fw1")
	a.Now = t0.Add(time.Minute)
	var logs []*raft.Log
	add := func(typ string, payload any) {
		b, err := encodeCommand(typ, payload)
		if err != nil {
			t.Fatal(err)
		}
		logs = append(logs, &raft.Log{Index: uint64(len(logs) + 1), Type: raft.LogCommand, Data: b})
	}
	add(cmdCreateEnrollment, &createEnrollmentCmd{TokenHash: TokenHash("tok"), Tenant: "acme",
		Device: "fw1", CreatedAt: t0, Expires: t0.Add(time.Hour)})
	add(cmdEnroll, &enrollCmd{TokenHash: TokenHash("tok"), PublicKey: a.Public(), At: t0})
	add(cmdCreateCR, &createCRCmd{At: t0, CR: model.CR{Tenant: "acme", Title: "t",
		Requester: "alice", Device: "fw1", WindowStart: t0, WindowEnd: t0.Add(time.Hour),
		Changes: []model.PlannedChange{{Action: "add", Chain: "ip f in", Rule: "accept"}}}})
	add(cmdApproveCR, &approveCRCmd{Tenant: "acme", ID: "CR-000001", Approver: "bob", At: t0})
	add(cmdApproveCR, &approveCRCmd{Tenant: "acme", ID: "CR-000001", Approver: "bob", At: t0})
	envs := [][]byte{}
	for _, ch := range [][]ruleset.Change{nil,
		{{Kind: ruleset.RuleAdded, Family: "ip", Table: "f", Chain: "in", Rule: "accept"}},
		{{Kind: ruleset.RuleAdded, Family: "ip", Table: "f", Chain: "in", Rule: "drop"}}} {
		kind := event.Change
		if ch == nil {
			kind = event.Baseline
		}
		env, _ := a.Next(kind, ch...)
		envs = append(envs, env)
		add(cmdAppendEvent, &appendEventCmd{Tenant: "acme", Device: "fw1", Envelope: env,
			ReceivedAt: t0.Add(2 * time.Minute)})
	}
	add(cmdAppendEvent, &appendEventCmd{Tenant: "acme", Device: "fw1", Envelope: envs[1],
		ReceivedAt: t0.Add(3 * time.Minute)})
	add("no_such_command", struct{}{})
	return logs
}

func newTestFSM(t *testing.T) *fsm {
	t.Helper()
	f, err := openFSM(filepath.Join(t.TempDir(), "state.db"), testenv.Logger(t))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.close() })
	return f
}

// dump renders every bucket, nested ones included, as text.
func dump(t *testing.T, f *fsm) string {
	t.Helper()
	var b bytes.Buffer
	var walk func(prefix string, bk *bolt.Bucket) error
	walk = func(prefix string, bk *bolt.Bucket) error {
		return bk.ForEach(func(k, v []byte) error {
			if v == nil {
				return walk(prefix+string(k)+"/", bk.Bucket(k))
			}
			fmt.Fprintf(&b, "%s%x=%s\n", prefix, k, v)
			return nil
		})
	}
	err := f.view(func(tx *bolt.Tx) error {
		return tx.ForEach(func(name []byte, bk *bolt.Bucket) error {
			return walk(string(name)+":", bk)
		})
	})
	if err != nil {
		t.Fatal(err)
	}
	return b.String()
}

func applyAll(f *fsm, logs []*raft.Log) []*applyResult {
	var out []*applyResult
	for _, l := range logs {
		out = append(out, f.Apply(l).(*applyResult))
	}
	return out
}

// TestFSMDeterministic applies one log to two state machines: same state, same answers.
func TestFSMDeterministic(t *testing.T) {
	logs := testLog(t)
	f1, f2 := newTestFSM(t), newTestFSM(t)
	r1, r2 := applyAll(f1, logs), applyAll(f2, logs)
	if d1, d2 := dump(t, f1), dump(t, f2); d1 != d2 {
		t.Fatalf("states differ:\n%s\n---\n%s", d1, d2)
	}
	for i := range r1 {
		if fmt.Sprint(r1[i].err) != fmt.Sprint(r2[i].err) {
			t.Fatalf("entry %d: %v vs %v", i+1, r1[i].err, r2[i].err)
		}
	}
	if r1[4].err == nil || r1[len(r1)-1].err == nil {
		t.Fatal("second approval and unknown command should fail")
	}
	dup := r1[len(r1)-2].value.(*AppendResult)
	if dup.Outcome != Duplicate || dup.Head.Seq != 3 {
		t.Fatalf("resent event: %+v", dup)
	}
	if got := f1.appliedIndex(); got != uint64(len(logs)) {
		t.Fatalf("applied index %d, want %d", got, len(logs))
	}
	devs := 0
	f1.view(func(tx *bolt.Tx) error {
		devs = tx.Bucket(bucketDeviations).Stats().KeyN
		return nil
	})
	if devs != 1 {
		t.Fatalf("%d deviations, want 1 (the unplanned drop rule)", devs)
	}
}

// TestFSMSkipsApplied reopens the state file and replays the whole log, as raft does
// after a restart: nothing changes.
func TestFSMSkipsApplied(t *testing.T) {
	logs := testLog(t)
	f := newTestFSM(t)
	applyAll(f, logs)
	want := dump(t, f)
	if err := f.close(); err != nil {
		t.Fatal(err)
	}
	f, err := openFSM(f.path, testenv.Logger(t))
	if err != nil {
		t.Fatal(err)
	}
	defer f.close()
	if f.appliedIndex() != uint64(len(logs)) {
		t.Fatalf("applied index after reopen = %d", f.appliedIndex())
	}
	applyAll(f, logs)
	if got := dump(t, f); got != want {
		t.Fatalf("replay changed the state:\n%s\n---\n%s", want, got)
	}
}

// TestFSMUnsyncedState: the state file is written without sync. After the process ends
// without closing (killed), the same boot reopens it whole; after the machine restarted
// (a marker naming another boot) it is discarded, for raft to rebuild from the snapshot
// and the log; a clean close syncs it and removes the marker.
func TestFSMUnsyncedState(t *testing.T) {
	boot := readBootID()
	if boot == "" {
		t.Skip("no boot id here: every commit is synced")
	}
	logs := testLog(t)
	f := newTestFSM(t)
	if !f.db.NoSync {
		t.Fatal("the state file is synced at every commit")
	}
	applyAll(f, logs)
	want := dump(t, f)
	empty := dump(t, newTestFSM(t))
	if b, err := os.ReadFile(f.markerPath()); err != nil || string(b) != boot {
		t.Fatalf("marker %q (%v), want this boot %q", b, err, boot)
	}
	kill := func(f *fsm) { // the process ends without closing the file
		forgetDevCache(f.db)
		if err := f.db.Close(); err != nil {
			t.Fatal(err)
		}
		f.db = nil
	}
	reopen := func() *fsm {
		g, err := openFSM(f.path, testenv.Logger(t))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { g.close() })
		return g
	}

	kill(f)
	g := reopen()
	if g.appliedIndex() != uint64(len(logs)) || dump(t, g) != want {
		t.Fatalf("after a kill: applied index %d, state changed", g.appliedIndex())
	}

	kill(g)
	if err := os.WriteFile(f.markerPath(), []byte("another-boot"), 0o600); err != nil {
		t.Fatal(err)
	}
	g = reopen()
	if g.appliedIndex() != 0 || dump(t, g) != empty {
		t.Fatalf("after a machine restart: applied index %d, state not discarded",
			g.appliedIndex())
	}
	applyAll(g, logs)
	if dump(t, g) != want {
		t.Fatal("state rebuilt from the log differs")
	}

	if err := g.close(); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(f.markerPath()); !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("marker after a clean close: %v", err)
	}
	g = reopen()
	if g.appliedIndex() != uint64(len(logs)) {
		t.Fatalf("after a clean close: applied index %d", g.appliedIndex())
	}

	// A marker that cannot be read: an error, and the file is kept.
	kill(g)
	if err := os.Remove(f.markerPath()); err != nil {
		t.Fatal(err)
	}
	if err := os.Mkdir(f.markerPath(), 0o700); err != nil {
		t.Fatal(err)
	}
	if h, err := openFSM(f.path, testenv.Logger(t)); err == nil {
		h.close()
		t.Fatal("opened with a directory in place of the marker")
	}
	if err := os.Remove(f.markerPath()); err != nil {
		t.Fatal(err)
	}
	if g = reopen(); g.appliedIndex() != uint64(len(logs)) {
		t.Fatalf("after an unreadable marker: applied index %d", g.appliedIndex())
	}
}

type bufferSink struct{ bytes.Buffer }

func (s *bufferSink) ID() string    { return "test" }
func (s *bufferSink) Cancel() error { return nil }
func (s *bufferSink) Close() error  { return nil }

// TestFSMSnapshotRestore streams a snapshot and restores it into another state machine
// that had different state.
func TestFSMSnapshotRestore(t *testing.T) {
	logs := testLog(t)
	src := newTestFSM(t)
	applyAll(src, logs)
	snap, err := src.Snapshot()
	if err != nil {
		t.Fatal(err)
	}
	// Writes after the snapshot are not in it.
	applyAll(src, []*raft.Log{{Index: 100, Type: raft.LogCommand, Data: logs[0].Data}})
	var sink bufferSink
	if err := snap.Persist(&sink); err != nil {
		t.Fatal(err)
	}
	snap.Release()

	ref := newTestFSM(t)
	applyAll(ref, logs)
	dst := newTestFSM(t)
	applyAll(dst, logs[:2])
	if err := dst.Restore(readCloser{&sink}); err != nil {
		t.Fatal(err)
	}
	if got, want := dump(t, dst), dump(t, ref); got != want {
		t.Fatalf("restored state differs:\n%s\n---\n%s", got, want)
	}
	if dst.appliedIndex() != uint64(len(logs)) {
		t.Fatalf("restored applied index = %d", dst.appliedIndex())
	}
}

type readCloser struct{ *bufferSink }

func (readCloser) Close() error { return nil }

// TestAppendEventJSONEntries applies the test log once with its events in the binary
// form and once in the JSON form earlier versions wrote: the same state. A truncated
// binary entry is refused and only moves the applied index.
func TestAppendEventJSONEntries(t *testing.T) {
	logs := testLog(t)
	var old []*raft.Log
	binaries := 0
	for _, l := range logs {
		c := *l
		if len(l.Data) > 0 && l.Data[0] == binaryAppendEvent {
			binaries++
			ev, err := decodeAppendEvent(l.Data)
			if err != nil {
				t.Fatal(err)
			}
			p, _ := json.Marshal(ev)
			c.Data, _ = json.Marshal(command{Type: cmdAppendEvent, Payload: p})
		}
		old = append(old, &c)
	}
	if binaries != 4 {
		t.Fatalf("%d events in the binary form, want 4", binaries)
	}
	f1, f2 := newTestFSM(t), newTestFSM(t)
	r1, r2 := applyAll(f1, logs), applyAll(f2, old)
	if d1, d2 := dump(t, f1), dump(t, f2); d1 != d2 {
		t.Fatalf("states differ:\n%s\n--- JSON entries ---\n%s", d1, d2)
	}
	for i := range r1 {
		if fmt.Sprint(r1[i].value, r1[i].err) != fmt.Sprint(r2[i].value, r2[i].err) {
			t.Fatalf("entry %d: %v %v vs %v %v", i+1, r1[i].value, r1[i].err, r2[i].value, r2[i].err)
		}
	}
	bad := &raft.Log{Index: uint64(len(logs) + 1), Type: raft.LogCommand,
		Data: logs[5].Data[:4]}
	res := f1.Apply(bad).(*applyResult)
	if !errors.Is(res.err, ErrInvalid) || f1.appliedIndex() != bad.Index {
		t.Fatalf("truncated entry: %v, applied %d", res.err, f1.appliedIndex())
	}
}

// TestAppendEventBinaryTimes: the binary form keeps every time the JSON form kept, the
// zero time and times outside int64 nanoseconds included.
func TestAppendEventBinaryTimes(t *testing.T) {
	for _, at := range []time.Time{{}, time.Date(2027, 5, 3, 8, 0, 0, 123456789, time.UTC),
		time.Date(1600, 1, 1, 0, 0, 0, 1, time.UTC), time.Date(2400, 12, 31, 23, 59, 59, 999999999, time.UTC)} {
		in := &appendEventCmd{Tenant: "acme", Device: "fw1", ReceivedAt: at, Envelope: []byte(`{"x":1}`)}
		out, err := decodeAppendEvent(encodeAppendEvent(in))
		if err != nil {
			t.Fatal(err)
		}
		want, _ := json.Marshal(in)
		got, _ := json.Marshal(out)
		if string(got) != string(want) {
			t.Errorf("%s: decoded as %s, want %s", at, got, want)
		}
	}
}

// TestFSMStopsAtUnknownEntryFormat: an entry in a format of a later version is not
// skipped (the nodes that read it would hold a state this one does not): the state
// machine applies what comes before it and stops there, by Apply and by ApplyBatch.
func TestFSMStopsAtUnknownEntryFormat(t *testing.T) {
	logs := testLog(t)
	later := &raft.Log{Index: 3, Type: raft.LogCommand, Data: []byte{0x7f, 'x'}}
	after := &raft.Log{Index: 4, Type: raft.LogCommand, Data: logs[2].Data}
	for _, batch := range []bool{false, true} {
		f := newTestFSM(t)
		in := []*raft.Log{logs[0], logs[1], later, after}
		var out []any
		if batch {
			out = f.ApplyBatch(in)
		} else {
			for _, l := range in {
				out = append(out, f.Apply(l))
			}
		}
		for i, r := range out {
			err := r.(*applyResult).err
			if (i >= 2) != errors.Is(err, ErrFSMFailed) {
				t.Errorf("batch %v: entry %d: %v", batch, i+1, err)
			}
		}
		if f.appliedIndex() != 2 || f.err() == nil {
			t.Errorf("batch %v: applied index %d, failure %v", batch, f.appliedIndex(), f.err())
		}
	}
}
