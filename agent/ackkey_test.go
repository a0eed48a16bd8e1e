package agent

import (
	"context"
	"crypto/ed25519"
	"encoding/base64"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/fenceline/fenceline/agent/identity"
	"github.com/fenceline/fenceline/shared/event"
)

// ackKeyServer is an aggregator that enrolls without naming its ack key (as before acks
// were signed) and serves the key on GET /v1/ack-key.
func ackKeyServer(t *testing.T) (*httptest.Server, ed25519.PublicKey) {
	pub, _, _ := ed25519.GenerateKey(nil)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
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
			json.NewEncoder(w).Encode(map[string]string{
				"ack_key": base64.StdEncoding.EncodeToString(pub)})
		}
	}))
	t.Cleanup(srv.Close)
	return srv, pub
}

// TestLearnAckKeyFromEnrollment: an enrollment without the ack key learns it from the
// aggregator it enrolled with, not from another one the configuration (or its default)
// names.
func TestLearnAckKeyFromEnrollment(t *testing.T) {
	enrolledWith, want := ackKeyServer(t)
	other, _ := ackKeyServer(t)
	dir := t.TempDir()
	ctx := context.Background()
	id, err := identity.Enroll(ctx, enrolledWith.Client(), enrolledWith.URL, "tok", dir)
	if err != nil {
		t.Fatal(err)
	}
	learnAckKey(ctx, id, other.URL, dir, slog.New(slog.NewTextHandler(io.Discard, nil)))
	got, err := identity.Load(dir)
	if err != nil {
		t.Fatal(err)
	}
	if k, err := got.AckPublicKey(); err != nil || !k.Equal(want) {
		t.Fatalf("learnt ack key %v (%v), want the enrolling aggregator's", k, err)
	}
}
