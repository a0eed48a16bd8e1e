package snmp

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/fenceline/fenceline/scripts/lab"
	"github.com/fenceline/fenceline/shared/event"
	"github.com/fenceline/fenceline/shared/ruleset"
)

// runWatcher starts a watcher for target with profile and stops it when the test ends.
func runWatcher(t *testing.T, target Target, p *Profile, iv Intervals) (*Watcher, *memSink) {
	t.Helper()
	c, err := Dial(target)
	if err != nil {
		t.Fatal(err)
	}
	sink := &memSink{}
	w := NewWatcher("dev", NewPoller(c, p), sink, iv, nil, testLog(t))
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		w.Run(ctx)
	}()
	t.Cleanup(func() {
		cancel()
		wg.Wait()
		c.Close()
	})
	return w, sink
}

func waitReports(t *testing.T, sink *memSink, n int, timeout time.Duration) []report {
	t.Helper()
	var got []report
	waitFor(t, timeout, fmt.Sprintf("%d reports", n), func() (bool, string) {
		got, _ = sink.get()
		return len(got) >= n, fmt.Sprintf("%d reports", len(got))
	})
	return got
}

// snmpsim serving a real Linux host's walk, the recording replaced while snmpsim keeps
// answering (a device whose configuration changes): a copy whose one configuration row
// changed gives exactly one change event naming exactly that row; a copy where only
// counters and uptime moved gives nothing.
func TestSnmpsimRowChange(t *testing.T) {
	l := newLab(t, "snmpsimd", "snmpgetnext")
	src := corpus(t, "snmpsim-debian/linux-full-walk.snmprec")
	sim, err := l.Snmpsim("snmpsim", map[string]string{"linux": src})
	if err != nil {
		t.Fatal(err)
	}
	p := resolve(t, "mib2")
	iv := Intervals{Poll: 100 * time.Millisecond, Walk: 300 * time.Millisecond, Heartbeat: time.Hour}
	w, sink := runWatcher(t, Target{Address: sim.Addr, Version: "2c", Community: "linux",
		Timeout: time.Second, Retries: 1}, p, iv)
	got := waitReports(t, sink, 1, 20*time.Second)
	if got[0].kind != event.Baseline {
		t.Fatalf("first report %s, want baseline", got[0].kind)
	}
	base := got[0].rs
	// settle waits for two more reads than now: the second starts after this call, so
	// it reads whatever the recording is at the call.
	settle := func(what string) {
		t.Helper()
		reads := w.Stats().Reads
		waitFor(t, 20*time.Second, what, func() (bool, string) {
			s := w.Stats()
			return s.Reads >= reads+2, fmt.Sprintf("%+v", s)
		})
	}

	counters := editSnmprec(t, src, t.TempDir(), map[string]string{
		"1.3.6.1.2.1.1.3.0":        "67|233999999",
		"1.3.6.1.2.1.2.2.1.10.2":   "65|2692999999",
		"1.3.6.1.2.1.2.2.1.16.2":   "65|1",
		"1.3.6.1.2.1.2.2.1.8.2":    "2|2",
		"1.3.6.1.2.1.31.1.1.1.6.2": "70|98765432109",
	})
	if err := sim.Update("linux", counters); err != nil {
		t.Fatal(err)
	}
	settle("two reads of the counters-only recording")
	if got, _ := sink.get(); len(got) != 1 {
		t.Fatalf("counters and uptime produced reports: %+v", got[1:])
	}

	// The administrator shuts interface 2 down; uptime goes on (going back would be a
	// restart, and the event a reconcile).
	changed := editSnmprec(t, counters, t.TempDir(), map[string]string{
		"1.3.6.1.2.1.1.3.0": "67|234000999", "1.3.6.1.2.1.2.2.1.7.2": "2|2"})
	if err := sim.Update("linux", changed); err != nil {
		t.Fatal(err)
	}
	got = waitReports(t, sink, 2, 20*time.Second)
	settle("two more reads of the changed recording")
	if got, _ := sink.get(); len(got) != 2 {
		t.Fatalf("%d reports, want baseline and one change: %+v", len(got), got)
	}
	if s := w.Stats(); s.PollErrors+s.ReadErrors != 0 {
		t.Errorf("the target failed while its recording was replaced: %+v", s)
	}
	d := ruleset.Diff(base, got[1].rs)
	if got[1].kind != event.Change || got[1].note != "" {
		t.Errorf("kind %s note %q, want a change", got[1].kind, got[1].note)
	}
	if len(d) != 1 || d[0].Kind != ruleset.ObjectChanged || d[0].Table != "ifTable" ||
		d[0].Object != "ifEntry 2" || !strings.Contains(d[0].Before, "ifAdminStatus = up(1)") ||
		!strings.Contains(d[0].After, "ifAdminStatus = down(2)") {
		t.Fatalf("diff = %+v, want exactly ifEntry 2 going down", d)
	}
}

