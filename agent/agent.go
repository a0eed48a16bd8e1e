// Package agent is the Fenceline agent's runtime: it watches the nftables ruleset,
// turns every committed change into a signed event in the durable outbox, and lets the
// uplink deliver the outbox to the aggregator.
package agent

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"path/filepath"
	"strconv"
	"time"

	"golang.org/x/sync/errgroup"

	"github.com/fenceline/fenceline/agent/identity"
	"github.com/fenceline/fenceline/agent/nft"
	"github.com/fenceline/fenceline/agent/outbox"
	"github.com/fenceline/fenceline/agent/uplink"
	"github.com/fenceline/fenceline/shared/event"
	"github.com/fenceline/fenceline/shared/ruleset"
)

// OutboxFile is the outbox's file name inside the state directory.
const OutboxFile = "outbox.db"

// Source is where rulesets come from: the nftables reader in production.
type Source interface {
	Snapshot() (*ruleset.Ruleset, uint32, error)
	Watch(ctx context.Context) (<-chan nft.Notification, error)
}

// Agent observes one device and reports it.
type Agent struct {
	cfg     *Config
	id      *identity.Identity
	src     Source
	ob      *outbox.Outbox
	up      *uplink.Uplink
	signer  *event.Signer
	log     *slog.Logger
	metrics *metrics
	now     func() time.Time
	chain   *chain // appends to ob through up (delivery.go)

	// last is the state most recently appended to the outbox.
	last *observed
	// digests remembers the digest of the ruleset last hashed (see digestOf).
	digests digestMemo
	// states remembers the JSON of the chains and sets of the last state stored.
	states ruleset.JSONCache
}

// observed is what the agent last reported; it is kept in the outbox with its event.
type observed struct {
	Digest     string           `json:"digest"`
	Generation uint32           `json:"generation"`
	Ruleset    *ruleset.Ruleset `json:"ruleset"`
}

// encode gives json.Marshal(o), taking the encodings of the chains and sets an earlier
// state shared with o from c: the state is stored with every event, and encoding all of
// a big ruleset each time was the largest part of the detection latency.
func (o *observed) encode(c *ruleset.JSONCache) ([]byte, error) {
	b := []byte(`{"digest":`)
	d, err := json.Marshal(o.Digest)
	if err != nil {
		return nil, err
	}
	b = append(b, d...)
	b = append(b, `,"generation":`...)
	b = strconv.AppendUint(b, uint64(o.Generation), 10)
	b = append(b, `,"ruleset":`...)
	if b, err = o.Ruleset.AppendJSON(b, c); err != nil {
		return nil, err
	}
	return append(b, '}'), nil
}

// Enrolled loads the agent's identity, enrolling first with cfg.EnrollToken if the state
// directory holds none.
//
// An enrollment from before the aggregator named its ack key learns the key now, when the
// aggregator answers (see learnAckKey).
func Enrolled(ctx context.Context, cfg *Config, log *slog.Logger) (*identity.Identity, error) {
	id, err := identity.Load(cfg.StateDir)
	if err == nil {
		learnAckKey(ctx, id, cfg.AggregatorURL, cfg.StateDir, log)
	}
	if err == nil || !errors.Is(err, identity.ErrNotEnrolled) || cfg.EnrollToken == "" {
		return id, err
	}
	hc := &http.Client{Timeout: 30 * time.Second}
	id, err = identity.Enroll(ctx, hc, cfg.AggregatorURL, cfg.EnrollToken, cfg.StateDir)
	if err != nil {
		return nil, err
	}
	log.Info("enrolled", "tenant", id.Tenant, "device", id.Device, "key_id", id.KeyID)
	return id, nil
}

// learnAckKey asks the aggregator the device enrolled with (server only when the
// enrollment names none) for its ack key when id has none, so that the uplink checks acks
// from then on. Only that aggregator is asked: a key learnt from another would make the
// agent refuse every real ack. Failing is not fatal: acks are then taken unsigned, as
// before, and the next start tries again.
func learnAckKey(ctx context.Context, id *identity.Identity, server, dir string, log *slog.Logger) {
	if id.AckKey != "" {
		return
	}
	server = firstNonEmpty(id.Aggregator, server)
	if server == "" {
		return
	}
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	if err := id.LearnAckKey(ctx, &http.Client{}, server, dir); err != nil {
		log.Warn("could not learn the aggregator's ack key; acks are taken unsigned until a "+
			"later start learns it", "device", id.Device, "err", err)
		return
	}
	log.Info("learnt the aggregator's ack key; acks are checked from now on", "device", id.Device)
}

