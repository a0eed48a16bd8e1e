package agent

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"golang.org/x/sync/errgroup"

	"github.com/fenceline/fenceline/agent/identity"
	"github.com/fenceline/fenceline/agent/snmp"
	"github.com/fenceline/fenceline/agent/uplink"
	"github.com/fenceline/fenceline/shared/event"
)

// SNMPDevices runs the SNMP targets of the configuration: for each, a device reporter
// (its own enrollment, key, outbox, event chain and uplink) fed by an snmp.Watcher, and
// one trap listener for all of them. A target that fails never stops the others or the
// agent: one that cannot enroll or open at start (the aggregator unreachable, a refused
// token) waits, is retried with backoff, and starts when it succeeds.
type SNMPDevices struct {
	cfg      *Config
	log      *slog.Logger
	profiles snmp.Profiles
	traps    *snmp.TrapListener
	// retryMin and retryMax bound the backoff between attempts to start a waiting target.
	retryMin, retryMax time.Duration
	// named are the targets whose address is a DNS name, resolved again every
	// resolveEvery for trap matching.
	named        []namedTarget
	resolveEvery time.Duration

	mu      sync.Mutex
	devices []*snmpDevice
	waiting []*targetSlot         // targets that could not start in OpenSNMP
	reg     prometheus.Registerer // set by RegisterSNMP: late targets register there
	pending atomic.Int64
}

type namedTarget struct{ target, host string }

type snmpDevice struct {
	target  SNMPTarget
	rep     *deviceReporter
	client  *snmp.Client
	watcher *snmp.Watcher
}

// targetSlot is a configured target's place from the start: its trap route is in the
// listener at once, and traps reach its watcher once the target has started.
type targetSlot struct {
	target  SNMPTarget
	profile *snmp.Profile
	watcher atomic.Pointer[snmp.Watcher]
}

// OpenSNMP enrolls (when a target has a token and no enrollment yet) and opens every
// configured SNMP target. It returns nil without targets. Configuration errors (an
// unknown profile, an unusable address, trap listener settings) fail; a target that
// cannot enroll or open is logged and left waiting for Run to retry it. Close releases
// what it opened.
func OpenSNMP(ctx context.Context, cfg *Config, log *slog.Logger) (*SNMPDevices, error) {
	sc := &cfg.SNMP
	if len(sc.Targets) == 0 {
		return nil, nil
	}
	profiles, from, err := loadSNMPProfiles(sc.ProfilesDir)
	if err != nil {
		return nil, err
	}
	log.Info("snmp profiles", "from", from, "profiles", strings.Join(profiles.Names(), ","))
	s := &SNMPDevices{cfg: cfg, log: log, profiles: profiles,
		retryMin: time.Second, retryMax: 5 * time.Minute, resolveEvery: 5 * time.Minute}
	var routes []snmp.TrapRoute
	var users []snmp.USM
	for _, t := range sc.Targets {
		profile, err := profiles.Resolve(t.Profile)
		if err != nil {
			s.Close()
			return nil, fmt.Errorf("snmp target %s: %w (known: %s; snmp.profiles_dir %q)", t.Name,
				err, strings.Join(profiles.Names(), ", "), sc.ProfilesDir)
		}
		host, err := targetHost(t.Address)
		if err != nil {
			s.Close()
			return nil, fmt.Errorf("snmp target %s: %w", t.Name, err)
		}
		if name := hostName(t.Address); name != "" {
			s.named = append(s.named, namedTarget{target: t.Name, host: name})
		}
		w := &targetSlot{target: t, profile: profile}
		route := snmp.TrapRoute{Target: t.Name, Host: host, Community: t.TrapCommunity,
			Profile: profile, Deliver: w.deliver}
		if t.Version == "3" {
			route.Community, route.User = "", t.V3.User
			users = append(users, t.usm())
		}
		routes = append(routes, route)
		d, err := s.open(ctx, t, profile)
		if err != nil {
			log.Error("snmp target not started; retrying in the background", "target", t.Name,
				"err", err)
			s.waiting = append(s.waiting, w)
			s.pending.Add(1)
			continue
		}
		w.watcher.Store(d.watcher)
		s.devices = append(s.devices, d)
	}
	if sc.TrapListen != "" {
		engineID, err := sc.engineID()
		if err != nil {
			s.Close()
			return nil, err
		}
		if engineID == nil && len(users) > 0 {
			log.Info("snmp v3 informs are not accepted without snmp.trap_engine_id; v3 traps are")
		}
		if s.traps, err = snmp.NewTrapListener(sc.TrapListen, engineID, users, routes, log); err != nil {
			s.Close()
			return nil, err
		}
	}
	return s, nil
}

