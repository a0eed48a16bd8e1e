package ingest_test

import (
	"context"
	"crypto/ed25519"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	mqtt "github.com/eclipse/paho.mqtt.golang"

	"github.com/fenceline/fenceline/aggregator/broker"
	"github.com/fenceline/fenceline/aggregator/ingest"
	"github.com/fenceline/fenceline/aggregator/internal/testenv"
	"github.com/fenceline/fenceline/aggregator/internal/teststore"
	"github.com/fenceline/fenceline/aggregator/model"
	"github.com/fenceline/fenceline/aggregator/store"
	"github.com/fenceline/fenceline/shared/event"
)

const mosquittoBin = "/usr/sbin/mosquitto"

// startEmbedded starts the aggregator's embedded broker on a free loopback port.
func startEmbedded(t *testing.T) string {
	t.Helper()
	b, err := broker.Start(broker.Config{Listen: "127.0.0.1:0", DataDir: t.TempDir()},
		testenv.Logger(t))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		b.Shutdown(ctx)
	})
	return b.URL()
}

// startMosquitto starts a real Mosquitto on a free loopback port and stops it, by its
// PID, when the test ends.
func startMosquitto(t *testing.T) string {
	t.Helper()
	if _, err := os.Stat(mosquittoBin); err != nil {
		t.Skipf("mosquitto not installed (scripts/deps.sh installs it): %v", err)
	}
	addr := testenv.FreeAddr(t)
	port := addr[strings.LastIndex(addr, ":")+1:]
	dir := t.TempDir()
	conf := filepath.Join(dir, "mosquitto.conf")
	err := os.WriteFile(conf, []byte("listener "+port+" 127.0.0.1\nallow_anonymous true\n"+
		"persistence false\nlog_dest stderr\n"), 0o644)
	if err != nil {
		t.Fatal(err)
	}
	var out strings.Builder
	cmd := exec.Command(mosquittoBin, "-c", conf)
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	pid := cmd.Process.Pid
	exited := make(chan struct{})
	go func() {
		cmd.Wait()
		close(exited)
	}()
	t.Cleanup(func() {
		syscall.Kill(pid, syscall.SIGTERM)
		select {
		case <-exited:
		case <-time.After(5 * time.Second):
			syscall.Kill(pid, syscall.SIGKILL)
			<-exited
		}
		if t.Failed() {
			t.Logf("mosquitto output:\n%s", out.String())
		}
	})
	url := "tcp://" + addr
	testenv.WaitFor(t, 10*time.Second, "mosquitto to accept clients", func() bool {
		c := mqtt.NewClient(mqtt.NewClientOptions().AddBroker(url).SetClientID("probe"))
		tok := c.Connect()
		ok := tok.WaitTimeout(time.Second) && tok.Error() == nil
		if ok {
			c.Disconnect(0)
		}
		return ok
	})
	return url
}

var clientSeq atomic.Int64

// client connects a plain MQTT client (an agent or an onlooker).
func client(t *testing.T, url string) mqtt.Client {
	t.Helper()
	id := fmt.Sprintf("test-client-%d", clientSeq.Add(1))
	c := mqtt.NewClient(mqtt.NewClientOptions().AddBroker(url).SetClientID(id).
		SetCleanSession(true))
	if tok := c.Connect(); !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
		t.Fatalf("connect %s: %v", url, tok.Error())
	}
	t.Cleanup(func() { c.Disconnect(100) })
	return c
}

func publish(t *testing.T, c mqtt.Client, topic string, msg []byte) {
	t.Helper()
	tok := c.Publish(topic, 1, false, msg)
	if !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
		t.Fatalf("publish %s: %v", topic, tok.Error())
	}
}

