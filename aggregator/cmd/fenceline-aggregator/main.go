// Command fenceline-aggregator receives agents' signed ruleset events over MQTT, keeps
// them in a raft-replicated store, compares every observed change with the approved
// change requests, and serves the HTTP API that fencectl uses.
//
// Usage:
//
//	fenceline-aggregator [--config FILE] [--data-dir DIR] [--http-listen ADDR]
//	    [--raft-listen ADDR] [--node-id ID] [--join URL] [--broker-url URL]
//	    [--embedded-broker-listen ADDR] [--log-level LEVEL] [--log-format text|json]
//
// A single node (the default) bootstraps itself and runs the embedded MQTT broker. A
// cluster of 3 or 5 uses an external broker: the first node bootstraps, the others start
// with --join pointing at a member (configs/aggregator.yaml, cluster keys).
package main

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"path/filepath"
	"runtime/debug"
	"runtime/pprof"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/spf13/pflag"
	"golang.org/x/sys/unix"

	"github.com/fenceline/fenceline/aggregator/api"
	"github.com/fenceline/fenceline/aggregator/broker"
	"github.com/fenceline/fenceline/aggregator/config"
	"github.com/fenceline/fenceline/aggregator/ingest"
	"github.com/fenceline/fenceline/aggregator/store"
)

// defaultGCPercent is the aggregator's garbage collection target when GOGC does not set
// one. Its garbage is mostly short-lived (decoded envelopes, JSON records of the state
// machine); at 400 instead of Go's 100, the ingest benchmark (scripts/bench/README.md)
// spent about a quarter less processor time per event, for about 50 to 140 MB more
// resident memory per node at full ingest.
const defaultGCPercent = 400

// gcPercent is the GC target to set, unless the environment's GOGC chose one.
func gcPercent(getenv func(string) string) (int, bool) {
	if getenv("GOGC") != "" {
		return 0, false
	}
	return defaultGCPercent, true
}

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "fenceline-aggregator:", err)
		os.Exit(1)
	}
}

