package event

import (
	"crypto/ed25519"
	"encoding/base64"
	"errors"
	"strconv"
)

// Domains separate ack signatures from every other use of the aggregator's key.
const (
	ackDomain     = "fenceline-ack-v1"
	ackTimeDomain = "fenceline-ack-time-v1"
)

// ackMessage is what an ack's Sig covers: the device it is for, and its head.
func ackMessage(tenant, device string, a Ack) []byte {
	return []byte(ackDomain + "\n" + tenant + "\n" + device + "\n" +
		strconv.FormatUint(a.Seq, 10) + "\n" + a.ID)
}

// ackTimeMessage is what an ack's AtSig covers: the device, the head and the time it was
// sent. It is a second signature so that agents that know only Sig keep working.
func ackTimeMessage(tenant, device string, a Ack) []byte {
	return []byte(ackTimeDomain + "\n" + tenant + "\n" + device + "\n" +
		strconv.FormatUint(a.Seq, 10) + "\n" + a.ID + "\n" + strconv.FormatInt(a.At, 10))
}

// SignAck returns a signed by the aggregator's ack key for the device's acks topic: Sig
// over the head, and, when a.At is set, AtSig over the head and that time.
func SignAck(key ed25519.PrivateKey, tenant, device string, a Ack) Ack {
	a.Sig = base64.StdEncoding.EncodeToString(ed25519.Sign(key, ackMessage(tenant, device, a)))
	a.AtSig = ""
	if a.At != 0 {
		a.AtSig = base64.StdEncoding.EncodeToString(ed25519.Sign(key, ackTimeMessage(tenant, device, a)))
	}
	return a
}

// ErrAckSignature is returned for an ack that is not signed by the aggregator's key.
var ErrAckSignature = errors.New("ack not signed by the aggregator")

// VerifyAck checks that a was signed with the aggregator's ack key for this device, and
// so was its time when it carries one. An ack whose time was stripped verifies with
// At == 0: callers that rely on freshness treat it as old.
func VerifyAck(pub ed25519.PublicKey, tenant, device string, a Ack) error {
	if !verify(pub, ackMessage(tenant, device, Ack{Seq: a.Seq, ID: a.ID}), a.Sig) {
		return ErrAckSignature
	}
	if (a.At != 0 || a.AtSig != "") && !verify(pub, ackTimeMessage(tenant, device, a), a.AtSig) {
		return ErrAckSignature
	}
	return nil
}

func verify(pub ed25519.PublicKey, msg []byte, sig64 string) bool {
	sig, err := base64.StdEncoding.DecodeString(sig64)
	return err == nil && len(sig) == ed25519.SignatureSize && len(pub) == ed25519.PublicKeySize &&
		ed25519.Verify(pub, msg, sig)
}
