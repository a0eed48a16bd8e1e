package identity_test

import (
	"context"
	"encoding/base64"
	"strings"
	"testing"

	"github.com/fenceline/fenceline/agent/identity"
	"github.com/fenceline/fenceline/agent/identity/identitytest"
)

// TestLearnAckKey: an enrollment without the aggregator's ack key (made before the
// enrollment response carried it) learns it from GET /v1/ack-key and keeps it on disk; a
// server that answers with something that is not a key changes nothing.
func TestLearnAckKey(t *testing.T) {
	srv := identitytest.NewOldAggregator(t)
	dir := t.TempDir()
	ctx := context.Background()
	id, err := identity.Enroll(ctx, srv.Client(), srv.URL, "tok", dir)
	if err != nil || id.AckKey != "" {
		t.Fatalf("enroll: %+v %v", id, err)
	}

	garbage := "not a key"
	srv.AckKey.Store(&garbage)
	if err := id.LearnAckKey(ctx, srv.Client(), srv.URL, dir); err == nil ||
		!strings.Contains(err.Error(), "not an Ed25519 public key") {
		t.Fatalf("garbage ack key: %v", err)
	}
	if got, _ := identity.Load(dir); got.AckKey != "" || id.AckKey != "" {
		t.Fatalf("a refused answer was kept: %q %q", got.AckKey, id.AckKey)
	}

	valid := base64.StdEncoding.EncodeToString(srv.Key)
	srv.AckKey.Store(&valid)
	if err := id.LearnAckKey(ctx, srv.Client(), srv.URL, dir); err != nil {
		t.Fatal(err)
	}
	got, err := identity.Load(dir)
	if err != nil {
		t.Fatal(err)
	}
	k, err := got.AckPublicKey()
	if err != nil || !k.Equal(srv.Key) || !got.Key.Equal(id.Key) || got.KeyID != id.KeyID {
		t.Fatalf("reloaded identity: %+v, ack key %v %v", got, k, err)
	}
}