// New assembles an agent. It opens the outbox; Close releases it.
func New(cfg *Config, id *identity.Identity, src Source, log *slog.Logger) (*Agent, error) {
	ob, moved, err := outbox.OpenOrRecover(filepath.Join(cfg.StateDir, OutboxFile),
		outbox.Config{MaxBytes: cfg.Outbox.MaxBytes})
	if err != nil {
		return nil, err
	}
	if moved != "" {
		log.Error("outbox was corrupt and has been moved aside; undelivered events in it are lost "+
			"and the agent resynchronizes with the aggregator", "moved_to", moved)
	}
	brokerURL := cfg.Broker.URL
	if brokerURL == "" {
		brokerURL = id.BrokerURL
	}
	if brokerURL == "" {
		ob.Close()
		return nil, errors.New("no broker: set broker.url or enroll with an aggregator that names one")
	}
	log = log.With("tenant", id.Tenant, "device", id.Device)
	ackKey, err := id.AckPublicKey()
	if err != nil {
		ob.Close()
		return nil, fmt.Errorf("identity: %w", err)
	}
	if ackKey == nil {
		// Enrolled tried to learn it; the aggregator did not answer then.
		log.Warn("the enrollment names no aggregator ack key: acks are taken unsigned until " +
			"a start reaches the aggregator to learn it")
	}
	m := newMetrics(id, ob)
	up := uplink.New(uplink.Config{
		BrokerURL:   brokerURL,
		ClientID:    cfg.Broker.ClientID,
		Username:    cfg.Broker.Username,
		Password:    cfg.Broker.Password,
		Tenant:      id.Tenant,
		Device:      id.Device,
		AckKey:      ackKey,
		Batch:       cfg.Uplink.Batch,
		Window:      cfg.Uplink.Window,
		Rate:        cfg.Uplink.Rate,
		ResendAfter: cfg.Uplink.ResendAfter,
	}, ob, m.uplink, log)
	a := &Agent{
		cfg: cfg, id: id, src: src, ob: ob, up: up, log: log, metrics: m,
		signer: event.NewSigner(id.Key),
		now:    time.Now,
	}
	a.chain = &chain{ob: ob, up: up, signer: a.signer, log: log, maxBytes: cfg.Outbox.MaxBytes,
		metrics: m, newEvent: func(kind event.Kind, after string) *event.Event {
			return &event.Event{V: event.Version, Kind: kind, Tenant: id.Tenant, Device: id.Device,
				KeyID: a.signer.KeyID(), Observed: event.FormatTime(a.now()),
				Source: event.SourceNftables, After: after}
		}}
	return a, nil
}

// Close releases the outbox.
func (a *Agent) Close() error { return a.ob.Close() }

// Run observes and delivers until ctx ends.
func (a *Agent) Run(ctx context.Context) error {
	g, ctx := errgroup.WithContext(ctx)
	if a.cfg.Metrics.Listen != "" {
		g.Go(func() error { return a.serveMetrics(ctx) })
	}
	g.Go(func() error { return a.up.Run(ctx) })
	g.Go(func() error { return a.observe(ctx) })
	err := g.Wait()
	if errors.Is(err, context.Canceled) {
		return nil
	}
	return err
}

