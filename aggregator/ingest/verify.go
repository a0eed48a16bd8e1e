package ingest

import (
	"crypto/ed25519"
	"errors"
	"fmt"

	"github.com/fenceline/fenceline/shared/event"
)

// Reject reasons: the label values of fenceline_ingest_rejected_total.
const (
	ReasonMalformed     = "malformed"
	ReasonTooLarge      = "too_large"
	ReasonPayloadType   = "payload_type"
	ReasonUnknownKey    = "unknown_key"
	ReasonBadSignature  = "bad_signature"
	ReasonNotCanonical  = "not_canonical"
	ReasonInvalid       = "invalid"
	ReasonTopicMismatch = "topic_mismatch"
	ReasonGap           = "gap"
	ReasonBrokenChain   = "broken_chain"
	ReasonDuplicate     = "duplicate"
)

// Reasons lists every reject reason, in a fixed order.
var Reasons = []string{
	ReasonMalformed, ReasonTooLarge, ReasonPayloadType, ReasonUnknownKey, ReasonBadSignature,
	ReasonNotCanonical, ReasonInvalid, ReasonTopicMismatch, ReasonGap, ReasonBrokenChain,
	ReasonDuplicate,
}

// RejectError says why a message was refused.
type RejectError struct {
	Reason string
	Err    error
}

func (e *RejectError) Error() string { return e.Reason + ": " + e.Err.Error() }

func (e *RejectError) Unwrap() error { return e.Err }

func reject(reason string, err error) *RejectError { return &RejectError{Reason: reason, Err: err} }

// KeySource finds the key enrolled for a device. An unknown device or a key id that is
// not the device's key is an error wrapping event.ErrUnknownKey.
type KeySource interface {
	KeyFor(tenant, device, keyID string) (ed25519.PublicKey, error)
}

// Verified is a message that passed every check that needs no state but the keys.
type Verified struct {
	Tenant, Device string
	Opened         *event.Opened
}

// TODO: Verify is a third of the leader's CPU at full ingest (scripts/bench/README.md,
// cluster ingest): the Ed25519 check (about 60 µs, half of it), then the payload decoded,
// re-encoded and canonicalized (event.Open) to prove it is its event's one encoding. A
// check of the encoding that does not build the canonical form again (json.Marshal and
// the JCS transform) would halve the part after the signature.

// Verify checks one message from topic: a device events topic, a DSSE envelope within
// the size bound, signed by the key enrolled for the topic's tenant and device (a key of
// any other device is unknown here, whatever the envelope claims), canonical, valid, and
// naming the topic's tenant and device. A refusal is a *RejectError; other errors come
// from the key source.
func Verify(topic string, payload []byte, keys KeySource) (*Verified, error) {
	tenant, device, kind, err := event.ParseDeviceTopic(topic)
	if err != nil {
		return nil, reject(ReasonMalformed, err)
	}
	if kind != event.TopicEvents {
		return nil, reject(ReasonMalformed, fmt.Errorf("not an events topic: %q", topic))
	}
	if len(payload) > event.MaxEnvelopeSize {
		return nil, reject(ReasonTooLarge, fmt.Errorf("%w: %d bytes", event.ErrTooLarge, len(payload)))
	}
	var lookupErr error
	lookup := func(keyID string) (ed25519.PublicKey, error) {
		k, err := keys.KeyFor(tenant, device, keyID)
		if err != nil && !errors.Is(err, event.ErrUnknownKey) {
			lookupErr = err
		}
		return k, err
	}
	o, err := event.Open(payload, lookup)
	if lookupErr != nil {
		return nil, fmt.Errorf("key lookup: %w", lookupErr)
	}
	if err != nil {
		return nil, reject(reasonOf(err), err)
	}
	if o.Event.Tenant != tenant || o.Event.Device != device {
		return nil, reject(ReasonTopicMismatch, fmt.Errorf("event of %s/%s on topic %s",
			o.Event.Tenant, o.Event.Device, topic))
	}
	return &Verified{Tenant: tenant, Device: device, Opened: o}, nil
}

func reasonOf(err error) string {
	switch {
	case errors.Is(err, event.ErrTooLarge):
		return ReasonTooLarge
	case errors.Is(err, event.ErrPayloadType):
		return ReasonPayloadType
	case errors.Is(err, event.ErrUnknownKey):
		return ReasonUnknownKey
	case errors.Is(err, event.ErrBadSignature):
		return ReasonBadSignature
	case errors.Is(err, event.ErrNotCanonical):
		return ReasonNotCanonical
	case errors.Is(err, event.ErrInvalid):
		return ReasonInvalid
	}
	return ReasonMalformed
}