// retainedAck subscribes afresh to a device's acks topic and returns the retained ack.
func retainedAck(t *testing.T, url, tenant, device string) event.Ack {
	t.Helper()
	c := client(t, url)
	acks := make(chan event.Ack, 8)
	tok := c.Subscribe(event.DeviceTopic(tenant, device, event.TopicAcks), 1,
		func(_ mqtt.Client, m mqtt.Message) {
			var a event.Ack
			if json.Unmarshal(m.Payload(), &a) == nil && m.Retained() {
				acks <- a
			}
		})
	if !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
		t.Fatalf("subscribe: %v", tok.Error())
	}
	select {
	case a := <-acks:
		return a
	case <-time.After(10 * time.Second):
		t.Fatalf("no retained ack for %s/%s", tenant, device)
	}
	return event.Ack{}
}

func startIngest(t *testing.T, url string, s *store.Store, clientID string) *ingest.Ingester {
	t.Helper()
	in := ingest.New(ingest.Config{BrokerURL: url, ClientID: clientID}, s, testenv.Logger(t))
	in.Start()
	t.Cleanup(func() { in.Shutdown(context.Background()) })
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	if err := in.WaitConnected(ctx); err != nil {
		t.Fatal(err)
	}
	return in
}

func TestIngestEmbeddedBroker(t *testing.T) { testIngest(t, startEmbedded(t)) }

func TestIngestMosquitto(t *testing.T) { testIngest(t, startMosquitto(t)) }

// testIngest sends bad and good envelopes through a real broker: the bad ones are
// counted and leave nothing behind, the good one is stored and acked.
func testIngest(t *testing.T, url string) {
	s := teststore.NewStore(t)
	in := startIngest(t, url, s, "aggregator-"+t.Name())

	// A device name with a dot: brokers map topic separators differently.
	a := testenv.NewAgent("acme", "fw.branch-1")
	teststore.Enroll(t, s, a)
	other := testenv.NewAgent("globex", "fw9")
	teststore.Enroll(t, s, other)
	pub := client(t, url)
	acmeTopic := event.DeviceTopic("acme", "fw.branch-1", event.TopicEvents)

	good, goodID := a.Next(event.Baseline)
	var env event.Envelope
	json.Unmarshal(good, &env)
	env.Signatures[0].Sig = strings.Repeat("A", 86) + "=="
	tampered, _ := json.Marshal(&env)

	publish(t, pub, acmeTopic, tampered)
	publish(t, pub, event.DeviceTopic("globex", "fw9", event.TopicEvents), good)
	publish(t, pub, acmeTopic, []byte("\xff\xfe not an envelope"))

	want := map[string]uint64{
		ingest.ReasonBadSignature: 1, ingest.ReasonUnknownKey: 1, ingest.ReasonMalformed: 1,
	}
	testenv.WaitFor(t, 10*time.Second, "three rejections", func() bool {
		return in.Stats().RejectedTotal() == 3
	})
	st := in.Stats()
	for reason, n := range want {
		if st.Rejected[reason] != n {
			t.Errorf("rejected[%s] = %d, want %d (all: %v)", reason, st.Rejected[reason], n, st.Rejected)
		}
	}
	// The bad signature on an enrolled device's topic is recorded as a deviation.
	testenv.WaitFor(t, 10*time.Second, "bad_signature deviation", func() bool {
		ds, _ := s.Deviations("acme", store.DeviationFilter{Device: "fw.branch-1",
			Kind: model.BadSignature})
		return len(ds) == 1
	})
	for _, d := range [][2]string{{"acme", "fw.branch-1"}, {"globex", "fw9"}} {
		if evs, _ := s.Events(d[0], d[1], store.EventQuery{}); len(evs) != 0 {
			t.Fatalf("%s/%s: %d events stored from bad input", d[0], d[1], len(evs))
		}
	}

	publish(t, pub, acmeTopic, good)
	testenv.WaitFor(t, 10*time.Second, "the good event stored", func() bool {
		evs, _ := s.Events("acme", "fw.branch-1", store.EventQuery{})
		return len(evs) == 1 && evs[0].ID == goodID
	})
	// The ack follows the commit; once the broker confirmed it, a new subscriber gets it
	// as the retained message.
	testenv.WaitFor(t, 10*time.Second, "ack published", func() bool {
		return in.Stats().AcksSent == 1
	})
	if ack := retainedAck(t, url, "acme", "fw.branch-1"); ack != (event.Ack{Seq: 1, ID: goodID}) {
		t.Fatalf("retained ack = %+v, want seq 1 id %s", ack, goodID)
	}

	// A resend is a duplicate, a skipped sequence a gap: neither is stored, both acked
	// (answers that are ready together are acked once per device).
	publish(t, pub, acmeTopic, good)
	e := a.Event(event.Heartbeat)
	e.Seq, e.Prev = 5, goodID
	gap, _ := a.Seal(e)
	publish(t, pub, acmeTopic, gap)
	testenv.WaitFor(t, 10*time.Second, "duplicate and gap, acked", func() bool {
		st := in.Stats()
		return st.Rejected[ingest.ReasonDuplicate] == 1 && st.Rejected[ingest.ReasonGap] == 1 &&
			st.AcksSent >= 2
	})
	if evs, _ := s.Events("acme", "fw.branch-1", store.EventQuery{}); len(evs) != 1 {
		t.Fatalf("%d events after duplicate and gap, want 1", len(evs))
	}
	if st := in.Stats(); st.Accepted != 1 {
		t.Fatalf("stats = %+v", st)
	}
	if ack := retainedAck(t, url, "acme", "fw.branch-1"); ack.Seq != 1 {
		t.Fatalf("retained ack after duplicate and gap = %+v, want seq 1", ack)
	}
}