// observe reports the starting state, then every committed generation as its own event,
// heartbeats, and what the backstop re-read finds.
func (a *Agent) observe(ctx context.Context) error {
	if err := a.loadLast(); err != nil {
		return err
	}
	// Subscribe before the first read so nothing committed in between is missed.
	notes, err := a.src.Watch(ctx)
	if err != nil {
		return fmt.Errorf("watch nftables: %w", err)
	}
	tr := newTracker(a.src)
	rs, gen, err := a.firstRead(ctx, tr)
	if err != nil {
		return fmt.Errorf("read nftables: %w", err)
	}
	switch {
	case a.last == nil:
		if err := a.report(event.Baseline, rs, gen, nil, "", nil); err != nil {
			return err
		}
	case a.last.Digest != a.digests.of(rs):
		note := fmt.Sprintf("ruleset changed while the agent was not watching (generation %d to %d)",
			a.last.Generation, gen)
		missed := missedGenerations(a.last.Generation, gen)
		if missed == nil {
			note = fmt.Sprintf("ruleset changed while the agent was not watching (generation "+
				"counter restarted: %d, last reported %d)", gen, a.last.Generation)
		}
		if err := a.report(event.Reconcile, rs, gen, nil, note, missed); err != nil {
			return err
		}
	default:
		a.log.Info("ruleset unchanged since last report", "digest", a.last.Digest, "generation", gen)
	}

	heartbeat := time.NewTicker(a.cfg.HeartbeatInterval)
	defer heartbeat.Stop()
	backstop := time.NewTicker(a.cfg.Nftables.BackstopInterval)
	defer backstop.Stop()
	nsCheck := time.NewTicker(namespaceCheckInterval)
	defer nsCheck.Stop()
	expiryCheck := time.NewTicker(time.Second)
	defer expiryCheck.Stop()
	for {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-nsCheck.C:
			if err := a.checkNamespace(); err != nil {
				return err
			}
		case now := <-expiryCheck.C:
			if !tr.expiry.IsZero() && !now.Before(tr.expiry) {
				tr.expiry = time.Time{} // a read sets the next; a failed one leaves it to the backstop
				if err := a.reconcile(tr, "set elements timed out (the kernel does not "+
					"announce that)", false); err != nil {
					return err
				}
			}
		case n, ok := <-notes:
			if !ok {
				return ctx.Err()
			}
			if err := a.onNotification(tr, n); err != nil {
				return err
			}
		case ack := <-a.up.Diverged():
			if err := a.resync(ack); err != nil {
				return err
			}
		case <-heartbeat.C:
			// A heartbeat must never vouch for a namespace nobody can reach any more.
			if err := a.checkNamespace(); err != nil {
				return err
			}
			if err := a.heartbeat(); err != nil {
				return err
			}
		case <-backstop.C:
			if err := a.recheck(tr); err != nil {
				return err
			}
		}
	}
}

// namespaceCheckInterval is how often the agent checks that its namespace's name still
// names the namespace it watches.
const namespaceCheckInterval = 2 * time.Second

// checkNamespace stops the agent, with a clear error, when the named namespace it
// watches was deleted or replaced: it would otherwise go on reading a namespace nobody
// can reach while heartbeats vouch for it. Restarted (by its supervisor), the agent
// opens the namespace of that name afresh and reports what it finds as a reconcile; while
// the name names nothing, it fails at start and sends no heartbeats, so the aggregator
// raises agent_silent.
func (a *Agent) checkNamespace() error {
	c, ok := a.src.(interface{ CheckNamespace() error })
	if !ok {
		return nil
	}
	if err := c.CheckNamespace(); err != nil {
		a.log.Error("stopping: the watched network namespace is gone", "err", err)
		return fmt.Errorf("watch nftables: %w", err)
	}
	return nil
}

// onNotification turns one committed generation into one change event carrying its
// committer. The generation's messages are applied to the tracked state; when that is
// not possible the ruleset is read: if the read lands on exactly that generation the
// event is the same change event, otherwise the generations in between were not observed
// one by one and a reconcile event lists them. Lost notifications are reconciled the same
// way.
func (a *Agent) onNotification(tr *tracker, n nft.Notification) error {
	if n.Overrun {
		a.log.Warn("nftables notifications overran; reconciling with a full read", "err", n.Err)
		return a.reconcile(tr, "kernel notifications were lost (ENOBUFS or a slow consumer); "+
			"state reconciled by a full read", true)
	}
	if n.Gen <= tr.gen {
		return nil // already part of the state the last read saw
	}
	c := committer(n)
	rs, err := tr.apply(n)
	if err == nil {
		return a.reportGeneration(rs, n.Gen, c)
	}
	if !errors.Is(err, errNeedRead) {
		a.log.Warn("applying a generation failed; reading in full", "generation", n.Gen, "err", err)
	} else {
		a.log.Debug("generation read in full", "generation", n.Gen, "reason", err)
	}
	prev := tr.gen
	rs, gen, err := tr.read()
	if err != nil {
		return a.readFailed(err)
	}
	if n.Gen == prev+1 && gen == n.Gen {
		return a.reportGeneration(rs, gen, c)
	}
	note := fmt.Sprintf("generations %d to %d were committed before the agent could read "+
		"generation %d; state reconciled by a full read", prev+1, gen, n.Gen)
	return a.reconciled(rs, gen, note, missedGenerations(prev, gen), true)
}

