package lab

import (
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"
)

// FreeUDPPort returns a UDP port that is free on 127.0.0.1 right now.
func FreeUDPPort() (int, error) {
	c, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer c.Close()
	return c.LocalAddr().(*net.UDPAddr).Port, nil
}

// Snmpsim is a running snmpsimd serving device recordings on loopback.
type Snmpsim struct {
	*Proc
	// Addr is host:port; DataDir holds COMMUNITY.snmprec for each community served.
	Addr    string
	DataDir string
}

// Snmpsim starts snmpsimd (Debian's snmpsim) on a free loopback UDP port serving the
// recordings in files, community name to recording path; SNMPv2c clients read a
// recording with its community. It runs as root (the data directory is the lab's, which
// the unprivileged user it would drop to cannot read) and rebuilds its index at every
// start, so a replaced recording is served after Replace.
func (l *Lab) Snmpsim(name string, files map[string]string) (*Snmpsim, error) {
	port, err := FreeUDPPort()
	if err != nil {
		return nil, err
	}
	dir := filepath.Join(l.Dir, name)
	data, cache := filepath.Join(dir, "data"), filepath.Join(dir, "cache")
	for _, d := range []string{data, cache} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			return nil, err
		}
	}
	s := &Snmpsim{Addr: fmt.Sprintf("127.0.0.1:%d", port), DataDir: data}
	community := ""
	for c, src := range files {
		if err := copyFile(src, filepath.Join(data, c+".snmprec")); err != nil {
			return nil, err
		}
		community = c
	}
	if community == "" {
		return nil, fmt.Errorf("snmpsim %s: no recordings", name)
	}
	p, err := l.Start(name, nil, "snmpsimd",
		"--data-dir="+data, "--cache-dir="+cache, "--force-index-rebuild",
		"--agent-udpv4-endpoint="+s.Addr, "--process-user=root", "--process-group=root",
		"--logging-method=stdout")
	if err != nil {
		return nil, err
	}
	s.Proc = p
	return s, s.wait(community)
}

// Replace serves path as community's recording from now on: snmpsimd is stopped, the
// file replaced and snmpsimd started again on the same port (as a device reloading).
func (s *Snmpsim) Replace(community, path string) error {
	s.Stop()
	if err := copyFile(path, filepath.Join(s.DataDir, community+".snmprec")); err != nil {
		return err
	}
	if err := s.Restart(); err != nil {
		return err
	}
	return s.wait(community)
}

// Update serves path as community's recording from now on without stopping snmpsimd,
// as a device whose configuration changes while it keeps answering: the new file is
// renamed into place with a later modification time, and snmpsimd, which compares a
// recording's mtime (whole seconds) with its index at every request, reindexes it on the
// next request. Update makes that request itself, so the recording is indexed and
// served when it returns.
func (s *Snmpsim) Update(community, path string) error {
	dst := filepath.Join(s.DataDir, community+".snmprec")
	old, err := os.Stat(dst)
	if err != nil {
		return err
	}
	tmp := dst + ".new"
	if err := copyFile(path, tmp); err != nil {
		return err
	}
	// Later than both the old file and the index built from it, by whole seconds.
	mtime := time.Now().Add(2 * time.Second)
	if m := old.ModTime().Add(2 * time.Second); m.After(mtime) {
		mtime = m
	}
	if err := os.Chtimes(tmp, mtime, mtime); err != nil {
		return err
	}
	if err := os.Rename(tmp, dst); err != nil {
		return err
	}
	return s.wait(community)
}

func (s *Snmpsim) wait(community string) error {
	return WaitFor(30*time.Second, s.Name+" to answer", func() (bool, string) {
		if s.Exited() {
			return false, s.Name + " exited: " + s.Tail(5)
		}
		out, err := exec.Command("snmpgetnext", "-v2c", "-c", community, "-t", "0.3", "-r", "0",
			s.Addr, "1.3.6.1").CombinedOutput()
		if err != nil {
			return false, strings.TrimSpace(string(out))
		}
		return true, ""
	})
}

// Snmpd is a running net-snmp snmpd on loopback.
type Snmpd struct {
	*Proc
	Addr string
}

// Snmpd starts net-snmp's snmpd in the foreground on a free loopback UDP port with conf
// as its only configuration (no system files) and its persistent state (USM users,
// engine id, snmpEngineBoots) in the lab directory, read back at Restart: a restarted
// snmpd is the same engine one boot later, as a rebooted device. check are snmpget
// arguments before the address (credentials, e.g. "-v3 -u …"); snmpd is ready when
// `snmpget CHECK ADDR sysUpTime.0` answers.
func (l *Lab) Snmpd(name, conf string, check ...string) (*Snmpd, error) {
	port, err := FreeUDPPort()
	if err != nil {
		return nil, err
	}
	dir := filepath.Join(l.Dir, name)
	confDir, persist := filepath.Join(dir, "conf"), filepath.Join(dir, "persist")
	for _, d := range []string{confDir, persist} {
		if err := os.MkdirAll(d, 0o700); err != nil {
			return nil, err
		}
	}
	if err := os.WriteFile(filepath.Join(confDir, "snmpd.conf"), []byte(conf), 0o600); err != nil {
		return nil, err
	}
	addr := fmt.Sprintf("127.0.0.1:%d", port)
	// SNMPCONFPATH replaces the system search path; the persistent directory must be on
	// it for snmpd to read its own state back.
	env := []string{"SNMPCONFPATH=" + confDir + ":" + persist, "SNMP_PERSISTENT_DIR=" + persist, "MIBS="}
	p, err := l.Start(name, env, "/usr/sbin/snmpd", "-f", "-Lo",
		"-p", filepath.Join(dir, "snmpd.pid"), "udp:"+addr)
	if err != nil {
		return nil, err
	}
	d := &Snmpd{Proc: p, Addr: addr}
	err = WaitFor(30*time.Second, name+" to answer", func() (bool, string) {
		if d.Exited() {
			return false, name + " exited: " + d.Tail(5)
		}
		args := append(append([]string{"-t", "0.3", "-r", "0"}, check...), addr, "1.3.6.1.2.1.1.3.0")
		out, err := exec.Command("snmpget", args...).CombinedOutput()
		if err != nil {
			return false, strings.TrimSpace(string(out))
		}
		return true, ""
	})
	return d, err
}

// SnmpTrap runs net-snmp's snmptrap with args (which include the destination).
func SnmpTrap(args ...string) error {
	out, err := exec.Command("snmptrap", args...).CombinedOutput()
	if err != nil {
		return fmt.Errorf("snmptrap %s: %v: %s", strings.Join(args, " "), err, out)
	}
	return nil
}

func copyFile(src, dst string) error {
	b, err := os.ReadFile(src)
	if err != nil {
		return err
	}
	return os.WriteFile(dst, b, 0o644)
}
