package lab

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"net"
	"net/url"
	"sync"
	"sync/atomic"
	"time"

	mqtt "github.com/eclipse/paho.mqtt.golang"

	"github.com/fenceline/fenceline/shared/event"
	"github.com/fenceline/fenceline/shared/ruleset"
)

// Fleet plays many agents at once for cluster tests and benchmarks: each device signs
// its chain of events with its own enrolled Ed25519 key, exactly as fenceline-agent
// does, and the fleet publishes them over one MQTT connection and follows the retained
// acks. Like the agent's outbox it keeps every event until an ack covers it and resends
// from the acked head on request.
type Fleet struct {
	client mqtt.Client

	mu      sync.Mutex
	devices []*SimDevice
	byTopic map[string]*SimDevice
	acked   chan struct{} // signalled on every ack
	// BadAcks counts acks whose signature did not verify under the ack key the device
	// learnt at enrollment (they are ignored, as an agent ignores them).
	BadAcks atomic.Int64
}

// SimDevice is one simulated agent.
type SimDevice struct {
	Tenant, Device string
	signer         *event.Signer
	key            ed25519.PrivateKey
	ackKey         ed25519.PublicKey // from the enrollment response
	// Envelopes and IDs of the events sealed so far; index seq-1.
	Envelopes [][]byte
	IDs       []string
	// Acked is the highest sequence an ack covered, and AckedAt when each sequence was
	// first covered (index seq-1).
	Acked   uint64
	AckedAt []time.Time
	SentAt  []time.Time
}

// Poster sends an API request and decodes the JSON answer (Cluster.Do fits).
type Poster func(method, path string, body, out any) error

// NewFleet connects to the broker; dial, if set, opens its connections (NetnsDialer).
func NewFleet(brokerURL string, dial func(ctx context.Context, network,
	addr string) (net.Conn, error)) (*Fleet, error) {
	f := &Fleet{byTopic: map[string]*SimDevice{}, acked: make(chan struct{}, 1)}
	opts := mqtt.NewClientOptions().AddBroker(brokerURL).
		SetClientID("fleet-" + randHex(4)).SetCleanSession(true).
		SetOrderMatters(false).SetAutoReconnect(true).SetMaxReconnectInterval(time.Second)
	if dial != nil {
		opts.SetCustomOpenConnectionFn(func(u *url.URL, _ mqtt.ClientOptions) (net.Conn, error) {
			return dial(context.Background(), "tcp", u.Host)
		})
	}
	opts.SetOnConnectHandler(func(c mqtt.Client) {
		c.Subscribe(event.TopicPrefix+"+/+/"+event.TopicAcks, 1, f.onAck)
	})
	f.client = mqtt.NewClient(opts)
	if tok := f.client.Connect(); !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
		return nil, fmt.Errorf("fleet connect %s: %v", brokerURL, tok.Error())
	}
	return f, nil
}

// Close disconnects.
func (f *Fleet) Close() { f.client.Disconnect(100) }

func (f *Fleet) onAck(_ mqtt.Client, m mqtt.Message) {
	var a event.Ack
	if json.Unmarshal(m.Payload(), &a) != nil {
		return
	}
	now := time.Now()
	f.mu.Lock()
	d := f.byTopic[m.Topic()]
	if d != nil && d.ackKey != nil && event.VerifyAck(d.ackKey, d.Tenant, d.Device, a) != nil {
		f.mu.Unlock()
		f.BadAcks.Add(1)
		return
	}
	if d != nil && a.Seq > d.Acked && a.Seq <= uint64(len(d.IDs)) && d.IDs[a.Seq-1] == a.ID {
		for s := d.Acked + 1; s <= a.Seq; s++ {
			d.AckedAt[s-1] = now
		}
		d.Acked = a.Seq
	}
	f.mu.Unlock()
	select {
	case f.acked <- struct{}{}:
	default:
	}
}

// Enroll enrolls a new device through the API and adds it to the fleet.
func (f *Fleet) Enroll(post Poster, tenant, device string) (*SimDevice, error) {
	var tok struct {
		Token string `json:"token"`
	}
	if err := post("POST", "/v1/tenants/"+tenant+"/enrollments",
		map[string]string{"device": device}, &tok); err != nil {
		return nil, fmt.Errorf("enrollment token: %w", err)
	}
	pub, key, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		return nil, err
	}
	var enrolled struct {
		AckKey string `json:"ack_key"`
	}
	if err := post("POST", "/v1/enroll", map[string]string{"token": tok.Token,
		"public_key": base64.StdEncoding.EncodeToString(pub)}, &enrolled); err != nil {
		return nil, fmt.Errorf("enroll: %w", err)
	}
	ackKey, err := base64.StdEncoding.DecodeString(enrolled.AckKey)
	if err != nil || len(ackKey) != ed25519.PublicKeySize {
		return nil, fmt.Errorf("enroll: no ack key in the response (%q)", enrolled.AckKey)
	}
	d := &SimDevice{Tenant: tenant, Device: device, key: key, signer: event.NewSigner(key),
		ackKey: ed25519.PublicKey(ackKey)}
	f.mu.Lock()
	f.devices = append(f.devices, d)
	f.byTopic[event.DeviceTopic(tenant, device, event.TopicAcks)] = d
	f.mu.Unlock()
	return d, nil
}

var emptyDigest = (&ruleset.Ruleset{}).Digest().String()

