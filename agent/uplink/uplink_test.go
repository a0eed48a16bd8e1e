package uplink

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	mqtt "github.com/eclipse/paho.mqtt.golang"
	dto "github.com/prometheus/client_model/go"

	"github.com/fenceline/fenceline/agent/outbox"
	"github.com/fenceline/fenceline/scripts/lab"
	"github.com/fenceline/fenceline/shared/event"
)

// mosquittoAndOutbox starts a real Mosquitto on loopback and opens a fresh outbox; both
// go when the test ends.
func mosquittoAndOutbox(t *testing.T) (string, *outbox.Outbox) {
	t.Helper()
	if err := lab.CheckHost("mosquitto"); err != nil {
		t.Skip(err)
	}
	l := lab.New("", t.TempDir(), "")
	t.Cleanup(func() { l.Close() })
	broker, _, err := l.Mosquitto()
	if err != nil {
		t.Fatal(err)
	}
	return broker, openOutbox(t)
}

func openOutbox(t *testing.T) *outbox.Outbox {
	t.Helper()
	ob, err := outbox.Open(filepath.Join(t.TempDir(), "outbox.db"), outbox.Config{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ob.Close() })
	return ob
}

// run runs the uplink until the test ends.
func run(t *testing.T, u *Uplink) {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- u.Run(ctx) }()
	t.Cleanup(func() { cancel(); <-done })
}

// syncBuffer is a log sink safe for the uplink's goroutines.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

// lines returns the log lines that contain every one of the words.
func (s *syncBuffer) lines(words ...string) []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []string
	for _, l := range strings.Split(s.b.String(), "\n") {
		ok := l != ""
		for _, w := range words {
			ok = ok && strings.Contains(l, w)
		}
		if ok {
			out = append(out, l)
		}
	}
	return out
}

func waitFor(t *testing.T, within time.Duration, what string, cond func() bool) {
	t.Helper()
	if err := lab.WaitFor(within, what, func() (bool, string) { return cond(), "" }); err != nil {
		t.Fatal(err)
	}
}

// errValue is the err attribute of a log line.
var errValue = regexp.MustCompile(`err="([^"]*)"|err=(\S+)`)

// repeats reports whether an error message says the same thing twice in a row
// ("connect: connect: …") or carries the MQTT client's own wrapping.
func repeats(msg string) bool {
	parts := strings.Split(msg, ": ")
	for i := 1; i < len(parts); i++ {
		if parts[i] == parts[i-1] {
			return true
		}
	}
	return strings.Contains(msg, "network Error")
}

