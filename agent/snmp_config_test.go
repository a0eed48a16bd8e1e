package agent

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/spf13/pflag"
)

func loadConfig(t *testing.T, body string) (*Config, error) {
	t.Helper()
	path := filepath.Join(t.TempDir(), "agent.yaml")
	if err := os.WriteFile(path, []byte(body), 0o600); err != nil {
		t.Fatal(err)
	}
	fs := pflag.NewFlagSet("t", pflag.ContinueOnError)
	AddFlags(fs)
	if err := fs.Parse([]string{"--config", path}); err != nil {
		t.Fatal(err)
	}
	return Load(fs)
}

func TestSNMPConfigTargets(t *testing.T) {
	c, err := loadConfig(t, `
snmp:
  trap_listen: 127.0.0.1:9162
  trap_engine_id: 0x80001F880466656e63656c696e65
  targets:
    - name: FW-A
      address: 127.0.0.1:161
      community: public
      profile: cisco-asa
      poll_interval: 5s
      retries: 0
    - name: fw-a.v3
      address: 127.0.0.1
      version: "3"
      profile: juniper
      v3: {user: u, auth_protocol: SHA256, auth_passphrase: authpass1, priv_protocol: AES, priv_passphrase: privpass1}
`)
	if err != nil {
		t.Fatal(err)
	}
	ts := c.SNMP.Targets
	if len(ts) != 2 || ts[0].Name != "FW-A" || ts[0].Version != "2c" || ts[0].PollInterval != 5*time.Second ||
		ts[0].WalkInterval != defaultSNMPWalk || ts[0].TrapCommunity != "public" ||
		ts[1].V3.PrivProtocol != "AES" || c.SNMP.ProfilesDir != "/etc/fenceline/snmp" ||
		string(must(c.SNMP.engineID())) != "\x80\x00\x1f\x88\x04fenceline" || *ts[0].Retries != 0 || *ts[1].Retries != defaultSNMPRetries || ts[1].Timeout != defaultSNMPTimeout {
		t.Fatalf("targets = %+v", ts)
	}
}

func TestSNMPConfigErrors(t *testing.T) {
	for name, c := range map[string]struct{ body, want string }{
		"misspelled key": {"snmp:\n  targets:\n    - {name: a, adress: x, community: c, profile: p}\n", "adress"},
		"same name":      {"snmp:\n  targets:\n    - {name: a, address: x, community: c, profile: p}\n    - {name: A, address: y, community: c, profile: p}\n", "twice"},
		"bad version":    {"snmp:\n  targets:\n    - {name: a, address: x, community: c, profile: p, version: '1'}\n", "version"},
		"weak v3":        {"snmp:\n  targets:\n    - {name: a, address: x, profile: p, version: '3', v3: {user: u, auth_protocol: MD5, auth_passphrase: xxxxxxxx}}\n", "MD5"},
		"no community":   {"snmp:\n  targets:\n    - {name: a, address: x, profile: p}\n", "community"},
		"bad name":       {"snmp:\n  targets:\n    - {name: 'a/b', address: x, community: c, profile: p}\n", "name"},
		"short engine":   {"snmp:\n  trap_engine_id: 80001f88\n", "trap_engine_id"},
	} {
		_, err := loadConfig(t, c.body)
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: err = %v, want one mentioning %q", name, err, c.want)
		}
	}
}

// The shipped profiles are built in: a profiles_dir that does not exist (a fresh install,
// a source checkout) still resolves every shipped profile; a site directory adds profiles
// and replaces a shipped one of the same name.
func TestSNMPProfilesBuiltInAndSite(t *testing.T) {
	ps, from, err := loadSNMPProfiles(filepath.Join(t.TempDir(), "absent"))
	if err != nil {
		t.Fatal(err)
	}
	shipped, err := os.ReadDir(filepath.Join("..", "configs", "snmp"))
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, e := range shipped {
		if filepath.Ext(e.Name()) == ".yaml" {
			n++
		}
	}
	if len(ps) != n || n < 7 || !strings.Contains(from, "does not exist") {
		t.Fatalf("built-in profiles %v from %q, want the %d files of configs/snmp", ps.Names(), from, n)
	}
	for _, name := range ps.Names() {
		if _, err := ps.Resolve(name); err != nil {
			t.Errorf("built-in %s: %v", name, err)
		}
	}

	site := t.TempDir()
	for file, body := range map[string]string{
		"edge.yaml":     "name: edge\nextends: [mib2]\ntriggers:\n  - {name: x, oid: 1.3.6.1.4.1.99.1.0}\n",
		"mikrotik.yaml": "name: mikrotik\nextends: [mib2]\ndescription: site override\n",
	} {
		if err := os.WriteFile(filepath.Join(site, file), []byte(body), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	ps, _, err = loadSNMPProfiles(site)
	if err != nil {
		t.Fatal(err)
	}
	if len(ps) != n+1 || ps["mikrotik"].Description != "site override" {
		t.Fatalf("with a site dir: %v, mikrotik %q", ps.Names(), ps["mikrotik"].Description)
	}
	if p, err := ps.Resolve("edge"); err != nil || len(p.Tables) == 0 || len(p.Triggers) != 1 {
		t.Fatalf("site profile extending a built-in: %+v, %v", p, err)
	}

	// An invalid site profile is an error naming the file, not silently skipped.
	if err := os.WriteFile(filepath.Join(site, "bad.yaml"), []byte("name: bad\ntabels: []\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, _, err := loadSNMPProfiles(site); err == nil || !strings.Contains(err.Error(), "bad.yaml") {
		t.Fatalf("invalid site profile: err = %v", err)
	}
}

func must[T any](v T, err error) T {
	if err != nil {
		panic(err)
	}
	return v
}