// deliver hands a trap to the target's watcher, or drops it while the target waits (its
// first read, when it starts, sees whatever the trap announced).
func (w *targetSlot) deliver(n snmp.TrapNote) {
	if wt := w.watcher.Load(); wt != nil {
		wt.Trap(n)
	}
}

// open enrolls the target if it has no enrollment yet and opens its reporter and client.
func (s *SNMPDevices) open(ctx context.Context, t SNMPTarget, profile *snmp.Profile) (*snmpDevice, error) {
	dir := filepath.Join(s.cfg.StateDir, "snmp", t.Name)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, err
	}
	id, err := identity.Load(dir)
	if err == nil {
		learnAckKey(ctx, id, s.cfg.AggregatorURL, dir, s.log.With("target", t.Name))
	}
	if errors.Is(err, identity.ErrNotEnrolled) && t.EnrollToken != "" {
		hc := &http.Client{Timeout: 30 * time.Second}
		id, err = identity.Enroll(ctx, hc, s.cfg.AggregatorURL, t.EnrollToken, dir)
		if err == nil {
			s.log.Info("snmp target enrolled", "target", t.Name, "tenant", id.Tenant,
				"device", id.Device, "key_id", id.KeyID)
		}
	}
	if err != nil {
		return nil, err
	}
	ackKey, err := id.AckPublicKey()
	if err != nil {
		return nil, fmt.Errorf("identity: %w", err)
	}
	up := uplink.Config{
		AckKey:    ackKey,
		BrokerURL: firstNonEmpty(t.Broker.URL, s.cfg.Broker.URL, id.BrokerURL),
		ClientID:  t.Broker.ClientID,
		Username:  firstNonEmpty(t.Broker.Username, s.cfg.Broker.Username),
		Password:  firstNonEmpty(t.Broker.Password, s.cfg.Broker.Password),
		Batch:     s.cfg.Uplink.Batch, Window: s.cfg.Uplink.Window, Rate: s.cfg.Uplink.Rate,
		ResendAfter: s.cfg.Uplink.ResendAfter,
	}
	if up.BrokerURL == "" {
		return nil, errors.New("no broker: set broker.url or enroll with an aggregator that names one")
	}
	log := s.log.With("tenant", id.Tenant, "device", id.Device, "target", t.Name)
	rep, err := newDeviceReporter(event.SourceSNMP, filepath.Join(dir, OutboxFile), id, up,
		s.cfg.Outbox.MaxBytes, log)
	if err != nil {
		return nil, err
	}
	client, err := snmp.Dial(t.target())
	if err != nil {
		rep.Close()
		return nil, err
	}
	iv := snmp.Intervals{Poll: t.PollInterval, Walk: t.WalkInterval, Heartbeat: s.cfg.HeartbeatInterval}
	// The watcher names its target in every record itself.
	w := snmp.NewWatcher(t.Name, snmp.NewPoller(client, profile), rep, iv, rep.Last(),
		s.log.With("tenant", id.Tenant, "device", id.Device))
	return &snmpDevice{target: t, rep: rep, client: client, watcher: w}, nil
}

// Run watches and delivers until ctx ends, and keeps trying to start the targets that
// wait.
func (s *SNMPDevices) Run(ctx context.Context) error {
	if s == nil {
		return nil
	}
	g, ctx := errgroup.WithContext(ctx)
	s.mu.Lock()
	for _, d := range s.devices {
		s.runDevice(ctx, g, d)
	}
	for _, w := range s.waiting {
		g.Go(func() error { s.retry(ctx, g, w); return nil })
	}
	started, waiting := len(s.devices), len(s.waiting)
	s.mu.Unlock()
	if s.traps != nil {
		g.Go(func() error { return s.traps.Run(ctx) })
		for _, n := range s.named {
			g.Go(func() error {
				resolveLoop(ctx, s.resolveEvery, n.host, net.DefaultResolver.LookupNetIP,
					func(a netip.Addr) {
						if s.traps.SetHost(n.target, a) {
							s.log.Info("snmp target's address changed; its traps are matched "+
								"against the new one", "target", n.target, "host", n.host, "addr", a)
						}
					}, s.log)
				return nil
			})
		}
	}
	s.log.Info("snmp targets started", "targets", started, "waiting", waiting,
		"trap_listen", s.cfg.SNMP.TrapListen)
	err := g.Wait()
	if errors.Is(err, context.Canceled) {
		return nil
	}
	return err
}

