// Package uplink moves events from the agent's outbox to the aggregator over MQTT and
// removes them when the aggregator's ack says they are committed. It never relies on the
// MQTT client's own store: after a reconnect, a restart, or when acks stop advancing, it
// resends from the last acknowledged sequence, in order, paced by a rate limit, and backs
// off with jitter when publishing fails. Duplicates this creates are dropped by the
// aggregator.
package uplink

import (
	"context"
	"crypto/ed25519"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"time"

	mqtt "github.com/eclipse/paho.mqtt.golang"
	"github.com/eclipse/paho.mqtt.golang/packets"
	"golang.org/x/time/rate"

	"github.com/fenceline/fenceline/agent/outbox"
	"github.com/fenceline/fenceline/shared/event"
)

// Config configures the uplink.
type Config struct {
	BrokerURL string
	ClientID  string
	Username  string
	Password  string
	Tenant    string
	Device    string
	// AckKey, when set, is the aggregator's public ack key: acks not signed with it for
	// this device are ignored (event.VerifyAck).
	AckKey ed25519.PublicKey
	// Batch is how many events one round publishes before waiting for their PUBACKs.
	Batch int
	// Window bounds the events published but not yet acknowledged by the aggregator, so
	// a long backlog does not overrun the aggregator's ingest queue.
	Window int
	// Rate bounds publishing, in events per second (0: unbounded), so that a long
	// backlog replays at a pace the aggregator and the site's uplink can take.
	Rate float64
	// ResendAfter is how long published events may stay unacknowledged before the uplink
	// resends from the last ack (the aggregator may have missed or refused them).
	ResendAfter time.Duration
	// PublishTimeout bounds the wait for one round's PUBACKs.
	PublishTimeout time.Duration
	// Backoff is the first wait after a failed round; it doubles up to MaxBackoff, with
	// ±50% jitter, and resets after a success.
	Backoff    time.Duration
	MaxBackoff time.Duration
	// ConnectRetry is the wait between attempts to reach the broker before the first
	// connection; reconnections back off from it up to 10 s.
	ConnectRetry time.Duration
}

func (c *Config) setDefaults() {
	if c.Batch <= 0 {
		c.Batch = 128
	}
	if c.Window <= 0 {
		c.Window = 2 * c.Batch
	}
	if c.Batch > c.Window {
		c.Batch = c.Window
	}
	if c.ResendAfter <= 0 {
		c.ResendAfter = 5 * time.Second
	}
	if c.PublishTimeout <= 0 {
		c.PublishTimeout = 10 * time.Second
	}
	if c.Backoff <= 0 {
		c.Backoff = 500 * time.Millisecond
	}
	if c.MaxBackoff < c.Backoff {
		c.MaxBackoff = 30 * time.Second
	}
	if c.ConnectRetry <= 0 {
		c.ConnectRetry = time.Second
	}
	if c.ClientID == "" {
		c.ClientID = "fenceline-agent-" + c.Tenant + "-" + c.Device
	}
}

// Status payloads on the device's status topic (retained; "offline" is the will).
const (
	StatusOnline  = "online"
	StatusOffline = "offline"
)

// Uplink is the outbox-to-broker pump.
type Uplink struct {
	cfg      Config
	ob       *outbox.Outbox
	log      *slog.Logger
	metrics  *Metrics
	wake     chan struct{}
	acks     chan ack
	diverged chan event.Ack
	replaced chan struct{}
	// published is the highest sequence ever published in this run (PUBACK or not):
	// events up to it may be at the aggregator.
	published atomic.Uint64

	linkMu sync.Mutex
	link   LinkStatus
}

// LinkStatus is the state of the uplink's connection to the broker.
type LinkStatus struct {
	Broker    string `json:"broker"`
	Connected bool   `json:"connected"`
	// Since is when the connection last came up or went down; zero while the first
	// attempt is under way.
	Since time.Time `json:"since,omitzero"`
	// Error says why the link is down; FailedAttempts counts the connection attempts
	// that failed since it went down.
	Error          string `json:"error,omitempty"`
	FailedAttempts int    `json:"failed_attempts,omitempty"`
}

