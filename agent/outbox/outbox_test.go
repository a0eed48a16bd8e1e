package outbox

import (
	"fmt"
	"path/filepath"
	"testing"
)

func sealer(t *testing.T, seen *[]string) Sealer {
	return func(seq uint64, prev string) ([]byte, string, error) {
		*seen = append(*seen, fmt.Sprintf("%d<-%s", seq, prev))
		return []byte(fmt.Sprintf("env-%d", seq)), fmt.Sprintf("id-%d", seq), nil
	}
}

func TestAppendChainsAndSurvivesReopen(t *testing.T) {
	path := filepath.Join(t.TempDir(), "outbox.db")
	ob, err := Open(path)
	if err != nil {
		t.Fatal(err)
	}
	var seen []string
	for i := 0; i < 3; i++ {
		if _, err := ob.Append(sealer(t, &seen), []byte(fmt.Sprintf("state-%d", i))); err != nil {
			t.Fatal(err)
		}
	}
	want := []string{"1<-", "2<-id-1", "3<-id-2"}
	if fmt.Sprint(seen) != fmt.Sprint(want) {
		t.Fatalf("chain = %v, want %v", seen, want)
	}
	ob.Close()

	ob, err = Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer ob.Close()
	h, _ := ob.Head()
	if h.Seq != 3 || h.ID != "id-3" || h.Acked != 0 {
		t.Fatalf("head after reopen = %+v", h)
	}
	st, err := ob.State()
	if err != nil || string(st) != "state-2" {
		t.Fatalf("state = %q, %v", st, err)
	}
	seq, _ := ob.Append(sealer(t, &seen), nil)
	if seq != 4 || seen[len(seen)-1] != "4<-id-3" {
		t.Fatalf("append after reopen: seq %d, %v", seq, seen)
	}
	if st, _ := ob.State(); string(st) != "state-2" {
		t.Fatalf("nil state overwrote the stored one: %q", st)
	}
}

func TestPendingAndAck(t *testing.T) {
	ob, err := Open(filepath.Join(t.TempDir(), "outbox.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer ob.Close()
	var seen []string
	for i := 0; i < 10; i++ {
		ob.Append(sealer(t, &seen), nil)
	}
	p, _ := ob.Pending(0, 4)
	if len(p) != 4 || p[0].Seq != 1 || p[3].Seq != 4 || string(p[2].Envelope) != "env-3" {
		t.Fatalf("pending(0,4) = %+v", p)
	}
	p, _ = ob.Pending(8, 100)
	if len(p) != 2 || p[0].Seq != 9 {
		t.Fatalf("pending(8) = %+v", p)
	}
	n, err := ob.Ack(6)
	if err != nil || n != 6 {
		t.Fatalf("ack 6: removed %d, %v", n, err)
	}
	if d, _ := ob.Depth(); d != 4 {
		t.Fatalf("depth after ack = %d, want 4", d)
	}
	if n, _ := ob.Ack(3); n != 0 {
		t.Fatalf("an older ack removed %d events", n)
	}
	if _, err := ob.Ack(11); err == nil {
		t.Fatal("ack beyond head accepted")
	}
	p, _ = ob.Pending(0, 100)
	if len(p) != 4 || p[0].Seq != 7 {
		t.Fatalf("pending after ack = %+v", p)
	}
	if h, _ := ob.Head(); h.Acked != 6 || h.Seq != 10 {
		t.Fatalf("head = %+v", h)
	}
}

func TestSealErrorStoresNothing(t *testing.T) {
	ob, err := Open(filepath.Join(t.TempDir(), "outbox.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer ob.Close()
	_, err = ob.Append(func(uint64, string) ([]byte, string, error) {
		return nil, "", fmt.Errorf("boom")
	}, []byte("state"))
	if err == nil {
		t.Fatal("want error")
	}
	if h, _ := ob.Head(); h.Seq != 0 {
		t.Fatalf("head moved on failed seal: %+v", h)
	}
	if _, err := ob.State(); err != ErrNotFound {
		t.Fatalf("state stored on failed seal: %v", err)
	}
}