func run() error {
	fs := config.NewFlagSet("fenceline-aggregator")
	cfg, err := config.Load(fs, os.Args[1:])
	if errors.Is(err, pflag.ErrHelp) {
		return nil
	}
	if err != nil {
		return err
	}
	log, err := newLogger(cfg.Log, os.Stderr)
	if err != nil {
		return err
	}
	if p, ok := gcPercent(os.Getenv); ok {
		debug.SetGCPercent(p)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	stopProfile, err := debugCPUProfile(cfg.DataDir, log)
	if err != nil {
		return err
	}
	defer stopProfile()
	return serve(ctx, cfg, log)
}

// debugCPUProfile writes a CPU profile of the whole process life to the file named by
// FENCELINE_DEBUG_CPUPROFILE (relative to the data dir), for benchmarks
// (scripts/bench/README.md). It is not a configuration key: unset, it does nothing.
func debugCPUProfile(dataDir string, log *slog.Logger) (func(), error) {
	name := os.Getenv("FENCELINE_DEBUG_CPUPROFILE")
	if name == "" {
		return func() {}, nil
	}
	if !filepath.IsAbs(name) {
		name = filepath.Join(dataDir, name)
	}
	if err := os.MkdirAll(filepath.Dir(name), 0o700); err != nil {
		return nil, fmt.Errorf("cpu profile: %w", err)
	}
	f, err := os.Create(name)
	if err != nil {
		return nil, fmt.Errorf("cpu profile: %w", err)
	}
	if err := pprof.StartCPUProfile(f); err != nil {
		f.Close()
		return nil, fmt.Errorf("cpu profile: %w", err)
	}
	log.Warn("writing a CPU profile (debug)", "file", name)
	return func() {
		pprof.StopCPUProfile()
		if err := f.Close(); err != nil {
			log.Error("cpu profile", "err", err)
		}
	}, nil
}

func newLogger(c config.LogConfig, w io.Writer) (*slog.Logger, error) {
	level, err := config.ParseLevel(c.Level)
	if err != nil {
		return nil, err
	}
	opts := &slog.HandlerOptions{Level: level}
	if c.Format == "json" {
		return slog.New(slog.NewJSONHandler(w, opts)), nil
	}
	return slog.New(slog.NewTextHandler(w, opts)), nil
}

// Timeouts of the process's life.
const (
	startTimeout    = 30 * time.Second // raft election at start
	shutdownTimeout = 15 * time.Second // all components together
)

// brokerWait bounds the wait for the first broker connection before the API opens (a
// variable for tests).
var brokerWait = 10 * time.Second

// serve runs the aggregator until ctx ends, then stops its parts in order: API, ingest,
// store, embedded broker.
func serve(ctx context.Context, cfg *config.Config, log *slog.Logger) (err error) {
	if err := os.MkdirAll(cfg.DataDir, 0o700); err != nil {
		return fmt.Errorf("data dir: %w", err)
	}
	// Before anything touches the data dir or starts: one aggregator per data dir, and
	// the API's address must be free.
	unlock, err := lockDataDir(cfg.DataDir)
	if err != nil {
		return err
	}
	defer unlock()
	ln, err := net.Listen("tcp", cfg.HTTP.Listen)
	if err != nil {
		return fmt.Errorf("http listen: %w", err)
	}
	defer ln.Close() // after Serve, a no-op
	token, err := adminToken(cfg, log)
	if err != nil {
		return err
	}

	// Everything started is stopped on the way out, newest first, under one deadline.
	var stops []func(context.Context) error
	defer func() {
		sctx, cancel := context.WithTimeout(context.Background(), shutdownTimeout)
		defer cancel()
		for i := len(stops) - 1; i >= 0; i-- {
			if serr := stops[i](sctx); serr != nil {
				log.Error("shutdown", "err", serr)
				err = errors.Join(err, serr)
			}
		}
		log.Info("stopped")
	}()

	brokerURL := cfg.Broker.URL
	embedded := brokerURL == ""
	if embedded {
		b, err := broker.Start(broker.Config{
			Listen: cfg.EmbeddedBroker.Listen, DataDir: filepath.Join(cfg.DataDir, "broker"),
		}, log)
		if err != nil {
			return err
		}
		stops = append(stops, b.Shutdown)
		brokerURL = b.URL()
	}

	st, err := store.Open(storeConfig(cfg), log)
	if err != nil {
		return err
	}
	stops = append(stops, st.Shutdown)

	// Leader-only work (ingest, ticks) and the first join run until the process stops;
	// they are stopped (and waited for) before the store.
	bg, stopBG := context.WithCancel(context.Background())
	var bgDone sync.WaitGroup
	stops = append(stops, func(context.Context) error {
		stopBG()
		bgDone.Wait()
		return nil
	})
	runner := ingest.NewRunner(ingest.Config{
		BrokerURL: brokerURL, ClientID: cfg.Broker.ClientID, Username: cfg.Broker.Username,
		Password: cfg.Broker.Password, QueueSize: cfg.Ingest.QueueSize, QueueBytes: cfg.Ingest.QueueBytes, Workers: cfg.Ingest.Workers,
	}, st, log)
	bgDone.Add(2)
	go func() {
		defer bgDone.Done()
		runner.Run(bg, st.RunWhileLeader)
	}()
	go func() {
		defer bgDone.Done()
		st.RunLeaderDuties(bg, cfg.Cluster.TickInterval, api.MemberProbe(token, st))
	}()
	switch {
	case cfg.Cluster.Join != "" && st.Fresh():
		bgDone.Add(1)
		go func() {
			defer bgDone.Done()
			joinCluster(bg, cfg, st, token, log)
		}()
	case cfg.Cluster.Clustered():
		bgDone.Add(1)
		go func() {
			defer bgDone.Done()
			refreshSelf(bg, cfg, st, token, log)
		}()
	}

	if !cfg.Cluster.Clustered() {
		// One node: it leads as soon as it has elected itself; give ingest a moment to
		// subscribe before agents are told where to publish.
		sctx, cancel := context.WithTimeout(ctx, startTimeout)
		defer cancel()
		if err := st.WaitLeader(sctx); err != nil {
			return err
		}
		wctx, wcancel := context.WithTimeout(ctx, brokerWait)
		defer wcancel()
		if err := runner.WaitConnected(wctx); err != nil {
			// The API is useful without the broker; the client keeps trying.
			log.Warn("MQTT broker not reachable yet; retrying in the background", "broker", brokerURL)
		}
	}

	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}), runner, st)
	advertise := cfg.Broker.AdvertiseURL
	if advertise == "" {
		advertise = brokerURL
	}
	handler := api.New(api.Config{
		AdminToken: token, BrokerURL: advertise, EnrollTTL: cfg.Enrollment.TokenTTL,
		Gatherer: reg, IngestStats: func() any { return runner.Stats() },
		IngestHealth: runner.Health,
		OnEnroll: func(r store.EnrollResult) {
			if r.Reenrolled {
				runner.ResetAck(r.Device.Tenant, r.Device.Device)
			}
		},
		NoForward: !cfg.Cluster.Forward, EmbeddedBroker: embedded,
	}, st, log)

	srv := &http.Server{
		Handler:           handler,
		ReadHeaderTimeout: 10 * time.Second,
		ErrorLog:          slog.NewLogLogger(log.Handler(), slog.LevelWarn),
	}
	served := make(chan error, 1)
	go func() { served <- srv.Serve(ln) }()
	stops = append(stops, func(ctx context.Context) error {
		if err := srv.Shutdown(ctx); err != nil {
			return fmt.Errorf("http shutdown: %w", err)
		}
		return nil
	})
	log.Info("aggregator running", "http", "http://"+ln.Addr().String(), "broker", brokerURL,
		"raft", cfg.Raft.Listen, "node_id", cfg.Raft.NodeID, "data_dir", cfg.DataDir)

	select {
	case <-ctx.Done():
		log.Info("shutting down")
		return nil
	case err := <-served:
		return fmt.Errorf("http server: %w", err)
	}
}

