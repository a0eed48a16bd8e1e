package event_test

import (
	"bytes"
	"crypto/ed25519"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"testing"
	"time"

	"github.com/fenceline/fenceline/shared/event"
	"github.com/fenceline/fenceline/shared/ruleset"
	"github.com/gowebpki/jcs"
	"github.com/secure-systems-lab/go-securesystemslib/dsse"
)

// testKey returns a fixed Ed25519 key, different for each seed byte.
func testKey(seed byte) ed25519.PrivateKey {
	return ed25519.NewKeyFromSeed(bytes.Repeat([]byte{seed}, ed25519.SeedSize))
}

// lookupFor returns a KeyLookup that knows the public halves of keys.
func lookupFor(keys ...ed25519.PrivateKey) event.KeyLookup {
	known := map[string]ed25519.PublicKey{}
	for _, k := range keys {
		pub := k.Public().(ed25519.PublicKey)
		known[event.KeyID(pub)] = pub
	}
	return func(id string) (ed25519.PublicKey, error) {
		if pub, ok := known[id]; ok {
			return pub, nil
		}
		return nil, fmt.Errorf("%w: %s", event.ErrUnknownKey, id)
	}
}

func rulesetBefore() *ruleset.Ruleset {
	return &ruleset.Ruleset{Tables: []*ruleset.Table{{
		Family: "inet", Name: "filter",
		Chains: []*ruleset.Chain{{
			Name: "input", Type: "filter", Hook: "input", Priority: "filter", Policy: "drop",
			Rules: []*ruleset.Rule{
				{Text: "ct state established,related accept", Handle: 4},
				{Text: `tcp dport 22 accept comment "ssh"`, Handle: 5},
			},
		}},
		Sets: []*ruleset.Set{{
			Name: "blocked", Spec: []string{"type ipv4_addr"}, Elements: []string{"192.0.2.1"},
		}},
	}}}
}

func rulesetAfter() *ruleset.Ruleset {
	rs := rulesetBefore()
	c := rs.Tables[0].Chains[0]
	c.Policy = "accept"
	c.Rules = append(c.Rules, &ruleset.Rule{Text: "tcp dport 443 accept", Handle: 9})
	rs.Tables[0].Sets[0].Elements = append(rs.Tables[0].Sets[0].Elements, "198.51.100.7")
	return rs
}

// sampleEvent is a change event with every field set, signed by s.
func sampleEvent(s *event.Signer) *event.Event {
	before, after := rulesetBefore(), rulesetAfter()
	return &event.Event{
		V: event.Version, Kind: event.Change, Tenant: "acme", Device: "fw-01.site_a",
		KeyID: s.KeyID(), Seq: 42, Prev: "9f" + string(bytes.Repeat([]byte("0a"), 31)),
		Observed:   event.FormatTime(time.Date(2025, 3, 4, 5, 6, 7, 891000000, time.UTC)),
		Source:     event.SourceNftables,
		Generation: 17,
		Before:     before.Digest().String(),
		After:      after.Digest().String(),
		Changes:    ruleset.Diff(before, after),
		Committer:  &event.Committer{PID: 4242, Comm: "nft", LoginUID: "1000", Session: "3"},
		Ruleset:    after,
		Note:       `operator said "ok" <via ssh> & é`,
	}
}

// seal seals e or fails the test.
func seal(t testing.TB, s *event.Signer, e *event.Event) ([]byte, string) {
	t.Helper()
	b, id, err := s.Seal(e)
	if err != nil {
		t.Fatalf("Seal: %v", err)
	}
	return b, id
}

// signRaw wraps payload bytes, whatever they are, in an envelope correctly signed by key.
func signRaw(key ed25519.PrivateKey, payload []byte) []byte {
	sig := ed25519.Sign(key, dsse.PAE(event.PayloadType, payload))
	env := dsse.Envelope{
		PayloadType: event.PayloadType,
		Payload:     base64.StdEncoding.EncodeToString(payload),
		Signatures: []dsse.Signature{{
			KeyID: event.KeyID(key.Public().(ed25519.PublicKey)),
			Sig:   base64.StdEncoding.EncodeToString(sig),
		}},
	}
	b, err := json.Marshal(&env)
	if err != nil {
		panic(err)
	}
	return b
}

// payloadFields returns the canonical payload of e as a generic JSON object.
func payloadFields(t testing.TB, e *event.Event) map[string]any {
	t.Helper()
	b, err := event.Canonical(e)
	if err != nil {
		t.Fatal(err)
	}
	d := json.NewDecoder(bytes.NewReader(b))
	d.UseNumber()
	var m map[string]any
	if err := d.Decode(&m); err != nil {
		t.Fatal(err)
	}
	return m
}

// canonicalJSON serializes v in RFC 8785 form, without the safe-subset check.
func canonicalJSON(t testing.TB, v any) []byte {
	t.Helper()
	raw, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	out, err := jcs.Transform(raw)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// envelopeOf decodes an envelope's JSON.
func envelopeOf(t testing.TB, b []byte) *dsse.Envelope {
	t.Helper()
	var env dsse.Envelope
	if err := json.Unmarshal(b, &env); err != nil {
		t.Fatal(err)
	}
	return &env
}

func marshal(t testing.TB, v any) []byte {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return b
}
