package snmp

import (
	"bufio"
	"encoding/hex"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gosnmp/gosnmp"

	"github.com/fenceline/fenceline/scripts/lab"
	"github.com/fenceline/fenceline/shared/event"
	"github.com/fenceline/fenceline/shared/ruleset"
)

var repoRoot = func() string {
	wd, _ := os.Getwd()
	return filepath.Clean(filepath.Join(wd, "..", ".."))
}()

// corpus returns a path in the shared SNMP corpus, or skips the test without it.
func corpus(t testing.TB, rel string) string {
	t.Helper()
	p := filepath.Join(repoRoot, "..", "shared", "corpus", "snmp", rel)
	if _, err := os.Stat(p); err != nil {
		t.Skipf("corpus file %s not present: %v", p, err)
	}
	return p
}

func shippedProfiles(t testing.TB) Profiles {
	t.Helper()
	ps, err := LoadProfiles(filepath.Join(repoRoot, "configs", "snmp"))
	if err != nil {
		t.Fatal(err)
	}
	return ps
}

func resolve(t testing.TB, name string) *Profile {
	t.Helper()
	p, err := shippedProfiles(t).Resolve(name)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// readSnmprec parses an snmpsim recording (OID|TYPE|VALUE, TYPE a BER tag number with an
// optional x for hex values) into varbinds with gosnmp's Go value types.
func readSnmprec(t testing.TB, path string) []gosnmp.SnmpPDU {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	pdus, err := parseSnmprec(f)
	if err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	return pdus
}

func parseSnmprec(r io.Reader) ([]gosnmp.SnmpPDU, error) {
	var out []gosnmp.SnmpPDU
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for n := 1; sc.Scan(); n++ {
		p, ok, err := parseSnmprecLine(sc.Text())
		if err != nil {
			return nil, fmt.Errorf("line %d: %v", n, err)
		}
		if ok {
			out = append(out, p)
		}
	}
	return out, sc.Err()
}

// parseSnmprecLine parses one recording line; ok is false for blank lines, comments and
// variation-module lines.
func parseSnmprecLine(line string) (p gosnmp.SnmpPDU, ok bool, err error) {
	if line == "" || strings.HasPrefix(line, "#") {
		return p, false, nil
	}
	parts := strings.SplitN(line, "|", 3)
	if len(parts) != 3 {
		return p, false, fmt.Errorf("%q", line)
	}
	tag, val := parts[1], parts[2]
	isHex := strings.HasSuffix(tag, "x")
	tag = strings.TrimSuffix(tag, "x")
	num, err := strconv.Atoi(tag)
	if err != nil {
		return p, false, nil // a variation module line
	}
	raw := []byte(val)
	if isHex {
		if raw, err = hex.DecodeString(val); err != nil {
			return p, false, err
		}
	}
	p = gosnmp.SnmpPDU{Name: "." + parts[0], Type: gosnmp.Asn1BER(num)}
	switch p.Type {
	case gosnmp.Integer:
		p.Value, err = strconv.Atoi(string(raw))
	case gosnmp.OctetString, gosnmp.Opaque:
		p.Value = raw
	case gosnmp.ObjectIdentifier:
		p.Value = "." + string(raw)
	case gosnmp.IPAddress:
		if isHex && len(raw) == 4 {
			p.Value = fmt.Sprintf("%d.%d.%d.%d", raw[0], raw[1], raw[2], raw[3])
		} else {
			p.Value = string(raw)
		}
	case gosnmp.Counter32, gosnmp.Gauge32:
		var u uint64
		u, err = strconv.ParseUint(string(raw), 10, 32)
		p.Value = uint(u)
	case gosnmp.TimeTicks:
		var u uint64
		u, err = strconv.ParseUint(string(raw), 10, 32)
		p.Value = uint32(u)
	case gosnmp.Counter64:
		p.Value, err = strconv.ParseUint(string(raw), 10, 64)
	default:
		p.Value = raw
	}
	return p, err == nil, err
}

// walksOf splits a recording into what the walks of the profile's tables return (see
// TableSpec.WalkRoots).
func walksOf(p *Profile, pdus []gosnmp.SnmpPDU) map[string][]gosnmp.SnmpPDU {
	w := map[string][]gosnmp.SnmpPDU{}
	for _, t := range p.Tables {
		for _, root := range t.WalkRoots() {
			for _, v := range pdus {
				if strings.HasPrefix(strings.TrimPrefix(v.Name, "."), root+".") {
					w[t.Name] = append(w[t.Name], v)
				}
			}
		}
	}
	return w
}

// editSnmprec copies a recording with the values of the given OIDs replaced
// (OID → "TYPE|VALUE"; an empty string deletes the line) into dir.
func editSnmprec(t testing.TB, src, dir string, edits map[string]string) string {
	t.Helper()
	b, err := os.ReadFile(src)
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	done := map[string]bool{}
	for _, line := range strings.Split(strings.TrimRight(string(b), "\n"), "\n") {
		oid, _, _ := strings.Cut(line, "|")
		if e, ok := edits[oid]; ok {
			done[oid] = true
			if e == "" {
				continue
			}
			line = oid + "|" + e
		}
		out = append(out, line)
	}
	for oid, e := range edits {
		if !done[oid] && e != "" {
			out = append(out, oid+"|"+e)
		}
	}
	// snmpsim wants its lines in OID order.
	slices.SortStableFunc(out, func(a, b string) int {
		oa, _ := parseOID(strings.SplitN(a, "|", 2)[0])
		ob, _ := parseOID(strings.SplitN(b, "|", 2)[0])
		return compareOID(oa, ob)
	})
	path := filepath.Join(dir, fmt.Sprintf("edit-%d.snmprec", time.Now().UnixNano()))
	if err := os.WriteFile(path, []byte(strings.Join(out, "\n")+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

// report is one Sink.Report call.
type report struct {
	kind      event.Kind
	rs        *ruleset.Ruleset
	committer *event.Committer
	note      string
	at        time.Time
}

// memSink records what a Watcher reports.
type memSink struct {
	mu         sync.Mutex
	reports    []report
	heartbeats int
}

func (s *memSink) Report(kind event.Kind, rs *ruleset.Ruleset, c *event.Committer, note string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.reports = append(s.reports, report{kind, rs, c, note, time.Now()})
	return nil
}

func (s *memSink) Heartbeat() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.heartbeats++
	return nil
}

func (s *memSink) get() ([]report, int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.reports), s.heartbeats
}

// newLab returns a lab for SNMP processes, or skips when the tools are missing.
func newLab(t *testing.T, tools ...string) *lab.Lab {
	t.Helper()
	if testing.Short() {
		t.Skip("starts real SNMP agents")
	}
	for _, tool := range tools {
		if _, err := exec.LookPath(tool); err != nil {
			t.Skipf("needs %s (scripts/deps.sh)", tool)
		}
	}
	l := lab.New(repoRoot, t.TempDir(), "")
	t.Cleanup(func() {
		if t.Failed() {
			t.Log(l.Logs(40))
		}
		l.Close()
	})
	return l
}

func testLog(t testing.TB) *slog.Logger {
	return slog.New(slog.NewTextHandler(tWriter{t}, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

type tWriter struct{ t testing.TB }

func (w tWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimRight(string(p), "\n"))
	return len(p), nil
}

func waitFor(t testing.TB, timeout time.Duration, what string, cond func() (bool, string)) {
	t.Helper()
	if err := lab.WaitFor(timeout, what, cond); err != nil {
		t.Fatal(err)
	}
}

func writeFile(path, body string) error { return os.WriteFile(path, []byte(body), 0o600) }
