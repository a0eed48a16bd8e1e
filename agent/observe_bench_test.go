package agent

import (
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/fenceline/fenceline/agent/nft"
)

// corpusNft is the shared nftables corpus, relative to this package's directory.
const corpusNft = "../../shared/corpus/nft"

// BenchmarkDetectLatency measures the time from an `nft add rule` command returning to
// its change event being in the agent's outbox (signed, fsynced by bbolt): the agent's
// own share of detection latency, without delivery. Each iteration adds one rule to a
// chain of its own beside a corpus ruleset and polls the outbox head every 100 µs
// from the moment nft has returned. Method and figures: scripts/bench/README.md
// ("nftables detection latency"); run with scripts/bench/nft-detect.sh.
func BenchmarkDetectLatency(b *testing.B) {
	requireKernel(b)
	for _, tc := range []struct{ name, file string }{
		{"router", "user-linux-wireless-router.nft"},         // tens of rules
		{"kube-proxy-11k", "BIG-gen-kube-proxy-1500svc.nft"}, // 11,685 rules, 5,847 chains
	} {
		b.Run(tc.name, func(b *testing.B) {
			file := filepath.Join(corpusNft, tc.file)
			if _, err := os.Stat(file); err != nil {
				b.Skipf("corpus file %s: %v", file, err)
			}
			ns := newNS(b, "bench-detect")
			inNS(b, ns, "nft", "-f", file)
			inNS(b, ns, "nft", "add table inet fl_bench; add chain inet fl_bench c")
			r, err := nft.Open(ns)
			if err != nil {
				b.Fatal(err)
			}
			o := startObserverSource(b, r, r, nil)
			o.waitEvents(b, 1, 2*time.Minute)
			head := func() uint64 {
				h, err := o.a.ob.Head()
				if err != nil {
					b.Fatal(err)
				}
				return h.Seq
			}
			lat := make([]time.Duration, 0, b.N)
			b.ResetTimer()
			for i := range b.N {
				seq := head()
				inNS(b, ns, "nft", fmt.Sprintf("add rule inet fl_bench c tcp dport %d drop",
					1+i%65535))
				t0 := time.Now()
				deadline := t0.Add(10 * time.Second)
				for head() == seq {
					if time.Now().After(deadline) {
						b.Fatalf("no event within 10 s of commit %d", i)
					}
					time.Sleep(100 * time.Microsecond)
				}
				lat = append(lat, time.Since(t0))
			}
			b.StopTimer()
			if evs := o.events(b); len(evs) != b.N+1 {
				b.Fatalf("%d events for %d commits and the baseline", len(evs), b.N)
			}
			slices.Sort(lat)
			pct := func(p float64) float64 {
				return float64(lat[min(len(lat)-1, int(p*float64(len(lat))))].Microseconds()) / 1000
			}
			b.ReportMetric(pct(0.5), "p50-ms")
			b.ReportMetric(pct(0.9), "p90-ms")
			b.ReportMetric(pct(0.99), "p99-ms")
			b.ReportMetric(pct(1), "max-ms")
		})
	}
}
