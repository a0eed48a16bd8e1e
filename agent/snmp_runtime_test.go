package agent

import (
	"context"
	"errors"
	"log/slog"
	"net/netip"
	"sync"
	"testing"
	"time"
)

// TestResolveLoop: a target named by DNS is looked up again every interval; a new address
// is handed on, a failed lookup keeps the last one.
func TestResolveLoop(t *testing.T) {
	answers := []struct {
		addr string
		err  error
	}{{"198.18.0.10", nil}, {"", errors.New("no such host")}, {"198.18.0.11", nil}}
	var mu sync.Mutex
	calls := 0
	lookup := func(_ context.Context, network, host string) ([]netip.Addr, error) {
		mu.Lock()
		defer mu.Unlock()
		if network != "ip" || host != "fw.example" {
			t.Errorf("lookup %s %s", network, host)
		}
		a := answers[min(calls, len(answers)-1)]
		calls++
		if a.err != nil {
			return nil, a.err
		}
		return []netip.Addr{netip.MustParseAddr(a.addr)}, nil
	}
	ctx, cancel := context.WithCancel(context.Background())
	set := make(chan netip.Addr, 10)
	done := make(chan struct{})
	go func() {
		resolveLoop(ctx, time.Millisecond, "fw.example", lookup, func(a netip.Addr) { set <- a },
			slog.New(slog.DiscardHandler))
		close(done)
	}()
	for _, want := range []string{"198.18.0.10", "198.18.0.11"} {
		select {
		case got := <-set:
			if got.String() != want {
				t.Fatalf("set %s, want %s", got, want)
			}
		case <-time.After(5 * time.Second):
			t.Fatalf("no address %s", want)
		}
	}
	cancel()
	<-done
}