func TestPersistentSessionEmbeddedBroker(t *testing.T) {
	testPersistentSession(t, startEmbedded(t))
}

func TestPersistentSessionMosquitto(t *testing.T) { testPersistentSession(t, startMosquitto(t)) }

// testPersistentSession publishes while the aggregator is away: the broker keeps the
// event for the aggregator's session and delivers it when it is back.
func testPersistentSession(t *testing.T, url string) {
	s := teststore.NewStore(t)
	id := "aggregator-" + t.Name()
	in := startIngest(t, url, s, id)
	if err := in.Shutdown(context.Background()); err != nil {
		t.Fatal(err)
	}
	a := testenv.NewAgent("acme", "fw1")
	teststore.Enroll(t, s, a)
	env, evID := a.Next(event.Baseline)
	publish(t, client(t, url), event.DeviceTopic("acme", "fw1", event.TopicEvents), env)

	startIngest(t, url, s, id)
	testenv.WaitFor(t, 15*time.Second, "event queued in the session", func() bool {
		evs, _ := s.Events("acme", "fw1", store.EventQuery{})
		return len(evs) == 1 && evs[0].ID == evID
	})
}

// gatedStore holds every key lookup until the gate opens, so that messages pile up in
// the ingester's queue.
type gatedStore struct {
	*store.Store
	gate chan struct{}
}

func (g gatedStore) KeyFor(tenant, device, keyID string) (ed25519.PublicKey, error) {
	<-g.gate
	return g.Store.KeyFor(tenant, device, keyID)
}

// startGated starts an ingester with cfg on an embedded broker, over a fresh store whose
// key lookups wait for the gate.
func startGated(t *testing.T, cfg ingest.Config) (string, *store.Store, gatedStore, *ingest.Ingester) {
	t.Helper()
	url := startEmbedded(t)
	s := teststore.NewStore(t)
	g := gatedStore{Store: s, gate: make(chan struct{})}
	cfg.BrokerURL, cfg.ClientID = url, "aggregator-"+t.Name()
	in := ingest.New(cfg, g, testenv.Logger(t))
	in.Start()
	t.Cleanup(func() { in.Shutdown(context.Background()) })
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	if err := in.WaitConnected(ctx); err != nil {
		t.Fatal(err)
	}
	return url, s, g, in
}

