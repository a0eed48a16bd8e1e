// Package ingest receives agents' signed events from the MQTT broker, verifies them,
// proposes them to the replicated store, and acks what is committed.
//
// The MQTT client keeps a persistent session (fixed client id, CleanSession false) so the
// broker queues events while the aggregator is away. Its message handler only copies a
// message into a bounded queue; workers do the rest. Messages of one device always go to
// the same worker, in arrival order. Nothing rejected is stored; every rejection is
// counted by reason and logged once.
//
// The pipeline keeps many events in flight: a worker verifies a message and proposes it
// to the store without waiting for the commit, and its acker waits for the commits in
// proposal order and publishes one ack per device for whatever committed together.
// Raft commits the events in flight in groups and the state machine applies each group
// in one transaction, which is where the throughput comes from.
//
// In a cluster only the raft leader ingests (RunWhileLeader in the store starts and
// stops an Ingester); all nodes use the same client id, so a new leader takes over the
// persistent session and the events the broker queued for it. An event is acked only
// after it committed, so a leader change loses nothing acked, and the state machine
// drops the duplicates that agents resend.
package ingest

import (
	"context"
	"crypto/ed25519"
	"encoding/json"
	"errors"
	"fmt"
	"hash/fnv"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	mqtt "github.com/eclipse/paho.mqtt.golang"
	"github.com/hashicorp/raft"

	"github.com/fenceline/fenceline/aggregator/model"
	"github.com/fenceline/fenceline/aggregator/store"
	"github.com/fenceline/fenceline/shared/event"
)

// Store is what the ingester needs of the replicated store.
type Store interface {
	KeyFor(tenant, device, keyID string) (ed25519.PublicKey, error)
	// SeenBefore reports from local state whether seq is a known duplicate.
	SeenBefore(tenant, device string, seq uint64) (event.Ack, bool)
	// ProposeEvent proposes an event without waiting for its commit; events proposed in
	// order from one goroutine commit in that order.
	ProposeEvent(ctx context.Context, tenant, device string, envelope []byte,
		received time.Time) *store.PendingEvent
	// AckKey is the key acks are signed with; nil publishes them unsigned.
	AckKey() ed25519.PrivateKey
}

// Config configures the ingester.
type Config struct {
	// BrokerURL is the MQTT broker, e.g. tcp://127.0.0.1:1883.
	BrokerURL string
	// ClientID is the MQTT client id. It must be stable: the broker keeps the persistent
	// session under it.
	ClientID string
	Username string
	Password string
	// QueueSize bounds the messages waiting for the workers, in total.
	QueueSize int
	// QueueBytes bounds the payload bytes of the messages waiting for the workers, in
	// total, so that large messages (baselines, or garbage) cannot fill memory. A message
	// larger than the bound is dropped whenever anything else is queued; the
	// configuration keeps it at least event.MaxEnvelopeSize.
	QueueBytes int64
	// Workers is how many messages are processed at once (different devices only).
	Workers int
	// AckTimeout bounds the wait for an ack's PUBACK.
	AckTimeout time.Duration
}

// DefaultClientID is the aggregator's MQTT client id.
const DefaultClientID = "fenceline-aggregator"

// AckClientSuffix is appended to the client id for the connection that publishes acks.
const AckClientSuffix = "-acks"

func (c *Config) setDefaults() {
	if c.ClientID == "" {
		c.ClientID = DefaultClientID
	}
	if c.Workers <= 0 {
		c.Workers = 4
	}
	if c.QueueSize <= 0 {
		c.QueueSize = 1024
	}
	if c.QueueSize < c.Workers {
		c.QueueSize = c.Workers
	}
	if c.AckTimeout <= 0 {
		c.AckTimeout = 5 * time.Second
	}
	if c.QueueBytes <= 0 {
		c.QueueBytes = DefaultQueueBytes
	}
}

// DefaultQueueBytes is the default bound on queued payload bytes.
const DefaultQueueBytes = 256 << 20

type message struct {
	topic    string
	payload  []byte
	received time.Time
}

