package outbox

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"testing"
)

func idOf(seq uint64) string {
	s := sha256.Sum256([]byte(fmt.Sprint(seq)))
	return hex.EncodeToString(s[:])
}

// sealer records the chain links it was asked to seal.
func sealer(seen *[]string) Sealer {
	return func(seq uint64, prev string) ([]byte, string, error) {
		p := "-"
		if prev != "" {
			p = prev[:6]
		}
		*seen = append(*seen, fmt.Sprintf("%d<-%s", seq, p))
		return []byte(fmt.Sprintf("env-%d", seq)), idOf(seq), nil
	}
}

func open(t *testing.T, path string, cfg Config) *Outbox {
	t.Helper()
	ob, err := Open(path, cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ob.Close() })
	return ob
}

func TestAppendChainsAndSurvivesReopen(t *testing.T) {
	path := filepath.Join(t.TempDir(), "outbox.db")
	ob, err := Open(path, Config{})
	if err != nil {
		t.Fatal(err)
	}
	var seen []string
	for i := 0; i < 3; i++ {
		if _, err := ob.Append(sealer(&seen), []byte(fmt.Sprintf("state-%d", i))); err != nil {
			t.Fatal(err)
		}
	}
	want := fmt.Sprint([]string{"1<--", "2<-" + idOf(1)[:6], "3<-" + idOf(2)[:6]})
	if fmt.Sprint(seen) != want {
		t.Fatalf("chain = %v, want %v", seen, want)
	}
	ob.Close()

	ob = open(t, path, Config{})
	h, _ := ob.Head()
	if h.Seq != 3 || h.ID != idOf(3) || h.Acked != 0 || h.Count != 3 || h.Bytes != 15 {
		t.Fatalf("head after reopen = %+v", h)
	}
	st, err := ob.State()
	if err != nil || string(st) != "state-2" {
		t.Fatalf("state = %q, %v", st, err)
	}
	seq, _ := ob.Append(sealer(&seen), nil)
	if seq != 4 || seen[len(seen)-1] != "4<-"+idOf(3)[:6] {
		t.Fatalf("append after reopen: seq %d, %v", seq, seen)
	}
	if st, _ := ob.State(); string(st) != "state-2" {
		t.Fatalf("nil state overwrote the stored one: %q", st)
	}
}

func TestPendingAndAck(t *testing.T) {
	ob := open(t, filepath.Join(t.TempDir(), "outbox.db"), Config{})
	var seen []string
	for i := 0; i < 10; i++ {
		ob.Append(sealer(&seen), nil)
	}
	p, _ := ob.Pending(0, 4)
	if len(p) != 4 || p[0].Seq != 1 || p[3].Seq != 4 || string(p[2].Envelope) != "env-3" ||
		p[2].ID != idOf(3) || p[2].AppendedAt.IsZero() {
		t.Fatalf("pending(0,4) = %+v", p)
	}
	p, _ = ob.Pending(8, 100)
	if len(p) != 2 || p[0].Seq != 9 {
		t.Fatalf("pending(8) = %+v", p)
	}
	n, err := ob.Ack(6, idOf(6))
	if err != nil || n != 6 {
		t.Fatalf("ack 6: removed %d, %v", n, err)
	}
	if d, _ := ob.Depth(); d != 4 {
		t.Fatalf("depth after ack = %d, want 4", d)
	}
	if n, _ := ob.Ack(3, idOf(3)); n != 0 {
		t.Fatalf("an older ack removed %d events", n)
	}
	p, _ = ob.Pending(0, 100)
	if len(p) != 4 || p[0].Seq != 7 {
		t.Fatalf("pending after ack = %+v", p)
	}
	if h, _ := ob.Head(); h.Acked != 6 || h.AckedID != idOf(6) || h.Seq != 10 || h.Count != 4 || h.Bytes != 5+5+5+6 {
		t.Fatalf("head = %+v", h)
	}
}