func (s *SNMPDevices) runDevice(ctx context.Context, g *errgroup.Group, d *snmpDevice) {
	g.Go(func() error { return d.rep.Run(ctx) })
	g.Go(func() error { return d.watcher.Run(ctx) })
}

// retry starts a waiting target, with backoff between attempts, until it starts or ctx
// ends. A started target joins g and the metrics registry.
func (s *SNMPDevices) retry(ctx context.Context, g *errgroup.Group, w *targetSlot) {
	wait := s.retryMin
	for {
		select {
		case <-ctx.Done():
			return
		case <-time.After(wait):
		}
		wait = min(2*wait, s.retryMax)
		d, err := s.open(ctx, w.target, w.profile)
		if err != nil {
			if ctx.Err() == nil {
				s.log.Error("snmp target not started", "target", w.target.Name, "err", err,
					"retry_in", wait)
			}
			continue
		}
		s.mu.Lock()
		if ctx.Err() != nil { // stopping: Close may already have run
			s.mu.Unlock()
			d.client.Close()
			d.rep.Close()
			return
		}
		s.devices = append(s.devices, d)
		var regErr error
		if s.reg != nil {
			regErr = registerAll(s.reg, s.deviceCollectors(d))
		}
		s.runDevice(ctx, g, d)
		s.mu.Unlock()
		if regErr != nil {
			s.log.Warn("snmp target metrics not registered", "target", w.target.Name, "err", regErr)
		}
		w.watcher.Store(d.watcher)
		s.pending.Add(-1)
		s.log.Info("snmp target started", "target", w.target.Name, "tenant", d.rep.id.Tenant,
			"device", d.rep.id.Device)
		return
	}
}

// Close releases every started target's socket and outbox.
func (s *SNMPDevices) Close() error {
	if s == nil {
		return nil
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	var errs []error
	for _, d := range s.devices {
		d.client.Close()
		errs = append(errs, d.rep.Close())
	}
	s.devices = nil
	return errors.Join(errs...)
}

// Collectors returns Prometheus collectors for every started target (reachability,
// polls, reads, failures, traps and reports, labelled by tenant, device and target), the
// number of targets waiting to start, and the trap listener's counters.
func (s *SNMPDevices) Collectors() []prometheus.Collector {
	if s == nil {
		return nil
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	var cs []prometheus.Collector
	for _, d := range s.devices {
		cs = append(cs, s.deviceCollectors(d)...)
	}
	cs = append(cs, prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name: "fenceline_agent_snmp_waiting_targets",
		Help: "SNMP targets that could not enroll or open yet and are retried.",
	}, func() float64 { return float64(s.pending.Load()) }))
	if l := s.traps; l != nil {
		trapCounter := func(name, help string, f func(snmp.TrapStats) uint64) {
			cs = append(cs, prometheus.NewCounterFunc(prometheus.CounterOpts{Name: name, Help: help},
				func() float64 { return float64(f(l.Stats())) }))
		}
		trapCounter("fenceline_agent_snmp_trap_received_total", "Notifications decoded by the trap listener.",
			func(s snmp.TrapStats) uint64 { return s.Received })
		trapCounter("fenceline_agent_snmp_trap_unmatched_total",
			"Notifications from no configured target, or with wrong credentials.",
			func(s snmp.TrapStats) uint64 { return s.Unmatched })
		trapCounter("fenceline_agent_snmp_trap_ignored_total",
			"Notifications of a target that do not announce a configuration change.",
			func(s snmp.TrapStats) uint64 { return s.Ignored })
	}
	return cs
}

