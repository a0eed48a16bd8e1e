package ingest

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync/atomic"
	"time"

	"github.com/fenceline/fenceline/shared/event"
	"github.com/prometheus/client_golang/prometheus"
)

// Runner keeps one Ingester running on the raft leader and none elsewhere: each time
// this node takes office it starts a fresh Ingester (which takes over the persistent MQTT
// session under the shared client id) and stops it when leadership is lost. Its
// counters add up over all of them.
type Runner struct {
	cfg   Config
	store Store
	log   *slog.Logger
	count *counters
	cur   atomic.Pointer[Ingester]
}

// NewRunner returns a runner; Run runs it.
func NewRunner(cfg Config, st Store, log *slog.Logger) *Runner {
	cfg.setDefaults()
	return &Runner{cfg: cfg, store: st, log: log.With("component", "ingest"), count: newCounters()}
}

// LeaderFunc runs fn while this node leads (store.Store.RunWhileLeader).
type LeaderFunc func(ctx context.Context, name string, fn func(ctx context.Context))

// Run ingests whenever this node leads, until ctx ends. The caller owns the goroutine.
func (r *Runner) Run(ctx context.Context, whileLeader LeaderFunc) {
	whileLeader(ctx, "ingest", func(lctx context.Context) {
		in := newIngester(r.cfg, r.store, r.log, r.count)
		in.Start()
		r.cur.Store(in)
		<-lctx.Done()
		r.cur.Store(nil)
		sctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := in.Shutdown(sctx); err != nil {
			r.log.Warn("ingest shutdown", "err", err)
		}
	})
}

// WaitConnected waits until this node ingests: it leads and its client has subscribed.
func (r *Runner) WaitConnected(ctx context.Context) error {
	t := time.NewTicker(20 * time.Millisecond)
	defer t.Stop()
	for {
		if in := r.cur.Load(); in != nil && in.subscribed.Load() && in.client.IsConnectionOpen() &&
			in.acks.IsConnectionOpen() {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("wait for ingest: %w", ctx.Err())
		case <-t.C:
		}
	}
}

// ErrNotConnected is Health's answer while the leader's ingester has no broker
// connection.
var ErrNotConnected = errors.New("ingest: not connected to the MQTT broker")

// Health reports whether ingest works where it should: on the leader, the ingester
// must be connected and subscribed. A follower does not ingest and is healthy.
func (r *Runner) Health() error {
	in := r.cur.Load()
	if in == nil {
		return nil
	}
	if !in.subscribed.Load() || !in.client.IsConnectionOpen() || !in.acks.IsConnectionOpen() {
		return fmt.Errorf("%w %s", ErrNotConnected, r.cfg.BrokerURL)
	}
	return nil
}

// Active reports whether this node is ingesting now.
func (r *Runner) Active() bool { return r.cur.Load() != nil }

// ResetAck publishes a zero ack for a re-enrolled device, if this node is ingesting.
func (r *Runner) ResetAck(tenant, device string) {
	if in := r.cur.Load(); in != nil {
		in.ack(tenant, device, event.Ack{})
	}
}

// Stats returns the counters of all ingesters this runner ran, and the queue and
// connection of the current one.
func (r *Runner) Stats() Stats {
	if in := r.cur.Load(); in != nil {
		return in.Stats()
	}
	return r.count.stats()
}

// Describe implements prometheus.Collector.
func (r *Runner) Describe(ch chan<- *prometheus.Desc) { describe(ch) }

// Collect implements prometheus.Collector.
func (r *Runner) Collect(ch chan<- prometheus.Metric) { collect(ch, r.Stats()) }
