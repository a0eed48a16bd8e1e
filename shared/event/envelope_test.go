package event_test

import (
	"bytes"
	"crypto/ed25519"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"reflect"
	"strings"
	"testing"

	"github.com/fenceline/fenceline/shared/event"
	"github.com/secure-systems-lab/go-securesystemslib/dsse"
)

func TestSealOpen(t *testing.T) {
	key := testKey(1)
	s := event.NewSigner(key)
	e := sampleEvent(s)
	b, id, err := s.Seal(e)
	if err != nil {
		t.Fatal(err)
	}
	o, err := event.Open(b, lookupFor(testKey(2), key))
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	if !reflect.DeepEqual(&o.Event, e) {
		t.Errorf("opened event differs:\n got %+v\nwant %+v", o.Event, *e)
	}
	if o.ID != id || o.KeyID != s.KeyID() {
		t.Errorf("opened id %s key %s, sealed id %s key %s", o.ID, o.KeyID, id, s.KeyID())
	}

	// The payload is the event's canonical JSON, and the id is SHA-256 of the DSSE
	// pre-authentication encoding, written out here from the DSSE specification.
	want, err := event.Canonical(e)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(o.Payload, want) {
		t.Errorf("payload\n%s\nwant\n%s", o.Payload, want)
	}
	pae := fmt.Sprintf("DSSEv1 %d %s %d %s",
		len(event.PayloadType), event.PayloadType, len(want), want)
	sum := sha256.Sum256([]byte(pae))
	if id != hex.EncodeToString(sum[:]) || event.ID(event.PayloadType, want) != id {
		t.Errorf("id %s, want SHA-256 of the PAE %x", id, sum)
	}

	env := envelopeOf(t, b)
	if env.PayloadType != "application/vnd.fenceline.event.v1+json" || len(env.Signatures) != 1 ||
		env.Signatures[0].KeyID != s.KeyID() {
		t.Errorf("envelope %+v", env)
	}
	pub := key.Public().(ed25519.PublicKey)
	sumKey := sha256.Sum256(pub)
	if s.KeyID() != "ed25519:"+hex.EncodeToString(sumKey[:]) {
		t.Errorf("key id %s", s.KeyID())
	}
}

// TestSealDeterministic: Ed25519 and canonical JSON leave no freedom, so sealing the same
// event twice gives the same bytes, and an event that went through JSON seals the same.
func TestSealDeterministic(t *testing.T) {
	s := event.NewSigner(testKey(1))
	b1, id1 := seal(t, s, sampleEvent(s))
	o, err := event.Open(b1, lookupFor(testKey(1)))
	if err != nil {
		t.Fatal(err)
	}
	b2, id2 := seal(t, s, &o.Event)
	if !bytes.Equal(b1, b2) || id1 != id2 {
		t.Error("sealing the opened event gave different bytes")
	}
}

// A 64-bit handle travels as a string, so even the largest one seals and opens.
func TestSealLargeHandle(t *testing.T) {
	s := event.NewSigner(testKey(1))
	e := sampleEvent(s)
	e.Ruleset.Tables[0].Chains[0].Rules[0].Handle = 1<<64 - 1
	b, _, err := s.Seal(e)
	if err != nil {
		t.Fatal(err)
	}
	o, err := event.Open(b, lookupFor(testKey(1)))
	if err != nil {
		t.Fatal(err)
	}
	if got := o.Event.Ruleset.Tables[0].Chains[0].Rules[0].Handle; got != 1<<64-1 {
		t.Fatalf("handle = %d", got)
	}
}

func TestSealRejects(t *testing.T) {
	s := event.NewSigner(testKey(1))
	for name, mutate := range map[string]func(*event.Event){
		"invalid event":  func(e *event.Event) { e.Seq = 0 },
		"other key's id": func(e *event.Event) { e.KeyID = event.NewSigner(testKey(2)).KeyID() },
	} {
		e := sampleEvent(s)
		mutate(e)
		if b, _, err := s.Seal(e); err == nil {
			_, err := event.Open(b, lookupFor(testKey(1)))
			t.Errorf("%s: sealed an envelope that Open rejects with %v", name, err)
		}
	}
}

// flipBase64 decodes s, flips one bit of byte i and encodes it again.
func flipBase64(t *testing.T, s string, i int) string {
	b, err := base64.StdEncoding.DecodeString(s)
	if err != nil {
		t.Fatal(err)
	}
	b[i] ^= 0x01
	return base64.StdEncoding.EncodeToString(b)
}

