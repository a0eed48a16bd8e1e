package agent

import (
	"os"
	"runtime/debug"
)

// GCPercent is the garbage collector target the agent runs with (as GOGC=50).
//
// The agent's live memory is small (a 100k-rule ruleset is ~23 MB once read) but a full
// read allocates in a burst (every rule is rendered), and with Go's default target of
// 100 the heap grows to twice the live memory meanwhile: a 100k-rule read peaked at
// 74 MB RSS. At 50 it stays near one and a half times (60 MB), for a few tenths of a
// second more CPU on that read and nothing measurable when idle (method and figures:
// scripts/bench/README.md, "nftables read"). A hard memory limit was tried instead: with
// the live heap near it the collector ran without pause (9 s of CPU for the same read).
const GCPercent = 50

// TuneGC sets the collector target to GCPercent unless GOGC is set in the environment,
// which then decides as usual.
func TuneGC() {
	if os.Getenv("GOGC") == "" {
		debug.SetGCPercent(GCPercent)
	}
}
