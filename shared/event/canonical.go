package event

import (
	"bytes"
	"encoding/json"
	"fmt"
	"strings"

	"github.com/gowebpki/jcs"
)

// maxSafeInt is 2^53: JSON integers at or above it lose precision in common decoders.
const maxSafeInt = 1 << 53

// Canonical serializes v as RFC 8785 canonical JSON and checks that the result stays in
// the safe subset (see CheckSubset).
func Canonical(v any) ([]byte, error) {
	raw, err := json.Marshal(v)
	if err != nil {
		return nil, fmt.Errorf("marshal: %w", err)
	}
	out, err := jcs.Transform(raw)
	if err != nil {
		return nil, fmt.Errorf("canonicalize: %w", err)
	}
	if err := CheckSubset(out); err != nil {
		return nil, err
	}
	return out, nil
}

// CheckCanonical returns nil if b is exactly its own RFC 8785 form and within the safe
// subset.
func CheckCanonical(b []byte) error {
	out, err := jcs.Transform(b)
	if err != nil {
		return fmt.Errorf("%w: %v", ErrNotCanonical, err)
	}
	if !bytes.Equal(out, b) {
		return fmt.Errorf("%w: bytes differ from their canonical form", ErrNotCanonical)
	}
	return CheckSubset(b)
}

// CheckSubset walks a JSON document and rejects what the safe subset excludes: nulls,
// non-integer or out-of-range numbers, and keys that are not printable ASCII.
func CheckSubset(b []byte) error {
	if inSubset(b) {
		return nil
	}
	// Decoding says what is wrong, where (or that nothing is: inSubset may be unsure).
	return checkSubsetDecoded(b)
}

func checkSubsetDecoded(b []byte) error {
	d := json.NewDecoder(bytes.NewReader(b))
	d.UseNumber()
	var v any
	if err := d.Decode(&v); err != nil {
		return fmt.Errorf("%w: %v", ErrNotCanonical, err)
	}
	return checkValue(v, "$")
}

func checkValue(v any, path string) error {
	switch x := v.(type) {
	case nil:
		return fmt.Errorf("%w: null at %s", ErrNotCanonical, path)
	case json.Number:
		s := x.String()
		if strings.ContainsAny(s, ".eE") {
			return fmt.Errorf("%w: non-integer number at %s", ErrNotCanonical, path)
		}
		n, err := x.Int64()
		if err != nil || n >= maxSafeInt || n <= -maxSafeInt {
			return fmt.Errorf("%w: integer out of range at %s", ErrNotCanonical, path)
		}
	case []any:
		for i, e := range x {
			if err := checkValue(e, fmt.Sprintf("%s[%d]", path, i)); err != nil {
				return err
			}
		}
	case map[string]any:
		for k, e := range x {
			for i := 0; i < len(k); i++ {
				if k[i] < 0x20 || k[i] > 0x7e {
					return fmt.Errorf("%w: non-ASCII key at %s", ErrNotCanonical, path)
				}
			}
			if err := checkValue(e, path+"."+k); err != nil {
				return err
			}
		}
	}
	return nil
}