// TestAckedAt: the newest send time of an advancing ack is kept, also across a reopen
// and a re-anchoring, so a restarted agent still knows how new an ack must be.
func TestAckedAt(t *testing.T) {
	path := filepath.Join(t.TempDir(), "outbox.db")
	ob := open(t, path, Config{})
	var seen []string
	for range 4 {
		ob.Append(sealer(&seen), nil)
	}
	ob.AckAt(2, idOf(2), 5000)
	ob.AckAt(3, idOf(3), 4000) // advances, with an older time (another leader's clock)
	if h, _ := ob.Head(); h.Acked != 3 || h.AckedAt != 5000 {
		t.Fatalf("head = %+v, want acked 3 at 5000", h)
	}
	ob.Close()
	ob = open(t, path, Config{})
	if _, err := ob.Reanchor(1, idOf(1)); err != nil {
		t.Fatal(err)
	}
	if h, _ := ob.Head(); h.Acked != 1 || h.AckedAt != 5000 {
		t.Fatalf("head after reopen and re-anchoring = %+v, want acked 1 at 5000", h)
	}
}

func TestAckThatIsNotOurChain(t *testing.T) {
	ob := open(t, filepath.Join(t.TempDir(), "outbox.db"), Config{})
	var seen []string
	for i := 0; i < 3; i++ {
		ob.Append(sealer(&seen), nil)
	}
	if _, err := ob.Ack(5, idOf(5)); !errors.Is(err, ErrAckBeyondHead) {
		t.Fatalf("ack beyond head: %v", err)
	}
	if _, err := ob.Ack(2, idOf(99)); !errors.Is(err, ErrFork) {
		t.Fatalf("ack of another event: %v", err)
	}
	if h, _ := ob.Head(); h.Acked != 0 || h.Count != 3 {
		t.Fatalf("a refused ack changed the outbox: %+v", h)
	}
}

func TestBoundAndFold(t *testing.T) {
	ob := open(t, filepath.Join(t.TempDir(), "outbox.db"), Config{MaxBytes: 20})
	var seen []string
	for i := 0; i < 4; i++ { // 4 × 5 bytes fill the bound exactly
		if _, err := ob.Append(sealer(&seen), nil); err != nil {
			t.Fatal(err)
		}
	}
	ob.Ack(1, idOf(1))
	ob.Append(sealer(&seen), nil)
	if _, err := ob.Append(sealer(&seen), nil); !errors.Is(err, ErrFull) {
		t.Fatalf("append beyond the bound: %v", err)
	}
	if h, _ := ob.Head(); h.Seq != 5 || h.Count != 4 {
		t.Fatalf("refused append changed the outbox: %+v", h)
	}
	var gotFirst Entry
	var gotCount int
	n, err := ob.Fold(0, func(seq uint64, prev string, first Entry, count int) ([]byte, string, error) {
		if seq != 2 || prev != idOf(1) {
			t.Errorf("fold sealed at %d after %q, want 2 after event 1", seq, prev)
		}
		gotFirst, gotCount = first, count
		return []byte("fold"), idOf(1000), nil
	}, []byte("folded-state"))
	if err != nil || n != 4 {
		t.Fatalf("fold: %d, %v", n, err)
	}
	if gotFirst.Seq != 2 || string(gotFirst.Envelope) != "env-2" || gotCount != 4 {
		t.Fatalf("fold saw first %+v count %d", gotFirst, gotCount)
	}
	h, _ := ob.Head()
	if h.Seq != 2 || h.ID != idOf(1000) || h.Count != 1 || h.Bytes != 4 {
		t.Fatalf("head after fold = %+v", h)
	}
	if st, _ := ob.State(); string(st) != "folded-state" {
		t.Fatalf("state after fold = %q", st)
	}
	// The chain continues from the fold.
	seen = nil
	ob.Append(sealer(&seen), nil)
	if seen[0] != "3<-"+idOf(1000)[:6] {
		t.Fatalf("append after fold: %v", seen)
	}
}

// Events that may already be at the aggregator (published) are not folded.
func TestFoldKeepsPublished(t *testing.T) {
	ob := open(t, filepath.Join(t.TempDir(), "outbox.db"), Config{})
	var seen []string
	for i := 0; i < 6; i++ {
		ob.Append(sealer(&seen), nil)
	}
	ob.Ack(2, idOf(2))
	n, err := ob.Fold(4, func(seq uint64, prev string, first Entry, count int) ([]byte, string, error) {
		if seq != 5 || prev != idOf(4) || first.Seq != 5 || count != 2 {
			t.Errorf("fold at %d after %.6s, first %d, count %d", seq, prev, first.Seq, count)
		}
		return []byte("fold"), idOf(500), nil
	}, nil)
	if err != nil || n != 2 {
		t.Fatalf("fold: %d %v", n, err)
	}
	p, _ := ob.Pending(0, 10)
	if len(p) != 3 || p[0].Seq != 3 || p[1].Seq != 4 || p[2].ID != idOf(500) {
		t.Fatalf("pending after fold: %+v", p)
	}
	if h, _ := ob.Head(); h.Seq != 5 || h.Count != 3 || h.Bytes != 5+5+4 {
		t.Fatalf("head after fold: %+v", h)
	}
	// Everything published: fold all pending after the ack.
	n, _ = ob.Fold(5, func(seq uint64, prev string, first Entry, count int) ([]byte, string, error) {
		if seq != 3 || prev != idOf(2) || count != 3 {
			t.Errorf("fold-all at %d after %.6s count %d", seq, prev, count)
		}
		return []byte("fold2"), idOf(501), nil
	}, nil)
	if n != 3 {
		t.Fatalf("fold all: %d", n)
	}
}

