package event_test

import (
	"crypto/ed25519"
	"testing"

	"github.com/fenceline/fenceline/shared/event"
	"github.com/secure-systems-lab/go-securesystemslib/dsse"
)

// BenchmarkOpen is the aggregator's cost of accepting one sealed change event: parse,
// Ed25519 verification, and the proof that the payload is its event's one encoding.
// BenchmarkVerify is the signature check alone. Together they say how much of Open the
// signature is (run: go test -run XXX -bench . ./shared/event).
func BenchmarkOpen(b *testing.B) {
	key := testKey(1)
	s := event.NewSigner(key)
	env, _, err := s.Seal(sampleEvent(s))
	if err != nil {
		b.Fatal(err)
	}
	lookup := lookupFor(key)
	b.SetBytes(int64(len(env)))
	b.ReportAllocs()
	for b.Loop() {
		if _, err := event.Open(env, lookup); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkVerify(b *testing.B) {
	key := testKey(1)
	s := event.NewSigner(key)
	payload, err := event.Canonical(sampleEvent(s))
	if err != nil {
		b.Fatal(err)
	}
	msg := dsse.PAE(event.PayloadType, payload)
	sig := ed25519.Sign(key, msg)
	pub := key.Public().(ed25519.PublicKey)
	for b.Loop() {
		if !ed25519.Verify(pub, msg, sig) {
			b.Fatal("signature does not verify")
		}
	}
}