// TestLinkStatusAndLogs: an agent whose broker is unreachable warns once with the
// broker and the cause, retries at debug, says when it connects, and says when the
// connection is lost; Status reports each state.
func TestLinkStatusAndLogs(t *testing.T) {
	if err := lab.CheckHost("mosquitto"); err != nil {
		t.Skip(err)
	}
	port, err := lab.FreePort()
	if err != nil {
		t.Fatal(err)
	}
	broker := fmt.Sprintf("tcp://127.0.0.1:%d", port)
	ob := openOutbox(t)
	logs := &syncBuffer{}
	log := slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	u := New(Config{BrokerURL: broker, Tenant: "acme", Device: "fw-1",
		ConnectRetry: 50 * time.Millisecond}, ob, nil, log)
	run(t, u)

	// The status counts an attempt before its log line is written: wait for both.
	waitFor(t, 10*time.Second, "three failed attempts", func() bool {
		return u.Status().FailedAttempts >= 3 &&
			len(logs.lines("level=DEBUG", "broker still unreachable")) >= 2
	})
	st := u.Status()
	if st.Connected || st.Broker != broker || !strings.Contains(st.Error, "connection refused") {
		t.Errorf("status while unreachable: %+v", st)
	}
	info := logs.lines("level=WARN", "broker unreachable", "broker="+broker)
	if len(info) != 1 {
		t.Errorf("%d info lines about the unreachable broker, want 1:\n%s", len(info),
			strings.Join(logs.lines("broker"), "\n"))
	}
	if retries := logs.lines("level=DEBUG", "broker still unreachable"); len(retries) < 2 {
		t.Errorf("%d debug lines for retries, want ≥ 2", len(retries))
	}
	for _, l := range logs.lines("err=") {
		if m := errValue.FindStringSubmatch(l); m != nil && repeats(m[1]+m[2]) {
			t.Errorf("error message repeats itself: %s", l)
		}
	}

	l := lab.New("", t.TempDir(), "")
	defer l.Close()
	_, mosq, err := l.MosquittoIn("", "127.0.0.1", port)
	if err != nil {
		t.Fatal(err)
	}
	waitFor(t, 10*time.Second, "connected", func() bool { return u.Status().Connected })
	if up := logs.lines("level=INFO", "connected to broker", "broker="+broker, "down_for="); len(up) != 1 {
		t.Errorf("%d info lines about the connection, want 1", len(up))
	}

	mosq.Stop()
	waitFor(t, 10*time.Second, "disconnected", func() bool { return !u.Status().Connected })
	waitFor(t, 10*time.Second, "a failed reconnection", func() bool {
		return u.Status().FailedAttempts >= 1
	})
	if lost := logs.lines("level=WARN", "broker connection lost", "broker="+broker); len(lost) != 1 {
		t.Errorf("%d info lines about the lost connection, want 1", len(lost))
	}
	if again := logs.lines("level=WARN", "broker unreachable"); len(again) != 1 {
		t.Errorf("reconnection failures after a lost connection logged at info: %d lines", len(again))
	}
	if t.Failed() {
		t.Log(strings.Join(logs.lines("component=uplink"), "\n"))
	}
}

// chainEvent seals a stand-in event: the uplink moves envelopes, it does not read them.
func chainEvent(seq uint64, prev string) ([]byte, string, error) {
	env := []byte(fmt.Sprintf(`{"seq":"%d","prev":%q}`, seq, prev))
	return env, envelopeID(env), nil
}