// Status returns the state of the broker connection.
func (u *Uplink) Status() LinkStatus {
	u.linkMu.Lock()
	defer u.linkMu.Unlock()
	return u.link
}

// linkUp records a new connection and says so.
func (u *Uplink) linkUp() {
	u.linkMu.Lock()
	was := u.link
	u.link = LinkStatus{Broker: u.cfg.BrokerURL, Connected: true, Since: time.Now()}
	u.linkMu.Unlock()
	u.metrics.Connected.Set(1)
	attrs := []any{"broker", u.cfg.BrokerURL}
	if !was.Since.IsZero() {
		attrs = append(attrs, "down_for", time.Since(was.Since).Round(time.Millisecond),
			"failed_attempts", was.FailedAttempts)
	}
	u.log.Info("connected to broker", attrs...)
}

// linkDown records a failed connection attempt (lost false) or a lost connection. Going
// down is logged as a warning once: the loss of a connection, or the failure of the first
// attempt; the retries that follow are logged at debug. The client reports a loss
// asynchronously, so the first failed reconnection may arrive before it and stands for
// it.
func (u *Uplink) linkDown(c mqtt.Client, err error, lost bool) {
	if lost && c.IsConnectionOpen() {
		return // reported late: the client has reconnected already
	}
	msg := brokerError(err)
	u.linkMu.Lock()
	wasUp, fresh := u.link.Connected, u.link.Since.IsZero()
	if wasUp || fresh {
		u.link = LinkStatus{Broker: u.cfg.BrokerURL, Since: time.Now()}
	}
	if !lost || wasUp || u.link.Error == "" {
		u.link.Error = msg
	}
	if !lost {
		u.link.FailedAttempts++
	}
	attempts := u.link.FailedAttempts
	u.linkMu.Unlock()
	u.metrics.Connected.Set(0)
	switch {
	case wasUp:
		u.log.Warn("broker connection lost; reconnecting", "broker", u.cfg.BrokerURL, "err", msg)
	case fresh:
		u.log.Warn("broker unreachable; retrying until it answers", "broker", u.cfg.BrokerURL,
			"err", msg)
	case lost:
		u.log.Debug("broker connection loss reported", "broker", u.cfg.BrokerURL, "err", msg)
	default:
		u.log.Debug("broker still unreachable", "broker", u.cfg.BrokerURL, "attempt", attempts,
			"err", msg)
	}
}

// brokerError is the cause of a connection error, without the MQTT client's
// "network Error : " in front of the dialer's own message.
func brokerError(err error) string {
	if err == nil {
		return "connection closed"
	}
	if m, ok := err.(interface{ Unwrap() []error }); ok {
		if errs := m.Unwrap(); len(errs) == 2 && errors.Is(errs[0], packets.ErrorNetworkError) &&
			errs[1] != nil {
			return errs[1].Error()
		}
	}
	return err.Error()
}

// Published returns the highest sequence that may have left the agent: published in
// this run, or pending when the run started (a previous run may have published it).
func (u *Uplink) Published() uint64 { return u.published.Load() }

// New returns an uplink for the outbox. Run starts it. metrics may be nil.
func New(cfg Config, ob *outbox.Outbox, metrics *Metrics, log *slog.Logger) *Uplink {
	cfg.setDefaults()
	if metrics == nil {
		metrics = NewMetrics(nil)
	}
	return &Uplink{
		cfg:      cfg,
		link:     LinkStatus{Broker: cfg.BrokerURL},
		ob:       ob,
		log:      log.With("component", "uplink"),
		metrics:  metrics,
		wake:     make(chan struct{}, 1),
		acks:     make(chan ack, 64),
		diverged: make(chan event.Ack, 1),
		replaced: make(chan struct{}, 1),
	}
}

// Notify tells the uplink that new events are in the outbox. It never blocks.
func (u *Uplink) Notify() {
	select {
	case u.wake <- struct{}{}:
	default:
	}
}