func TestOpenRejects(t *testing.T) {
	key := testKey(1)
	s := event.NewSigner(key)
	valid, _ := seal(t, s, sampleEvent(s))
	lookup := lookupFor(key)
	withEnv := func(f func(env *dsse.Envelope)) []byte {
		env := envelopeOf(t, valid)
		f(env)
		return marshal(t, env)
	}
	// A payload, correctly signed, made from the valid event's fields by f.
	withFields := func(f func(m map[string]any)) []byte {
		m := payloadFields(t, sampleEvent(s))
		f(m)
		return signRaw(key, canonicalJSON(t, m))
	}
	payload, err := event.Canonical(sampleEvent(s))
	if err != nil {
		t.Fatal(err)
	}
	big := bytes.Repeat([]byte(" "), event.MaxEnvelopeSize+1)
	copy(big, valid)

	tests := []struct {
		name  string
		input []byte
		want  error
	}{
		{"empty", nil, event.ErrMalformed},
		{"garbage", []byte("\x00\xffnot json"), event.ErrMalformed},
		{"json array", []byte(`[]`), event.ErrMalformed},
		{"trailing garbage", append(bytes.Clone(valid), "x"...), event.ErrMalformed},
		{"trailing brace", append(bytes.Clone(valid), "}"...), event.ErrMalformed},
		{"trailing bracket", append(bytes.Clone(valid), " ]"...), event.ErrMalformed},
		{"second envelope", append(bytes.Clone(valid), valid...), event.ErrMalformed},
		{"unknown envelope field", bytes.Replace(valid, []byte(`{`), []byte(`{"extra":1,`), 1),
			event.ErrMalformed},
		{"too large", big, event.ErrTooLarge},
		{"wrong payload type", withEnv(func(env *dsse.Envelope) {
			env.PayloadType = "application/vnd.in-toto+json"
		}), event.ErrPayloadType},
		{"no signature", withEnv(func(env *dsse.Envelope) { env.Signatures = nil }),
			event.ErrMalformed},
		{"two signatures", withEnv(func(env *dsse.Envelope) {
			env.Signatures = append(env.Signatures, env.Signatures[0])
		}), event.ErrMalformed},
		{"payload not base64", withEnv(func(env *dsse.Envelope) { env.Payload = "%%%" }),
			event.ErrMalformed},
		{"payload padding missing", withEnv(func(env *dsse.Envelope) {
			env.Payload = strings.TrimRight(env.Payload, "=")
		}), event.ErrMalformed},
		{"signature padding missing", withEnv(func(env *dsse.Envelope) {
			env.Signatures[0].Sig = strings.TrimRight(env.Signatures[0].Sig, "=")
		}), event.ErrMalformed},
		{"signature URL alphabet", withEnv(func(env *dsse.Envelope) {
			sig := mustDecode(t, env.Signatures[0].Sig)
			env.Signatures[0].Sig = base64.URLEncoding.EncodeToString(sig)
		}), event.ErrMalformed},
		{"signature too short", withEnv(func(env *dsse.Envelope) {
			env.Signatures[0].Sig = base64.StdEncoding.EncodeToString(make([]byte, 63))
		}), event.ErrMalformed},
		{"unknown key", withEnv(func(env *dsse.Envelope) {
			env.Signatures[0].KeyID = event.NewSigner(testKey(9)).KeyID()
		}), event.ErrUnknownKey},
		{"signed by another key", signRaw(testKey(2), payload), event.ErrUnknownKey},
		{"tampered payload", withEnv(func(env *dsse.Envelope) {
			env.Payload = flipBase64(t, env.Payload, 40)
		}), event.ErrBadSignature},
		{"tampered signature", withEnv(func(env *dsse.Envelope) {
			env.Signatures[0].Sig = flipBase64(t, env.Signatures[0].Sig, 5)
		}), event.ErrBadSignature},

		{"whitespace", signRaw(key, append([]byte(" "), payload...)), event.ErrNotCanonical},
		{"newline inside",
			signRaw(key, bytes.Replace(payload, []byte(`,"before"`), []byte(",\n\"before\""), 1)),
			event.ErrNotCanonical},
		{"keys in struct order", signRaw(key, marshal(t, sampleEvent(s))), event.ErrNotCanonical},
		{"escaped slash",
			signRaw(key, bytes.Replace(payload, []byte(`"nft"`), []byte(`"n\/ft"`), 1)),
			event.ErrNotCanonical},
		{"float", withFields(func(m map[string]any) { m["generation"] = 1.5 }),
			event.ErrNotCanonical},
		{"exponent", signRaw(key, bytes.Replace(payload, []byte(`"generation":17`),
			[]byte(`"generation":1.7e1`), 1)), event.ErrNotCanonical},
		{"null", withFields(func(m map[string]any) { m["note"] = nil }), event.ErrNotCanonical},
		{"integer 2^53", withFields(func(m map[string]any) { m["generation"] = 1 << 53 }),
			event.ErrNotCanonical},
		{"negative integer -2^53",
			withFields(func(m map[string]any) { m["generation"] = -(1 << 53) }),
			event.ErrNotCanonical},
		{"non-ASCII key", withFields(func(m map[string]any) { m["nöte"] = "x" }),
			event.ErrNotCanonical},
		{"control character key", withFields(func(m map[string]any) { m["\x01"] = "x" }),
			event.ErrNotCanonical},
		{"not an object", signRaw(key, []byte(`"event"`)), event.ErrInvalid},

		{"payload key id differs", withFields(func(m map[string]any) {
			m["key_id"] = event.NewSigner(testKey(2)).KeyID()
		}), event.ErrInvalid},
		{"unknown field", withFields(func(m map[string]any) { m["extra"] = "x" }),
			event.ErrInvalid},
		{"unknown nested field", withFields(func(m map[string]any) {
			m["committer"].(map[string]any)["uid"] = "0"
		}), event.ErrInvalid},
		// encoding/json matches keys without regard to case; a canonical payload must not
		// carry a second spelling of a field.
		{"field in upper case", withFields(func(m map[string]any) { m["KIND"] = "heartbeat" }),
			event.ErrInvalid},
		{"field in other case only", withFields(func(m map[string]any) {
			m["Tenant"] = m["tenant"]
			delete(m, "tenant")
		}), event.ErrInvalid},
		// Zero values are left out when sealing; a payload that spells them out is a second
		// encoding of the same event, with another id.
		{"zero value spelled out",
			withFields(func(m map[string]any) { m["missed_generations"] = []any{} }),
			event.ErrInvalid},
		{"empty committer",
			withFields(func(m map[string]any) { m["committer"] = map[string]any{"pid": 0} }),
			event.ErrInvalid},
		{"seq as number", withFields(func(m map[string]any) { m["seq"] = 42 }), event.ErrInvalid},
		{"seq with leading zero", withFields(func(m map[string]any) { m["seq"] = "042" }),
			event.ErrInvalid},
		{"seq negative", withFields(func(m map[string]any) { m["seq"] = "-1" }), event.ErrInvalid},
		{"generation over 32 bits",
			withFields(func(m map[string]any) { m["generation"] = 1 << 32 }),
			event.ErrInvalid},
		{"invalid event", withFields(func(m map[string]any) { m["v"] = 2 }), event.ErrInvalid},
	}
	for _, tt := range tests {
		if _, err := event.Open(tt.input, lookup); !errors.Is(err, tt.want) {
			t.Errorf("%s: Open error %v, want %v", tt.name, err, tt.want)
		}
	}

	// Trailing white space is not data.
	if _, err := event.Open(append(bytes.Clone(valid), " \n"...), lookup); err != nil {
		t.Errorf("trailing newline: %v", err)
	}
}