// TestForgedAcks: acks are not signed, so the uplink refuses what cannot come from the
// aggregator: an ack without an event id, an ack covering events it never published, and
// a foreign head seen once; a foreign head the aggregator repeats in answer to its
// publishes still re-anchors the chain.
func TestForgedAcks(t *testing.T) {
	broker, ob := mosquittoAndOutbox(t)
	logs := &syncBuffer{}
	log := slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	// A window of two and no aggregator: two events leave, the rest wait for an ack.
	u := New(Config{BrokerURL: broker, Tenant: "acme", Device: "fw-1", Batch: 2, Window: 2,
		ResendAfter: 200 * time.Millisecond, ConnectRetry: 50 * time.Millisecond}, ob, nil, log)
	run(t, u)
	waitFor(t, 10*time.Second, "connected", func() bool { return u.Status().Connected })

	// The forger: sees the events topic, publishes on the acks topic.
	var mu sync.Mutex
	var seen int
	var answer *event.Ack // when set, every event is answered with this head
	forger := mqtt.NewClient(mqtt.NewClientOptions().AddBroker(broker).SetClientID("forger"))
	if tok := forger.Connect(); !tok.WaitTimeout(5*time.Second) || tok.Error() != nil {
		t.Fatalf("forger connect: %v", tok.Error())
	}
	defer forger.Disconnect(100)
	acks := event.DeviceTopic("acme", "fw-1", event.TopicAcks)
	sendAck := func(a event.Ack) {
		b, _ := json.Marshal(a)
		if tok := forger.Publish(acks, 1, true, b); !tok.WaitTimeout(5*time.Second) || tok.Error() != nil {
			t.Fatalf("publish ack: %v", tok.Error())
		}
	}
	answerEvents(t, broker, func(uint64, []byte) *event.Ack {
		mu.Lock()
		defer mu.Unlock()
		seen++
		return answer
	})
	published := func() int { mu.Lock(); defer mu.Unlock(); return seen }

	var ids []string
	for range 10 {
		seq, err := ob.Append(chainEvent, nil)
		if err != nil {
			t.Fatal(err)
		}
		h, _ := ob.Head()
		if h.Seq != seq {
			t.Fatal("head moved")
		}
		ids = append(ids, h.ID)
	}
	u.Notify()
	waitFor(t, 10*time.Second, "the first two events published", func() bool {
		return u.Published() == 2 && published() >= 2
	})

	intact := func(what string) {
		t.Helper()
		h, err := ob.Head()
		if err != nil {
			t.Fatal(err)
		}
		if h.Count != 10 || h.Acked != 0 {
			t.Fatalf("after %s: %d events pending, acked %d; want 10 pending, none acked", what,
				h.Count, h.Acked)
		}
	}
	// An ack without an id, and one naming event 8 (never published) by its id.
	sendAck(event.Ack{Seq: 8})
	sendAck(event.Ack{Seq: 8, ID: ids[7]})
	waitFor(t, 5*time.Second, "both handled", func() bool {
		h, _ := ob.Head()
		return h.Acked != 0 || len(logs.lines("ack without an event id ignored")) >= 1 &&
			len(logs.lines("ack covers events this agent never published")) >= 1
	})
	intact("forged acks of events never published")

	// A foreign head, once: the uplink publishes again and does not re-anchor.
	before := published()
	sendAck(event.Ack{Seq: 1000, ID: strings.Repeat("ab", 32)})
	waitFor(t, 10*time.Second, "four more publishes", func() bool { return published() >= before+4 })
	select {
	case a := <-u.Diverged():
		t.Fatalf("re-anchoring on a single foreign ack %+v", a)
	default:
	}
	intact("a single foreign head")

	// The same kind of head, repeated in answer to every publish, as the aggregator does
	// when the outbox was lost: believed.
	head := event.Ack{Seq: 2000, ID: strings.Repeat("cd", 32)}
	mu.Lock()
	answer = &head
	mu.Unlock()
	select {
	case a := <-u.Diverged():
		if a != head {
			t.Fatalf("diverged at %+v, want %+v", a, head)
		}
	case <-time.After(15 * time.Second):
		t.Fatalf("no re-anchoring on a head the aggregator keeps repeating:\n%s",
			strings.Join(logs.lines("component=uplink"), "\n"))
	}
}

// TestGapHeadResends: the aggregator loses an event (its ingest queue was full) and
// answers the ones after it with its unchanged head; the uplink resends from there at
// once instead of waiting ResendAfter.
func TestGapHeadResends(t *testing.T) {
	broker, ob := mosquittoAndOutbox(t)
	for range 20 {
		if _, err := ob.Append(chainEvent, nil); err != nil {
			t.Fatal(err)
		}
	}

	// The aggregator: accepts the next sequence only, loses the first copy of event 3,
	// and answers every other event with its head.
	var head event.Ack
	lost := false
	answerEvents(t, broker, func(seq uint64, env []byte) *event.Ack {
		if seq == 3 && !lost {
			lost = true
			return nil
		}
		if seq == head.Seq+1 {
			head = event.Ack{Seq: seq, ID: envelopeID(env)}
		}
		return &head
	})

	u := New(Config{BrokerURL: broker, Tenant: "acme", Device: "fw-1", Batch: 2, Window: 4,
		ResendAfter: time.Minute}, ob, nil, slog.New(slog.NewTextHandler(io.Discard, nil)))
	run(t, u)
	waitFor(t, 10*time.Second, "every event acknowledged well before ResendAfter", func() bool {
		h, _ := ob.Head()
		return h.Acked == 20 && h.Count == 0
	})
}

