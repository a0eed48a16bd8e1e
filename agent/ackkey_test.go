package agent

import (
	"context"
	"io"
	"log/slog"
	"testing"

	"github.com/fenceline/fenceline/agent/identity"
	"github.com/fenceline/fenceline/agent/identity/identitytest"
)

// TestLearnAckKeyFromEnrollment: an enrollment without the ack key learns it from the
// aggregator it enrolled with, not from another one the configuration (or its default)
// names.
func TestLearnAckKeyFromEnrollment(t *testing.T) {
	enrolledWith := identitytest.NewOldAggregator(t)
	other := identitytest.NewOldAggregator(t)
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
	if k, err := got.AckPublicKey(); err != nil || !k.Equal(enrolledWith.Key) {
		t.Fatalf("learnt ack key %v (%v), want the enrolling aggregator's", k, err)
	}
}
