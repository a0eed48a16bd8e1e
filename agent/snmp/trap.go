package snmp

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/gosnmp/gosnmp"
)

// TrapRoute says which notifications belong to a target: those from its host with its
// community (v1, v2c) or user (v3). Deliver gets the configuration-change ones; it must not
// block (Watcher.Trap does not).
type TrapRoute struct {
	Target    string
	Host      netip.Addr
	Community string
	User      string
	Profile   *Profile
	Deliver   func(TrapNote)
}

// TrapStats counts what the listener received.
type TrapStats struct {
	// Received counts decoded notifications; Delivered those routed to a target as a
	// configuration change; Unmatched those from no known target or with wrong
	// credentials; Ignored those of a target that do not announce a change.
	Received, Delivered, Unmatched, Ignored uint64
}

// TrapListener receives SNMPv1 traps, SNMPv2c and SNMPv3 traps and informs (informs are
// acknowledged) and hands configuration-change notifications to their targets' watchers.
// Garbage, notifications that fail v3 authentication and those from unknown peers are
// dropped and counted, never fatal.
type TrapListener struct {
	addr string
	// mu guards the routes' hosts (SetHost); the routes are otherwise fixed.
	mu     sync.RWMutex
	routes []TrapRoute
	log    *slog.Logger
	tl     *gosnmp.TrapListener
	ready  chan struct{}
	bound  atomic.Value // string

	received, delivered, unmatched, ignored atomic.Uint64
}

// NewTrapListener returns a listener for addr (host:port, UDP). users are the SNMPv3
// users whose notifications are accepted. Their v3 traps are authenticated with keys
// localized to each sender's engine id. v3 informs are sent to the receiver's engine:
// engineID (5 to 32 octets) is the listener's, which devices must be configured with;
// without one, v3 informs are not accepted (v3 traps and v2c traps and informs are).
func NewTrapListener(addr string, engineID []byte, users []USM, routes []TrapRoute,
	log *slog.Logger) (*TrapListener, error) {
	params := &gosnmp.GoSNMP{
		Version: gosnmp.Version3, SecurityModel: gosnmp.UserSecurityModel,
		Logger: gosnmp.NewLogger(nil),
	}
	table := gosnmp.NewSnmpV3SecurityParametersTable(gosnmp.NewLogger(nil))
	for _, u := range users {
		sp, _, err := u.usm()
		if err != nil {
			return nil, fmt.Errorf("trap user %q: %w", u.User, err)
		}
		if err := table.Add(u.User, sp); err != nil {
			return nil, fmt.Errorf("trap user %q: %w", u.User, err)
		}
	}
	if engineID != nil {
		if len(engineID) < 5 || len(engineID) > 32 {
			return nil, fmt.Errorf("trap engine id: %d octets, want 5 to 32", len(engineID))
		}
		// The listener answers an inform sender's engine discovery (an unauthenticated
		// probe from the empty user name) with this engine id; the probe is never
		// delivered as a notification.
		params.SecurityParameters = &gosnmp.UsmSecurityParameters{
			AuthoritativeEngineID: string(engineID)}
		if err := table.Add("", &gosnmp.UsmSecurityParameters{}); err != nil {
			return nil, fmt.Errorf("trap engine discovery: %w", err)
		}
	}
	params.SetTrapSecurityParametersTable(table)
	l := &TrapListener{addr: addr, routes: routes, log: log, ready: make(chan struct{})}
	tl := gosnmp.NewTrapListener().WithBufferSize(64 << 10)
	tl.Params = params
	tl.OnNewTrap = l.handle
	l.tl = tl
	return l, nil
}

// Run listens until ctx ends.
func (l *TrapListener) Run(ctx context.Context) error {
	errc := make(chan error, 1)
	go func() { errc <- l.tl.Listen(l.addr) }()
	select {
	case <-l.tl.Listening():
		l.bound.Store(l.addr)
		close(l.ready)
		l.log.Info("snmp trap listener", "addr", l.addr, "targets", len(l.routes))
	case err := <-errc:
		return fmt.Errorf("snmp trap listener %s: %w", l.addr, err)
	case <-ctx.Done():
	}
	<-ctx.Done()
	l.tl.Close()
	select {
	case err := <-errc:
		if err != nil && !errors.Is(err, net.ErrClosed) {
			return fmt.Errorf("snmp trap listener %s: %w", l.addr, err)
		}
	case <-time.After(5 * time.Second):
		return fmt.Errorf("snmp trap listener %s did not stop", l.addr)
	}
	return nil
}