// TestSignedAcks: with the aggregator's ack key configured, only acks it signed for this
// device count. An unsigned ack naming published events by their ids (visible on the
// events topic) deletes nothing, nor does one signed by another key or for another
// device; the aggregator's own ack is applied.
func TestSignedAcks(t *testing.T) {
	broker, ob := mosquittoAndOutbox(t)
	pub, key, _ := ed25519.GenerateKey(nil)
	_, otherKey, _ := ed25519.GenerateKey(nil)
	m := NewMetrics(nil)
	u := New(Config{BrokerURL: broker, Tenant: "acme", Device: "fw-1", AckKey: pub,
		ResendAfter: time.Hour, ConnectRetry: 50 * time.Millisecond}, ob, m,
		slog.New(slog.NewTextHandler(io.Discard, nil)))
	run(t, u)
	waitFor(t, 10*time.Second, "connected", func() bool { return u.Status().Connected })

	var last string
	for range 3 {
		if _, err := ob.Append(chainEvent, nil); err != nil {
			t.Fatal(err)
		}
		h, _ := ob.Head()
		last = h.ID
	}
	u.Notify()
	waitFor(t, 10*time.Second, "all three published", func() bool { return u.Published() == 3 })

	c := mqtt.NewClient(mqtt.NewClientOptions().AddBroker(broker).SetClientID("acker"))
	if tok := c.Connect(); !tok.WaitTimeout(5*time.Second) || tok.Error() != nil {
		t.Fatalf("connect: %v", tok.Error())
	}
	defer c.Disconnect(100)
	send := func(a event.Ack) {
		b, _ := json.Marshal(a)
		tok := c.Publish(event.DeviceTopic("acme", "fw-1", event.TopicAcks), 1, true, b)
		if !tok.WaitTimeout(5*time.Second) || tok.Error() != nil {
			t.Fatalf("publish ack: %v", tok.Error())
		}
	}
	head := event.Ack{Seq: 3, ID: last}
	send(head)                                          // unsigned
	send(event.SignAck(otherKey, "acme", "fw-1", head)) // another key
	send(event.SignAck(key, "acme", "fw-2", head))      // another device's ack
	waitFor(t, 10*time.Second, "three acks refused", func() bool {
		var d dto.Metric
		m.ForgedAcks.Write(&d)
		return d.GetCounter().GetValue() == 3
	})
	if h, _ := ob.Head(); h.Acked != 0 || h.Count != 3 {
		t.Fatalf("after forged acks: acked %d, %d pending; want nothing acked", h.Acked, h.Count)
	}
	send(event.SignAck(key, "acme", "fw-1", head))
	waitFor(t, 10*time.Second, "the aggregator's ack applied", func() bool {
		h, _ := ob.Head()
		return h.Acked == 3 && h.Count == 0
	})
}