// Replaced tells the uplink that pending events were replaced (a fold): what it
// published after the last ack is obsolete and the new events go out from there.
func (u *Uplink) Replaced() {
	select {
	case u.replaced <- struct{}{}:
	default:
	}
}

// Diverged delivers the aggregator's head when it is not a point of this outbox's chain:
// an ack beyond the outbox's head, or naming another event at a pending sequence. The
// outbox was lost or replaced; the owner must re-anchor it (outbox.Reanchor) and report
// the loss. Until then the uplink publishes nothing.
func (u *Uplink) Diverged() <-chan event.Ack { return u.diverged }

// Run connects and pumps until ctx ends. Connection failures are retried forever with
// backoff; only a bad configuration returns an error early.
func (u *Uplink) Run(ctx context.Context) error {
	topicEvents := event.DeviceTopic(u.cfg.Tenant, u.cfg.Device, event.TopicEvents)
	topicAcks := event.DeviceTopic(u.cfg.Tenant, u.cfg.Device, event.TopicAcks)
	topicStatus := event.DeviceTopic(u.cfg.Tenant, u.cfg.Device, event.TopicStatus)

	connected := make(chan struct{}, 1)
	opts := mqtt.NewClientOptions().
		AddBroker(u.cfg.BrokerURL).
		SetClientID(u.cfg.ClientID).
		SetUsername(u.cfg.Username).
		SetPassword(u.cfg.Password).
		SetCleanSession(true).
		SetAutoReconnect(true).
		SetConnectRetry(true).
		SetConnectRetryInterval(u.cfg.ConnectRetry).
		SetMaxReconnectInterval(10*time.Second).
		SetKeepAlive(15*time.Second).
		SetPingTimeout(5*time.Second).
		SetWriteTimeout(u.cfg.PublishTimeout).
		// Acks are handled in the order they arrive: out of order, an older ack would
		// look like a head behind what was acknowledged. onAck never blocks.
		SetOrderMatters(true).
		SetWill(topicStatus, StatusOffline, 1, true).
		SetOnConnectHandler(func(c mqtt.Client) {
			u.linkUp()
			c.Subscribe(topicAcks, 1, u.onAck)
			c.Publish(topicStatus, 1, true, StatusOnline)
			select {
			case connected <- struct{}{}:
			default:
			}
		}).
		SetConnectionNotificationHandler(func(c mqtt.Client, n mqtt.ConnectionNotification) {
			switch n := n.(type) {
			case mqtt.ConnectionNotificationFailed:
				u.linkDown(c, n.Reason, false)
			case mqtt.ConnectionNotificationLost:
				u.linkDown(c, n.Reason, true)
			}
		})
	client := mqtt.NewClient(opts)
	client.Connect() // with ConnectRetry this returns at once and keeps trying
	defer func() {
		if client.IsConnectionOpen() {
			client.Publish(topicStatus, 1, true, StatusOffline).WaitTimeout(time.Second)
		}
		client.Disconnect(250)
	}()

	p := &pump{u: u, client: client, topic: topicEvents, sentAt: map[uint64]time.Time{}}
	if u.cfg.Rate > 0 {
		p.limit = rate.NewLimiter(rate.Limit(u.cfg.Rate), u.cfg.Batch)
	}
	head, err := u.ob.Head()
	if err != nil {
		return err
	}
	p.acked, p.sent, p.lastAt = head.Acked, head.Acked, head.AckedAt
	u.metrics.Acked.Set(float64(head.Acked))
	// A previous run may have published everything pending: count it as published.
	if head.Seq > u.published.Load() {
		u.published.Store(head.Seq)
	}
	p.lastProgress = time.Now()
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	for {
		var retry <-chan time.Time
		if !p.retryAt.IsZero() {
			retry = time.After(time.Until(p.retryAt))
		}
		select {
		case <-ctx.Done():
			return nil
		case <-u.wake:
		case <-tick.C:
		case <-retry:
		case <-u.replaced:
			p.sent, p.lastProgress = p.acked, time.Now()
		case <-connected:
			// A new connection: whatever was in flight may be lost. Start over from the ack.
			p.restart("reconnected")
		case a := <-u.acks:
			p.onAck(a)
		}
		p.round(ctx)
	}
}