// A wrong community is a timeout (the agent stays silent): a clear per-target error.
func TestSnmpsimWrongCommunity(t *testing.T) {
	l := newLab(t, "snmpsimd", "snmpgetnext")
	sim, err := l.Snmpsim("snmpsim", map[string]string{
		"dev": corpus(t, "config-change-focus/snmpsim-data__switch__cisco-c3560.snmprec")})
	if err != nil {
		t.Fatal(err)
	}
	c, err := Dial(Target{Address: sim.Addr, Version: "2c", Community: "wrong",
		Timeout: 200 * time.Millisecond, Retries: 1})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	_, err = NewPoller(c, resolve(t, "cisco-ios")).Poll(context.Background())
	if !errors.Is(err, ErrTimeout) {
		t.Fatalf("err = %v, want ErrTimeout", err)
	}
}

const (
	v3User = "fenceline"
	v3Auth = "auth-pass-1234"
	v3Priv = "priv-pass-5678"
	// passBase is where the test's pass script answers (NET-SNMP-EXAMPLES space).
	passBase = "1.3.6.1.4.1.8072.9999.9999.1"
)

// net-snmp snmpd with an SNMPv3 authPriv (SHA-256, AES) user and a `pass` script whose
// value the test changes: a change event; the script's own counter moving is not one.
func TestSnmpdV3PassScript(t *testing.T) {
	l := newLab(t, "snmpget")
	if _, err := os.Stat("/usr/sbin/snmpd"); err != nil {
		t.Skip("needs snmpd (scripts/deps.sh)")
	}
	dir := t.TempDir()
	valueFile := filepath.Join(dir, "value")
	if err := os.WriteFile(valueFile, []byte("permit 10.0.0.0/8"), 0o644); err != nil {
		t.Fatal(err)
	}
	script := filepath.Join(dir, "pass.sh")
	if err := os.WriteFile(script, []byte(passScript(valueFile)), 0o755); err != nil {
		t.Fatal(err)
	}
	conf := fmt.Sprintf("createUser %s SHA-256 %q AES %q\nrouser %s priv\n"+
		"pass .1.3.6.1.4.1.8072.9999.9999 /bin/sh %s\n", v3User, v3Auth, v3Priv, v3User, script)
	check := []string{"-v3", "-l", "authPriv", "-u", v3User, "-a", "SHA-256", "-A", v3Auth,
		"-x", "AES", "-X", v3Priv}
	d, err := l.Snmpd("snmpd", conf, check...)
	if err != nil {
		t.Fatal(err)
	}
	dirProfiles := t.TempDir()
	if err := os.WriteFile(filepath.Join(dirProfiles, "pass.yaml"), []byte(`
name: pass
tables:
  - name: acl
    kind: table
    entry: aclEntry
    oid: `+passBase+`
    columns:
      - {id: 2, name: aclRule}
`), 0o600); err != nil {
		t.Fatal(err)
	}
	ps, err := LoadProfiles(dirProfiles)
	if err != nil {
		t.Fatal(err)
	}
	p, err := ps.Resolve("pass")
	if err != nil {
		t.Fatal(err)
	}
	target := Target{Address: d.Addr, Version: "3", Timeout: time.Second, Retries: 1,
		V3: USM{User: v3User, AuthProtocol: "SHA256", AuthPassphrase: v3Auth, PrivProtocol: "AES",
			PrivPassphrase: v3Priv}}
	iv := Intervals{Poll: 100 * time.Millisecond, Walk: 200 * time.Millisecond, Heartbeat: time.Hour}
	w, sink := runWatcher(t, target, p, iv)
	got := waitReports(t, sink, 1, 20*time.Second)
	if text := got[0].rs.Text(); !strings.Contains(text, `aclRule = "permit 10.0.0.0/8"`) ||
		strings.Contains(text, "col3") {
		t.Fatalf("baseline:\n%s", text)
	}
	// Several backstop reads while the script's counter moves: no report.
	reads := w.Stats().Reads
	waitFor(t, 10*time.Second, "three more reads", func() (bool, string) {
		return w.Stats().Reads >= reads+3, fmt.Sprintf("%+v", w.Stats())
	})
	if got, _ := sink.get(); len(got) != 1 {
		t.Fatalf("the counter produced reports: %+v", got[1:])
	}
	if err := os.WriteFile(valueFile, []byte("permit any"), 0o644); err != nil {
		t.Fatal(err)
	}
	got = waitReports(t, sink, 2, 20*time.Second)
	diff := ruleset.Diff(got[0].rs, got[1].rs)
	if got[1].kind != event.Change || len(diff) != 1 || diff[0].Object != "aclEntry 1" ||
		!strings.Contains(diff[0].After, `aclRule = "permit any"`) {
		t.Fatalf("report %s, diff %+v", got[1].kind, diff)
	}

	// The device restarts (snmpEngineBoots goes up, its engine time starts again) and
	// its configuration changed while it was down: the target is unreachable meanwhile,
	// then the v3 session resynchronizes with the new engine boots and time, and the
	// state comes as one reconcile saying the device restarted.
	d.Stop()
	waitFor(t, 10*time.Second, "unreachable while snmpd is down", func() (bool, string) {
		return w.Stats().Unreachable, w.Stats().LastError
	})
	if err := os.WriteFile(valueFile, []byte("deny any"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := d.Restart(); err != nil {
		t.Fatal(err)
	}
	got = waitReports(t, sink, 3, 20*time.Second)
	diff = ruleset.Diff(got[1].rs, got[2].rs)
	if got[2].kind != event.Reconcile || !strings.Contains(got[2].note, "snmpEngineBoots went from") ||
		len(diff) != 1 || !strings.Contains(diff[0].After, `aclRule = "deny any"`) {
		t.Fatalf("after the restart: %s %q, diff %+v", got[2].kind, got[2].note, diff)
	}
	if s := w.Stats(); s.Restarts != 1 || s.Unreachable {
		t.Errorf("stats after the restart: %+v", s)
	}

	// The device is replaced (or reset): a new engine id, snmpEngineBoots back to 1. The
	// session discovers the new engine; the configuration it brought is a reconcile.
	d.Stop()
	persist := filepath.Join(l.Dir, "snmpd", "persist")
	if err := os.RemoveAll(persist); err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(persist, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(valueFile, []byte("permit 192.0.2.0/24"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := d.Restart(); err != nil {
		t.Fatal(err)
	}
	got = waitReports(t, sink, 4, 20*time.Second)
	if got[3].kind != event.Reconcile || !strings.Contains(got[3].note, "snmpEngineBoots went from 2 to 1") ||
		!strings.Contains(got[3].rs.Text(), `aclRule = "permit 192.0.2.0/24"`) {
		t.Fatalf("after a new engine: %s %q\n%s", got[3].kind, got[3].note, got[3].rs.Text())
	}

	// Wrong auth passphrase: refused, a clear error, not a crash.
	bad := target
	bad.V3.AuthPassphrase = "not-the-password"
	c, err := Dial(bad)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if _, err := c.Get(context.Background(), []string{OIDSysUpTime}); !errors.Is(err, ErrAuth) {
		t.Fatalf("wrong auth passphrase: err = %v", err)
	}
}

// passScript answers GET and GETNEXT for passBase.2.1 (the value in file) and
// passBase.3.1 (a counter that moves on every request).
func passScript(file string) string {
	return `B=.` + passBase + `
emit() { case "$1" in
  $B.2.1) printf '%s\nstring\n%s\n' "$1" "$(cat ` + file + `)";;
  $B.3.1) printf '%s\ncounter\n%s\n' "$1" "$(( $(date +%s%N) % 4000000000 ))";;
esac; }
case "$1" in
-g) emit "$2";;
-n) case "$2" in
  .1.3.6.1.4.1.8072.9999.9999|$B|$B.1|$B.1.*|$B.2) emit $B.2.1;;
  $B.2.1|$B.2.*|$B.3) emit $B.3.1;;
esac;;
esac
`
}

// snmptrap sending Cisco's ccmCLIRunningConfigChanged (v2c) and Juniper's jnxCmCfgChange
// (v3): the device is read within a second, and the trap's user names the committer.
func TestTrapTriggersImmediateRead(t *testing.T) {
	l := newLab(t, "snmpsimd", "snmpgetnext", "snmptrap")
	src := corpus(t, "config-change-focus/snmpsim-debian__cisco_16_switch.snmprec")
	sim, err := l.Snmpsim("snmpsim", map[string]string{"dev": src})
	if err != nil {
		t.Fatal(err)
	}
	p := resolve(t, "cisco-ios")
	// Slow timers: only the start and the trap read the device.
	iv := Intervals{Poll: time.Hour, Walk: time.Hour, Heartbeat: time.Hour}
	w, sink := runWatcher(t, Target{Address: sim.Addr, Version: "2c", Community: "dev",
		Timeout: 500 * time.Millisecond, Retries: 1}, p, iv)
	waitReports(t, sink, 1, 20*time.Second)

	port, err := lab.FreeUDPPort()
	if err != nil {
		t.Fatal(err)
	}
	addr := fmt.Sprintf("127.0.0.1:%d", port)
	jp := resolve(t, "juniper")
	jw := &recorder{}
	tl, err := NewTrapListener(addr, listenerEngine, []USM{{User: v3User, AuthProtocol: "SHA256",
		AuthPassphrase: v3Auth, PrivProtocol: "AES", PrivPassphrase: v3Priv}},
		[]TrapRoute{
			{Target: "cisco", Host: mustAddr("127.0.0.1"), Community: "dev", Profile: p, Deliver: w.Trap},
			{Target: "juniper", Host: mustAddr("127.0.0.1"), User: v3User, Profile: jp, Deliver: jw.deliver},
		}, testLog(t))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- tl.Run(ctx) }()
	t.Cleanup(func() { cancel(); <-done })
	<-tl.Ready()

	// The running configuration changed (the recording now says so), then the trap.
	changed := editSnmprec(t, src, t.TempDir(), map[string]string{
		"1.3.6.1.4.1.9.9.43.1.1.1.0": "67|464999999"})
	if err := sim.Replace("dev", changed); err != nil {
		t.Fatal(err)
	}
	reads := w.Stats().Reads
	if err := lab.SnmpTrap("-v", "2c", "-c", "dev", addr, "", "1.3.6.1.4.1.9.9.43.2.0.2",
		"1.3.6.1.4.1.9.9.43.1.1.1.0", "t", "464999999",
		"1.3.6.1.4.1.9.9.43.1.1.6.1.8.191", "s", "alice"); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 5*time.Second, "read after the trap", func() (bool, string) {
		return w.Stats().Reads > reads, fmt.Sprintf("%+v", w.Stats())
	})
	// The timers are an hour: the trap caused the read. Its timestamps say how soon.
	s := w.Stats()
	lat := s.LastReadStart.Sub(s.LastTrap)
	t.Logf("trap received to read started: %s", lat)
	if s.LastReadWhy != "trap ccmCLIRunningConfigChanged" || s.LastTrap.IsZero() || lat < 0 ||
		lat > time.Second {
		t.Errorf("read %q started %s after the trap was received, want the trap's read within a second",
			s.LastReadWhy, lat)
	}
	got := waitReports(t, sink, 2, 5*time.Second)
	d := ruleset.Diff(got[0].rs, got[1].rs)
	if len(d) != 1 || d[0].Object != "indicator ccmHistoryRunningLastChanged" || d[0].After != "464999999" {
		t.Errorf("diff = %+v", d)
	}
	if c := got[1].committer; c == nil || c.LoginUID != "alice" {
		t.Errorf("committer = %+v, want alice from the trap", c)
	}

	// The same notification as an SNMPv1 trap (enterprise-specific 2 of the
	// ciscoConfigManMIB notifications), as older IOS and ASA configurations send it.
	reads = w.Stats().Reads
	if err := lab.SnmpTrap("-v", "1", "-c", "dev", addr, "1.3.6.1.4.1.9.9.43.2", "", "6", "2", "",
		"1.3.6.1.4.1.9.9.43.1.1.6.1.8.193", "s", "frank"); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 5*time.Second, "read after the v1 trap", func() (bool, string) {
		return w.Stats().Reads > reads, fmt.Sprintf("%+v", w.Stats())
	})
	if s := w.Stats(); s.LastReadWhy != "trap ccmCLIRunningConfigChanged" {
		t.Errorf("read after the v1 trap: %q", s.LastReadWhy)
	}
	// A v1 trap with another community is not the target's.
	unmatched := tl.Stats().Unmatched
	if err := lab.SnmpTrap("-v", "1", "-c", "other", addr, "1.3.6.1.4.1.9.9.43.2", "", "6", "2",
		""); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 5*time.Second, "v1 trap with a wrong community unmatched", func() (bool, string) {
		return tl.Stats().Unmatched > unmatched, fmt.Sprintf("%+v", tl.Stats())
	})

	// A v3 authPriv trap from the Juniper target's user.
	if err := lab.SnmpTrap("-v", "3", "-l", "authPriv", "-u", v3User, "-a", "SHA-256", "-A", v3Auth,
		"-x", "AES", "-X", v3Priv, "-e", "0x8000000001020304", addr, "",
		"1.3.6.1.4.1.2636.4.5.0.1", "1.3.6.1.4.1.2636.3.18.1.7.1.5.80", "s", "bob",
		"1.3.6.1.4.1.2636.3.18.1.7.1.4.80", "i", "3"); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 5*time.Second, "v3 trap delivered", func() (bool, string) {
		n := jw.get()
		return len(n) == 1, fmt.Sprintf("%d notes, listener %+v", len(n), tl.Stats())
	})
	if n := jw.get()[0]; n.Trap != "jnxCmCfgChange" || n.Committer == nil ||
		n.Committer.LoginUID != "bob" || n.Committer.Comm != "junoscript" {
		t.Errorf("v3 note %+v %+v", n, n.Committer)
	}
	// A trap with a wrong v3 passphrase is dropped: the good one sent after it is the
	// only one delivered.
	if err := lab.SnmpTrap("-v", "3", "-l", "authPriv", "-u", v3User, "-a", "SHA-256", "-A",
		"wrong-pass-000", "-x", "AES", "-X", v3Priv, "-e", "0x8000000001020304", addr, "",
		"1.3.6.1.4.1.2636.4.5.0.1", "1.3.6.1.4.1.2636.3.18.1.7.1.5.81", "s", "mallory"); err != nil {
		t.Fatal(err)
	}
	if err := lab.SnmpTrap("-v", "3", "-l", "authPriv", "-u", v3User, "-a", "SHA-256", "-A", v3Auth,
		"-x", "AES", "-X", v3Priv, "-e", "0x8000000001020304", addr, "",
		"1.3.6.1.4.1.2636.4.5.0.1", "1.3.6.1.4.1.2636.3.18.1.7.1.5.82", "s", "carol"); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 5*time.Second, "second v3 trap delivered", func() (bool, string) {
		n := jw.get()
		return len(n) >= 2, fmt.Sprintf("%d notes, listener %+v", len(n), tl.Stats())
	})
	if n := jw.get(); len(n) != 2 || n[1].Committer == nil || n[1].Committer.LoginUID != "carol" {
		t.Errorf("notes after a forged trap: %+v", n)
	}

	// Informs, v2c and v3: snmptrap -Ci fails unless the listener acknowledges. The v3
	// sender first discovers the listener's engine id, as a device does.
	traps := tl.Stats().Delivered
	if err := lab.SnmpTrap("-Ci", "-t", "1", "-r", "1", "-v", "2c", "-c", "dev", addr, "",
		"1.3.6.1.4.1.9.9.43.2.0.2", "1.3.6.1.4.1.9.9.43.1.1.6.1.8.192", "s", "dave"); err != nil {
		t.Fatal(err)
	}
	if err := lab.SnmpTrap("-Ci", "-t", "1", "-r", "1", "-v", "3", "-l", "authPriv", "-u", v3User,
		"-a", "SHA-256", "-A", v3Auth, "-x", "AES", "-X", v3Priv, addr, "",
		"1.3.6.1.4.1.2636.4.5.0.1", "1.3.6.1.4.1.2636.3.18.1.7.1.5.83", "s", "erin"); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 5*time.Second, "informs delivered", func() (bool, string) {
		return tl.Stats().Delivered >= traps+2 && len(jw.get()) == 3, fmt.Sprintf("%+v", tl.Stats())
	})
	if n := jw.get(); n[2].Committer == nil || n[2].Committer.LoginUID != "erin" {
		t.Errorf("v3 inform: %+v", n[2])
	}
}

