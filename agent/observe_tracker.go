package agent

import (
	"errors"
	"fmt"
	"maps"
	"time"

	"github.com/fenceline/fenceline/agent/nft"
	"github.com/fenceline/fenceline/shared/event"
	"github.com/fenceline/fenceline/shared/nftcanon"
	"github.com/fenceline/fenceline/shared/ruleset"
)

// stateSource is a Source that also reads the ruleset into an nftcanon.State
// (agent/nft's Reader does): the agent then applies each generation's notified messages
// to it instead of reading the whole ruleset for every generation.
type stateSource interface {
	ReadState(prev *nftcanon.State) (*nftcanon.State, *ruleset.Ruleset, uint32, error)
	// Interfaces are the namespace's interface names by index now.
	Interfaces() (map[uint32]string, error)
}

// tracker follows the ruleset generation by generation. It holds the state of the last
// generation it saw (read in full, or derived by applying notifications), which may be
// ahead of what the agent last reported: generations that change nothing the model
// covers (counter resets, elements of dynamic sets) produce no event.
type tracker struct {
	src    Source
	states stateSource // nil: every generation is read in full
	// state is the tracked state when states is set, nil when it must be read again.
	state *nftcanon.State
	// prev is the last state read or applied, kept after a failed apply so that a read
	// need not render its rules again.
	prev *nftcanon.State
	gen  uint32
	rs   *ruleset.Ruleset
	// backstopGen is the generation a backstop read found ahead of gen, waiting for its
	// notifications to arrive (see backstop).
	backstopGen uint32
	applied     int // generations applied from notifications, for tests and logs
	// expiry is when the first element of a configuration set in the tracked state times
	// out (zero: none will). The kernel sends nothing then; the agent reads at that time.
	expiry time.Time
}

// noteExpiry keeps the sooner of the tracked expiry and one d from now.
func (t *tracker) noteExpiry(d time.Duration, ok bool) {
	if at := time.Now().Add(d); ok && (t.expiry.IsZero() || at.Before(t.expiry)) {
		t.expiry = at
	}
}

func newTracker(src Source) *tracker {
	t := &tracker{src: src}
	t.states, _ = src.(stateSource)
	return t
}

// read reads the whole ruleset and makes it the tracked state.
func (t *tracker) read() (*ruleset.Ruleset, uint32, error) {
	if t.states == nil {
		rs, gen, err := t.src.Snapshot()
		if err != nil {
			return nil, 0, err
		}
		t.rs, t.gen = rs, gen
		return rs, gen, nil
	}
	// The new state shares the rendered rules of the old one that are still there.
	prev := t.state
	if prev == nil {
		prev = t.prev
	}
	var st *nftcanon.State
	var rs *ruleset.Ruleset
	var gen uint32
	var err error
	WithReadGC(func() { st, rs, gen, err = t.states.ReadState(prev) })
	if err != nil {
		return nil, 0, err
	}
	t.state, t.prev, t.rs, t.gen = st, st, rs, gen
	t.expiry = time.Time{}
	t.noteExpiry(st.Expiry())
	return rs, gen, nil
}

// TODO: the kernel sends no notification when a set element's timeout expires; the agent
// reads when the first one is due (tracker.expiry, checked every second). A commit in the
// second after an expiry whose generation needs a full read still reports the expiry in
// its own event, with its committer.

// errNeedRead says a notification cannot be applied and the ruleset must be read.
var errNeedRead = errors.New("generation needs a full read")

