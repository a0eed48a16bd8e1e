package event

import "errors"

// Errors returned when opening an envelope. Each names why an input was rejected; the
// aggregator counts rejections by these.
var (
	// ErrMalformed: the bytes are not a DSSE envelope (bad JSON, bad base64, no signature).
	ErrMalformed = errors.New("malformed envelope")
	// ErrTooLarge: the envelope exceeds MaxEnvelopeSize.
	ErrTooLarge = errors.New("envelope too large")
	// ErrPayloadType: the envelope carries something other than a Fenceline event.
	ErrPayloadType = errors.New("unexpected payload type")
	// ErrUnknownKey: no enrolled key has the signature's key id.
	ErrUnknownKey = errors.New("unknown key")
	// ErrBadSignature: the signature does not verify under the enrolled key.
	ErrBadSignature = errors.New("bad signature")
	// ErrNotCanonical: the payload bytes are not canonical JSON in the safe subset.
	ErrNotCanonical = errors.New("payload not canonical")
	// ErrInvalid: the payload is canonical but its fields are not a valid event.
	ErrInvalid = errors.New("invalid event")
)
