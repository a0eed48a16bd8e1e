package store

import (
	"fmt"
	"testing"
	"time"

	"github.com/hashicorp/raft"
	bolt "go.etcd.io/bbolt"
)

// TestApplyBatchEqualsApply applies the test log (with refused commands: a second
// approval, a duplicate event, an unknown command) one entry at a time to one state
// machine and in batches of every size to others: same state, same answers.
func TestApplyBatchEqualsApply(t *testing.T) {
	logs := testLog(t)
	// A configuration entry in the middle, as raft hands them to ApplyBatch too.
	logs = append(logs, &raft.Log{Index: uint64(len(logs) + 1), Type: raft.LogConfiguration})
	ref := newTestFSM(t)
	want := make([]*applyResult, len(logs))
	for i, l := range logs {
		want[i], _ = ref.Apply(l).(*applyResult)
	}
	wantDump := dump(t, ref)
	for size := 1; size <= len(logs); size++ {
		f := newTestFSM(t)
		var got []any
		for i := 0; i < len(logs); i += size {
			got = append(got, f.ApplyBatch(logs[i:min(i+size, len(logs))])...)
		}
		if d := dump(t, f); d != wantDump {
			t.Fatalf("batch size %d: state differs:\n%s\n---\n%s", size, d, wantDump)
		}
		for i := range logs {
			w, g := want[i], got[i]
			if logs[i].Type != raft.LogCommand {
				continue
			}
			gr := g.(*applyResult)
			if fmt.Sprint(w.err) != fmt.Sprint(gr.err) || fmt.Sprint(w.value) != fmt.Sprint(gr.value) {
				t.Fatalf("batch size %d, entry %d: %v %v, want %v %v", size, i+1, gr.value,
					gr.err, w.value, w.err)
			}
		}
		if f.appliedIndex() != uint64(len(logs)-1) {
			t.Fatalf("batch size %d: applied index %d", size, f.appliedIndex())
		}
		// A replay after a restart changes nothing.
		f.ApplyBatch(logs)
		if d := dump(t, f); d != wantDump {
			t.Fatalf("batch size %d: replay changed the state", size)
		}
	}
}

// TestDeadlineFiresOnce runs deadline checks through ticks: a deadline fires on the
// first tick at or after it, never again, also when a later tick carries an earlier
// time (a new leader whose clock lags).
func TestDeadlineFiresOnce(t *testing.T) {
	t0 := time.Date(2026, 1, 1, 12, 0, 0, 0, time.UTC)
	restore := deadlineChecks
	t.Cleanup(func() { deadlineChecks = restore })
	deadlineChecks = []DeadlineCheck{{Name: "test", Check: func(d *Deadlines) error {
		for i, due := range []time.Time{t0.Add(time.Minute), t0.Add(2 * time.Minute)} {
			key := fmt.Sprintf("test/%d", i)
			ok, err := d.Fire(key, due)
			if err != nil || !ok {
				continue
			}
			b, err := d.Tx.CreateBucketIfNotExists([]byte("test_fired"))
			if err != nil {
				return err
			}
			n, _ := b.NextSequence()
			if err := b.Put([]byte(fmt.Sprintf("%s#%d", key, n)), nil); err != nil {
				return err
			}
		}
		return nil
	}}}
	f := newTestFSM(t)
	var idx uint64
	tick := func(at time.Time, leader string) *TickResult {
		t.Helper()
		idx++
		b, err := encodeCommand(cmdTick, &tickCmd{At: at, Leader: leader})
		if err != nil {
			t.Fatal(err)
		}
		res := f.ApplyBatch([]*raft.Log{{Index: idx, Type: raft.LogCommand, Data: b}})[0]
		r := res.(*applyResult)
		if r.err != nil {
			t.Fatal(r.err)
		}
		return r.value.(*TickResult)
	}
	if r := tick(t0, "a"); len(r.Fired) != 0 {
		t.Fatalf("tick before any deadline fired %v", r.Fired)
	}
	if r := tick(t0.Add(90*time.Second), "a"); fmt.Sprint(r.Fired) != "[test/0]" {
		t.Fatalf("first deadline: fired %v", r.Fired)
	}
	// Leader b's clock is behind: its tick is stale and fires nothing.
	if r := tick(t0.Add(80*time.Second), "b"); !r.Stale || len(r.Fired) != 0 {
		t.Fatalf("lagging tick: %+v", r)
	}
	if r := tick(t0.Add(3*time.Minute), "b"); fmt.Sprint(r.Fired) != "[test/1]" {
		t.Fatalf("second deadline: fired %v", r.Fired)
	}
	if r := tick(t0.Add(4*time.Minute), "c"); len(r.Fired) != 0 {
		t.Fatalf("later tick fired again: %v", r.Fired)
	}
	var fired []string
	f.view(func(tx *bolt.Tx) error {
		return tx.Bucket([]byte("test_fired")).ForEach(func(k, _ []byte) error {
			fired = append(fired, string(k))
			return nil
		})
	})
	if fmt.Sprint(fired) != "[test/0#1 test/1#2]" {
		t.Fatalf("consequences recorded: %v", fired)
	}
}
