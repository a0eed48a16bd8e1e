package snmp

import (
	"context"
	"errors"
	"log/slog"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/fenceline/fenceline/shared/event"
	"github.com/fenceline/fenceline/shared/ruleset"
)

// Sink receives what a Watcher observes: the device reporter of one enrolled device.
type Sink interface {
	// Report records a new state: a baseline (the first), a change, or a reconcile (a
	// change across a period the watcher could not observe: start, unreachable target,
	// device restart). note explains a reconcile.
	Report(kind event.Kind, rs *ruleset.Ruleset, c *event.Committer, note string) error
	// Heartbeat says the device was read successfully and its state is the last reported.
	Heartbeat() error
}

// Intervals paces a Watcher.
type Intervals struct {
	// Poll is how often the cheap scalars are read (and how often an unreachable target
	// is retried).
	Poll time.Duration
	// Walk is the backstop: the tables are walked this often even if no trigger moved.
	Walk time.Duration
	// Heartbeat is how often a reachable target's heartbeat is reported.
	Heartbeat time.Duration
}

// TrapNote is a configuration-change notification for a target.
type TrapNote struct {
	// Trap is the notification's name from the profile (ccmCLIRunningConfigChanged).
	Trap string
	// Committer is who made the change, from the trap's varbinds; nil when it does not say.
	Committer *event.Committer
	At        time.Time
}

// Stats counts what a Watcher did. Read it with Watcher.Stats.
type Stats struct {
	Polls, PollErrors, Reads, ReadErrors, Traps, Reports, ReportErrors uint64
	// Restarts counts the device restarts seen (snmpEngineBoots up, or sysUpTime back by
	// other than its 2^32 wrap).
	Restarts uint64
	// Unreachable is true while the last poll or read of the target failed.
	Unreachable bool
	// LastError is the last failure's text; LastOK the last successful poll or read.
	LastError string
	LastOK    time.Time
	// LastRead is when the tables were last read (for tests and the operator).
	LastRead time.Time
	// LastReadStart is when the last read of the tables began and LastReadWhy what caused
	// it ("start", "poll", "restart", "trigger NAME", "trap NAME", "backstop").
	LastReadStart time.Time
	LastReadWhy   string
	// LastTrap is when the listener received the last configuration-change notification.
	LastTrap time.Time
}

// Watcher polls one target and reports its configuration to a Sink.
type Watcher struct {
	name   string
	poller *Poller
	sink   Sink
	iv     Intervals
	log    *slog.Logger
	traps  chan TrapNote

	last       *ruleset.Ruleset
	lastDigest ruleset.Sum
	// resume is set after a failure: the next successful read is a reconcile.
	resume string

	polls, pollErrors, reads, readErrors, trapsN, reports, reportErrors, restarts atomic.Uint64

	mu sync.Mutex
	st Stats
}

// NewWatcher returns a watcher for the target called name. last is the state last
// reported for this device (nil before its baseline).
func NewWatcher(name string, p *Poller, sink Sink, iv Intervals, last *ruleset.Ruleset,
	log *slog.Logger) *Watcher {
	w := &Watcher{name: name, poller: p, sink: sink, iv: iv, log: log, last: last,
		traps: make(chan TrapNote, 1)}
	if last != nil {
		w.lastDigest = last.Digest()
	}
	return w
}

// Trap hands the watcher a configuration-change notification; it reads the device at
// once. It never blocks: notifications arriving while one waits are folded into it.
func (w *Watcher) Trap(n TrapNote) {
	w.trapsN.Add(1)
	for {
		select {
		case w.traps <- n:
			return
		default:
		}
		select {
		case old := <-w.traps:
			if n.Committer == nil {
				n.Committer = old.Committer
			}
		default:
		}
	}
}

// Stats returns a copy of the watcher's counters.
func (w *Watcher) Stats() Stats {
	w.mu.Lock()
	s := w.st
	w.mu.Unlock()
	s.Polls, s.PollErrors, s.Reads, s.ReadErrors = w.polls.Load(), w.pollErrors.Load(),
		w.reads.Load(), w.readErrors.Load()
	s.Traps, s.Reports, s.ReportErrors = w.trapsN.Load(), w.reports.Load(), w.reportErrors.Load()
	s.Restarts = w.restarts.Load()
	return s
}

