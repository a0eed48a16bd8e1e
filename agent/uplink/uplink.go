// Package uplink moves events from the agent's outbox to the aggregator over MQTT and
// removes them when the aggregator's ack says they are committed. It never relies on the
// MQTT client's own store: after a reconnect, a restart, or when acks stop advancing, it
// resends from the last acknowledged sequence, in order. Duplicates this creates are
// dropped by the aggregator.
package uplink

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"time"

	mqtt "github.com/eclipse/paho.mqtt.golang"

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
	// Batch is how many events one round publishes before waiting for their PUBACKs.
	Batch int
	// ResendAfter is how long published events may stay unacknowledged before the uplink
	// resends from the last ack (the aggregator may have missed or refused them).
	ResendAfter time.Duration
	// PublishTimeout bounds the wait for one round's PUBACKs.
	PublishTimeout time.Duration
}

func (c *Config) setDefaults() {
	if c.Batch <= 0 {
		c.Batch = 256
	}
	if c.ResendAfter <= 0 {
		c.ResendAfter = 5 * time.Second
	}
	if c.PublishTimeout <= 0 {
		c.PublishTimeout = 10 * time.Second
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
	cfg  Config
	ob   *outbox.Outbox
	log  *slog.Logger
	wake chan struct{}
	acks chan event.Ack
}

// New returns an uplink for the outbox. Run starts it.
func New(cfg Config, ob *outbox.Outbox, log *slog.Logger) *Uplink {
	cfg.setDefaults()
	return &Uplink{
		cfg:  cfg,
		ob:   ob,
		log:  log.With("component", "uplink"),
		wake: make(chan struct{}, 1),
		acks: make(chan event.Ack, 64),
	}
}

// Notify tells the uplink that new events are in the outbox. It never blocks.
func (u *Uplink) Notify() {
	select {
	case u.wake <- struct{}{}:
	default:
	}
}

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
		SetConnectRetryInterval(time.Second).
		SetMaxReconnectInterval(10*time.Second).
		SetKeepAlive(15*time.Second).
		SetPingTimeout(5*time.Second).
		SetOrderMatters(false).
		SetWill(topicStatus, StatusOffline, 1, true).
		SetOnConnectHandler(func(c mqtt.Client) {
			u.log.Info("connected to broker", "broker", u.cfg.BrokerURL)
			c.Subscribe(topicAcks, 1, u.onAck)
			c.Publish(topicStatus, 1, true, StatusOnline)
			select {
			case connected <- struct{}{}:
			default:
			}
		}).
		SetConnectionLostHandler(func(_ mqtt.Client, err error) {
			u.log.Warn("broker connection lost", "err", err)
		})
	client := mqtt.NewClient(opts)
	client.Connect() // with ConnectRetry this returns at once and keeps trying
	defer func() {
		if client.IsConnectionOpen() {
			client.Publish(topicStatus, 1, true, StatusOffline).WaitTimeout(time.Second)
		}
		client.Disconnect(250)
	}()

	head, err := u.ob.Head()
	if err != nil {
		return err
	}
	acked, sent := head.Acked, head.Acked
	lastProgress := time.Now()
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-u.wake:
		case <-tick.C:
		case <-connected:
			// A new connection: whatever was in flight may be lost. Start over from the ack.
			sent = acked
		case a := <-u.acks:
			if a.Seq > acked {
				n, err := u.ob.Ack(a.Seq)
				if err != nil {
					u.log.Error("ack not applied", "seq", a.Seq, "err", err)
					continue
				}
				u.log.Debug("ack", "seq", a.Seq, "removed", n)
				acked, lastProgress = a.Seq, time.Now()
			} else if a.Seq < acked {
				// TODO: the aggregator lost events it had acknowledged (restored from an
				// older state); they are gone from the outbox, so this can only be reported.
				u.log.Warn("aggregator head behind acknowledged sequence", "ack", a.Seq, "acked", acked)
			}
		}
		if sent < acked {
			sent = acked
		}
		if !client.IsConnectionOpen() {
			continue
		}
		if sent > acked && time.Since(lastProgress) > u.cfg.ResendAfter {
			u.log.Info("resending unacknowledged events", "from", acked+1, "to", sent)
			sent, lastProgress = acked, time.Now()
		}
		if sent == acked {
			lastProgress = time.Now()
		}
		next, err := u.publish(ctx, client, topicEvents, sent)
		if err != nil {
			u.log.Warn("publish", "err", err)
		}
		if next > sent {
			sent = next
			u.Notify() // there may be more
		}
	}
}

// publish sends one round of pending events after seq and returns the highest sequence
// whose PUBACK arrived.
func (u *Uplink) publish(ctx context.Context, c mqtt.Client, topic string, seq uint64) (uint64, error) {
	pending, err := u.ob.Pending(seq, u.cfg.Batch)
	if err != nil || len(pending) == 0 {
		return seq, err
	}
	tokens := make([]mqtt.Token, len(pending))
	for i, e := range pending {
		tokens[i] = c.Publish(topic, 1, false, e.Envelope)
	}
	deadline := time.Now().Add(u.cfg.PublishTimeout)
	for i, t := range tokens {
		if !t.WaitTimeout(time.Until(deadline)) {
			return seq, fmt.Errorf("event %d: no PUBACK within %s", pending[i].Seq, u.cfg.PublishTimeout)
		}
		if err := t.Error(); err != nil {
			return seq, fmt.Errorf("event %d: %w", pending[i].Seq, err)
		}
		if ctx.Err() != nil {
			return seq, ctx.Err()
		}
		seq = pending[i].Seq
	}
	return seq, nil
}

func (u *Uplink) onAck(_ mqtt.Client, m mqtt.Message) {
	var a event.Ack
	if err := json.Unmarshal(m.Payload(), &a); err != nil {
		u.log.Warn("bad ack", "topic", m.Topic(), "err", err)
		return
	}
	// Keep only the newest ack if the pump is busy: acks are cumulative.
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
