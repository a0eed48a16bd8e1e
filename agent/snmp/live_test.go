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

// snmpsim serving a real Linux host's walk: a copy whose one configuration row changed
// gives one change naming exactly that row; a copy where only counters and uptime moved
// gives nothing.
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
		Timeout: 500 * time.Millisecond, Retries: 1}, p, iv)
	got := waitReports(t, sink, 1, 20*time.Second)
	if got[0].kind != event.Baseline {
		t.Fatalf("first report %s, want baseline", got[0].kind)
	}
	base := got[0].rs

	counters := editSnmprec(t, src, t.TempDir(), map[string]string{
		"1.3.6.1.2.1.1.3.0":        "67|233999999",
		"1.3.6.1.2.1.2.2.1.10.2":   "65|2692999999",
		"1.3.6.1.2.1.2.2.1.16.2":   "65|1",
		"1.3.6.1.2.1.2.2.1.8.2":    "2|2",
		"1.3.6.1.2.1.31.1.1.1.6.2": "70|98765432109",
	})
	if err := sim.Replace("linux", counters); err != nil {
		t.Fatal(err)
	}
	reads := w.Stats().Reads
	waitFor(t, 20*time.Second, "two backstop reads of the new recording", func() (bool, string) {
		s := w.Stats()
		return s.Reads >= reads+2 && !s.Unreachable, fmt.Sprintf("%+v", s)
	})
	if got, _ := sink.get(); len(got) != 1 {
		t.Fatalf("counters and uptime produced reports: %+v", got[1:])
	}

	changed := editSnmprec(t, src, t.TempDir(), map[string]string{"1.3.6.1.2.1.2.2.1.7.2": "2|2"})
	if err := sim.Replace("linux", changed); err != nil {
		t.Fatal(err)
	}
	got = waitReports(t, sink, 2, 20*time.Second)
	d := ruleset.Diff(base, got[1].rs)
	if got[1].kind != event.Change && got[1].kind != event.Reconcile {
		t.Errorf("kind %s", got[1].kind)
	}
	if len(d) != 1 || d[0].Table != "ifTable" || d[0].Object != "ifEntry 2" ||
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
	tl, err := NewTrapListener(addr, []USM{{User: v3User, AuthProtocol: "SHA256",
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
	sent := time.Now()
	if err := lab.SnmpTrap("-v", "2c", "-c", "dev", addr, "", "1.3.6.1.4.1.9.9.43.2.0.2",
		"1.3.6.1.4.1.9.9.43.1.1.1.0", "t", "464999999",
		"1.3.6.1.4.1.9.9.43.1.1.6.1.8.191", "s", "alice"); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 5*time.Second, "read after the trap", func() (bool, string) {
		return w.Stats().Reads > reads, fmt.Sprintf("%+v", w.Stats())
	})
	lat := time.Since(sent)
	t.Logf("trap sent (snmptrap started) to read started: %s", lat)
	if lat > time.Second {
		t.Errorf("read started %s after the trap, want within a second", lat)
	}
	got := waitReports(t, sink, 2, 5*time.Second)
	d := ruleset.Diff(got[0].rs, got[1].rs)
	if len(d) != 1 || d[0].Object != "scalar ccmHistoryRunningLastChanged" || d[0].After != "464999999" {
		t.Errorf("diff = %+v", d)
	}
	if c := got[1].committer; c == nil || c.LoginUID != "alice" {
		t.Errorf("committer = %+v, want alice from the trap", c)
	}

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
}

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
