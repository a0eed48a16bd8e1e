package snmp

import (
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/gosnmp/gosnmp"
)

// profileFor picks the shipped profile for a recording by its sysObjectID's enterprise.
func profileFor(pdus []gosnmp.SnmpPDU) string {
	for _, v := range pdus {
		if strings.TrimPrefix(v.Name, ".") != "1.3.6.1.2.1.1.2.0" {
			continue
		}
		oid, _ := v.Value.(string)
		parts := strings.Split(strings.TrimPrefix(oid, "."), ".")
		if len(parts) < 7 || strings.Join(parts[:6], ".") != "1.3.6.1.4.1" {
			break
		}
		switch parts[6] {
		case "9":
			return "cisco-ios"
		case "2636":
			return "juniper"
		case "12356":
			return "fortigate"
		case "25461":
			return "paloalto"
		case "14988":
			return "mikrotik"
		}
	}
	return "mib2"
}

// bumpVolatile returns a copy of pdus with every counter, gauge and time tick moved on,
// except the columns the profile keeps as configuration (a change time such as
// ccmHistoryRunningLastChanged is a TimeTicks value and is state).
func bumpVolatile(p *Profile, pdus []gosnmp.SnmpPDU) []gosnmp.SnmpPDU {
	kept := map[string]bool{}
	for _, t := range p.Tables {
		for _, c := range t.Columns {
			if !c.Volatile {
				kept[t.OID+"."+itoa(int(c.ID))] = true
			}
		}
	}
	out := make([]gosnmp.SnmpPDU, len(pdus))
	for i, v := range pdus {
		out[i] = v
		name := strings.TrimPrefix(v.Name, ".")
		skip := false
		for k := range kept {
			if strings.HasPrefix(name, k+".") {
				skip = true
				break
			}
		}
		if skip {
			continue
		}
		switch n := v.Value.(type) {
		case uint:
			out[i].Value = n + 7
		case uint32:
			out[i].Value = n + 7
		case uint64:
			out[i].Value = n + 7
		}
	}
	return out
}

func recorded(pdus []gosnmp.SnmpPDU, oid string) bool {
	for _, v := range pdus {
		if strings.TrimPrefix(v.Name, ".") == oid {
			return true
		}
	}
	return false
}

// readRecording reads a recording as a walk of it returns it: lines whose value does not
// parse (anonymised hex such as "346288XXYYZZ") are left out, as is a repeated OID, which
// a walk cannot return twice. It says how many lines it left out.
func readRecording(t *testing.T, path string) ([]gosnmp.SnmpPDU, int) {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var out []gosnmp.SnmpPDU
	seen := map[string]bool{}
	dropped := 0
	for _, line := range strings.Split(strings.TrimRight(string(b), "\n"), "\n") {
		v, ok, err := parseSnmprecLine(strings.TrimRight(line, "\r"))
		switch {
		case err != nil || ok && seen[v.Name]:
			dropped++
		case ok:
			seen[v.Name] = true
			out = append(out, v)
		}
	}
	return out, dropped
}

// Every device recording of the corpus converts under its vendor's profile: no error,
// the same state twice, ASCII text, and the same digest after every counter, gauge and
// uptime moved (what a later poll of the same device sees).
func TestBuildCorpus(t *testing.T) {
	root := filepath.Join(repoRoot, "..", "shared", "corpus", "snmp")
	if _, err := os.Stat(root); err != nil {
		t.Skipf("corpus not present: %v", err)
	}
	if testing.Short() {
		t.Skip("reads every recording of the corpus")
	}
	ps := shippedProfiles(t)
	var files []string
	err := filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() && d.Name() == "config-change-focus" {
			return filepath.SkipDir // extracts of the recordings walked here
		}
		if !d.IsDir() && strings.HasSuffix(path, ".snmprec") {
			files = append(files, path)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(files) < 100 {
		t.Fatalf("%d recordings under %s", len(files), root)
	}
	byProfile := map[string]int{}
	var left []string
	for _, path := range files {
		rel, _ := filepath.Rel(root, path)
		pdus, dropped := readRecording(t, path)
		if dropped > 0 {
			left = append(left, fmt.Sprintf("%s:%d", rel, dropped))
		}
		name := profileFor(pdus)
		byProfile[name]++
		p, err := ps.Resolve(name)
		if err != nil {
			t.Fatal(err)
		}
		rs, err := Build(p, walksOf(p, pdus))
		if err != nil {
			t.Errorf("%s (%s): %v", rel, name, err)
			continue
		}
		// The change indicators the profiles keep as state are there when recorded.
		for oid, object := range map[string]string{
			"1.3.6.1.4.1.9.9.43.1.1.1.0":    "indicator ccmHistoryRunningLastChanged",
			"1.3.6.1.4.1.2636.3.18.1.3.0":   "indicator jnxCmCfgChgLatestDate",
			"1.3.6.1.4.1.12356.101.4.1.1.0": "scalar fgSysVersion",
			"1.3.6.1.4.1.25461.2.1.2.1.1.0": "scalar panSysSwVersion",
		} {
			if recorded(pdus, oid) && name != "mib2" && !strings.Contains(rs.Text(), object) {
				t.Errorf("%s (%s): %s recorded but %s not in the state", rel, name, oid, object)
			}
		}
		rs2, err := Build(p, walksOf(p, bumpVolatile(p, pdus)))
		if err != nil || rs2.Digest() != rs.Digest() {
			t.Errorf("%s (%s): moving counters, gauges and uptime changed the state (%v)", rel, name, err)
		}
		text := rs.Text()
		for i := 0; i < len(text); i++ {
			if text[i] > 0x7e || text[i] < 0x20 && text[i] != '\n' && text[i] != '\t' {
				t.Errorf("%s: non-ASCII state text at %d: %q", rel, i, text[max(0, i-40):min(len(text), i+40)])
				break
			}
		}
	}
	t.Logf("%d recordings by profile: %v", len(files), byProfile)
	t.Logf("lines an agent could not serve (bad hex, repeated OID), left out: %s",
		strings.Join(left, " "))
}