// listenerEngine is the trap listener's SNMPv3 engine id in the tests (enterprise 8072
// net-snmp's number, text format).
var listenerEngine = append([]byte{0x80, 0x00, 0x1f, 0x88, 0x04}, "fenceline-test"...)

func mustAddr(s string) netip.Addr { return netip.MustParseAddr(s) }

type recorder struct {
	mu    sync.Mutex
	notes []TrapNote
}

func (r *recorder) deliver(n TrapNote) {
	r.mu.Lock()
	r.notes = append(r.notes, n)
	r.mu.Unlock()
}

func (r *recorder) get() []TrapNote {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]TrapNote(nil), r.notes...)
}

// A Cisco switch's history table logs a nightly backup (running configuration copied to
// a TFTP server): a new history row, not a change; no event. Then an administrator
// changes the running configuration from the CLI: one change of
// ccmHistoryRunningLastChanged, and the newest history row that wrote the running
// configuration names who did it, though a backup row follows it.
func TestSnmpsimCiscoBackupIsNotAChange(t *testing.T) {
	l := newLab(t, "snmpsimd", "snmpgetnext")
	src := corpus(t, "config-change-focus/snmpsim-data__switch__cisco-c3560.snmprec")
	sim, err := l.Snmpsim("snmpsim", map[string]string{"sw": src})
	if err != nil {
		t.Fatal(err)
	}
	iv := Intervals{Poll: 100 * time.Millisecond, Walk: 300 * time.Millisecond, Heartbeat: time.Hour}
	w, sink := runWatcher(t, Target{Address: sim.Addr, Version: "2c", Community: "sw",
		Timeout: time.Second, Retries: 1}, resolve(t, "cisco-ios"), iv)
	waitReports(t, sink, 1, 20*time.Second)

	const h = "1.3.6.1.4.1.9.9.43.1.1.6.1."
	row := func(idx int, at uint32, cmdSource, from, to int, user string) map[string]string {
		i := "." + itoa(idx)
		return map[string]string{
			h + "2" + i: fmt.Sprintf("67|%d", at), h + "3" + i: "2|" + itoa(cmdSource),
			h + "4" + i: "2|" + itoa(from), h + "5" + i: "2|" + itoa(to), h + "8" + i: "4|" + user,
			h + "10" + i: "64x|0a03090a",
		}
	}
	// The backup: running(3) to networkTftp(6), by the switch's own scheduler (snmp(2)).
	backup := row(60, 492446900, 2, 3, 6, "")
	backup["1.3.6.1.2.1.1.3.0"] = "67|492446999"
	backup["1.3.6.1.4.1.9.9.43.1.1.2.0"] = "67|492446900" // RunningLastSaved
	backup["1.3.6.1.4.1.9.9.43.1.1.5.0"] = "65|50"        // EventEntriesBumped
	afterBackup := editSnmprec(t, src, t.TempDir(), backup)
	if err := sim.Update("sw", afterBackup); err != nil {
		t.Fatal(err)
	}
	reads := w.Stats().Reads
	waitFor(t, 20*time.Second, "two reads after the backup", func() (bool, string) {
		return w.Stats().Reads >= reads+2, fmt.Sprintf("%+v", w.Stats())
	})
	if got, _ := sink.get(); len(got) != 1 {
		t.Fatalf("a backup produced reports: %+v", got[1:])
	}

	// alice changes the running configuration from the CLI (commandLine(1), from
	// commandSource(1) to running(3)); another backup is logged after it.
	change := row(61, 492450000, 1, 1, 3, "alice")
	for k, v := range row(62, 492450100, 2, 3, 6, "") {
		change[k] = v
	}
	change["1.3.6.1.2.1.1.3.0"] = "67|492450999"
	change["1.3.6.1.4.1.9.9.43.1.1.1.0"] = "67|492450000" // RunningLastChanged
	change["1.3.6.1.4.1.9.9.43.1.4.1.0"] = "70|329"       // ccmCTID
	if err := sim.Update("sw", editSnmprec(t, afterBackup, t.TempDir(), change)); err != nil {
		t.Fatal(err)
	}
	got := waitReports(t, sink, 2, 20*time.Second)
	d := ruleset.Diff(got[0].rs, got[1].rs)
	if got[1].kind != event.Change || len(d) != 1 ||
		d[0].Object != "indicator ccmHistoryRunningLastChanged" || d[0].After != "492450000" {
		t.Fatalf("%s, diff %+v", got[1].kind, d)
	}
	if c := got[1].committer; c == nil || c.LoginUID != "alice" || c.Comm != "commandLine" ||
		c.Session != "10.3.9.10" {
		t.Errorf("committer %+v, want alice on the command line from 10.3.9.10", c)
	}
}
