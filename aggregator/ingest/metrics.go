package ingest

import (
	"sync/atomic"

	"github.com/prometheus/client_golang/prometheus"
)

// counters are the ingest counters. They are plain atomics so that Stats can read them;
// the Prometheus collector exports the same values.
type counters struct {
	received    atomic.Uint64
	accepted    atomic.Uint64
	rejected    []atomic.Uint64 // by index in Reasons
	dropped     atomic.Uint64   // queue full or shutting down
	storeErrors atomic.Uint64
	acks        atomic.Uint64
	ackErrors   atomic.Uint64
	deviations  atomic.Uint64
}

func newCounters() *counters { return &counters{rejected: make([]atomic.Uint64, len(Reasons))} }

func (c *counters) reject(reason string) {
	for i, r := range Reasons {
		if r == reason {
			c.rejected[i].Add(1)
			return
		}
	}
}

// Stats is a copy of the ingest counters.
type Stats struct {
	Received    uint64            `json:"received"`
	Accepted    uint64            `json:"accepted"`
	Rejected    map[string]uint64 `json:"rejected"`
	Dropped     uint64            `json:"dropped"`
	StoreErrors uint64            `json:"store_errors"`
	AcksSent    uint64            `json:"acks_published"`
	AckErrors   uint64            `json:"ack_errors"`
	Deviations  uint64            `json:"deviations"`
	QueueDepth  int               `json:"queue_depth"`
	Connected   bool              `json:"connected"`
}

// RejectedTotal is the sum of all reject reasons.
func (s Stats) RejectedTotal() uint64 {
	var n uint64
	for _, v := range s.Rejected {
		n += v
	}
	return n
}

func (c *counters) stats() Stats {
	s := Stats{
		Received: c.received.Load(), Accepted: c.accepted.Load(), Dropped: c.dropped.Load(),
		StoreErrors: c.storeErrors.Load(), AcksSent: c.acks.Load(), AckErrors: c.ackErrors.Load(),
		Deviations: c.deviations.Load(), Rejected: make(map[string]uint64, len(Reasons)),
	}
	for i, r := range Reasons {
		s.Rejected[r] = c.rejected[i].Load()
	}
	return s
}

var (
	descReceived = prometheus.NewDesc("fenceline_ingest_messages_total",
		"MQTT messages received on events topics.", nil, nil)
	descAccepted = prometheus.NewDesc("fenceline_ingest_accepted_total",
		"Events committed to the replicated state.", nil, nil)
	descRejected = prometheus.NewDesc("fenceline_ingest_rejected_total",
		"Messages refused, by reason; nothing of them is stored.", []string{"reason"}, nil)
	descDropped = prometheus.NewDesc("fenceline_ingest_dropped_total",
		"Messages dropped unprocessed (queue full, shutdown); agents resend them.", nil, nil)
	descStoreErrors = prometheus.NewDesc("fenceline_ingest_store_errors_total",
		"Events that could not be proposed or committed.", nil, nil)
	descAcks = prometheus.NewDesc("fenceline_ingest_acks_published_total",
		"Acks published to agents.", nil, nil)
	descAckErrors = prometheus.NewDesc("fenceline_ingest_ack_errors_total",
		"Acks that failed to publish.", nil, nil)
	descDeviations = prometheus.NewDesc("fenceline_ingest_deviations_total",
		"Deviations raised by ingested events.", nil, nil)
	descQueue = prometheus.NewDesc("fenceline_ingest_queue_depth",
		"Messages waiting in the ingest queues.", nil, nil)
	descConnected = prometheus.NewDesc("fenceline_ingest_broker_connected",
		"1 while the connection to the MQTT broker is open.", nil, nil)
)

// Describe implements prometheus.Collector.
func (in *Ingester) Describe(ch chan<- *prometheus.Desc) { describe(ch) }

// Collect implements prometheus.Collector.
func (in *Ingester) Collect(ch chan<- prometheus.Metric) { collect(ch, in.Stats()) }

func describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{descReceived, descAccepted, descRejected, descDropped,
		descStoreErrors, descAcks, descAckErrors, descDeviations, descQueue, descConnected} {
		ch <- d
	}
}

func collect(ch chan<- prometheus.Metric, s Stats) {
	counter := func(d *prometheus.Desc, v uint64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.CounterValue, float64(v), labels...)
	}
	counter(descReceived, s.Received)
	counter(descAccepted, s.Accepted)
	for _, r := range Reasons {
		counter(descRejected, s.Rejected[r], r)
	}
	counter(descDropped, s.Dropped)
	counter(descStoreErrors, s.StoreErrors)
	counter(descAcks, s.AcksSent)
	counter(descAckErrors, s.AckErrors)
	counter(descDeviations, s.Deviations)
	ch <- prometheus.MustNewConstMetric(descQueue, prometheus.GaugeValue, float64(s.QueueDepth))
	connected := 0.0
	if s.Connected {
		connected = 1
	}
	ch <- prometheus.MustNewConstMetric(descConnected, prometheus.GaugeValue, connected)
}
