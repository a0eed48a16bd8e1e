package agent

import (
	"os"
	"runtime/debug"
	"sync"
)

// ReadGCPercent is the garbage collector target while the agent reads the whole ruleset
// (as GOGC=25; Go's default, 100, applies otherwise).
//
// A full read allocates in a burst (every rule is rendered) while the model it builds,
// which the agent keeps, grows to most of the live memory (~23 MB for 100k rules). With
// the default target the heap grows to twice the live memory meanwhile (74 MB RSS for
// that read), at 50 to one and a half times (63 MB, and 72 MB for a re-read, which holds
// the old state while it reads the new), at 25 it stays near a quarter above (56 and
// 59 MB), for about 0.8 s more CPU in user space on a first read that costs the kernel
// 20 s (method and figures: scripts/bench/README.md, "nftables read"). Between reads the
// default stays: at 25 for good, the collector ran so often on the kube-proxy benchmark
// that the detection latency doubled (p50 11 → 29 ms). A hard memory limit was tried
// instead of either: with the live heap near it the collector ran without pause (9 s of
// CPU for the same read), and a ruleset bigger than the limit was sized for would make
// that permanent.
const ReadGCPercent = 25

// readGC counts the reads in progress; old is the target to restore after the last.
var readGC struct {
	sync.Mutex
	n   int
	old int
}

// WithReadGC runs read with the collector target at ReadGCPercent, unless GOGC is set in
// the environment, which then decides as usual. The target is process-wide: overlapping
// calls keep it until the last one ends.
func WithReadGC(read func()) {
	if os.Getenv("GOGC") != "" {
		read()
		return
	}
	readGC.Lock()
	if readGC.n == 0 {
		readGC.old = debug.SetGCPercent(ReadGCPercent)
	}
	readGC.n++
	readGC.Unlock()
	defer func() {
		readGC.Lock()
		readGC.n--
		if readGC.n == 0 {
			debug.SetGCPercent(readGC.old)
		}
		readGC.Unlock()
	}()
	read()
}