// pump is the state of one Run.
type pump struct {
	u      *Uplink
	client mqtt.Client
	topic  string
	limit  *rate.Limiter

	acked, sent  uint64    // highest acknowledged; highest published with PUBACK
	lastProgress time.Time // last ack advance, or when publishing started from idle
	sentAt       map[uint64]time.Time
	backoff      time.Duration
	retryAt      time.Time // no publishing before this (backoff after a failure)
	divergedAt   uint64    // waiting for the owner to re-anchor after this ack
	diverged     bool      // divergedAt is set
	rounds       uint64    // publish rounds that sent at least one event
	gapResent    bool      // resent on a head that did not advance, since the last advance
	// suspect is an ack that does not tie to this outbox's chain, not yet confirmed.
	suspect *suspectAck
	// lastAt is the newest signed send time of an ack that tied to this outbox's chain
	// (see event.Ack.At); 0 while the aggregator's acks carry none.
	lastAt int64
}

// suspectAck is a head from the acks topic that is not a point of this outbox's chain.
// One such message is not enough to drop the outbox (a stale or reordered ack, or, for
// an agent without the ack key, anyone's): the head must come back, freshly published,
// in answer to rounds this uplink published after it first appeared.
type suspectAck struct {
	event.Ack
	round     uint64 // p.rounds when it first appeared
	confirmed int    // fresh repetitions after a later round
}

// confirmDivergence is how many fresh repetitions of a divergent head, each after a
// publish round of its own, make the uplink believe it.
const confirmDivergence = 2

func (p *pump) restart(why string) {
	if p.sent > p.acked {
		p.u.metrics.Resends.Add(float64(p.sent - p.acked))
		p.u.log.Info("resending unacknowledged events", "from", p.acked+1, "to", p.sent, "reason", why)
	}
	p.sent, p.lastProgress = p.acked, time.Now()
}

// ack is an ack as received, with the broker's retained flag.
type ack struct {
	event.Ack
	retained bool
}

