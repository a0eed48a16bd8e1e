// Package ingest receives agents' signed events from the MQTT broker, verifies them,
// proposes them to the replicated store, and acks what is committed.
//
// The MQTT client keeps a persistent session (fixed client id, CleanSession false) so the
// broker queues events while the aggregator is away. Its message handler only copies a
// message into a bounded queue; workers do the rest. Messages of one device always go to
// the same worker, in arrival order. Nothing rejected is stored; every rejection is
// counted by reason and logged once.
package ingest

import (
	"context"
	"crypto/ed25519"
	"encoding/json"
	"errors"
	"fmt"
	"hash/fnv"
	"log/slog"
	"strings"
	"sync"
	"time"

	mqtt "github.com/eclipse/paho.mqtt.golang"

	"github.com/fenceline/fenceline/aggregator/store"
	"github.com/fenceline/fenceline/shared/event"
)

// Store is what the ingester needs of the replicated store.
type Store interface {
	KeyFor(tenant, device, keyID string) (ed25519.PublicKey, error)
	// SeenBefore reports from local state whether seq is a known duplicate.
	SeenBefore(tenant, device string, seq uint64) (event.Ack, bool)
	AppendEvent(ctx context.Context, tenant, device string, envelope []byte,
		received time.Time) (*store.AppendResult, error)
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
	// Workers is how many messages are processed at once (different devices only).
	Workers int
	// AckTimeout bounds the wait for an ack's PUBACK.
	AckTimeout time.Duration
}

// DefaultClientID is the aggregator's MQTT client id.
const DefaultClientID = "fenceline-aggregator"

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
}

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
	client mqtt.Client
	count  *counters

	queues    []chan message
	stop      chan struct{} // closed by Shutdown: workers return
	workers   sync.WaitGroup
	ctx       context.Context // for store calls; cancelled when Shutdown gives up
	cancel    context.CancelFunc
	connected chan struct{} // receives a value on each connection
	stopOnce  sync.Once
}

// ErrStopped is returned by a second Shutdown.
var ErrStopped = errors.New("ingest already stopped")

// New returns an ingester; Start connects it.
func New(cfg Config, st Store, log *slog.Logger) *Ingester {
	cfg.setDefaults()
	in := &Ingester{
		cfg:       cfg,
		store:     st,
		log:       log.With("component", "ingest"),
		count:     newCounters(),
		stop:      make(chan struct{}),
		connected: make(chan struct{}, 1),
	}
	in.ctx, in.cancel = context.WithCancel(context.Background())
	per := cfg.QueueSize / cfg.Workers
	for range cfg.Workers {
		in.queues = append(in.queues, make(chan message, per))
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
			in.log.Warn("broker connection lost", "broker", cfg.BrokerURL, "err", err)
		})
	in.client = mqtt.NewClient(opts)
	return in
}

// Start starts the workers and connects to the broker. With connect-retry the client
// keeps trying in the background; WaitConnected waits for the first connection.
func (in *Ingester) Start() {
	for _, q := range in.queues {
		in.workers.Add(1)
		go in.work(q)
	}
	in.client.Connect()
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
	select {
	case in.queues[in.shard(msg.topic)] <- msg:
	default:
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

func (in *Ingester) work(q chan message) {
	defer in.workers.Done()
	for {
		select {
		case <-in.stop:
			return
		case m := <-q:
			in.process(m)
		}
	}
}

// process handles one message end to end.
func (in *Ingester) process(m message) {
	v, err := Verify(m.topic, m.payload, in.store)
	var rej *RejectError
	if errors.As(err, &rej) {
		in.rejected(m.topic, rej.Reason, 0, err)
		return
	}
	if err != nil {
		in.count.storeErrors.Add(1)
		in.log.Error("event not processed", "topic", m.topic, "err", err)
		return
	}
	e := &v.Opened.Event
	if head, dup := in.store.SeenBefore(v.Tenant, v.Device, e.Seq); dup {
		// Common after reconnects: answer from local state without a raft round.
		in.rejected(m.topic, ReasonDuplicate, e.Seq, nil)
		in.ack(v.Tenant, v.Device, head)
		return
	}
	res, err := in.store.AppendEvent(in.ctx, v.Tenant, v.Device, m.payload, m.received)
	if err != nil {
		// Not committed: no ack, so the agent resends.
		in.count.storeErrors.Add(1)
		in.log.Error("event not committed", "tenant", v.Tenant, "device", v.Device,
			"seq", e.Seq, "err", err)
		return
	}
	switch res.Outcome {
	case store.Accepted:
		in.count.accepted.Add(1)
		in.count.deviations.Add(uint64(len(res.Deviations)))
		in.log.Debug("event committed", "tenant", v.Tenant, "device", v.Device, "seq", e.Seq,
			"kind", e.Kind, "event_id", res.ID)
		if len(res.Deviations) > 0 {
			in.log.Info("deviations raised", "tenant", v.Tenant, "device", v.Device,
				"seq", e.Seq, "event_id", res.ID, "deviations", strings.Join(res.Deviations, ","))
		}
		for _, id := range res.Implemented {
			in.log.Info("change request implemented", "tenant", v.Tenant, "device", v.Device,
				"cr", id, "event_id", res.ID)
		}
	case store.Duplicate, store.Gap, store.BrokenChain:
		in.rejected(m.topic, string(res.Outcome), e.Seq, nil)
	default:
		// The state changed between verification and commit (a re-enrollment).
		in.rejected(m.topic, string(res.Outcome), e.Seq, errors.New("refused at commit"))
		return
	}
	in.ack(v.Tenant, v.Device, res.Head)
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
	b, err := json.Marshal(head)
	if err != nil {
		in.log.Error("encode ack", "err", err)
		return
	}
	topic := event.DeviceTopic(tenant, device, event.TopicAcks)
	tok := in.client.Publish(topic, 1, true, b)
	if !tok.WaitTimeout(in.cfg.AckTimeout) {
		in.count.ackErrors.Add(1)
		in.log.Warn("ack not confirmed by broker", "topic", topic, "seq", head.Seq)
		return
	}
	if err := tok.Error(); err != nil {
		in.count.ackErrors.Add(1)
		in.log.Warn("ack not published", "topic", topic, "seq", head.Seq, "err", err)
		return
	}
	in.count.acks.Add(1)
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
	s.Connected = in.client.IsConnectionOpen()
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
	for _, q := range in.queues {
		in.count.dropped.Add(uint64(len(q)))
	}
	in.log.Info("ingest stopped")
	return err
}
