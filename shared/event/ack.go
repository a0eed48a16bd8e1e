package event

import (
	"crypto/ed25519"
	"encoding/base64"
	"errors"
	"strconv"
)

// ackDomain separates ack signatures from every other use of the aggregator's key.
const ackDomain = "fenceline-ack-v1"

// ackMessage is what an ack's signature covers: the device it is for, and its head.
func ackMessage(tenant, device string, a Ack) []byte {
	return []byte(ackDomain + "\n" + tenant + "\n" + device + "\n" +
		strconv.FormatUint(a.Seq, 10) + "\n" + a.ID)
}

// SignAck returns a signed by the aggregator's ack key for the device's acks topic.
func SignAck(key ed25519.PrivateKey, tenant, device string, a Ack) Ack {
	a.Sig = base64.StdEncoding.EncodeToString(ed25519.Sign(key, ackMessage(tenant, device, a)))
	return a
}

// ErrAckSignature is returned for an ack that is not signed by the aggregator's key.
var ErrAckSignature = errors.New("ack not signed by the aggregator")

// VerifyAck checks that a was signed with the aggregator's ack key for this device.
func VerifyAck(pub ed25519.PublicKey, tenant, device string, a Ack) error {
	sig, err := base64.StdEncoding.DecodeString(a.Sig)
	if err != nil || len(sig) != ed25519.SignatureSize || len(pub) != ed25519.PublicKeySize ||
		!ed25519.Verify(pub, ackMessage(tenant, device, Ack{Seq: a.Seq, ID: a.ID}), sig) {
		return ErrAckSignature
	}
	return nil
}
