package event

import (
	"crypto/ed25519"
	"errors"
	"testing"
)

func TestAckSignature(t *testing.T) {
	pub, key, err := ed25519.GenerateKey(nil)
	if err != nil {
		t.Fatal(err)
	}
	a := SignAck(key, "acme", "fw1", Ack{Seq: 7, ID: "abc"})
	if err := VerifyAck(pub, "acme", "fw1", a); err != nil || a.AtSig != "" {
		t.Fatalf("signed ack: %v %+v", err, a)
	}
	timed := SignAck(key, "acme", "fw1", Ack{Seq: 7, ID: "abc", At: 1_800_000_000_000})
	if err := VerifyAck(pub, "acme", "fw1", timed); err != nil || timed.Sig != a.Sig {
		t.Fatalf("signed timed ack: %v %+v", err, timed)
	}
	// An agent that checks only Sig (before acks carried a time) accepts the timed ack.
	if err := VerifyAck(pub, "acme", "fw1", Ack{Seq: 7, ID: "abc", Sig: timed.Sig}); err != nil {
		t.Fatalf("timed ack without its time: %v", err)
	}
	other, _, _ := ed25519.GenerateKey(nil)
	for name, c := range map[string]struct {
		pub            ed25519.PublicKey
		tenant, device string
		a              Ack
	}{
		"unsigned":       {pub, "acme", "fw1", Ack{Seq: 7, ID: "abc"}},
		"other seq":      {pub, "acme", "fw1", Ack{Seq: 8, ID: "abc", Sig: a.Sig}},
		"other id":       {pub, "acme", "fw1", Ack{Seq: 7, ID: "abd", Sig: a.Sig}},
		"other device":   {pub, "acme", "fw2", a},
		"other tenant":   {pub, "acme2", "fw1", a},
		"other key":      {other, "acme", "fw1", a},
		"garbage sig":    {pub, "acme", "fw1", Ack{Seq: 7, ID: "abc", Sig: "!!"}},
		"no key to test": {nil, "acme", "fw1", a},
		"other time":     {pub, "acme", "fw1", Ack{Seq: 7, ID: "abc", Sig: timed.Sig, At: timed.At + 1, AtSig: timed.AtSig}},
		"time unsigned":  {pub, "acme", "fw1", Ack{Seq: 7, ID: "abc", Sig: timed.Sig, At: timed.At}},
		"time sig alone": {pub, "acme", "fw1", Ack{Seq: 7, ID: "abc", Sig: timed.Sig, AtSig: timed.AtSig}},
	} {
		if err := VerifyAck(c.pub, c.tenant, c.device, c.a); !errors.Is(err, ErrAckSignature) {
			t.Errorf("%s: %v, want ErrAckSignature", name, err)
		}
	}
}
