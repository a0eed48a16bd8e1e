package store_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/fenceline/fenceline/aggregator/internal/testenv"
	"github.com/fenceline/fenceline/aggregator/internal/teststore"
	"github.com/fenceline/fenceline/aggregator/store"
	"github.com/fenceline/fenceline/shared/event"
	"github.com/fenceline/fenceline/shared/ruleset"
)

// BenchmarkAppendChanges measures what one node commits (raft with fsync, the state
// machine, the deviation engine) for signed change events that each add one rule no CR
// covers, proposed without waiting as the ingester does, over 10 devices. Method: the
// events are sealed before the clock starts; b.N events are proposed, then every
// proposal is waited for. Run: go test -bench AppendChanges -benchtime 5000x ./aggregator/store
func BenchmarkAppendChanges(b *testing.B) {
	s := teststore.NewStore(b)
	ctx := context.Background()
	const devices = 10
	agents := make([]*testenv.Agent, devices)
	for i := range agents {
		agents[i] = testenv.NewAgent("acme", fmt.Sprintf("fw%02d", i))
		teststore.Enroll(b, s, agents[i])
		env, _ := agents[i].Next(event.Baseline)
		if _, err := s.AppendEvent(ctx, "acme", agents[i].Device, env, time.Now()); err != nil {
			b.Fatal(err)
		}
	}
	envs := make([][]byte, b.N)
	for n := range envs {
		a := agents[n%devices]
		envs[n], _ = a.Next(event.Change, ruleset.Change{Kind: ruleset.RuleAdded,
			Family: "inet", Table: "filter", Chain: "input", Position: n/devices + 1,
			Rule: fmt.Sprintf("tcp dport %d drop", 1000+n)})
	}
	pending := make([]*store.PendingEvent, b.N)
	b.ResetTimer()
	start := time.Now()
	for n, env := range envs {
		pending[n] = s.ProposeEvent(ctx, "acme", agents[n%devices].Device, env, time.Now())
	}
	for n, p := range pending {
		res, err := p.Wait()
		if err != nil || res.Outcome != store.Accepted {
			b.Fatalf("event %d: %+v %v", n, res, err)
		}
	}
	b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "events/s")
}