// onAck applies an ack from the acks topic.
//
// With the aggregator's ack key (Config.AckKey), only acks it signed for this device get
// here (Uplink.onAck checks them). The checks below also hold the line for an agent
// enrolled without a key, where anyone who can publish on the acks topic could otherwise
// make it delete events the aggregator has not committed: acks without an event id, acks
// that cover events never published, and a foreign or behind head seen once (or only as
// a stored retained message) are refused.
// TODO: such an agent stays exposed to someone repeating a foreign head in answer to its
// publishes (it re-anchors); enrolling it again gives it the key.
func (p *pump) onAck(r ack) {
	u, a := p.u, r.Ack
	if a.Seq > 0 && a.ID == "" {
		u.log.Warn("ack without an event id ignored: the aggregator always names its head",
			"ack", a.Seq, "retained", r.retained)
		return
	}
	if a.Seq > u.published.Load() {
		head, err := u.ob.Head()
		if err != nil {
			u.log.Error("outbox head", "err", err)
			return
		}
		if a.Seq <= head.Seq {
			u.log.Warn("ack covers events this agent never published; ignored (not from the "+
				"aggregator)", "ack", a.Seq, "published", u.published.Load(), "retained", r.retained)
			return
		}
	}
	if a.Seq < p.acked {
		// The aggregator's head is behind what it acknowledged before: it lost committed
		// events (restored from an older backup), or this is a stale message. The lost
		// events are gone from the outbox too, so resending cannot heal the chain. Once
		// the head is confirmed in answer to fresh publishes (so it is the aggregator's
		// standing head, not a stale or replayed message), the owner re-anchors there and
		// reports the current state as a resync, which the aggregator raises as a gap.
		if p.divergedAt == a.Seq && p.diverged {
			return
		}
		if !p.confirmed(r, fmt.Errorf("head %d behind the acknowledged %d", a.Seq, p.acked)) {
			return
		}
		p.divergedAt, p.diverged, p.suspect = a.Seq, true, nil
		u.log.Warn("aggregator's head is behind what it acknowledged (restored from an older "+
			"state?); re-anchoring, the events in between are lost to it", "ack", a.Seq,
			"acked", p.acked)
		select {
		case u.diverged <- a:
		default:
		}
		return
	}
	n, err := u.ob.AckAt(a.Seq, a.ID, a.At)
	switch {
	case errors.Is(err, outbox.ErrAckBeyondHead), errors.Is(err, outbox.ErrFork):
		if p.divergedAt == a.Seq && p.diverged {
			return
		}
		if !p.confirmed(r, err) {
			return
		}
		p.divergedAt, p.diverged, p.suspect = a.Seq, true, nil
		u.log.Warn("aggregator's chain is not this outbox's; re-anchoring", "ack", a.Seq, "err", err)
		select {
		case u.diverged <- a:
		default:
		}
		return
	case err != nil:
		u.log.Error("ack not applied", "seq", a.Seq, "err", err)
		return
	}
	p.lastAt = max(p.lastAt, a.At)
	if a.Seq > p.acked || n > 0 {
		now := time.Now()
		for seq, at := range p.sentAt {
			if seq <= a.Seq {
				u.metrics.AckLatency.Observe(now.Sub(at).Seconds())
				delete(p.sentAt, seq)
			}
		}
		u.log.Debug("ack", "seq", a.Seq, "removed", n)
		p.acked, p.lastProgress, p.divergedAt, p.diverged, p.suspect = a.Seq, now, 0, false, nil
		p.gapResent = false
		u.metrics.Acked.Set(float64(a.Seq))
	} else if !r.retained && a.Seq == p.acked && p.sent > p.acked && !p.gapResent {
		// The aggregator answered something published with a head that did not move: it
		// refused what came after it (a gap: events lost on the way, or dropped by a full
		// ingest queue). Resend from the head now rather than after ResendAfter; once
		// per advance of the head, so a burst of such answers resends one window.
		p.gapResent = true
		p.restart("the aggregator's head did not advance")
		u.Notify()
	}
	if p.sent < p.acked {
		p.sent = p.acked
	}
}

// confirmed reports whether the divergent head in r has been repeated enough to act on
// (see suspectAck); on its first sighting it resends from the last ack at once, so the
// aggregator answers again.
//
// Once the aggregator's acks carry a signed send time, a divergent head counts only when
// sent after every ack that tied to this chain, and each repetition after the one before:
// an old signed ack repeated by someone who can publish on the acks topic never moves
// the agent, however often it comes.
func (p *pump) confirmed(r ack, err error) bool {
	u := p.u
	s := p.suspect
	if p.lastAt > 0 && (r.At <= p.lastAt || (s != nil && s.Ack.Seq == r.Seq &&
		s.Ack.ID == r.ID && r.At <= s.Ack.At)) {
		u.metrics.StaleAcks.Inc()
		u.log.Warn("ack ignored: it does not tie to this outbox's chain and was sent before "+
			"acks already taken (a replayed message?)", "ack", r.Seq, "sent_ms", r.At,
			"newest_ms", p.lastAt, "err", err)
		return false
	}
	if s == nil || s.Seq != r.Seq || s.ID != r.ID {
		p.suspect = &suspectAck{Ack: r.Ack, round: p.rounds}
		u.log.Info("ack does not tie to this outbox's chain; publishing again to confirm it "+
			"before re-anchoring", "ack", r.Seq, "id", r.ID, "retained", r.retained, "err", err)
		p.restart("confirming a foreign head")
		u.Notify()
		return false
	}
	if r.retained || p.rounds <= s.round {
		return false // not an answer to anything published since
	}
	s.confirmed++
	s.round, s.Ack = p.rounds, r.Ack
	u.log.Debug("foreign head repeated", "ack", r.Seq, "confirmations", s.confirmed)
	if s.confirmed >= confirmDivergence {
		return true
	}
	p.restart("confirming a foreign head")
	u.Notify()
	return false
}

