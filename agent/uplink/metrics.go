package uplink

import (
	"github.com/prometheus/client_golang/prometheus"
)

// Metrics are the uplink's delivery figures. Register them with a prometheus.Registerer;
// a nil *Metrics records nothing.
type Metrics struct {
	Published  prometheus.Counter
	Resends    prometheus.Counter
	Failures   prometheus.Counter
	AckLatency prometheus.Histogram
	Acked      prometheus.Gauge
	Connected  prometheus.Gauge
	ForgedAcks prometheus.Counter
	StaleAcks  prometheus.Counter
}

// NewMetrics creates the uplink's metrics with constant labels (tenant, device).
func NewMetrics(labels prometheus.Labels) *Metrics {
	return &Metrics{
		Published: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "fenceline_agent_events_published_total", ConstLabels: labels,
			Help: "Events published to the broker (with PUBACK), resends included.",
		}),
		Resends: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "fenceline_agent_events_resent_total", ConstLabels: labels,
			Help: "Events published again because no ack covered them in time or after a reconnect.",
		}),
		Failures: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "fenceline_agent_publish_failures_total", ConstLabels: labels,
			Help: "Publish rounds that failed (no PUBACK, connection lost); each backs off.",
		}),
		AckLatency: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name: "fenceline_agent_ack_latency_seconds", ConstLabels: labels,
			Help:    "From an event's first publish to the aggregator's ack covering it.",
			Buckets: prometheus.ExponentialBuckets(0.001, 2, 16),
		}),
		Acked: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "fenceline_agent_acked_sequence", ConstLabels: labels,
			Help: "Highest sequence the aggregator acknowledged as committed.",
		}),
		Connected: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "fenceline_agent_uplink_connected", ConstLabels: labels,
			Help: "1 while the uplink is connected to the broker, else 0.",
		}),
		ForgedAcks: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "fenceline_agent_acks_refused_total", ConstLabels: labels,
			Help: "Acks ignored because the aggregator's ack key did not sign them.",
		}),
		StaleAcks: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "fenceline_agent_acks_stale_total", ConstLabels: labels,
			Help: "Signed acks naming another head that were sent before acks already taken (replayed).",
		}),
	}
}

// Collectors lists the metrics for registration.
func (m *Metrics) Collectors() []prometheus.Collector {
	return []prometheus.Collector{m.Published, m.Resends, m.Failures, m.AckLatency, m.Acked,
		m.Connected, m.ForgedAcks, m.StaleAcks}
}
