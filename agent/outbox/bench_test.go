package outbox

import (
	"path/filepath"
	"testing"
)

// Outbox append rate with fsync. Method: `go test -run '^$' -bench Append -benchtime 2000x
// ./agent/outbox` on the machine's own disk (t.TempDir). Each op is one event of
// 1 KiB (the size of a typical change event envelope); ns/op is per event, so the
// events/s figure is 1e9 / ns/op. Batch sizes compare one commit per event with group
// commits.
func benchmarkAppend(b *testing.B, batch int) {
	ob, err := Open(filepath.Join(b.TempDir(), "outbox.db"), Config{})
	if err != nil {
		b.Fatal(err)
	}
	defer ob.Close()
	env := make([]byte, 1024)
	seal := func(seq uint64, prev string) ([]byte, string, error) { return env, idOf(seq), nil }
	items := make([]Item, batch)
	for i := range items {
		items[i] = Item{Seal: seal}
	}
	b.SetBytes(int64(len(env)))
	b.ResetTimer()
	for done := 0; done < b.N; done += batch {
		n := min(batch, b.N-done)
		if _, err := ob.AppendBatch(items[:n]); err != nil {
			b.Fatal(err)
		}
		// Keep the outbox small as the uplink would, so the cost measured is the append.
		if h, _ := ob.Head(); h.Count > 4096 {
			ob.Ack(h.Seq, "")
		}
	}
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "events/s")
}

func BenchmarkAppend1(b *testing.B)   { benchmarkAppend(b, 1) }
func BenchmarkAppend16(b *testing.B)  { benchmarkAppend(b, 16) }
func BenchmarkAppend256(b *testing.B) { benchmarkAppend(b, 256) }
