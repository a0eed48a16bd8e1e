package e2e

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/fenceline/fenceline/scripts/lab"
)

type snmpEvent struct {
	Seq      string `json:"seq"`
	Kind     string `json:"kind"`
	Source   string `json:"source"`
	Observed string `json:"observed"`
	Changes  []struct {
		Kind   string `json:"kind"`
		Table  string `json:"table"`
		Object string `json:"object"`
		After  string `json:"after"`
	} `json:"changes"`
}

type snmpDeviation struct {
	Kind   string `json:"kind"`
	Device string `json:"device"`
	Change string `json:"change"`
	Family string `json:"family"`
	Table  string `json:"table"`
	Object string `json:"object"`
	Before string `json:"before"`
	After  string `json:"after"`
	State  string `json:"state"`
}

// TestSNMPChangeIsUnauthorized: an agent watches its own ruleset and, as a device of its
// own, a firewall over SNMP (snmpsim serving a real device's recording). The firewall
// changes a configuration row and sends its configuration-change trap: the agent reads
// it at once (its timers are an hour), and the change becomes one signed snmp event and
// an unauthorized deviation at the aggregator naming the row. The firewall's profile is
// a site profile (profiles_dir) extending the built-in mib2 with its trap. A second
// target, on a built-in profile, never answers: it reports nothing and stops neither the
// agent nor the first target.
func TestSNMPChangeIsUnauthorized(t *testing.T) {
	const tenant, host, fw, dead = "acme", "appliance-1", "edge-fw-1", "dead-fw-1"
	l := newLab(t, "snmpsimd", "snmpgetnext", "snmptrap")
	recording := corpusFile(t, "snmp/snmpsim-debian/linux-full-walk.snmprec")
	sim, err := l.Snmpsim("snmpsim", map[string]string{"edge": recording})
	check(t, err)
	ns, err := l.Netns("fl-snmp")
	check(t, err)
	a, err := l.Aggregator("aggregator", "")
	check(t, err)

	var hostTok, fwTok, deadTok struct {
		Token string `json:"token"`
	}
	check(t, a.CtlJSON(tenant, &hostTok, "enroll", "--device", host))
	check(t, a.CtlJSON(tenant, &fwTok, "enroll", "--device", fw))
	check(t, a.CtlJSON(tenant, &deadTok, "enroll", "--device", dead))
	// Nothing listens there: requests are refused or time out.
	deadPort, err := lab.FreeUDPPort()
	check(t, err)
	trapPort, err := lab.FreeUDPPort()
	check(t, err)
	trapAddr := fmt.Sprintf("127.0.0.1:%d", trapPort)
	// The site knows its firewall's configuration-change notification (an experimental
	// OID here); the rest of the profile is the built-in mib2.
	site := t.TempDir()
	check(t, os.WriteFile(filepath.Join(site, "edge.yaml"), []byte(`name: edge
extends: [mib2]
traps:
  - {name: edgeConfigChanged, oid: 1.3.6.1.4.1.8072.9999.9999.0.1}
`), 0o600))
	base, err := os.ReadFile(filepath.Join(repoRoot, "configs", "agent.yaml"))
	check(t, err)
	conf := filepath.Join(t.TempDir(), "agent.yaml")
	check(t, os.WriteFile(conf, append(base, []byte(fmt.Sprintf(`
snmp:
  profiles_dir: %s
  trap_listen: %s
  targets:
    - name: %s
      enroll_token: %s
      address: 127.0.0.1:%d
      community: public
      profile: cisco-asa
      poll_interval: 200ms
      timeout: 200ms
    - name: %s
      enroll_token: %s
      address: %s
      version: "2c"
      community: edge
      profile: edge
      poll_interval: 1h
      walk_interval: 1h
      timeout: 500ms
      retries: 1
`, site, trapAddr, dead, deadTok.Token, deadPort, fw, fwTok.Token,
		sim.Addr))...), 0o600))
	agentProc, err := l.Start("agent", nil, filepath.Join(binDir, "fenceline-agent"), "run",
		"--config", conf, "--state-dir", filepath.Join(l.Dir, "agent"), "--aggregator", a.API,
		"--token", hostTok.Token, "--netns", ns, "--log-level", "debug")
	check(t, err)

	var h []snmpEvent
	waitFor(t, 30*time.Second, "the firewall's snmp baseline", func() (bool, string) {
		if err := a.CtlJSON(tenant, &h, "device", "history", fw); err != nil {
			return false, err.Error()
		}
		return len(h) > 0 && h[0].Kind == "baseline", fmt.Sprintf("%d events", len(h))
	})
	if h[0].Source != "snmp" {
		t.Fatalf("baseline source %q, want snmp", h[0].Source)
	}

	// An administrator shuts interface 2 down on the firewall.
	edited := filepath.Join(t.TempDir(), "edge.snmprec")
	b, err := os.ReadFile(recording)
	check(t, err)
	check(t, os.WriteFile(edited, []byte(strings.Replace(string(b),
		"1.3.6.1.2.1.2.2.1.7.2|2|1\n", "1.3.6.1.2.1.2.2.1.7.2|2|2\n", 1)), 0o644))
	check(t, sim.Update("edge", edited))
	sent := time.Now()
	check(t, lab.SnmpTrap("-v", "2c", "-c", "edge", trapAddr, "", "1.3.6.1.4.1.8072.9999.9999.0.1"))

	var devs []snmpDeviation
	waitFor(t, 30*time.Second, "an unauthorized deviation on the firewall", func() (bool, string) {
		if err := a.CtlJSON(tenant, &devs, "deviations", "--device", fw); err != nil {
			return false, err.Error()
		}
		return len(devs) > 0, fmt.Sprintf("%d deviations", len(devs))
	})
	d := devs[0]
	if len(devs) != 1 || d.Kind != "unauthorized" || d.Change != "object_changed" ||
		d.Family != "snmp" || d.Table != "ifTable" || d.Object != "ifEntry 2" ||
		!strings.Contains(d.Before, "ifAdminStatus = up(1)") ||
		!strings.Contains(d.After, "ifAdminStatus = down(2)") || d.State != "open" {
		t.Fatalf("deviations = %+v, want one unauthorized object_changed of ifEntry 2", devs)
	}
	check(t, a.CtlJSON(tenant, &h, "device", "history", fw))
	var changes []snmpEvent
	for _, e := range h {
		if e.Kind != "baseline" && e.Kind != "heartbeat" {
			changes = append(changes, e)
		}
	}
	if len(changes) != 1 || changes[0].Kind != "change" || changes[0].Source != "snmp" ||
		len(changes[0].Changes) != 1 || changes[0].Changes[0].Object != "ifEntry 2" {
		t.Fatalf("change events = %+v, want one snmp event with one change", changes)
	}
	// Only the trap reads the firewall (its timers are an hour): the event's observed
	// time says how soon after the trap was sent the state was read.
	observed, err := time.Parse(time.RFC3339Nano, changes[0].Observed)
	check(t, err)
	t.Logf("trap sent to change observed: %s", observed.Sub(sent))
	if lat := observed.Sub(sent); lat < 0 || lat > time.Second {
		t.Errorf("change observed %s after the trap was sent, want within a second", lat)
	}
	// The target that never answered reported nothing, and the agent runs on.
	var dh []snmpEvent
	check(t, a.CtlJSON(tenant, &dh, "device", "history", dead))
	if len(dh) != 0 || agentProc.Exited() {
		t.Errorf("dead target: %d events; agent exited: %v", len(dh), agentProc.Exited())
	}
	// The host's own nftables device is untouched by any of this.
	if hd := deviations(t, a, tenant, host); len(hd) != 0 {
		t.Errorf("the appliance's own device has deviations: %+v", hd)
	}
}

