package event_test

import (
	"testing"

	"github.com/fenceline/fenceline/shared/event"
)

// subsetCases are documents with what the decoding check says of them.
var subsetCases = []struct {
	doc string
	ok  bool
}{
	{`{}`, true},
	{` {"a":[1,-2,0,-0,true,false,"x\u00e9\n\"\\\/"],"b":{"c":[]}} `, true},
	{`9007199254740991`, true},
	{`-9007199254740991`, true},
	{`{"\u00e9":1}`, false}, // escaped key, not printable ASCII once decoded
	{`{"é":1}`, false},
	{`{"a\u0041":1}`, true}, // escaped but printable: the quick scan is unsure, decoding says yes
	{`{"a":null}`, false},
	{`[1.5]`, false},
	{`[1e3]`, false},
	{`9007199254740992`, false},
	{`-9007199254740992`, false},
	{`{"a":null,"a":1}`, true}, // duplicate key: the last one counts when decoded
	{`{"a":1} x`, true},        // decoding reads the first value only
	{`{"a":01}`, false},
	{`{"a":1,}`, false},
	{`["\x"]`, false},
	{``, false},
}

func TestCheckSubset(t *testing.T) {
	for _, c := range subsetCases {
		if err := event.CheckSubset([]byte(c.doc)); (err == nil) != c.ok {
			t.Errorf("CheckSubset(%s) = %v, want ok %v", c.doc, err, c.ok)
		}
		if event.InSubset([]byte(c.doc)) && !c.ok {
			t.Errorf("the quick scan accepts %s", c.doc)
		}
	}
	// The quick scan must decide the documents the product writes, or it saves nothing.
	s := event.NewSigner(testKey(1))
	for _, v := range []any{sampleEvent(s), event.Ack{Seq: 7, ID: "x"}} {
		b, err := event.Canonical(v)
		if err != nil {
			t.Fatal(err)
		}
		if !event.InSubset(b) {
			t.Errorf("the quick scan is unsure of %s", b)
		}
	}
}

// FuzzSubset: whatever the quick scan accepts, the decoding check accepts too.
func FuzzSubset(f *testing.F) {
	for _, c := range subsetCases {
		f.Add([]byte(c.doc))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		if event.InSubset(b) {
			if err := event.CheckSubsetDecoded(b); err != nil {
				t.Fatalf("quick scan accepts %q, decoding says %v", b, err)
			}
		}
	})
}