func TestReanchor(t *testing.T) {
	ob := open(t, filepath.Join(t.TempDir(), "outbox.db"), Config{})
	var seen []string
	ob.Append(sealer(&seen), []byte("s"))
	ob.Append(sealer(&seen), nil)
	n, err := ob.Reanchor(40, idOf(40))
	if err != nil || n != 2 {
		t.Fatalf("reanchor: %d, %v", n, err)
	}
	seen = nil
	seq, _ := ob.Append(sealer(&seen), nil)
	if seq != 41 || seen[0] != "41<-"+idOf(40)[:6] {
		t.Fatalf("after reanchor: seq %d %v", seq, seen)
	}
	if st, _ := ob.State(); string(st) != "s" {
		t.Fatalf("reanchor lost the state: %q", st)
	}
}

func TestBatchIsAllOrNothing(t *testing.T) {
	ob := open(t, filepath.Join(t.TempDir(), "outbox.db"), Config{})
	var seen []string
	bad := func(uint64, string) ([]byte, string, error) { return nil, "", errors.New("boom") }
	_, err := ob.AppendBatch([]Item{{Seal: sealer(&seen)}, {Seal: bad}})
	if err == nil {
		t.Fatal("want error")
	}
	if h, _ := ob.Head(); h.Seq != 0 || h.Count != 0 {
		t.Fatalf("failed batch left %+v", h)
	}
	seqs, err := ob.AppendBatch([]Item{{Seal: sealer(&seen)}, {Seal: sealer(&seen), State: []byte("x")}})
	if err != nil || fmt.Sprint(seqs) != "[1 2]" {
		t.Fatalf("batch: %v %v", seqs, err)
	}
	if _, err := ob.State(); err != nil {
		t.Fatal(err)
	}
}

func TestCorruptFileIsMovedAside(t *testing.T) {
	path := filepath.Join(t.TempDir(), "outbox.db")
	ob := open(t, path, Config{})
	var seen []string
	for i := 0; i < 50; i++ {
		ob.Append(sealer(&seen), []byte("state"))
	}
	ob.Close()
	// Overwrite the meta pages and part of the data with garbage.
	b, _ := os.ReadFile(path)
	for i := 0; i < len(b) && i < 3*4096; i++ {
		b[i] = byte(i * 7)
	}
	os.WriteFile(path, b, 0o600)

	if _, err := Open(path, Config{}); !errors.Is(err, ErrCorrupt) {
		t.Fatalf("open corrupt: %v", err)
	}
	ob2, moved, err := OpenOrRecover(path, Config{})
	if err != nil {
		t.Fatal(err)
	}
	defer ob2.Close()
	if moved == "" {
		t.Fatal("nothing moved aside")
	}
	if got, _ := os.ReadFile(moved); len(got) != len(b) {
		t.Fatalf("moved file has %d bytes, want the original %d", len(got), len(b))
	}
	if h, _ := ob2.Head(); h.Seq != 0 {
		t.Fatalf("new outbox head = %+v", h)
	}
}

func TestSealErrorStoresNothing(t *testing.T) {
	ob := open(t, filepath.Join(t.TempDir(), "outbox.db"), Config{})
	_, err := ob.Append(func(uint64, string) ([]byte, string, error) {
		return nil, "", fmt.Errorf("boom")
	}, []byte("state"))
	if err == nil {
		t.Fatal("want error")
	}
	if h, _ := ob.Head(); h.Seq != 0 {
		t.Fatalf("head moved on failed seal: %+v", h)
	}
	if _, err := ob.State(); !errors.Is(err, ErrNotFound) {
		t.Fatalf("state stored on failed seal: %v", err)
	}
}