func mustDecode(t *testing.T, s string) []byte {
	b, err := base64.StdEncoding.DecodeString(s)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// TestOpenBadLookup: a KeyLookup that breaks its contract (no key and no error) must not
// crash the verifier; ed25519.Verify panics on a key of the wrong length.
func TestOpenBadLookup(t *testing.T) {
	s := event.NewSigner(testKey(1))
	b, _ := seal(t, s, sampleEvent(s))
	for name, lookup := range map[string]event.KeyLookup{
		"nil key":   func(string) (ed25519.PublicKey, error) { return nil, nil },
		"short key": func(string) (ed25519.PublicKey, error) { return make([]byte, 31), nil },
	} {
		if _, err := event.Open(b, lookup); !errors.Is(err, event.ErrUnknownKey) {
			t.Errorf("%s: Open error %v, want ErrUnknownKey", name, err)
		}
	}
}

// TestOpenRejectsURLBase64Payload encodes the payload with the URL-safe alphabet. Three
// '?' in a row make the standard encoding contain a '/', so that the two differ.
func TestOpenRejectsURLBase64Payload(t *testing.T) {
	key := testKey(1)
	s := event.NewSigner(key)
	e := sampleEvent(s)
	e.Note = "why???"
	b, _ := seal(t, s, e)
	env := envelopeOf(t, b)
	if !strings.Contains(env.Payload, "/") {
		t.Fatalf("standard base64 payload has no '/': %s", env.Payload)
	}
	env.Payload = base64.URLEncoding.EncodeToString(mustDecode(t, env.Payload))
	if _, err := event.Open(marshal(t, env), lookupFor(key)); !errors.Is(err, event.ErrMalformed) {
		t.Errorf("URL-safe base64 payload: %v, want ErrMalformed", err)
	}
}

// FuzzOpen feeds Open arbitrary bytes, seeded with valid and mutated envelopes. Open must
// not panic, and what it accepts must verify under the key, be the canonical encoding of
// the event it returns, and be a valid event.
func FuzzOpen(f *testing.F) {
	key := testKey(1)
	s := event.NewSigner(key)
	valid, _, err := s.Seal(sampleEvent(s))
	if err != nil {
		f.Fatal(err)
	}
	hb := &event.Event{
		V: 1, Kind: event.Heartbeat, Tenant: "t", Device: "d", KeyID: s.KeyID(), Seq: 1,
		Observed: "2025-01-01T00:00:00Z", Source: event.SourceSNMP,
		After: sampleEvent(s).After,
	}
	heartbeat, _, err := s.Seal(hb)
	if err != nil {
		f.Fatal(err)
	}
	f.Add(valid)
	f.Add(heartbeat)
	f.Add(append(bytes.Clone(heartbeat), '}'))
	f.Add(bytes.Replace(heartbeat, []byte(`"payloadType"`), []byte(`"PayloadType"`), 1))
	f.Add([]byte(`{"payloadType":"` + event.PayloadType + `","payload":"","signatures":[]}`))
	f.Add([]byte(`{}`))
	lookup := lookupFor(key)
	f.Fuzz(func(t *testing.T, b []byte) {
		o, err := event.Open(b, lookup)
		if err != nil {
			return
		}
		checkOpened(t, key, o)
	})
}

// FuzzOpenPayload signs arbitrary payload bytes correctly, so that the fuzzer gets past
// the signature to the canonical-form and field checks.
func FuzzOpenPayload(f *testing.F) {
	key := testKey(1)
	s := event.NewSigner(key)
	payload, err := event.Canonical(sampleEvent(s))
	if err != nil {
		f.Fatal(err)
	}
	f.Add(payload)
	hb, err := event.Canonical(&event.Event{
		V: 1, Kind: event.Heartbeat, Tenant: "t", Device: "d", KeyID: s.KeyID(), Seq: 1,
		Observed: "2025-01-01T00:00:00Z", Source: event.SourceSNMP,
		After: sampleEvent(s).After,
	})
	if err != nil {
		f.Fatal(err)
	}
	f.Add(hb)
	f.Add(bytes.Replace(hb, []byte(`"kind"`), []byte(`"KIND"`), 1))
	f.Add([]byte(`{}`))
	lookup := lookupFor(key)
	f.Fuzz(func(t *testing.T, payload []byte) {
		o, err := event.Open(signRaw(key, payload), lookup)
		if err != nil {
			return
		}
		checkOpened(t, key, o)
	})
}

func checkOpened(t *testing.T, key ed25519.PrivateKey, o *event.Opened) {
	t.Helper()
	pub := key.Public().(ed25519.PublicKey)
	if o.KeyID != event.KeyID(pub) || o.Event.KeyID != o.KeyID {
		t.Fatalf("accepted key %s, payload key %s", o.KeyID, o.Event.KeyID)
	}
	if o.ID != event.ID(event.PayloadType, o.Payload) {
		t.Fatalf("id %s is not the id of the payload", o.ID)
	}
	again, err := event.Canonical(&o.Event)
	if err != nil {
		t.Fatalf("accepted event does not serialize: %v\n%s", err, o.Payload)
	}
	if !bytes.Equal(again, o.Payload) {
		t.Fatalf("accepted payload\n%s\nserializes as\n%s", o.Payload, again)
	}
	if err := o.Event.Validate(); err != nil {
		t.Fatalf("accepted an invalid event: %v", err)
	}
}