// Ingester is the MQTT-to-store pipeline.
type Ingester struct {
	cfg    Config
	store  Store
	log    *slog.Logger
	client mqtt.Client // subscribes to events (persistent session)
	acks   mqtt.Client // publishes acks
	count  *counters

	queues     []chan message
	inflight   []chan inflight // per worker: proposals in order, for its acker
	stop       chan struct{}   // closed by Shutdown: workers and ackers return
	workers    sync.WaitGroup
	ctx        context.Context // for store calls; cancelled when Shutdown gives up
	cancel     context.CancelFunc
	connected  chan struct{} // receives a value on each connection
	queued     atomic.Int64  // payload bytes waiting in queues
	queuedN    atomic.Int64  // messages waiting in queues
	subscribed atomic.Bool   // connected and subscribed
	stopOnce   sync.Once
	finds      findings // bad-signature and broken-chain findings (findings.go)
}

// ErrStopped is returned by a second Shutdown.
var ErrStopped = errors.New("ingest already stopped")

// New returns an ingester; Start connects it.
func New(cfg Config, st Store, log *slog.Logger) *Ingester {
	cfg.setDefaults()
	return newIngester(cfg, st, log.With("component", "ingest"), newCounters())
}

func newIngester(cfg Config, st Store, log *slog.Logger, count *counters) *Ingester {
	in := &Ingester{
		cfg:       cfg,
		store:     st,
		log:       log,
		count:     count,
		stop:      make(chan struct{}),
		connected: make(chan struct{}, 1),
	}
	in.ctx, in.cancel = context.WithCancel(context.Background())
	// One device's messages all go to one worker: a busy device may use the whole queue
	// (queuedN bounds the total), so that an agent replaying a backlog with its full
	// window in flight is not cut off at a fraction of it.
	per := cfg.QueueSize / cfg.Workers
	for range cfg.Workers {
		in.queues = append(in.queues, make(chan message, cfg.QueueSize))
		in.inflight = append(in.inflight, make(chan inflight, per))
	}
	opts := mqtt.NewClientOptions().
		AddBroker(cfg.BrokerURL).
		SetClientID(cfg.ClientID).
		SetUsername(cfg.Username).
		SetPassword(cfg.Password).
		SetCleanSession(false).
		SetAutoReconnect(true).
		SetConnectRetry(true).
		SetConnectRetryInterval(time.Second).
		SetMaxReconnectInterval(10 * time.Second).
		SetKeepAlive(30 * time.Second).
		SetPingTimeout(10 * time.Second).
		// Queued messages of the persistent session may arrive before the subscription
		// is renewed; they go through the same handler.
		SetDefaultPublishHandler(in.onMessage).
		SetOnConnectHandler(in.onConnect).
		SetConnectionLostHandler(func(_ mqtt.Client, err error) {
			in.subscribed.Store(false)
			in.log.Warn("broker connection lost", "broker", cfg.BrokerURL, "err", err)
		})
	in.client = mqtt.NewClient(opts)
	// Acks go out on a connection of their own: on the subscribing connection each ack's
	// PUBACK would queue behind the stream of incoming events, stalling the ackers.
	in.acks = mqtt.NewClient(mqtt.NewClientOptions().
		AddBroker(cfg.BrokerURL).
		SetClientID(cfg.ClientID + AckClientSuffix).
		SetUsername(cfg.Username).
		SetPassword(cfg.Password).
		SetCleanSession(true).
		SetAutoReconnect(true).
		SetConnectRetry(true).
		SetConnectRetryInterval(time.Second).
		SetMaxReconnectInterval(10 * time.Second).
		SetKeepAlive(30 * time.Second))
	return in
}

// Start starts the workers and connects to the broker. With connect-retry the client
// keeps trying in the background; WaitConnected waits for the first connection.
func (in *Ingester) Start() {
	for i, q := range in.queues {
		in.workers.Add(2)
		go in.work(q, in.inflight[i])
		go in.ackLoop(in.inflight[i])
	}
	in.client.Connect()
	in.acks.Connect()
	in.log.Info("ingest started", "broker", in.cfg.BrokerURL, "client_id", in.cfg.ClientID,
		"workers", in.cfg.Workers, "queue_size", in.cfg.QueueSize)
}