// round publishes what is pending, if the connection and the pacing allow.
func (p *pump) round(ctx context.Context) {
	u := p.u
	head, err := u.ob.Head()
	if err != nil {
		u.log.Error("outbox head", "err", err)
		return
	}
	if head.Acked != p.acked { // re-anchored by the owner (ahead, or behind a restored aggregator)
		p.acked, p.sent, p.divergedAt, p.diverged = head.Acked, head.Acked, 0, false
		clear(p.sentAt)
		u.metrics.Acked.Set(float64(head.Acked))
	}
	if !p.client.IsConnectionOpen() || p.diverged || time.Now().Before(p.retryAt) {
		return
	}
	if p.sent > p.acked && time.Since(p.lastProgress) > u.cfg.ResendAfter {
		p.restart("no ack within " + u.cfg.ResendAfter.String())
	}
	if p.sent == p.acked {
		p.lastProgress = time.Now()
	}
	next, err := p.publish(ctx)
	if err != nil {
		u.metrics.Failures.Inc()
		if p.backoff == 0 {
			p.backoff = u.cfg.Backoff
		} else {
			p.backoff = min(2*p.backoff, u.cfg.MaxBackoff)
		}
		wait := p.backoff/2 + rand.N(p.backoff)
		p.retryAt = time.Now().Add(wait)
		u.log.Warn("publish failed; backing off", "err", err, "wait", wait.Round(time.Millisecond))
	} else {
		p.backoff, p.retryAt = 0, time.Time{}
	}
	if next > p.sent {
		p.sent = next
		u.Notify() // there may be more
	}
}

// publish sends one round of pending events after p.sent and returns the highest
// sequence whose PUBACK arrived.
func (p *pump) publish(ctx context.Context) (uint64, error) {
	u := p.u
	seq := p.sent
	room := u.cfg.Window - int(p.sent-p.acked)
	if room <= 0 {
		return seq, nil // the window is full: wait for acks
	}
	pending, err := u.ob.Pending(seq, min(room, u.cfg.Batch))
	if err != nil || len(pending) == 0 {
		return seq, err
	}
	if p.limit != nil {
		if err := p.limit.WaitN(ctx, len(pending)); err != nil {
			return seq, nil // ctx ended
		}
	}
	tokens := make([]mqtt.Token, len(pending))
	now := time.Now()
	p.rounds++
	for i, e := range pending {
		if e.Seq > u.published.Load() {
			u.published.Store(e.Seq)
		}
		tokens[i] = p.client.Publish(p.topic, 1, false, e.Envelope)
		if _, ok := p.sentAt[e.Seq]; !ok {
			p.sentAt[e.Seq] = now
		}
	}
	deadline := time.Now().Add(u.cfg.PublishTimeout)
	for i, t := range tokens {
		if !t.WaitTimeout(time.Until(deadline)) {
			return seq, fmt.Errorf("event %d: no PUBACK within %s", pending[i].Seq, u.cfg.PublishTimeout)
		}
		if err := t.Error(); err != nil {
			return seq, fmt.Errorf("event %d: %w", pending[i].Seq, err)
		}
		seq = pending[i].Seq
		u.metrics.Published.Inc()
	}
	return seq, nil
}

func (u *Uplink) onAck(_ mqtt.Client, m mqtt.Message) {
	a := ack{retained: m.Retained()}
	if err := json.Unmarshal(m.Payload(), &a.Ack); err != nil {
		u.log.Warn("bad ack", "topic", m.Topic(), "err", err)
		return
	}
	if u.cfg.AckKey != nil {
		if err := event.VerifyAck(u.cfg.AckKey, u.cfg.Tenant, u.cfg.Device, a.Ack); err != nil {
			u.metrics.ForgedAcks.Inc()
			u.log.Warn("ack ignored: not signed by the aggregator", "topic", m.Topic(),
				"seq", a.Seq, "retained", a.retained)
			return
		}
	}
	// Acks are cumulative: if the pump is busy, keep the newest.
	for {
		select {
		case u.acks <- a:
			return
		default:
			select {
			case old := <-u.acks:
				if old.Seq > a.Seq {
					a = old
				}
			default:
			}
		}
	}
}