func (s *SNMPDevices) deviceCollectors(d *snmpDevice) []prometheus.Collector {
	var cs []prometheus.Collector
	labels := prometheus.Labels{"tenant": d.rep.id.Tenant, "device": d.rep.id.Device,
		"target": d.target.Name}
	w := d.watcher
	counter := func(name, help string, f func(snmp.Stats) uint64) {
		cs = append(cs, prometheus.NewCounterFunc(prometheus.CounterOpts{
			Name: name, Help: help, ConstLabels: labels,
		}, func() float64 { return float64(f(w.Stats())) }))
	}
	counter("fenceline_agent_snmp_polls_total", "Cheap polls of the change scalars.",
		func(s snmp.Stats) uint64 { return s.Polls })
	counter("fenceline_agent_snmp_poll_errors_total", "Cheap polls that failed.",
		func(s snmp.Stats) uint64 { return s.PollErrors })
	counter("fenceline_agent_snmp_reads_total", "Walks of the configuration tables.",
		func(s snmp.Stats) uint64 { return s.Reads })
	counter("fenceline_agent_snmp_read_errors_total", "Walks that failed.",
		func(s snmp.Stats) uint64 { return s.ReadErrors })
	counter("fenceline_agent_snmp_traps_total", "Configuration-change traps routed to the target.",
		func(s snmp.Stats) uint64 { return s.Traps })
	counter("fenceline_agent_snmp_restarts_total", "Device restarts seen (engine boots, uptime).",
		func(s snmp.Stats) uint64 { return s.Restarts })
	counter("fenceline_agent_snmp_reports_total", "State events reported for the target.",
		func(s snmp.Stats) uint64 { return s.Reports })
	cs = append(cs, prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name: "fenceline_agent_snmp_unreachable", ConstLabels: labels,
		Help: "1 while the target does not answer (no events or heartbeats are sent).",
	}, func() float64 {
		if w.Stats().Unreachable {
			return 1
		}
		return 0
	}))
	return cs
}

// RegisterSNMP adds the SNMP targets' collectors to the agent's metrics registry; targets
// that start later register there too.
func (a *Agent) RegisterSNMP(s *SNMPDevices) error {
	if s == nil {
		return nil
	}
	if err := registerAll(a.metrics.reg, s.Collectors()); err != nil {
		return err
	}
	s.mu.Lock()
	s.reg = a.metrics.reg
	s.mu.Unlock()
	return nil
}

func registerAll(reg prometheus.Registerer, cs []prometheus.Collector) error {
	for _, c := range cs {
		if err := reg.Register(c); err != nil {
			return err
		}
	}
	return nil
}

func targetHost(address string) (netip.Addr, error) {
	host, _, err := net.SplitHostPort(address)
	if err != nil {
		host = address
	}
	if a, err := netip.ParseAddr(host); err == nil {
		return a.Unmap(), nil
	}
	// A DNS name: resolved here, and again by resolveLoop while the agent runs.
	addrs, err := net.LookupHost(host)
	if err != nil || len(addrs) == 0 {
		return netip.Addr{}, fmt.Errorf("address %q: %v", address, err)
	}
	a, err := netip.ParseAddr(addrs[0])
	if err != nil {
		return netip.Addr{}, err
	}
	return a.Unmap(), nil
}

// hostName is the DNS name in a target address, or "" for an IP address.
func hostName(address string) string {
	host, _, err := net.SplitHostPort(address)
	if err != nil {
		host = address
	}
	if _, err := netip.ParseAddr(host); err == nil {
		return ""
	}
	return host
}

// resolveLoop looks host up every interval until ctx ends and hands the first address
// to set; a failed lookup keeps the last address (and is logged).
func resolveLoop(ctx context.Context, every time.Duration, host string,
	lookup func(context.Context, string, string) ([]netip.Addr, error), set func(netip.Addr),
	log *slog.Logger) {
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		lctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		addrs, err := lookup(lctx, "ip", host)
		cancel()
		if err != nil || len(addrs) == 0 {
			if ctx.Err() == nil {
				log.Warn("snmp target's name not resolved; keeping its last address", "host", host,
					"err", err)
			}
			continue
		}
		set(addrs[0].Unmap())
	}
}

func firstNonEmpty(ss ...string) string {
	for _, s := range ss {
		if s != "" {
			return s
		}
	}
	return ""
}

// RunWithSNMP runs the agent and its SNMP targets until ctx ends; the SNMP targets'
// metrics are served with the agent's. It returns the first error of either.
func RunWithSNMP(ctx context.Context, a *Agent, s *SNMPDevices) error {
	if s == nil {
		return a.Run(ctx)
	}
	if err := a.RegisterSNMP(s); err != nil {
		return fmt.Errorf("snmp metrics: %w", err)
	}
	g, ctx := errgroup.WithContext(ctx)
	g.Go(func() error { return a.Run(ctx) })
	g.Go(func() error { return s.Run(ctx) })
	return g.Wait()
}