// TestSNMPTargetStartsWhenAggregatorReturns: an SNMP target that has never enrolled, on
// an agent started while the aggregator is down, does not keep the agent from running:
// the target waits (its metrics say so) and enrolls, reads and reports as soon as the
// aggregator is back.
func TestSNMPTargetStartsWhenAggregatorReturns(t *testing.T) {
	const tenant, host, fw = "acme", "appliance-2", "edge-fw-2"
	l := newLab(t, "snmpsimd", "snmpgetnext")
	sim, err := l.Snmpsim("snmpsim", map[string]string{
		"edge": corpusFile(t, "snmp/snmpsim-debian/linux-full-walk.snmprec")})
	check(t, err)
	ns, err := l.Netns("fl-snmpw")
	check(t, err)
	a, err := l.Aggregator("aggregator", "")
	check(t, err)
	var hostTok, fwTok struct {
		Token string `json:"token"`
	}
	check(t, a.CtlJSON(tenant, &hostTok, "enroll", "--device", host))
	check(t, a.CtlJSON(tenant, &fwTok, "enroll", "--device", fw))
	// The appliance itself was enrolled earlier; the firewall target is new.
	stateDir := filepath.Join(l.Dir, "agent")
	out, err := exec.Command(filepath.Join(binDir, "fenceline-agent"), "enroll",
		"--aggregator", a.API, "--token", hostTok.Token, "--state-dir", stateDir).CombinedOutput()
	if err != nil {
		t.Fatalf("enroll: %v\n%s", err, out)
	}
	a.Stop()

	base, err := os.ReadFile(filepath.Join(repoRoot, "configs", "agent.yaml"))
	check(t, err)
	conf := filepath.Join(t.TempDir(), "agent.yaml")
	check(t, os.WriteFile(conf, append(base, []byte(fmt.Sprintf(`
snmp:
  targets:
    - name: %s
      enroll_token: %s
      address: %s
      community: edge
      profile: mib2
      poll_interval: 200ms
      timeout: 500ms
`, fw, fwTok.Token, sim.Addr))...), 0o600))
	metricsPort, err := lab.FreePort()
	check(t, err)
	metrics := fmt.Sprintf("127.0.0.1:%d", metricsPort)
	agentProc, err := l.Start("agent", nil, filepath.Join(binDir, "fenceline-agent"), "run",
		"--config", conf, "--state-dir", stateDir, "--aggregator", a.API, "--netns", ns,
		"--metrics", metrics, "--log-level", "debug")
	check(t, err)
	waitFor(t, 30*time.Second, "the firewall target waiting", func() (bool, string) {
		if agentProc.Exited() {
			t.Fatalf("the agent exited while the aggregator was down:\n%s", agentProc.Tail(20))
		}
		v := scrapeMetric(metrics, "fenceline_agent_snmp_waiting_targets")
		return v == 1, fmt.Sprintf("waiting targets %v", v)
	})

	check(t, a.Restart())
	check(t, a.WaitHealthy(30*time.Second))
	var h []snmpEvent
	waitFor(t, 60*time.Second, "the firewall's snmp baseline", func() (bool, string) {
		if err := a.CtlJSON(tenant, &h, "device", "history", fw); err != nil {
			return false, err.Error()
		}
		return len(h) > 0 && h[0].Kind == "baseline", fmt.Sprintf("%d events", len(h))
	})
	if h[0].Source != "snmp" {
		t.Fatalf("baseline source %q, want snmp", h[0].Source)
	}
	if v := scrapeMetric(metrics, "fenceline_agent_snmp_waiting_targets"); v != 0 {
		t.Errorf("waiting targets %v after the target started, want 0", v)
	}
	if v := scrapeMetric(metrics, "fenceline_agent_snmp_reports_total"); v < 1 {
		t.Errorf("the started target's reports metric is %v, want at least its baseline", v)
	}
	var hh []snmpEvent
	check(t, a.CtlJSON(tenant, &hh, "device", "history", host))
	if len(hh) == 0 || hh[0].Kind != "baseline" {
		t.Errorf("the appliance's own history: %+v, want its baseline", hh)
	}
}
