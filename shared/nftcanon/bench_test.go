package nftcanon

import "testing"

// BenchmarkBuild canonicalizes the recorded dumps.
func BenchmarkBuild(b *testing.B) {
	recs := loadRecorded(b)
	rules := 0
	for _, r := range recs {
		rules += len(r.dump.Rules)
	}
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		for _, r := range recs {
			if _, err := Build(r.dump); err != nil {
				b.Fatal(err)
			}
		}
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*rules), "ns/rule")
}
