// Package testenv holds helpers for the aggregator's tests: loopback addresses, test
// logging, waiting with deadlines, and agents that sign events with real keys.
package testenv

import (
	"crypto/ed25519"
	"crypto/rand"
	"fmt"
	"io"
	"log/slog"
	"os"
	"testing"
	"time"

	"github.com/fenceline/fenceline/internal/freeport"
	"github.com/fenceline/fenceline/shared/event"
	"github.com/fenceline/fenceline/shared/ruleset"
)

// Logger returns a logger that writes to the test log when FENCELINE_TEST_LOG is set,
// and discards otherwise.
func Logger(t testing.TB) *slog.Logger {
	if os.Getenv("FENCELINE_TEST_LOG") == "" {
		return slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	return slog.New(slog.NewTextHandler(tWriter{t}, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

type tWriter struct{ t testing.TB }

func (w tWriter) Write(p []byte) (int, error) {
	w.t.Log(string(p))
	return len(p), nil
}

// FreeAddr returns a 127.0.0.1 address with a port that is free right now.
func FreeAddr(t testing.TB) string {
	t.Helper()
	p, err := freeport.Port()
	if err != nil {
		t.Fatal(err)
	}
	return fmt.Sprintf("127.0.0.1:%d", p)
}

// Agent signs a device's chain of events as the real agent does.
type Agent struct {
	Tenant, Device string
	Key            ed25519.PrivateKey
	Signer         *event.Signer
	// Seq and Prev are the last sealed event's sequence and id.
	Seq  uint64
	Prev string
	// Now is the observed time of the next event.
	Now time.Time
}

// NewAgent returns an agent with a fresh key.
func NewAgent(tenant, device string) *Agent {
	_, key, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		panic(err)
	}
	return &Agent{
		Tenant: tenant, Device: device, Key: key, Signer: event.NewSigner(key),
		Now: time.Now().UTC(),
	}
}

// Public is the agent's public key.
func (a *Agent) Public() ed25519.PublicKey { return a.Key.Public().(ed25519.PublicKey) }

// Digest is a valid ruleset digest for tests.
var Digest = (&ruleset.Ruleset{}).Digest().String()

// Event returns a valid unsigned event of the agent's device with the next sequence.
func (a *Agent) Event(kind event.Kind, changes ...ruleset.Change) *event.Event {
	e := &event.Event{
		V: event.Version, Kind: kind, Tenant: a.Tenant, Device: a.Device,
		KeyID: a.Signer.KeyID(), Seq: a.Seq + 1, Prev: a.Prev, Observed: event.FormatTime(a.Now),
		Source: event.SourceNftables, After: Digest, Changes: changes,
	}
	if kind == event.Baseline || kind == event.Reconcile {
		e.Ruleset = &ruleset.Ruleset{}
	}
	if kind != event.Baseline {
		e.Before = Digest
	}
	return e
}

// Seal signs e and, when it extends the chain, advances the agent's head.
func (a *Agent) Seal(e *event.Event) ([]byte, string) {
	b, id, err := a.Signer.Seal(e)
	if err != nil {
		panic(fmt.Sprintf("seal: %v", err))
	}
	if e.Seq == a.Seq+1 && e.Prev == a.Prev {
		a.Seq, a.Prev = e.Seq, id
	}
	return b, id
}

// Next seals the next event of the chain.
func (a *Agent) Next(kind event.Kind, changes ...ruleset.Change) ([]byte, string) {
	return a.Seal(a.Event(kind, changes...))
}

// WaitFor polls cond every 10 ms until it holds, failing the test after timeout.
func WaitFor(t testing.TB, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s", timeout, what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}
