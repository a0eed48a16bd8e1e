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
// agent.
type SNMPDevices struct {
	cfg     *Config
	log     *slog.Logger
	devices []*snmpDevice
	traps   *snmp.TrapListener
}

type snmpDevice struct {
	target  SNMPTarget
	rep     *deviceReporter
	client  *snmp.Client
	watcher *snmp.Watcher
	// watcherProfile is the resolved profile (its traps route notifications).
	watcherProfile *snmp.Profile
}

// OpenSNMP enrolls (when a target has a token and no enrollment yet) and opens every
// configured SNMP target. It returns nil without targets. Close releases what it opened.
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
	s := &SNMPDevices{cfg: cfg, log: log}
	var routes []snmp.TrapRoute
	var users []snmp.USM
	for _, t := range sc.Targets {
		d, err := s.open(ctx, t, profiles)
		if err != nil {
			s.Close()
			return nil, fmt.Errorf("snmp target %s: %w", t.Name, err)
		}
		s.devices = append(s.devices, d)
		host, err := targetHost(t.Address)
		if err != nil {
			s.Close()
			return nil, fmt.Errorf("snmp target %s: %w", t.Name, err)
		}
		route := snmp.TrapRoute{Target: t.Name, Host: host, Community: t.TrapCommunity,
			Profile: d.watcherProfile, Deliver: d.watcher.Trap}
		if t.Version == "3" {
			route.Community, route.User = "", t.V3.User
			users = append(users, t.usm())
		}
		routes = append(routes, route)
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

func (s *SNMPDevices) open(ctx context.Context, t SNMPTarget, profiles snmp.Profiles) (*snmpDevice, error) {
	profile, err := profiles.Resolve(t.Profile)
	if err != nil {
		return nil, fmt.Errorf("%w (known: %s; snmp.profiles_dir %q)", err,
			strings.Join(profiles.Names(), ", "), s.cfg.SNMP.ProfilesDir)
	}
	dir := filepath.Join(s.cfg.StateDir, "snmp", t.Name)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, err
	}
	id, err := identity.Load(dir)
	// TODO: a target enrolls only here, at start; when the aggregator cannot be reached
	// then, the agent does not start at all (its own ruleset unwatched too). Enrollment
	// should be retried in the background, the target idle until it succeeds.
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
	w := snmp.NewWatcher(t.Name, snmp.NewPoller(client, profile), rep, iv, rep.Last(), log)
	return &snmpDevice{target: t, rep: rep, client: client, watcher: w, watcherProfile: profile}, nil
}

// Run watches and delivers until ctx ends.
func (s *SNMPDevices) Run(ctx context.Context) error {
	if s == nil {
		return nil
	}
	g, ctx := errgroup.WithContext(ctx)
	for _, d := range s.devices {
		g.Go(func() error { return d.rep.Run(ctx) })
		g.Go(func() error { return d.watcher.Run(ctx) })
	}
	if s.traps != nil {
		g.Go(func() error { return s.traps.Run(ctx) })
	}
	s.log.Info("snmp targets started", "targets", len(s.devices), "trap_listen", s.cfg.SNMP.TrapListen)
	err := g.Wait()
	if errors.Is(err, context.Canceled) {
		return nil
	}
	return err
}

// Close releases every target's socket and outbox.
func (s *SNMPDevices) Close() error {
	if s == nil {
		return nil
	}
	var errs []error
	for _, d := range s.devices {
		d.client.Close()
		errs = append(errs, d.rep.Close())
	}
	return errors.Join(errs...)
}

// Collectors returns Prometheus collectors for every target: reachability, polls,
// reads, failures, traps and reports, labelled by tenant, device and target.
func (s *SNMPDevices) Collectors() []prometheus.Collector {
	if s == nil {
		return nil
	}
	var cs []prometheus.Collector
	for _, d := range s.devices {
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
	}
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

// RegisterSNMP adds the SNMP targets' collectors to the agent's metrics registry.
func (a *Agent) RegisterSNMP(s *SNMPDevices) error {
	for _, c := range s.Collectors() {
		if err := a.metrics.reg.Register(c); err != nil {
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
	// TODO: traps from a target named by a DNS name are matched against its address at
	// start; a target whose address changes needs a restart to receive traps.
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