// Run watches until ctx ends. Failures of the target never end it: they are logged once
// per change of reachability, counted, and retried every poll interval. While the target
// is unreachable no heartbeat is reported, so the aggregator sees the device go silent.
func (w *Watcher) Run(ctx context.Context) error {
	w.resume = "start"
	w.read(ctx, "start", nil)
	poll := time.NewTicker(w.iv.Poll)
	defer poll.Stop()
	walk := time.NewTicker(w.iv.Walk)
	defer walk.Stop()
	heartbeat := time.NewTicker(w.iv.Heartbeat)
	defer heartbeat.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case n := <-w.traps:
			w.mu.Lock()
			w.st.LastTrap = n.At
			w.mu.Unlock()
			w.log.Debug("snmp config-change trap", "target", w.name, "trap", n.Trap)
			w.read(ctx, "trap "+n.Trap, n.Committer)
		case <-poll.C:
			w.poll(ctx)
		case <-walk.C:
			w.read(ctx, "backstop", nil)
		case <-heartbeat.C:
			if w.unreachable() || w.last == nil {
				continue
			}
			if err := w.sink.Heartbeat(); err != nil {
				w.log.Error("snmp heartbeat not recorded", "target", w.name, "err", err)
			}
		}
	}
}

func (w *Watcher) poll(ctx context.Context) {
	w.polls.Add(1)
	c, err := w.poller.Poll(ctx)
	if err != nil {
		w.pollErrors.Add(1)
		w.failed(ctx, err)
		return
	}
	w.log.Debug("snmp poll", "target", w.name, "uptime", c.Reading.Uptime, "boots", c.Reading.Boots,
		"has_boots", c.Reading.HasBoots)
	switch {
	case c.Restarted:
		// Checked first: a device that was unreachable because it restarted says so in
		// the reconcile, rather than only that it was unreachable.
		w.restarts.Add(1)
		w.log.Info("snmp target restarted", "target", w.name, "note", c.Note)
		w.resume = c.Note
		w.read(ctx, "restart", nil)
	case w.resume != "":
		w.read(ctx, "poll", nil)
	case len(c.Moved) > 0:
		w.log.Debug("snmp change scalars moved", "target", w.name, "moved", strings.Join(c.Moved, ","))
		w.read(ctx, "trigger "+strings.Join(c.Moved, ","), nil)
	default:
		w.ok()
	}
}

// read walks the tables and reports the state if it moved.
func (w *Watcher) read(ctx context.Context, why string, trapCommitter *event.Committer) {
	w.mu.Lock()
	w.st.LastReadStart, w.st.LastReadWhy = time.Now(), why
	w.mu.Unlock()
	w.reads.Add(1)
	s, err := w.poller.Read(ctx, w.last)
	if err != nil {
		w.readErrors.Add(1)
		w.failed(ctx, err)
		return
	}
	w.mu.Lock()
	w.st.LastRead = time.Now()
	w.mu.Unlock()
	w.ok()
	if s.Restarted {
		w.restarts.Add(1)
		w.log.Info("snmp target restarted", "target", w.name, "note", s.Note)
		w.resume = s.Note
	}
	if w.last != nil && s.Digest == w.lastDigest {
		if w.resume != "" && w.resume != "start" && w.resume != "unreachable" {
			w.log.Info("snmp target configuration unchanged", "target", w.name, "after", w.resume)
		}
		w.resume = ""
		return
	}
	kind, note := event.Change, ""
	switch {
	case w.last == nil:
		kind = event.Baseline
	case w.resume == "start":
		kind, note = event.Reconcile, "configuration changed while the agent was not watching"
	case w.resume == "unreachable":
		kind, note = event.Reconcile, "configuration changed while the target was unreachable"
	case w.resume != "":
		kind, note = event.Reconcile, w.resume+"; configuration changed across the restart"
	}
	c := trapCommitter
	if c == nil {
		c = s.Committer
	}
	w.reports.Add(1)
	if err := w.sink.Report(kind, s.State, c, note); err != nil {
		w.reportErrors.Add(1)
		w.log.Error("snmp state not recorded; retrying at the next read", "target", w.name,
			"err", err)
		return
	}
	w.log.Info("snmp configuration event", "target", w.name, "kind", kind, "why", why,
		"digest", s.Digest.String(), "reads", s.Attempts)
	w.last, w.lastDigest, w.resume = s.State, s.Digest, ""
}

func (w *Watcher) failed(ctx context.Context, err error) {
	if ctx.Err() != nil || errors.Is(err, context.Canceled) {
		return
	}
	w.mu.Lock()
	was := w.st.Unreachable
	w.st.Unreachable, w.st.LastError = true, err.Error()
	w.mu.Unlock()
	if w.resume == "" {
		w.resume = "unreachable"
	}
	if !was {
		w.log.Warn("snmp target unreachable; no events or heartbeats until it answers",
			"target", w.name, "err", err)
	} else {
		w.log.Debug("snmp target still unreachable", "target", w.name, "err", err)
	}
}

func (w *Watcher) ok() {
	w.mu.Lock()
	was := w.st.Unreachable
	w.st.Unreachable, w.st.LastOK = false, time.Now()
	w.mu.Unlock()
	if was {
		w.log.Info("snmp target reachable again", "target", w.name)
	}
}

func (w *Watcher) unreachable() bool {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.st.Unreachable
}