// Seal signs the device's next event: a baseline first, then changes adding rule.
func (f *Fleet) Seal(d *SimDevice, rule string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	seq := uint64(len(d.IDs)) + 1
	e := &event.Event{V: event.Version, Kind: event.Change, Tenant: d.Tenant, Device: d.Device,
		KeyID: d.signer.KeyID(), Seq: seq, Observed: event.FormatTime(time.Now()),
		Source: event.SourceNftables, Before: emptyDigest, After: emptyDigest,
		Changes: []ruleset.Change{{Kind: ruleset.RuleAdded, Family: "inet", Table: "filter",
			Chain: "input", Position: int(seq), Rule: rule}}}
	if seq == 1 {
		e.Kind, e.Before, e.Changes, e.Ruleset = event.Baseline, "", nil, &ruleset.Ruleset{}
	} else {
		e.Prev = d.IDs[seq-2]
	}
	return d.seal(e)
}

// Publish sends the device's events from sequence from to to (inclusive), QoS 1, and
// waits for the broker's PUBACKs.
func (f *Fleet) Publish(d *SimDevice, from, to uint64) error {
	topic := event.DeviceTopic(d.Tenant, d.Device, event.TopicEvents)
	var toks []mqtt.Token
	for s := from; s <= to; s++ {
		f.mu.Lock()
		env := d.Envelopes[s-1]
		if d.SentAt[s-1].IsZero() {
			d.SentAt[s-1] = time.Now()
		}
		f.mu.Unlock()
		toks = append(toks, f.client.Publish(topic, 1, false, env))
	}
	for _, t := range toks {
		if !t.WaitTimeout(10*time.Second) || t.Error() != nil {
			return fmt.Errorf("publish %s: %v", topic, t.Error())
		}
	}
	return nil
}

// Resend publishes every device's events after its acked head, as an agent does after
// a reconnect.
func (f *Fleet) Resend() error {
	f.mu.Lock()
	devs := append([]*SimDevice(nil), f.devices...)
	f.mu.Unlock()
	for _, d := range devs {
		f.mu.Lock()
		from, to := d.Acked+1, uint64(len(d.IDs))
		f.mu.Unlock()
		if from <= to {
			if err := f.Publish(d, from, to); err != nil {
				return err
			}
		}
	}
	return nil
}

// Unacked counts the sealed events no ack covers yet.
func (f *Fleet) Unacked() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	n := 0
	for _, d := range f.devices {
		n += len(d.IDs) - int(d.Acked)
	}
	return n
}

// WaitAcked resends every interval until every sealed event is acked, or timeout.
func (f *Fleet) WaitAcked(timeout, resend time.Duration) error {
	deadline := time.Now().Add(timeout)
	last := time.Now()
	for f.Unacked() > 0 {
		if time.Now().After(deadline) {
			return fmt.Errorf("%d events not acked after %s", f.Unacked(), timeout)
		}
		select {
		case <-f.acked:
		case <-time.After(50 * time.Millisecond):
		}
		if resend > 0 && time.Since(last) > resend {
			if err := f.Resend(); err != nil {
				return err
			}
			last = time.Now()
		}
	}
	return nil
}

// Snapshot returns each device's acked head, keyed "tenant/device".
func (f *Fleet) Snapshot() map[string]uint64 {
	f.mu.Lock()
	defer f.mu.Unlock()
	out := map[string]uint64{}
	for _, d := range f.devices {
		out[d.Tenant+"/"+d.Device] = d.Acked
	}
	return out
}

// Devices returns the fleet's devices.
func (f *Fleet) Devices() []*SimDevice {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]*SimDevice(nil), f.devices...)
}

// Latencies returns, for every acked event, the time from its first publish to the
// first ack that covered it.
func (f *Fleet) Latencies() []time.Duration {
	f.mu.Lock()
	defer f.mu.Unlock()
	var out []time.Duration
	for _, d := range f.devices {
		for i := range d.IDs {
			if !d.SentAt[i].IsZero() && !d.AckedAt[i].IsZero() {
				out = append(out, d.AckedAt[i].Sub(d.SentAt[i]))
			}
		}
	}
	return out
}

// PublishAsync sends one event (seq) of the device without waiting for the PUBACK.
func (f *Fleet) PublishAsync(d *SimDevice, seq uint64) mqtt.Token {
	f.mu.Lock()
	env := d.Envelopes[seq-1]
	if d.SentAt[seq-1].IsZero() {
		d.SentAt[seq-1] = time.Now()
	}
	f.mu.Unlock()
	return f.client.Publish(event.DeviceTopic(d.Tenant, d.Device, event.TopicEvents), 1, false, env)
}

// SealWith signs the device's next event (not its first) carrying changes, with source
// src (an SNMP target's event, for instance).
func (f *Fleet) SealWith(d *SimDevice, src string, changes []ruleset.Change) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	seq := uint64(len(d.IDs)) + 1
	if seq == 1 {
		return fmt.Errorf("%s: seal its baseline first", d.Device)
	}
	e := &event.Event{V: event.Version, Kind: event.Change, Tenant: d.Tenant, Device: d.Device,
		KeyID: d.signer.KeyID(), Seq: seq, Observed: event.FormatTime(time.Now()),
		Source: src, Before: emptyDigest, After: emptyDigest, Prev: d.IDs[seq-2],
		Changes: changes}
	return d.seal(e)
}

// seal signs e as the device's next event and keeps it. The caller holds the fleet's lock.
func (d *SimDevice) seal(e *event.Event) error {
	b, id, err := d.signer.Seal(e)
	if err != nil {
		return err
	}
	d.Envelopes, d.IDs = append(d.Envelopes, b), append(d.IDs, id)
	d.AckedAt, d.SentAt = append(d.AckedAt, time.Time{}), append(d.SentAt, time.Time{})
	return nil
}