// WaitConnected waits until the client has connected and subscribed.
func (in *Ingester) WaitConnected(ctx context.Context) error {
	select {
	case <-in.connected:
		// Put the token back for the next caller.
		select {
		case in.connected <- struct{}{}:
		default:
		}
		return nil
	case <-ctx.Done():
		return fmt.Errorf("connect to broker %s: %w", in.cfg.BrokerURL, ctx.Err())
	}
}

func (in *Ingester) onConnect(c mqtt.Client) {
	// Subscribing from here renews the subscription after every reconnect.
	// paho runs this callback in a goroutine of its own, so waiting here is fine.
	tok := c.Subscribe(event.EventsSubscription, 1, in.onMessage)
	if !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
		// TODO: retry the subscription without waiting for the next reconnect.
		in.log.Error("subscribe failed", "topic", event.EventsSubscription, "err", tok.Error())
		return
	}
	in.subscribed.Store(true)
	in.log.Info("connected to broker", "broker", in.cfg.BrokerURL,
		"subscription", event.EventsSubscription)
	select {
	case in.connected <- struct{}{}:
	default:
	}
}

// onMessage runs in the MQTT client's goroutine: it must never block.
func (in *Ingester) onMessage(_ mqtt.Client, m mqtt.Message) {
	in.count.received.Add(1)
	msg := message{topic: m.Topic(), payload: m.Payload(), received: time.Now()}
	select {
	case <-in.stop:
		in.count.dropped.Add(1)
		return
	default:
	}
	n := int64(len(msg.payload))
	if n > event.MaxEnvelopeSize {
		// Refused before it is queued: no agent sends this, and holding it costs memory.
		in.rejected(msg.topic, ReasonTooLarge, 0,
			fmt.Errorf("%w: %d bytes", event.ErrTooLarge, n))
		return
	}
	if in.queuedN.Add(1) > int64(in.cfg.QueueSize) {
		in.queuedN.Add(-1)
		in.count.dropped.Add(1)
		in.log.Warn("ingest queue full; message dropped, the agent will resend",
			"topic", msg.topic, "queue_size", in.cfg.QueueSize)
		return
	}
	if in.queued.Add(n) > in.cfg.QueueBytes {
		in.queued.Add(-n)
		in.queuedN.Add(-1)
		in.count.dropped.Add(1)
		in.log.Warn("ingest queue holds its byte limit; message dropped, the agent will resend",
			"topic", msg.topic, "bytes", n, "queue_bytes", in.cfg.QueueBytes)
		return
	}
	select {
	case in.queues[in.shard(msg.topic)] <- msg:
	default: // not reached: every channel holds QueueSize
		in.queued.Add(-n)
		in.queuedN.Add(-1)
		in.count.dropped.Add(1)
		in.log.Warn("ingest queue full; message dropped, the agent will resend",
			"topic", msg.topic)
	}
}

// shard picks the worker for a topic: one device, one worker.
func (in *Ingester) shard(topic string) int {
	h := fnv.New32a()
	h.Write([]byte(topic))
	return int(h.Sum32() % uint32(len(in.queues)))
}

func (in *Ingester) work(q chan message, out chan<- inflight) {
	defer in.workers.Done()
	for {
		select {
		case <-in.stop:
			return
		case m := <-q:
			f, ok := in.process(m)
			in.queued.Add(-int64(len(m.payload)))
			in.queuedN.Add(-1)
			if !ok {
				continue
			}
			select {
			case out <- f:
			case <-in.stop:
				return
			}
		}
	}
}

// inflight is a message on its way to an ack: proposed, or a known duplicate.
type inflight struct {
	topic          string
	tenant, device string
	seq            uint64
	kind           event.Kind
	pending        *store.PendingEvent // nil for a known duplicate
	head           event.Ack           // a known duplicate's head
}

