package identity

import (
	"context"
	"crypto/ed25519"
	"encoding/base64"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/fenceline/fenceline/shared/event"
)

// TestLearnAckKey: an enrollment without the aggregator's ack key (made before the
// enrollment response carried it) learns it from GET /v1/ack-key and keeps it on disk; a
// server that answers with something that is not a key changes nothing.
func TestLearnAckKey(t *testing.T) {
	ackPub, _, _ := ed25519.GenerateKey(nil)
	answer := base64.StdEncoding.EncodeToString(ackPub)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/v1/enroll":
			var req struct {
				PublicKey string `json:"public_key"`
			}
			json.NewDecoder(r.Body).Decode(&req)
			pub, _ := base64.StdEncoding.DecodeString(req.PublicKey)
			// An older aggregator: no ack key in the answer.
			json.NewEncoder(w).Encode(map[string]string{"tenant": "acme", "device": "fw1",
				"key_id": event.KeyID(pub), "broker_url": "tcp://127.0.0.1:1883"})
		case "/v1/ack-key":
			json.NewEncoder(w).Encode(map[string]string{"ack_key": answer})
		default:
			http.NotFound(w, r)
		}
	}))
	defer srv.Close()
	dir := t.TempDir()
	ctx := context.Background()
	id, err := Enroll(ctx, srv.Client(), srv.URL, "tok", dir)
	if err != nil || id.AckKey != "" {
		t.Fatalf("enroll: %+v %v", id, err)
	}

	answer = "not a key"
	if err := id.LearnAckKey(ctx, srv.Client(), srv.URL, dir); err == nil ||
		!strings.Contains(err.Error(), "not an Ed25519 public key") {
		t.Fatalf("garbage ack key: %v", err)
	}
	if got, _ := Load(dir); got.AckKey != "" || id.AckKey != "" {
		t.Fatalf("a refused answer was kept: %q %q", got.AckKey, id.AckKey)
	}

	answer = base64.StdEncoding.EncodeToString(ackPub)
	if err := id.LearnAckKey(ctx, srv.Client(), srv.URL, dir); err != nil {
		t.Fatal(err)
	}
	got, err := Load(dir)
	if err != nil {
		t.Fatal(err)
	}
	k, err := got.AckPublicKey()
	if err != nil || !k.Equal(ackPub) || !got.Key.Equal(id.Key) || got.KeyID != id.KeyID {
		t.Fatalf("reloaded identity: %+v, ack key %v %v", got, k, err)
	}
}