// TestReplayedSignedAck: someone who recorded an old signed ack and can publish on the
// acks topic repeats it in answer to every publish, naming a head behind what the
// aggregator has acknowledged since. The ack carries its signed send time, older than
// the acks already taken, so the uplink ignores it and deletes nothing, however often it
// comes. The aggregator itself, restored to that head, sends it with a new time: that
// re-anchors.
func TestReplayedSignedAck(t *testing.T) {
	broker, ob := mosquittoAndOutbox(t)
	pub, key, _ := ed25519.GenerateKey(nil)
	for range 3 {
		if _, err := ob.Append(chainEvent, nil); err != nil {
			t.Fatal(err)
		}
	}
	const (
		honest = iota
		replay
		restored
	)
	var mu sync.Mutex
	mode := honest
	var head, first event.Ack // the aggregator's head; its signed ack of event 1
	answerEvents(t, broker, func(seq uint64, env []byte) *event.Ack {
		mu.Lock()
		defer mu.Unlock()
		var a event.Ack
		switch mode {
		case honest:
			if seq == head.Seq+1 {
				head = event.Ack{Seq: seq, ID: envelopeID(env)}
			}
			a = event.SignAck(key, "acme", "fw-1", event.Ack{Seq: head.Seq, ID: head.ID,
				At: time.Now().UnixMilli()})
			if a.Seq == 1 && first.Seq == 0 {
				first = a
			}
		case replay:
			a = first
		case restored:
			a = event.SignAck(key, "acme", "fw-1", event.Ack{Seq: first.Seq, ID: first.ID,
				At: time.Now().UnixMilli()})
		}
		return &a
	})
	setMode := func(m int) { mu.Lock(); mode = m; mu.Unlock() }

	m := NewMetrics(nil)
	u := New(Config{BrokerURL: broker, Tenant: "acme", Device: "fw-1", AckKey: pub, Batch: 1,
		Window: 1, ResendAfter: 200 * time.Millisecond, ConnectRetry: 50 * time.Millisecond},
		ob, m, slog.New(slog.NewTextHandler(io.Discard, nil)))
	run(t, u)
	waitFor(t, 10*time.Second, "the first three events acknowledged", func() bool {
		h, _ := ob.Head()
		return h.Acked == 3 && h.Count == 0 && h.AckedAt > 0
	})
	time.Sleep(5 * time.Millisecond) // the next signed times are later than the last ack's

	setMode(replay)
	for range 3 {
		if _, err := ob.Append(chainEvent, nil); err != nil {
			t.Fatal(err)
		}
	}
	u.Notify()
	stale := func() float64 {
		var d dto.Metric
		m.StaleAcks.Write(&d)
		return d.GetCounter().GetValue()
	}
	waitFor(t, 15*time.Second, "the replayed ack ignored five times", func() bool { return stale() >= 5 })
	select {
	case a := <-u.Diverged():
		t.Fatalf("re-anchored on a replayed ack %+v", a)
	default:
	}
	if h, _ := ob.Head(); h.Acked != 3 || h.Count != 3 {
		t.Fatalf("after the replays: acked %d, %d pending; want 3 and 3", h.Acked, h.Count)
	}

	setMode(restored)
	select {
	case a := <-u.Diverged():
		if a.Seq != 1 || a.ID != first.ID {
			t.Fatalf("diverged at %+v, want the restored head 1", a)
		}
	case <-time.After(15 * time.Second):
		t.Fatal("no re-anchoring on the restored aggregator's freshly signed head")
	}
}

// answerEvents plays the aggregator's side of the topics for device acme/fw-1 on broker:
// each event published is handed to answer (one at a time, in arrival order) with its
// sequence, and what answer returns is published, retained, on the acks topic; nil
// answers nothing.
func answerEvents(t *testing.T, broker string, answer func(seq uint64, env []byte) *event.Ack) {
	t.Helper()
	agg := mqtt.NewClient(mqtt.NewClientOptions().AddBroker(broker).SetClientID("aggregator"))
	if tok := agg.Connect(); !tok.WaitTimeout(5*time.Second) || tok.Error() != nil {
		t.Fatalf("connect: %v", tok.Error())
	}
	t.Cleanup(func() { agg.Disconnect(100) })
	acks := event.DeviceTopic("acme", "fw-1", event.TopicAcks)
	var mu sync.Mutex
	tok := agg.Subscribe(event.DeviceTopic("acme", "fw-1", event.TopicEvents), 1,
		func(c mqtt.Client, m mqtt.Message) {
			var e struct {
				Seq uint64 `json:"seq,string"`
			}
			json.Unmarshal(m.Payload(), &e)
			mu.Lock()
			a := answer(e.Seq, m.Payload())
			mu.Unlock()
			if a != nil {
				b, _ := json.Marshal(a)
				c.Publish(acks, 1, true, b)
			}
		})
	if !tok.WaitTimeout(5*time.Second) || tok.Error() != nil {
		t.Fatalf("subscribe: %v", tok.Error())
	}
}

// envelopeID is the id of a stand-in event (see chainEvent).
func envelopeID(env []byte) string {
	sum := sha256.Sum256(env)
	return hex.EncodeToString(sum[:])
}