// lockDataDir takes an exclusive lock on DATA_DIR/LOCK for the life of the process, so a
// second aggregator on the same data dir stops at once, before it opens anything there.
func lockDataDir(dir string) (func(), error) {
	path := filepath.Join(dir, "LOCK")
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, fmt.Errorf("data dir lock: %w", err)
	}
	if err := unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB); err != nil {
		f.Close()
		if errors.Is(err, unix.EWOULDBLOCK) {
			return nil, fmt.Errorf("data dir %s is in use by another fenceline-aggregator", dir)
		}
		return nil, fmt.Errorf("data dir lock %s: %w", path, err)
	}
	return func() { f.Close() }, nil
}

func storeConfig(cfg *config.Config) store.Config {
	r := cfg.Raft
	return store.Config{
		Dir: filepath.Join(cfg.DataDir, "store"), RaftListen: r.Listen, NodeID: r.NodeID,
		HeartbeatTimeout: r.HeartbeatTimeout, ElectionTimeout: r.ElectionTimeout,
		LeaderLeaseTimeout: r.LeaderLeaseTimeout, SnapshotThreshold: r.SnapshotThreshold,
		SnapshotInterval: r.SnapshotInterval, TrailingLogs: r.TrailingLogs,
		NoBootstrap: cfg.Cluster.Clustered(), APIURL: cfg.APIURL(),
	}
}

// joinCluster asks the member at cluster.join to add this node, until it is added or
// ctx ends. The member forwards the request to its leader.
func joinCluster(ctx context.Context, cfg *config.Config, st *store.Store, token string,
	log *slog.Logger) {
	j := newJoiner(cfg, st, token, log)
	url := strings.TrimRight(cfg.Cluster.Join, "/") + "/v1/cluster/join"
	for attempt := 1; ; attempt++ {
		err := j.post(ctx, url)
		if err == nil {
			log.Info("joined the cluster", "via", cfg.Cluster.Join)
			return
		}
		lvl := slog.LevelDebug
		if attempt%10 == 1 {
			lvl = slog.LevelWarn
		}
		log.Log(ctx, lvl, "join failed; retrying", "via", cfg.Cluster.Join, "attempt", attempt,
			"err", err)
		select {
		case <-ctx.Done():
			return
		case <-time.After(time.Second):
		}
	}
}

