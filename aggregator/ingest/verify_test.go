package ingest

import (
	"crypto/ed25519"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/secure-systems-lab/go-securesystemslib/dsse"

	"github.com/fenceline/fenceline/aggregator/internal/testenv"
	"github.com/fenceline/fenceline/shared/event"
	"github.com/fenceline/fenceline/shared/ruleset"
)

// memKeys is a KeySource in memory: one key per "tenant/device".
type memKeys map[string]ed25519.PublicKey

func (m memKeys) KeyFor(tenant, device, keyID string) (ed25519.PublicKey, error) {
	k, ok := m[tenant+"/"+device]
	if !ok || event.KeyID(k) != keyID {
		return nil, fmt.Errorf("%w: %s", event.ErrUnknownKey, keyID)
	}
	return k, nil
}

func topic(tenant, device string) string {
	return event.DeviceTopic(tenant, device, event.TopicEvents)
}

// tamper flips one character of the envelope's base64 payload.
func tamper(t testing.TB, env []byte) []byte {
	var e event.Envelope
	if err := json.Unmarshal(env, &e); err != nil {
		t.Fatal(err)
	}
	p, _ := base64.StdEncoding.DecodeString(e.Payload)
	p = []byte(strings.Replace(string(p), `"kind":"baseline"`, `"kind":"heartbeat"`, 1))
	e.Payload = base64.StdEncoding.EncodeToString(p)
	b, _ := json.Marshal(&e)
	return b
}

func TestVerify(t *testing.T) {
	a := testenv.NewAgent("acme", "fw1")
	b := testenv.NewAgent("globex", "fw9")
	keys := memKeys{"acme/fw1": a.Public(), "globex/fw9": b.Public(), "acme/fw2": a.Public()}
	good, _ := a.Next(event.Baseline)

	noncanon := a.Event(event.Change)
	payload, _ := json.Marshal(noncanon) // key order of the struct, not canonical
	sig := ed25519.Sign(a.Key, dsse.PAE(event.PayloadType, payload))
	ncEnv := envelope(t, a.Signer.KeyID(), payload, sig)

	otherType := envelope(t, a.Signer.KeyID(), payload, sig)
	otherType = []byte(strings.Replace(string(otherType), event.PayloadType, "text/plain", 1))

	tests := []struct {
		name   string
		topic  string
		msg    []byte
		reason string
	}{
		{"good", topic("acme", "fw1"), good, ""},
		{"garbage", topic("acme", "fw1"), []byte("\x00garbage{"), ReasonMalformed},
		{"empty", topic("acme", "fw1"), nil, ReasonMalformed},
		{"acks topic", event.DeviceTopic("acme", "fw1", event.TopicAcks), good, ReasonMalformed},
		{"bad topic", "fenceline/v1/acme/+/events", good, ReasonMalformed},
		{"tampered", topic("acme", "fw1"), tamper(t, good), ReasonBadSignature},
		{"other tenant's topic", topic("globex", "fw9"), good, ReasonUnknownKey},
		{"unenrolled device", topic("acme", "fw3"), good, ReasonUnknownKey},
		{"same key, other device", topic("acme", "fw2"), good, ReasonTopicMismatch},
		{"not canonical", topic("acme", "fw1"), ncEnv, ReasonNotCanonical},
		{"payload type", topic("acme", "fw1"), otherType, ReasonPayloadType},
		{"too large", topic("acme", "fw1"), make([]byte, event.MaxEnvelopeSize+1), ReasonTooLarge},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			v, err := Verify(tc.topic, tc.msg, keys)
			if tc.reason == "" {
				if err != nil {
					t.Fatal(err)
				}
				if v.Tenant != "acme" || v.Device != "fw1" || v.Opened.Event.Seq != 1 {
					t.Fatalf("verified %+v", v)
				}
				return
			}
			var rej *RejectError
			if !errors.As(err, &rej) || rej.Reason != tc.reason {
				t.Fatalf("err = %v, want reason %s", err, tc.reason)
			}
		})
	}
}

func envelope(t testing.TB, keyID string, payload, sig []byte) []byte {
	b, err := json.Marshal(map[string]any{
		"payloadType": event.PayloadType,
		"payload":     base64.StdEncoding.EncodeToString(payload),
		"signatures":  []map[string]string{{"keyid": keyID, "sig": base64.StdEncoding.EncodeToString(sig)}},
	})
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// FuzzVerify feeds arbitrary topics and bytes to the decode path: it answers accept or
// reject and never panics, and what it accepts belongs to the topic's device.
func FuzzVerify(f *testing.F) {
	a := testenv.NewAgent("acme", "fw1")
	keys := memKeys{"acme/fw1": a.Public()}
	good, _ := a.Next(event.Baseline)
	ch, _ := a.Next(event.Change, ruleset.Change{Kind: ruleset.RuleAdded, Family: "inet",
		Table: "filter", Chain: "input", Position: 1, Rule: "tcp dport 22 accept"})
	f.Add(topic("acme", "fw1"), good)
	f.Add(topic("acme", "fw1"), ch)
	f.Add(topic("acme", "fw1"), tamper(f, good))
	f.Add(topic("acme", "fw2"), good)
	f.Add("fenceline/v1/acme/fw1", []byte("{}"))
	f.Add(topic("acme", "fw1"), []byte(`{"payloadType":"`+event.PayloadType+`","payload":"","signatures":[]}`))
	f.Fuzz(func(t *testing.T, topic string, msg []byte) {
		v, err := Verify(topic, msg, keys)
		if err != nil {
			var rej *RejectError
			if !errors.As(err, &rej) {
				t.Fatalf("error without a reason: %v", err)
			}
			return
		}
		tn, dv, _, _ := event.ParseDeviceTopic(topic)
		if v.Opened.Event.Tenant != tn || v.Opened.Event.Device != dv {
			t.Fatalf("accepted %s/%s on %s", v.Opened.Event.Tenant, v.Opened.Event.Device, topic)
		}
	})
}
