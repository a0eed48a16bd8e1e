package store

import (
	"io"
	"sync/atomic"
	"time"

	"github.com/hashicorp/raft"
	"github.com/prometheus/client_golang/prometheus"
)

// metrics are the store's Prometheus metrics. Histograms and counters are updated where
// things happen; gauges are read from raft when scraped.
type metrics struct {
	applyLatency     prometheus.Histogram
	batchSize        prometheus.Histogram
	snapshotDuration prometheus.Histogram
	snapshotBytes    atomic.Uint64
	snapshots        atomic.Uint64
	snapshotErrors   atomic.Uint64
	restores         atomic.Uint64
}

func newMetrics() *metrics {
	return &metrics{
		applyLatency: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name: "fenceline_raft_apply_duration_seconds",
			Help: "Time from proposing a command on the leader to its being applied there.",
			Buckets: []float64{.001, .0025, .005, .01, .015, .02, .03, .05, .075, .1, .25, .5,
				1, 2.5, 5},
		}),
		batchSize: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "fenceline_fsm_apply_batch_entries",
			Help:    "Log entries applied to the state file in one transaction.",
			Buckets: prometheus.ExponentialBuckets(1, 2, 11),
		}),
		snapshotDuration: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "fenceline_raft_snapshot_duration_seconds",
			Help:    "Time to write one snapshot of the state file.",
			Buckets: prometheus.ExponentialBuckets(.001, 4, 10),
		}),
	}
}

var (
	descRaftState = prometheus.NewDesc("fenceline_raft_state",
		"1 for this node's current raft state.", []string{"state"}, nil)
	descTerm   = prometheus.NewDesc("fenceline_raft_term", "Current raft term.", nil, nil)
	descCommit = prometheus.NewDesc("fenceline_raft_commit_index",
		"Highest log index known to be committed.", nil, nil)
	descLast = prometheus.NewDesc("fenceline_raft_last_index",
		"Highest log index in this node's log.", nil, nil)
	descApplied = prometheus.NewDesc("fenceline_raft_applied_index",
		"Highest log index applied to the state file.", nil, nil)
	descPeers = prometheus.NewDesc("fenceline_raft_voters",
		"Voters in the raft configuration.", nil, nil)
	descLeaderChanges = prometheus.NewDesc("fenceline_raft_leadership_changes_total",
		"Times this node gained or lost leadership.", nil, nil)
	descLastContact = prometheus.NewDesc("fenceline_raft_last_contact_seconds",
		"On a follower, seconds since the leader was last heard from.", nil, nil)
	descSnapBytes = prometheus.NewDesc("fenceline_raft_snapshot_bytes",
		"Size of the newest snapshot this node wrote.", nil, nil)
	descSnapshots = prometheus.NewDesc("fenceline_raft_snapshots_total",
		"Snapshots written, by result.", []string{"result"}, nil)
	descRestores = prometheus.NewDesc("fenceline_raft_restores_total",
		"Times the state was replaced from a snapshot (at start or by InstallSnapshot).",
		nil, nil)
)

// Describe implements prometheus.Collector.
func (s *Store) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{descRaftState, descTerm, descCommit, descLast,
		descApplied, descPeers, descLeaderChanges, descLastContact, descSnapBytes,
		descSnapshots, descRestores} {
		ch <- d
	}
	s.metrics.applyLatency.Describe(ch)
	s.metrics.batchSize.Describe(ch)
	s.metrics.snapshotDuration.Describe(ch)
}

// Collect implements prometheus.Collector.
func (s *Store) Collect(ch chan<- prometheus.Metric) {
	gauge := func(d *prometheus.Desc, v float64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, v, labels...)
	}
	counter := func(d *prometheus.Desc, v uint64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.CounterValue, float64(v), labels...)
	}
	state := s.raft.State()
	for _, st := range []raft.RaftState{raft.Follower, raft.Candidate, raft.Leader,
		raft.Shutdown} {
		v := 0.0
		if st == state {
			v = 1
		}
		gauge(descRaftState, v, st.String())
	}
	gauge(descTerm, float64(s.raft.CurrentTerm()))
	gauge(descCommit, float64(s.raft.CommitIndex()))
	gauge(descLast, float64(s.raft.LastIndex()))
	gauge(descApplied, float64(s.fsm.appliedIndex()))
	if cfg, err := s.configuration(); err == nil {
		n := 0
		for _, srv := range cfg.Servers {
			if srv.Suffrage == raft.Voter {
				n++
			}
		}
		gauge(descPeers, float64(n))
	}
	s.leader.mu.Lock()
	changes := s.leader.changes
	s.leader.mu.Unlock()
	counter(descLeaderChanges, changes)
	lc := 0.0
	if state != raft.Leader {
		if t := s.raft.LastContact(); !t.IsZero() {
			lc = time.Since(t).Seconds()
		}
	}
	gauge(descLastContact, lc)
	gauge(descSnapBytes, float64(s.metrics.snapshotBytes.Load()))
	counter(descSnapshots, s.metrics.snapshots.Load(), "ok")
	counter(descSnapshots, s.metrics.snapshotErrors.Load(), "error")
	counter(descRestores, s.metrics.restores.Load())
	s.metrics.applyLatency.Collect(ch)
	s.metrics.batchSize.Collect(ch)
	s.metrics.snapshotDuration.Collect(ch)
}

// instrumentedFSM is the state machine as raft sees it: the fsm, measured.
type instrumentedFSM struct {
	*fsm
	m *metrics
}

// ApplyBatch applies and counts a batch.
func (i *instrumentedFSM) ApplyBatch(logs []*raft.Log) []any {
	i.m.batchSize.Observe(float64(len(logs)))
	return i.fsm.ApplyBatch(logs)
}

// Snapshot measures the snapshot it returns.
func (i *instrumentedFSM) Snapshot() (raft.FSMSnapshot, error) {
	snap, err := i.fsm.Snapshot()
	if err != nil {
		i.m.snapshotErrors.Add(1)
		return nil, err
	}
	return &measuredSnapshot{FSMSnapshot: snap, m: i.m}, nil
}

// Restore counts restores.
func (i *instrumentedFSM) Restore(rc io.ReadCloser) error {
	err := i.fsm.Restore(rc)
	if err == nil {
		i.m.restores.Add(1)
	}
	return err
}

type measuredSnapshot struct {
	raft.FSMSnapshot
	m *metrics
}

// Persist writes the snapshot through a counting sink.
func (s *measuredSnapshot) Persist(sink raft.SnapshotSink) error {
	start := time.Now()
	cs := &countingSink{SnapshotSink: sink}
	err := s.FSMSnapshot.Persist(cs)
	if err != nil {
		s.m.snapshotErrors.Add(1)
		return err
	}
	s.m.snapshotDuration.Observe(time.Since(start).Seconds())
	s.m.snapshotBytes.Store(cs.n)
	s.m.snapshots.Add(1)
	return nil
}

type countingSink struct {
	raft.SnapshotSink
	n uint64
}

func (c *countingSink) Write(p []byte) (int, error) {
	n, err := c.SnapshotSink.Write(p)
	c.n += uint64(n)
	return n, err
}

// SnapshotStats returns how many snapshots this node wrote and restored, and the size of
// the newest one written.
func (s *Store) SnapshotStats() (written, restored, lastBytes uint64) {
	return s.metrics.snapshots.Load(), s.metrics.restores.Load(), s.metrics.snapshotBytes.Load()
}
