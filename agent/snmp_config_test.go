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
  targets:
    - name: FW-A
      address: 127.0.0.1:161
      community: public
      profile: cisco-asa
      poll_interval: 5s
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
		ts[1].V3.PrivProtocol != "AES" || c.SNMP.ProfilesDir != "/etc/fenceline/snmp" {
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
	} {
		_, err := loadConfig(t, c.body)
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: err = %v, want one mentioning %q", name, err, c.want)
		}
	}
}
