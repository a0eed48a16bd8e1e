package agent

import (
	"os"
	"runtime/debug"
)

// GCPercent is the garbage collector target the agent runs with (as GOGC=25).
//
// The agent's live memory is mostly the model it must keep (a 100k-rule ruleset is
// ~23 MB once read), and a full read allocates in a burst: every rule is rendered. With
// Go's default target of 100 the heap grows to twice the live memory meanwhile (74 MB
// RSS for that read), at 50 to one and a half times (63 MB, and 72 MB for a re-read,
// which holds the old state while it reads the new), at 25 it stays near a quarter
// above (56 and 59 MB), for about 0.8 s more CPU in user space on a first read that
// costs the kernel 20 s (method and figures: scripts/bench/README.md, "nftables
// read"). Between reads the agent allocates little, so the lower target costs nothing
// measurable there. A hard memory limit was tried instead: with the live heap near it
// the collector ran without pause (9 s of CPU for the same read), and a bigger ruleset
// than the limit was sized for would make that permanent.
const GCPercent = 25

// TuneGC sets the collector target to GCPercent unless GOGC is set in the environment,
// which then decides as usual.
func TuneGC() {
	if os.Getenv("GOGC") == "" {
		debug.SetGCPercent(GCPercent)
	}
}
