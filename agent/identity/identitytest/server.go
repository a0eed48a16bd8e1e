// Package identitytest serves a stand-in aggregator for enrollment tests.
package identitytest

import (
	"crypto/ed25519"
	"encoding/base64"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"sync/atomic"
	"testing"

	"github.com/fenceline/fenceline/shared/event"
)

// OldAggregator is an aggregator from before acks were signed: it enrolls any key as
// acme/fw1 without naming its ack key, and answers GET /v1/ack-key with AckKey.
type OldAggregator struct {
	*httptest.Server
	// Key is the ack key's public half; AckKey what GET /v1/ack-key answers (Key in
	// standard base64 unless a test sets another answer).
	Key    ed25519.PublicKey
	AckKey atomic.Pointer[string]
}

// NewOldAggregator starts one on loopback; the test's cleanup stops it.
func NewOldAggregator(t testing.TB) *OldAggregator {
	t.Helper()
	pub, _, err := ed25519.GenerateKey(nil)
	if err != nil {
		t.Fatal(err)
	}
	a := &OldAggregator{Key: pub}
	answer := base64.StdEncoding.EncodeToString(pub)
	a.AckKey.Store(&answer)
	a.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/v1/enroll":
			var req struct {
				PublicKey string `json:"public_key"`
			}
			json.NewDecoder(r.Body).Decode(&req)
			k, _ := base64.StdEncoding.DecodeString(req.PublicKey)
			json.NewEncoder(w).Encode(map[string]string{"tenant": "acme", "device": "fw1",
				"key_id": event.KeyID(k), "broker_url": "tcp://127.0.0.1:1"})
		case "/v1/ack-key":
			json.NewEncoder(w).Encode(map[string]string{"ack_key": *a.AckKey.Load()})
		default:
			http.NotFound(w, r)
		}
	}))
	t.Cleanup(a.Close)
	return a
}
