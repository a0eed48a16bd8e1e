package event

import (
	"bytes"
	"crypto/ed25519"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"

	"github.com/secure-systems-lab/go-securesystemslib/dsse"
)

// MaxEnvelopeSize bounds one envelope on the wire. A baseline of a very large ruleset is
// the biggest event; 64 MiB holds well over 100k rules.
const MaxEnvelopeSize = 64 << 20

// Envelope is a DSSE envelope.
type Envelope = dsse.Envelope

// KeyID names an Ed25519 public key: "ed25519:" and the hex SHA-256 of the raw key.
func KeyID(pub ed25519.PublicKey) string {
	s := sha256.Sum256(pub)
	return "ed25519:" + hex.EncodeToString(s[:])
}

// ID is an event's identity: hex SHA-256 of the DSSE pre-authentication encoding.
func ID(payloadType string, payload []byte) string {
	s := sha256.Sum256(dsse.PAE(payloadType, payload))
	return hex.EncodeToString(s[:])
}

// Signer signs events with one device key.
type Signer struct {
	key   ed25519.PrivateKey
	keyID string
}

// NewSigner returns a signer for key.
func NewSigner(key ed25519.PrivateKey) *Signer {
	return &Signer{key: key, keyID: KeyID(key.Public().(ed25519.PublicKey))}
}

// KeyID is the id of the signer's public key.
func (s *Signer) KeyID() string { return s.keyID }

// PublicKey is the signer's public key.
func (s *Signer) PublicKey() ed25519.PublicKey { return s.key.Public().(ed25519.PublicKey) }

// Seal serializes e canonically and signs it. It returns the envelope's JSON bytes and
// the event's ID.
func (s *Signer) Seal(e *Event) ([]byte, string, error) {
	if err := e.Validate(); err != nil {
		return nil, "", err
	}
	if e.KeyID != s.keyID {
		return nil, "", fmt.Errorf("%w: key id %q, signing with %q", ErrInvalid, e.KeyID, s.keyID)
	}
	payload, err := Canonical(e)
	if err != nil {
		return nil, "", err
	}
	sig := ed25519.Sign(s.key, dsse.PAE(PayloadType, payload))
	env := Envelope{
		PayloadType: PayloadType,
		Payload:     base64.StdEncoding.EncodeToString(payload),
		Signatures:  []dsse.Signature{{KeyID: s.keyID, Sig: base64.StdEncoding.EncodeToString(sig)}},
	}
	b, err := json.Marshal(&env)
	if err != nil {
		return nil, "", fmt.Errorf("marshal envelope: %w", err)
	}
	return b, ID(PayloadType, payload), nil
}

// Opened is a verified event.
type Opened struct {
	Event   Event
	ID      string
	KeyID   string
	Payload []byte // the canonical payload bytes that were signed
}

// KeyLookup returns the enrolled public key with the given id, or an error wrapping
// ErrUnknownKey.
type KeyLookup func(keyID string) (ed25519.PublicKey, error)

// Open parses an envelope, verifies its signature with the key that lookup returns, checks
// that the payload is canonical and decodes it; the payload must be exactly the encoding
// Seal gives its event. It never trusts the payload before the signature has verified.
func Open(b []byte, lookup KeyLookup) (*Opened, error) {
	if len(b) > MaxEnvelopeSize {
		return nil, fmt.Errorf("%w: %d bytes", ErrTooLarge, len(b))
	}
	var env Envelope
	d := json.NewDecoder(bytes.NewReader(b))
	d.DisallowUnknownFields()
	if err := d.Decode(&env); err != nil {
		return nil, fmt.Errorf("%w: %v", ErrMalformed, err)
	}
	// Anything but white space after the envelope is trailing data (d.More would let a
	// closing '}' or ']' through).
	if err := d.Decode(&json.RawMessage{}); err != io.EOF {
		return nil, fmt.Errorf("%w: trailing data", ErrMalformed)
	}
	if env.PayloadType != PayloadType {
		return nil, fmt.Errorf("%w: %q", ErrPayloadType, env.PayloadType)
	}
	if len(env.Signatures) != 1 {
		return nil, fmt.Errorf("%w: %d signatures, want 1", ErrMalformed, len(env.Signatures))
	}
	payload, err := base64.StdEncoding.Strict().DecodeString(env.Payload)
	if err != nil {
		return nil, fmt.Errorf("%w: payload: %v", ErrMalformed, err)
	}
	sig, err := base64.StdEncoding.Strict().DecodeString(env.Signatures[0].Sig)
	if err != nil || len(sig) != ed25519.SignatureSize {
		return nil, fmt.Errorf("%w: signature encoding", ErrMalformed)
	}
	keyID := env.Signatures[0].KeyID
	pub, err := lookup(keyID)
	if err != nil {
		return nil, err
	}
	if len(pub) != ed25519.PublicKeySize { // ed25519.Verify would panic
		return nil, fmt.Errorf("%w: no usable key for %s", ErrUnknownKey, keyID)
	}
	if !ed25519.Verify(pub, dsse.PAE(PayloadType, payload), sig) {
		return nil, fmt.Errorf("%w: key %s", ErrBadSignature, keyID)
	}
	// The payload must be canonical (CheckCanonical) and exactly the encoding of its
	// event. When it is the encoding of its event it is canonical (Canonical's output is
	// its own RFC 8785 form within the safe subset), so the canonical check runs only to
	// name what is wrong with a payload that fails.
	o := &Opened{ID: ID(PayloadType, payload), KeyID: keyID, Payload: payload}
	pd := json.NewDecoder(bytes.NewReader(payload))
	pd.DisallowUnknownFields()
	if err := pd.Decode(&o.Event); err != nil {
		if cerr := CheckCanonical(payload); cerr != nil {
			return nil, cerr
		}
		return nil, fmt.Errorf("%w: %v", ErrInvalid, err)
	}
	// encoding/json matches keys regardless of case, accepts zero values that Seal leaves
	// out and numbers with leading zeros in string fields: an event has one encoding only.
	if again, err := Canonical(&o.Event); err != nil || !bytes.Equal(again, payload) {
		if cerr := CheckCanonical(payload); cerr != nil {
			return nil, cerr
		}
		return nil, fmt.Errorf("%w: payload is not the encoding of its event", ErrInvalid)
	}
	if o.Event.KeyID != keyID {
		return nil, fmt.Errorf("%w: payload key %q signed by %q", ErrInvalid, o.Event.KeyID, keyID)
	}
	if err := o.Event.Validate(); err != nil {
		return nil, err
	}
	return o, nil
}
