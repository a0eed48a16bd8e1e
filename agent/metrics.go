package agent

import (
	"context"
	"encoding/json"
	"errors"
	"net"
	"net/http"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/fenceline/fenceline/agent/identity"
	"github.com/fenceline/fenceline/agent/outbox"
	"github.com/fenceline/fenceline/agent/uplink"
	"github.com/fenceline/fenceline/shared/event"
)

// metrics are the agent's Prometheus metrics, served on metrics.listen.
type metrics struct {
	reg    *prometheus.Registry
	events *prometheus.CounterVec
	folds  prometheus.Counter
	// overBound counts fold events kept although the outbox is then beyond its bound.
	overBound prometheus.Counter
	uplink    *uplink.Metrics
}

func newMetrics(id *identity.Identity, ob *outbox.Outbox) *metrics {
	labels := prometheus.Labels{"tenant": id.Tenant, "device": id.Device}
	m := &metrics{
		reg: prometheus.NewRegistry(),
		events: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "fenceline_agent_events_total", ConstLabels: labels,
			Help: "Events written to the outbox, by kind.",
		}, []string{"kind"}),
		folds: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "fenceline_agent_outbox_folds_total", ConstLabels: labels,
			Help: "Times the outbox reached its bound and pending events were folded into one.",
		}),
		overBound: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "fenceline_agent_outbox_over_bound_total", ConstLabels: labels,
			Help: "Fold events kept although they left the outbox beyond outbox.max_bytes " +
				"(the state alone is larger than the bound).",
		}),
		uplink: uplink.NewMetrics(labels),
	}
	head := func() outbox.Head {
		h, _ := ob.Head()
		return h
	}
	gauge := func(name, help string, f func() float64) prometheus.Collector {
		return prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: name, Help: help, ConstLabels: labels}, f)
	}
	m.reg.MustRegister(m.events, m.folds, m.overBound,
		collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
		gauge("fenceline_agent_outbox_depth", "Events in the outbox not yet acknowledged.",
			func() float64 { return float64(head().Count) }),
		gauge("fenceline_agent_outbox_pending_bytes", "Envelope bytes of unacknowledged events.",
			func() float64 { return float64(head().Bytes) }),
		gauge("fenceline_agent_outbox_file_bytes", "Size of the outbox file on disk.",
			func() float64 { n, _ := ob.FileSize(); return float64(n) }),
		gauge("fenceline_agent_outbox_oldest_age_seconds", "Age of the oldest unacknowledged event.",
			func() float64 {
				t, _ := ob.Oldest()
				if t.IsZero() {
					return 0
				}
				return time.Since(t).Seconds()
			}),
		gauge("fenceline_agent_sequence", "Sequence number of the newest event.",
			func() float64 { return float64(head().Seq) }),
	)
	m.reg.MustRegister(m.uplink.Collectors()...)
	return m
}

func (m *metrics) appended(k event.Kind) { m.events.WithLabelValues(string(k)).Inc() }

// health is the answer of /healthz.
type health struct {
	// Status is "ok", or says what is wrong ("uplink down").
	Status string            `json:"status"`
	Uplink uplink.LinkStatus `json:"uplink"`
	Outbox struct {
		Depth            int     `json:"depth"`
		OldestAgeSeconds float64 `json:"oldest_age_seconds"`
	} `json:"outbox"`
}

// healthz answers 200 with status "ok" while the uplink is connected to the broker, and
// 503 with status "uplink down" and the broker's error otherwise; both carry the outbox
// depth. Events keep accumulating in the outbox while the uplink is down, so a
// supervisor should alert on this, not restart the agent.
func (a *Agent) healthz(w http.ResponseWriter, _ *http.Request) {
	var h health
	h.Status, h.Uplink = "ok", a.up.Status()
	code := http.StatusOK
	if !h.Uplink.Connected {
		h.Status, code = "uplink down", http.StatusServiceUnavailable
	}
	if head, err := a.ob.Head(); err == nil {
		h.Outbox.Depth = head.Count
	}
	if t, err := a.ob.Oldest(); err == nil && !t.IsZero() {
		h.Outbox.OldestAgeSeconds = time.Since(t).Seconds()
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	json.NewEncoder(w).Encode(&h)
}

// serveMetrics serves /metrics and /healthz until ctx ends.
func (a *Agent) serveMetrics(ctx context.Context) error {
	mux := http.NewServeMux()
	mux.Handle("/metrics", promhttp.HandlerFor(a.metrics.reg, promhttp.HandlerOpts{}))
	mux.HandleFunc("/healthz", a.healthz)
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}
	ln, err := net.Listen("tcp", a.cfg.Metrics.Listen)
	if err != nil {
		return err
	}
	a.log.Info("metrics listening", "addr", ln.Addr().String())
	go func() {
		<-ctx.Done()
		sctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		srv.Shutdown(sctx)
	}()
	if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	return nil
}