// refreshSelf runs on a member that is not a fresh joiner: once its state has caught up,
// if the node table lists it with another API address or an older log format (restarted
// with new flags or a new version), it asks the leader to write its entry again, with a
// join of itself. A node the table does not list (removed) asks nothing. The leader
// writes its own entry when it takes office.
func refreshSelf(ctx context.Context, cfg *config.Config, st *store.Store, token string,
	log *slog.Logger) {
	j := newJoiner(cfg, st, token, log)
	t := time.NewTicker(2 * time.Second)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		if st.IsLeader() || st.CaughtUp() != nil {
			continue
		}
		li := st.Leader()
		if li.APIURL == "" || li.Stale {
			continue
		}
		stale, err := st.SelfEntryStale()
		if err != nil {
			continue
		}
		if !stale { // listed as it is, or not listed (removed: it must not join again)
			return
		}
		if err := j.post(ctx, strings.TrimRight(li.APIURL, "/")+"/v1/cluster/join"); err != nil {
			log.Debug("could not update this node's entry in the node table; retrying",
				"leader_api", li.APIURL, "err", err)
			continue
		}
		log.Info("updated this node's entry in the node table", "api", cfg.APIURL(),
			"log_format", store.LogFormat)
		return
	}
}

// joiner posts this node's join request.
type joiner struct {
	req    api.JoinRequest
	client *http.Client
	token  string
	log    *slog.Logger
}

func newJoiner(cfg *config.Config, st *store.Store, token string, log *slog.Logger) *joiner {
	return &joiner{
		req: api.JoinRequest{ID: cfg.Raft.NodeID, RaftAddr: cfg.Raft.Listen, APIURL: cfg.APIURL(),
			LogFormat: store.LogFormat},
		client: &http.Client{Timeout: 30 * time.Second,
			Transport: &http.Transport{DialContext: st.ClusterDialer().DialContext}},
		token: token, log: log,
	}
}

// post sends the join request to url. A member of an earlier version refuses the
// log_format field (its cluster is at log format 1, which this node reads): the request
// goes again without it, and so do the later ones.
func (j *joiner) post(ctx context.Context, url string) error {
	body, _ := json.Marshal(j.req)
	err := postJoin(ctx, j.client, url, j.token, body)
	if msg := fmt.Sprint(err); err != nil && j.req.LogFormat != 0 &&
		strings.Contains(msg, "unknown field") && strings.Contains(msg, "log_format") {
		j.req.LogFormat = 0
		j.log.Info("the cluster runs an earlier version; joining without saying the log format",
			"via", url)
		body, _ = json.Marshal(j.req)
		err = postJoin(ctx, j.client, url, j.token, body)
	}
	return err
}

func postJoin(ctx context.Context, c *http.Client, url, token string, body []byte) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, url, bytes.NewReader(body))
	if err != nil {
		return err
	}
	req.Header.Set("Authorization", "Bearer "+token)
	req.Header.Set("Content-Type", "application/json")
	resp, err := c.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	msg, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("%s: %s", resp.Status, bytes.TrimSpace(msg))
	}
	return nil
}

// adminToken returns the configured admin token, or the one in the token file,
// generating that file (mode 0600) at first start.
func adminToken(cfg *config.Config, log *slog.Logger) (string, error) {
	if cfg.HTTP.AdminToken != "" {
		return cfg.HTTP.AdminToken, nil
	}
	path := cfg.AdminTokenPath()
	b, err := os.ReadFile(path)
	if err == nil {
		tok := strings.TrimSpace(string(b))
		if tok == "" {
			return "", fmt.Errorf("admin token file %s is empty", path)
		}
		log.Info("admin token loaded", "path", path)
		return tok, nil
	}
	if !errors.Is(err, os.ErrNotExist) {
		return "", fmt.Errorf("admin token: %w", err)
	}
	raw := make([]byte, 32)
	if _, err := rand.Read(raw); err != nil {
		return "", fmt.Errorf("admin token: %w", err)
	}
	tok := base64.RawURLEncoding.EncodeToString(raw)
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return "", fmt.Errorf("admin token: %w", err)
	}
	_, err = f.WriteString(tok + "\n")
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		os.Remove(path)
		return "", fmt.Errorf("admin token: %w", err)
	}
	log.Info("generated admin token; fencectl reads it with --token-file", "path", path)
	return tok, nil
}
