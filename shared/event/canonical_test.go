package event_test

import (
	"bytes"
	"errors"
	"testing"

	"github.com/fenceline/fenceline/shared/event"
	"github.com/gowebpki/jcs"
)

func TestCanonicalIsFixedPoint(t *testing.T) {
	s := event.NewSigner(testKey(1))
	for name, v := range map[string]any{
		"event":   sampleEvent(s),
		"ack":     event.Ack{Seq: 1 << 60, ID: "x"},
		"strings": map[string]string{"z": "\u2028\x00é", "a": "<&>"},
		"nested":  map[string]any{"b": []any{map[string]int{"y": 1, "x": 2}}, "a": true},
	} {
		out, err := event.Canonical(v)
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		again, err := jcs.Transform(out)
		if err != nil || !bytes.Equal(again, out) {
			t.Errorf("%s: Canonical output is not canonical:\n%s\n%s (%v)", name, out, again, err)
		}
		if err := event.CheckCanonical(out); err != nil {
			t.Errorf("%s: CheckCanonical rejects Canonical's output: %v", name, err)
		}
	}
}

// TestCanonicalBytes compares with expected bytes written by hand from RFC 8785: keys in
// code-unit order, only '"', '\\' and control characters escaped (with the short forms
// where JSON has them, else \u and lower-case hex), everything else as raw UTF-8.
func TestCanonicalBytes(t *testing.T) {
	tests := []struct {
		name string
		v    any
		want string
	}{
		{"key order", map[string]int{"b": 1, "a": 2, "B": 3, "aa": 4, "_": 5, "a b": 6},
			`{"B":3,"_":5,"a":2,"a b":6,"aa":4,"b":1}`},
		{"struct fields sorted", struct {
			Z int    `json:"z"`
			A string `json:"a"`
		}{1, "x"}, `{"a":"x","z":1}`},
		{"escapes", map[string]string{"s": "\"\\\n\t\r\b\f\x01\x1f"},
			`{"s":"\"\\\n\t\r\b\f\u0001\u001f"}`},
		{"not escaped", map[string]string{"s": "</script>&'/\x7f"}, "{\"s\":\"</script>&'/\x7f\"}"},
		{"unicode raw", map[string]string{"s": "é\u2028\u2029😀日本"},
			"{\"s\":\"é\u2028\u2029😀日本\"}"},
		{"integers", map[string]int64{"max": 1<<53 - 1, "min": -(1<<53 - 1), "zero": 0},
			`{"max":9007199254740991,"min":-9007199254740991,"zero":0}`},
		{"64-bit as string", event.Ack{Seq: 1<<64 - 1}, `{"seq":"18446744073709551615"}`},
		{"empty", map[string]any{"a": []int{}, "o": map[string]int{}, "s": ""},
			`{"a":[],"o":{},"s":""}`},
	}
	for _, tt := range tests {
		got, err := event.Canonical(tt.v)
		if err != nil {
			t.Errorf("%s: %v", tt.name, err)
			continue
		}
		if string(got) != tt.want {
			t.Errorf("%s:\n got %s\nwant %s", tt.name, got, tt.want)
		}
	}
}

func TestCanonicalRejectsOutsideSubset(t *testing.T) {
	var nilPtr *int
	for name, v := range map[string]any{
		"null":           map[string]any{"a": nil},
		"nil pointer":    struct{ P *int }{nilPtr},
		"nil slice":      struct{ S []int }{},
		"float":          map[string]float64{"f": 1.5},
		"2^53":           map[string]int64{"n": 1 << 53},
		"-2^53":          map[string]int64{"n": -(1 << 53)},
		"uint64 max":     map[string]uint64{"n": 1<<64 - 1},
		"non-ASCII key":  map[string]int{"é": 1},
		"nested key":     map[string]any{"a": map[string]int{"\u2028": 1}},
		"control in key": map[string]int{"a\nb": 1},
	} {
		if _, err := event.Canonical(v); !errors.Is(err, event.ErrNotCanonical) {
			t.Errorf("%s: Canonical error %v, want ErrNotCanonical", name, err)
		}
	}
}

func TestCheckCanonical(t *testing.T) {
	for _, ok := range []string{`{}`, `{"a":[1,"b",true,false]}`, "{\"s\":\"é\"}", `[]`, `1`} {
		if err := event.CheckCanonical([]byte(ok)); err != nil {
			t.Errorf("CheckCanonical(%s): %v", ok, err)
		}
	}
	for _, bad := range []string{
		``, ` {}`, `{} `, `{ }`, `{"b":1,"a":2}`, `{"a":1.0}`, `{"a":1e2}`, `{"a":-0}`,
		`{"a":01}`, `{"a":1.5}`, `{"a":null}`, `{"a":9007199254740992}`,
		`{"s":"\u00e9"}`, `{"s":"\/"}`, `{"s":"\u000a"}`, `{"s":"\uD800"}`,
		"{\"s\":\"\xff\"}", `{"a":1,"a":1}`, `{"é":1}`, `{}{}`, `{"a":1}x`,
	} {
		if err := event.CheckCanonical([]byte(bad)); !errors.Is(err, event.ErrNotCanonical) {
			t.Errorf("CheckCanonical(%q) = %v, want ErrNotCanonical", bad, err)
		}
	}
}