// process verifies one message and proposes it. It reports false when there is nothing
// to ack (the message was refused).
func (in *Ingester) process(m message) (inflight, bool) {
	v, err := Verify(m.topic, m.payload, in.store)
	var rej *RejectError
	if errors.As(err, &rej) {
		in.rejected(m.topic, rej.Reason, 0, err)
		if rej.Reason == ReasonBadSignature {
			in.recordFinding(m.topic, model.BadSignature, "a message on the device's topic "+
				"failed signature verification: "+err.Error(), 0)
		}
		return inflight{}, false
	}
	if err != nil {
		in.count.storeErrors.Add(1)
		in.log.Error("event not processed", "topic", m.topic, "err", err)
		return inflight{}, false
	}
	e := &v.Opened.Event
	f := inflight{topic: m.topic, tenant: v.Tenant, device: v.Device, seq: e.Seq, kind: e.Kind}
	if head, dup := in.store.SeenBefore(v.Tenant, v.Device, e.Seq); dup {
		// Common after reconnects: answer from local state without a raft round.
		in.rejected(m.topic, ReasonDuplicate, e.Seq, nil)
		f.head = head
		return f, true
	}
	f.pending = in.store.ProposeEvent(in.ctx, v.Tenant, v.Device, m.payload, m.received)
	return f, true
}

// maxAckRound bounds how many commits one ack round waits for before publishing.
const maxAckRound = 512

// ackLoop waits for the worker's proposals in order and acks each device's newest
// committed head once per round: everything that committed together is acked together.
func (in *Ingester) ackLoop(q <-chan inflight) {
	defer in.workers.Done()
	round := make([]inflight, 0, maxAckRound)
	for {
		round = round[:0]
		select {
		case <-in.stop:
			return
		case f := <-q:
			round = append(round, f)
		}
	drain:
		for len(round) < maxAckRound {
			select {
			case f := <-q:
				round = append(round, f)
			default:
				break drain
			}
		}
		var heads []inflight // newest head per device, in first-seen order
		for _, f := range round {
			head, ok := in.settle(f)
			if !ok {
				continue
			}
			f.head = head
			if i := slices.IndexFunc(heads, func(h inflight) bool {
				return h.tenant == f.tenant && h.device == f.device
			}); i >= 0 {
				heads[i] = f
			} else {
				heads = append(heads, f)
			}
		}
		in.ackAll(heads)
	}
}

// settle waits for one proposal's outcome, counts and logs it, and returns the head to
// ack, if any.
func (in *Ingester) settle(f inflight) (event.Ack, bool) {
	if f.pending == nil {
		return f.head, true
	}
	res, err := f.pending.Wait()
	if err != nil {
		// Not committed (or not known to be): no ack, so the agent resends.
		in.count.storeErrors.Add(1)
		lvl := slog.LevelError
		if errors.Is(err, raft.ErrNotLeader) || errors.Is(err, raft.ErrLeadershipLost) ||
			errors.Is(err, store.ErrClosed) {
			lvl = slog.LevelDebug // a leader change; the next leader takes over
		}
		in.log.Log(context.Background(), lvl, "event not committed", "tenant", f.tenant,
			"device", f.device, "seq", f.seq, "err", err)
		return event.Ack{}, false
	}
	switch res.Outcome {
	case store.Accepted:
		in.count.accepted.Add(1)
		in.count.deviations.Add(uint64(len(res.Deviations)))
		in.log.Debug("event committed", "tenant", f.tenant, "device", f.device, "seq", f.seq,
			"kind", f.kind, "event_id", res.ID)
		if len(res.Deviations) > 0 {
			in.log.Info("deviations raised", "tenant", f.tenant, "device", f.device,
				"seq", f.seq, "event_id", res.ID, "deviations", strings.Join(res.Deviations, ","))
		}
		for _, id := range res.Implemented {
			in.log.Info("change request implemented", "tenant", f.tenant, "device", f.device,
				"cr", id, "event_id", res.ID)
		}
	case store.Duplicate, store.Gap, store.BrokenChain:
		in.rejected(f.topic, string(res.Outcome), f.seq, nil)
		if res.Outcome == store.BrokenChain {
			in.recordFinding(f.topic, model.BrokenChain, fmt.Sprintf("event %d does not link to "+
				"the device's chain (head %d)", f.seq, res.Head.Seq), f.seq)
		}
	default:
		// The state changed between verification and commit (a re-enrollment).
		in.rejected(f.topic, string(res.Outcome), f.seq, errors.New("refused at commit"))
		return event.Ack{}, false
	}
	return res.Head, true
}

