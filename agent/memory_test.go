package agent

import (
	"os"
	"runtime/debug"
	"testing"
)

// TestWithReadGC: the collector target is ReadGCPercent during a read, nested reads
// included, and what it was before once the last read ends.
func TestWithReadGC(t *testing.T) {
	if os.Getenv("GOGC") != "" {
		t.Skip("GOGC is set: WithReadGC leaves the target alone")
	}
	defer debug.SetGCPercent(debug.SetGCPercent(77))
	current := func() int {
		p := debug.SetGCPercent(0)
		debug.SetGCPercent(p)
		return p
	}
	WithReadGC(func() {
		if p := current(); p != ReadGCPercent {
			t.Errorf("during a read: %d, want %d", p, ReadGCPercent)
		}
		WithReadGC(func() {})
		if p := current(); p != ReadGCPercent {
			t.Errorf("after a nested read: %d, want %d", p, ReadGCPercent)
		}
	})
	if p := current(); p != 77 {
		t.Errorf("after the read: %d, want 77", p)
	}
}