// apply derives the state of generation n from the tracked one and n's messages. It
// returns errNeedRead when that is not possible with certainty (no state, messages
// missing, the generation does not follow the tracked one, an update the state cannot
// take); the tracked state is then stale and the caller reads in full.
//
// A generation that changed only rules costs about what it touched: the new rules are
// rendered, their chains and tables copied, and the chains and sets it did not touch are
// the very nodes of the last model, whose digests and JSON are remembered
// (nftcanon.State.Build, ruleset.DigestCache, ruleset.JSONCache); 11.7k rules in 5,847
// chains take ~11 ms from commit to outbox at the median (scripts/bench/README.md).
//
// TODO: what is left grows with the ruleset, not with the change: State.Apply scans the
// rule list for each notified rule (its neighbour, duplicates), the table digest sorts
// all chain names, Diff and the state's JSON walk all chains (known nodes are cheap),
// and every event stores the whole state in the outbox (about 1 MB at 11.7k rules,
// written and fsynced). A generation that changes anything but rules (a set's
// elements, a chain's policy, a rule filling a set) takes the full build, which parses
// every chain and set message the memo does not know.
func (t *tracker) apply(n nft.Notification) (*ruleset.Ruleset, error) {
	if t.state == nil || !n.Complete || n.Overrun || n.Gen != t.gen+1 {
		return nil, errNeedRead
	}
	// Rules print interfaces by name: with an interface added, removed or renamed since
	// the state was read, a new rule would print an index, and old ones a stale name.
	names, err := t.states.Interfaces()
	if err != nil {
		return nil, fmt.Errorf("%w: interfaces: %v", errNeedRead, err)
	}
	if !maps.Equal(names, t.state.Ifnames()) {
		return nil, fmt.Errorf("%w: interfaces changed", errNeedRead)
	}
	if err := t.state.Apply(n.Updates); err != nil {
		t.state = nil // undefined after a failed Apply; its rendered rules stay usable
		if errors.Is(err, nftcanon.ErrNotIncremental) {
			return nil, fmt.Errorf("%w: %v", errNeedRead, err)
		}
		return nil, err
	}
	rs, err := t.state.Build()
	if err != nil {
		t.state = nil
		return nil, fmt.Errorf("canonicalize: %w", err)
	}
	t.rs, t.gen = rs, n.Gen
	t.applied++
	t.noteExpiry(nftcanon.Expiry(rs, n.Updates))
	return rs, nil
}

// reportGeneration reports one generation's state as a change event when it differs
// from what was last reported.
func (a *Agent) reportGeneration(rs *ruleset.Ruleset, gen uint32, c *event.Committer) error {
	if a.digests.of(rs) == a.last.Digest {
		a.log.Debug("generation without ruleset change", "generation", gen, "comm", commName(c))
		return nil
	}
	return a.report(event.Change, rs, gen, c, "", nil)
}

// reconcile reads the ruleset in full and reports a reconcile event when the state moved
// (or, when lost is set, when generations went unobserved).
func (a *Agent) reconcile(tr *tracker, note string, lost bool) error {
	seen := tr.gen
	rs, gen, err := tr.read()
	if err != nil {
		return a.readFailed(err)
	}
	return a.reconciled(rs, gen, note, missedGenerations(seen, gen), lost)
}

// reconciled reports a state found by a full read: always when it differs from the last
// report, and, when lost is set, also when generations were missed without a net change.
func (a *Agent) reconciled(rs *ruleset.Ruleset, gen uint32, note string, missed []string,
	lost bool) error {
	if a.digests.of(rs) == a.last.Digest && (!lost || len(missed) == 0) {
		return nil
	}
	return a.report(event.Reconcile, rs, gen, nil, note, missed)
}

// committer is who committed generation n, as far as the kernel says.
func committer(n nft.Notification) *event.Committer {
	if n.PID == 0 && n.Comm == "" {
		return nil
	}
	return &event.Committer{PID: n.PID, Comm: n.Comm, LoginUID: n.LoginUID, Session: n.Session}
}

// missedGenerations lists the generations after seen up to and including now as one
// "first-last" range, or nothing when now does not follow seen (no generation missed, or
// the counter restarted with the kernel).
func missedGenerations(seen, now uint32) []string {
	if now <= seen {
		return nil
	}
	return []string{fmt.Sprintf("%d-%d", seen+1, now)}
}

// undecodedRules counts the rules of rs that hold expressions kept in the lossless
// fallback form (the model cannot print them as nft would). Their text still hashes and
// diffs exactly; the count is logged with every event so that a gap in decoding shows.
func undecodedRules(rs *ruleset.Ruleset) (rules, exprs int) {
	for _, t := range rs.Tables {
		for _, c := range t.Chains {
			for _, r := range c.Rules {
				if r.Undecoded > 0 {
					rules++
					exprs += r.Undecoded
				}
			}
		}
	}
	return rules, exprs
}

// digestMemo remembers the digest of the last ruleset it hashed: a generation's state is
// compared with the last report and then reported, and hashing a big ruleset twice was a
// good part of the detection latency. Rulesets are not modified once built, so the
// pointer identifies the state. Successive states share the chains and sets a generation
// did not touch (nftcanon.State.Build), whose digests the cache remembers.
type digestMemo struct {
	rs    *ruleset.Ruleset
	sum   string
	cache ruleset.DigestCache
}

func (m *digestMemo) of(rs *ruleset.Ruleset) string {
	if rs != m.rs || m.sum == "" {
		m.rs, m.sum = rs, rs.DigestCached(&m.cache).String()
	}
	return m.sum
}