func (in *Ingester) rejected(topic, reason string, seq uint64, err error) {
	in.count.reject(reason)
	attrs := []any{"topic", topic, "reason", reason}
	if seq > 0 {
		attrs = append(attrs, "seq", seq)
	}
	if err != nil {
		attrs = append(attrs, "err", err)
	}
	switch reason {
	case ReasonDuplicate, ReasonGap, ReasonBrokenChain:
		// Sequence findings: the agent resends from the ack; an operator acts only if
		// they persist.
		in.log.Info("event rejected", attrs...)
	default:
		// The input itself is bad: forged, corrupted, or sent to the wrong place.
		in.log.Warn("event rejected", attrs...)
	}
}

// ack publishes the device's committed head, retained, so the agent can drop what is
// committed and resend from head+1.
func (in *Ingester) ack(tenant, device string, head event.Ack) {
	in.ackAll([]inflight{{tenant: tenant, device: device, head: head}})
}

// ackAll publishes the heads and then waits for the broker to confirm them all.
func (in *Ingester) ackAll(heads []inflight) {
	toks := make([]mqtt.Token, len(heads))
	key := in.store.AckKey()
	now := time.Now().UnixMilli()
	for i, h := range heads {
		a := h.head
		if key != nil {
			// The time lets agents tell this ack from an old one repeated by someone else.
			a.At = now
			a = event.SignAck(key, h.tenant, h.device, a)
		}
		b, err := json.Marshal(a)
		if err != nil {
			in.log.Error("encode ack", "err", err)
			continue
		}
		toks[i] = in.acks.Publish(event.DeviceTopic(h.tenant, h.device, event.TopicAcks), 1,
			true, b)
	}
	deadline := time.Now().Add(in.cfg.AckTimeout)
	for i, tok := range toks {
		if tok == nil {
			continue
		}
		topic := event.DeviceTopic(heads[i].tenant, heads[i].device, event.TopicAcks)
		if !tok.WaitTimeout(max(time.Until(deadline), time.Millisecond)) {
			in.count.ackErrors.Add(1)
			in.log.Warn("ack not confirmed by broker", "topic", topic, "seq", heads[i].head.Seq)
			continue
		}
		if err := tok.Error(); err != nil {
			in.count.ackErrors.Add(1)
			in.log.Warn("ack not published", "topic", topic, "seq", heads[i].head.Seq,
				"err", err)
			continue
		}
		in.count.acks.Add(1)
	}
}

// ResetAck publishes an ack of sequence 0 for a device that was enrolled again: a
// retained ack of its previous chain must not make a fresh agent drop events that were
// never committed.
func (in *Ingester) ResetAck(tenant, device string) { in.ack(tenant, device, event.Ack{}) }

// Stats returns the counters.
func (in *Ingester) Stats() Stats {
	s := in.count.stats()
	for _, q := range in.queues {
		s.QueueDepth += len(q)
	}
	s.Connected = in.client.IsConnectionOpen() && in.acks.IsConnectionOpen()
	return s
}

// Shutdown stops taking messages, lets the workers finish the message in hand, and
// disconnects. Queued messages are dropped; agents resend them since they are not
// acked. When ctx ends first, store calls in flight are cancelled.
func (in *Ingester) Shutdown(ctx context.Context) error {
	err := ErrStopped
	in.stopOnce.Do(func() { err = in.shutdown(ctx) })
	return err
}

func (in *Ingester) shutdown(ctx context.Context) error {
	close(in.stop)
	done := make(chan struct{})
	go func() {
		in.workers.Wait()
		close(done)
	}()
	var err error
	select {
	case <-done:
	case <-ctx.Done():
		in.cancel()
		err = fmt.Errorf("ingest shutdown: %w", ctx.Err())
	}
	in.cancel()
	in.client.Disconnect(250)
	in.acks.Disconnect(250)
	for _, q := range in.queues {
		in.count.dropped.Add(uint64(len(q)))
	}
	in.log.Info("ingest stopped")
	return err
}