// TestQueueByteBound floods one device's topic with large garbage while the worker is
// busy: the queue keeps no more than its byte bound, the rest is dropped and counted,
// and the event ahead of the flood is still stored.
func TestQueueByteBound(t *testing.T) {
	const chunk = 300 << 10
	url, s, g, in := startGated(t, ingest.Config{Workers: 1, QueueBytes: 3*chunk + chunk/2})
	a := testenv.NewAgent("acme", "fw1")
	teststore.Enroll(t, s, a)
	pub := client(t, url)
	topic := event.DeviceTopic("acme", "fw1", event.TopicEvents)
	good, goodID := a.Next(event.Baseline)
	publish(t, pub, topic, good)
	testenv.WaitFor(t, 10*time.Second, "the worker to take the first event", func() bool {
		return in.Stats().Received == 1
	})
	garbage := []byte(strings.Repeat("x", chunk))
	const flood = 10
	for range flood {
		publish(t, pub, topic, garbage)
	}
	testenv.WaitFor(t, 10*time.Second, "the flood received", func() bool {
		return in.Stats().Received == 1+flood
	})
	close(g.gate)
	testenv.WaitFor(t, 10*time.Second, "the queue drained", func() bool {
		st := in.Stats()
		return st.Accepted == 1 && st.Rejected[ingest.ReasonMalformed]+st.Dropped == flood
	})
	// The first event is held by the worker and counts against the bound: three
	// garbage messages fit beside it.
	if st := in.Stats(); st.Rejected[ingest.ReasonMalformed] != 3 || st.Dropped != flood-3 {
		t.Fatalf("malformed %d, dropped %d; want 3 and %d", st.Rejected[ingest.ReasonMalformed],
			st.Dropped, flood-3)
	}
	if evs, _ := s.Events("acme", "fw1", store.EventQuery{}); len(evs) != 1 || evs[0].ID != goodID {
		t.Fatalf("stored %+v, want the first event", evs)
	}
}

// TestOneDeviceUsesWholeQueue: one device's messages all go to one worker, yet they
// may fill the whole queue (an agent replaying a backlog has its window in flight);
// beyond it, messages are dropped and counted.
func TestOneDeviceUsesWholeQueue(t *testing.T) {
	const size = 8
	url, s, g, in := startGated(t, ingest.Config{Workers: 4, QueueSize: size})
	a := testenv.NewAgent("acme", "fw1")
	teststore.Enroll(t, s, a)
	pub := client(t, url)
	topic := event.DeviceTopic("acme", "fw1", event.TopicEvents)
	var ids []string
	for range size + 2 {
		env, id := a.Next(event.Heartbeat)
		ids = append(ids, id)
		publish(t, pub, topic, env)
	}
	testenv.WaitFor(t, 10*time.Second, "all received", func() bool {
		return in.Stats().Received == size+2
	})
	close(g.gate)
	// The message in the worker's hands counts until it is done: the first size are
	// taken, the last two dropped.
	testenv.WaitFor(t, 10*time.Second, "the queue drained", func() bool {
		st := in.Stats()
		return st.Accepted == size && st.Dropped == 2
	})
	evs, _ := s.Events("acme", "fw1", store.EventQuery{})
	if len(evs) != size || evs[len(evs)-1].ID != ids[size-1] {
		t.Fatalf("stored %d events, want the first %d", len(evs), size)
	}
}

// TestAcksSigned: with an ack key in the state, every ack is signed with it for its
// device, so agents can tell it from anything else published on their acks topic.
func TestAcksSigned(t *testing.T) {
	url := startEmbedded(t)
	s := teststore.NewStore(t)
	pub, err := s.EnsureAckKey(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	in := startIngest(t, url, s, "aggregator-"+t.Name())
	a := testenv.NewAgent("acme", "fw1")
	teststore.Enroll(t, s, a)
	env, id := a.Next(event.Baseline)
	publish(t, client(t, url), event.DeviceTopic("acme", "fw1", event.TopicEvents), env)
	// Once the broker confirmed the ack, a new subscriber gets it as the retained message.
	testenv.WaitFor(t, 10*time.Second, "the event acked", func() bool {
		return in.Stats().AcksSent == 1
	})
	ack := retainedAck(t, url, "acme", "fw1")
	if ack.Seq != 1 || ack.ID != id || event.VerifyAck(pub, "acme", "fw1", ack) != nil {
		t.Fatalf("ack %+v: not signed with the aggregator's ack key", ack)
	}
	if event.VerifyAck(pub, "acme", "fw2", ack) == nil {
		t.Fatal("the signature holds for another device's topic")
	}
}