// recheck is the backstop: it re-reads the ruleset and reports a reconcile event when the
// state moved without a notification saying so. A read that finds the generation ahead
// of the tracked one usually races notifications still queued; only when the next
// backstop finds the tracked generation stuck there are they taken as lost.
func (a *Agent) recheck(tr *tracker) error {
	seen := tr.gen
	if tr.states != nil {
		if d, ok := a.src.(interface{ Generation() (uint32, error) }); ok {
			gen, err := d.Generation()
			if err != nil {
				return a.readFailed(err)
			}
			stuck := gen < seen || (tr.backstopGen != 0 && seen < tr.backstopGen)
			if gen != seen && !stuck {
				tr.backstopGen = gen
				return nil // notifications are on their way
			}
		}
	}
	tr.backstopGen = 0
	return a.reconcile(tr, "backstop re-read found a change no notification reported", false)
}

// firstRead reads the starting state. A ruleset that changes during every read attempt
// (a stream of commits) is read again after a pause, doubling up to 5 s, until it holds
// still; other errors end the agent.
func (a *Agent) firstRead(ctx context.Context, tr *tracker) (*ruleset.Ruleset, uint32, error) {
	wait := 100 * time.Millisecond
	for {
		rs, gen, err := tr.read()
		if !errors.Is(err, nft.ErrUnstable) {
			return rs, gen, err
		}
		a.log.Warn("ruleset changing during every read; reading again", "err", err, "retry_in", wait)
		select {
		case <-ctx.Done():
			return nil, 0, ctx.Err()
		case <-time.After(wait):
		}
		wait = min(2*wait, 5*time.Second)
	}
}

// readFailed logs a failed read. A read can fail transiently (a table deleted mid-dump);
// the next notification or the backstop reads again, so this does not stop the agent.
func (a *Agent) readFailed(err error) error {
	a.log.Error("reading nftables failed", "err", err)
	return nil
}

// report appends one event that moves the reported state to rs. missed lists the
// generations a reconcile event could not observe one by one.
func (a *Agent) report(kind event.Kind, rs *ruleset.Ruleset, gen uint32, c *event.Committer,
	note string, missed []string) error {
	after := a.digests.of(rs)
	e := &event.Event{
		V: event.Version, Kind: kind, Tenant: a.id.Tenant, Device: a.id.Device,
		KeyID: a.signer.KeyID(), Observed: event.FormatTime(a.now()), Source: event.SourceNftables,
		Generation: gen, After: after, Committer: c, Note: note, MissedGenerations: missed,
	}
	if a.last != nil {
		e.Before = a.last.Digest
		e.Changes = ruleset.Diff(a.last.Ruleset, rs)
	}
	if kind == event.Baseline || kind == event.Reconcile {
		e.Ruleset = rs
	}
	next := &observed{Digest: after, Generation: gen, Ruleset: rs}
	state, err := next.encode(&a.states)
	if err != nil {
		return fmt.Errorf("encode state: %w", err)
	}
	seq, err := a.append(e, state)
	if err != nil {
		return err
	}
	a.last = next
	a.log.Info("ruleset event", "kind", kind, "seq", seq, "generation", gen,
		"changes", len(e.Changes), "digest", after, "comm", commName(c), "missed", missed)
	if rules, exprs := undecodedRules(rs); rules > 0 {
		a.log.Warn("rules hold expressions the agent cannot print as nft does; they are kept "+
			"in a lossless fallback form and still hashed and diffed exactly",
			"rules", rules, "expressions", exprs)
	}
	return nil
}

func (a *Agent) heartbeat() error {
	if a.last == nil {
		return nil
	}
	e := &event.Event{
		V: event.Version, Kind: event.Heartbeat, Tenant: a.id.Tenant, Device: a.id.Device,
		KeyID: a.signer.KeyID(), Observed: event.FormatTime(a.now()), Source: event.SourceNftables,
		Generation: a.last.Generation, Before: a.last.Digest, After: a.last.Digest,
	}
	seq, err := a.append(e, nil)
	if err != nil {
		return err
	}
	a.log.Debug("heartbeat", "seq", seq, "digest", a.last.Digest)
	return nil
}

func (a *Agent) loadLast() error {
	b, err := a.ob.State()
	if errors.Is(err, outbox.ErrNotFound) {
		return nil
	}
	if err != nil {
		return err
	}
	var o observed
	if err := json.Unmarshal(b, &o); err != nil {
		return fmt.Errorf("outbox state: %w", err)
	}
	a.last = &o
	return nil
}

func commName(c *event.Committer) string {
	if c == nil {
		return ""
	}
	return c.Comm
}