// SetHost makes host the address the target's notifications come from (its DNS name
// resolved again). It reports whether that changed anything.
func (l *TrapListener) SetHost(target string, host netip.Addr) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	changed := false
	for i := range l.routes {
		if r := &l.routes[i]; r.Target == target && r.Host != host {
			r.Host, changed = host, true
		}
	}
	return changed
}

// Ready is closed once the listener's socket is bound.
func (l *TrapListener) Ready() <-chan struct{} { return l.ready }

// Stats returns the listener's counters.
func (l *TrapListener) Stats() TrapStats {
	return TrapStats{Received: l.received.Load(), Delivered: l.delivered.Load(),
		Unmatched: l.unmatched.Load(), Ignored: l.ignored.Load()}
}

// handle runs in gosnmp's read loop: it only matches and hands off.
func (l *TrapListener) handle(p *gosnmp.SnmpPacket, from *net.UDPAddr) {
	l.received.Add(1)
	host := netip.Addr{}
	if from != nil {
		if a, ok := netip.AddrFromSlice(from.IP); ok {
			host = a.Unmap()
		}
	}
	user := ""
	if usm, ok := p.SecurityParameters.(*gosnmp.UsmSecurityParameters); ok && p.Version == gosnmp.Version3 {
		user = usm.UserName
	}
	trapOID := ""
	if p.Version == gosnmp.Version1 {
		trapOID = v1TrapOID(p.SnmpTrap)
	}
	for _, v := range p.Variables {
		if strings.TrimPrefix(v.Name, ".") == OIDTrapOID {
			if s, ok := v.Value.(string); ok {
				trapOID = strings.TrimPrefix(s, ".")
			}
		}
	}
	matched := false
	l.mu.RLock()
	defer l.mu.RUnlock()
	for i := range l.routes {
		r := &l.routes[i]
		if r.Host != host {
			continue
		}
		switch p.Version {
		case gosnmp.Version1, gosnmp.Version2c:
			if r.Community == "" || p.Community != r.Community {
				continue
			}
		case gosnmp.Version3:
			if r.User == "" || user != r.User {
				continue
			}
		default:
			continue
		}
		matched = true
		note, ok := Notification(r.Profile, trapOID, p.Variables)
		if !ok {
			l.ignored.Add(1)
			l.log.Debug("snmp trap is not a configuration change", "target", r.Target, "trap", trapOID)
			continue
		}
		l.delivered.Add(1)
		r.Deliver(note)
	}
	if !matched {
		l.unmatched.Add(1)
		l.log.Debug("snmp trap from no known target", "from", host, "version", p.Version.String())
	}
}

// v1TrapOID is the notification OID of an SNMPv1 trap, as RFC 3584 (section 3.1) maps
// it: the standard traps coldStart … egpNeighborLoss (generic-trap 0-5) become
// snmpTraps.N+1; an enterprise-specific trap (generic-trap 6) is the enterprise OID, 0,
// and its specific-trap number.
func v1TrapOID(t gosnmp.SnmpTrap) string {
	if t.GenericTrap >= 0 && t.GenericTrap < 6 {
		return fmt.Sprintf("1.3.6.1.6.3.1.1.5.%d", t.GenericTrap+1)
	}
	return fmt.Sprintf("%s.0.%d", strings.Trim(t.Enterprise, "."), t.SpecificTrap)
}

// Notification reports whether trapOID is one of the profile's configuration-change
// notifications and, if so, who made the change according to the varbinds (each Ref
// matches a varbind of its object, whatever the instance).
func Notification(p *Profile, trapOID string, vbs []gosnmp.SnmpPDU) (TrapNote, bool) {
	for _, t := range p.Traps {
		if t.OID != trapOID {
			continue
		}
		c := t.Who.committer(func(r *Ref) (gosnmp.SnmpPDU, bool) {
			for _, v := range vbs {
				n := strings.TrimPrefix(v.Name, ".")
				if n == r.OID || strings.HasPrefix(n, r.OID+".") {
					return v, !absent(v.Type)
				}
			}
			return gosnmp.SnmpPDU{}, false
		})
		return TrapNote{Trap: t.Name, Committer: c, At: time.Now()}, true
	}
	return TrapNote{}, false
}
