package config

import (
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"
)

const example = "../../configs/aggregator.yaml"

func load(t *testing.T, args ...string) (*Config, error) {
	t.Helper()
	return Load(NewFlagSet("test"), args)
}

func TestExampleFileIsTheDefaults(t *testing.T) {
	fromFile, err := load(t, "--config", example)
	if err != nil {
		t.Fatal(err)
	}
	builtin, err := load(t)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(fromFile, builtin) {
		t.Fatalf("example file %+v\ndefaults %+v", fromFile, builtin)
	}
	if builtin.DataDir != "/var/lib/fenceline-aggregator" || builtin.HTTP.Listen != "127.0.0.1:8443" ||
		builtin.Raft.Listen != "127.0.0.1:7000" || builtin.EmbeddedBroker.Listen != "127.0.0.1:1883" ||
		builtin.Broker.URL != "" || builtin.Enrollment.TokenTTL != 24*time.Hour {
		t.Fatalf("defaults = %+v", builtin)
	}
}

func TestPrecedence(t *testing.T) {
	for _, k := range Keys() {
		if !strings.HasPrefix(EnvName(k), "FENCELINE_") {
			t.Fatalf("env name of %s = %s", k, EnvName(k))
		}
	}
	t.Setenv("FENCELINE_HTTP_LISTEN", "127.0.0.1:9000")
	t.Setenv("FENCELINE_DATA_DIR", "/tmp/from-env")
	t.Setenv("FENCELINE_INGEST_WORKERS", "2")
	t.Setenv("FENCELINE_ENROLLMENT_TOKEN_TTL", "2h")
	t.Setenv("FENCELINE_BROKER_ADVERTISE_URL", "tcp://mqtt.example:1883")
	c, err := load(t, "--config", example, "--data-dir", "/tmp/from-flag",
		"--broker-url", "tcp://127.0.0.1:1884", "--log-level", "debug")
	if err != nil {
		t.Fatal(err)
	}
	if c.HTTP.Listen != "127.0.0.1:9000" || c.DataDir != "/tmp/from-flag" || c.Ingest.Workers != 2 ||
		c.Enrollment.TokenTTL != 2*time.Hour || c.Broker.URL != "tcp://127.0.0.1:1884" ||
		c.Log.Level != "debug" || c.Broker.AdvertiseURL != "tcp://mqtt.example:1883" {
		t.Fatalf("config = %+v", c)
	}
	if c.AdminTokenPath() != "/tmp/from-flag/admin.token" {
		t.Fatalf("admin token path %s", c.AdminTokenPath())
	}
	t.Setenv("FENCELINE_CONFIG", example)
	if _, err := load(t); err != nil {
		t.Fatalf("config from FENCELINE_CONFIG: %v", err)
	}
}

func TestInvalid(t *testing.T) {
	dir := t.TempDir()
	n := 0
	write := func(body string) string {
		n++
		p := filepath.Join(dir, fmt.Sprintf("c%d.yaml", n))
		if err := os.WriteFile(p, []byte(body), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	cases := []struct {
		name string
		args []string
		want string
	}{
		{"misspelled key", []string{"--config", write("http:\n  listn: x\n")}, "listn"},
		{"raft on all interfaces", []string{"--raft-listen", "0.0.0.0:7000"}, "loopback"},
		{"bad level", []string{"--log-level", "loud"}, "log.level"},
		{"bad broker url", []string{"--broker-url", "127.0.0.1:1883"}, "broker.url"},
		{"bad listen", []string{"--http-listen", "8443"}, "http.listen"},
		{"bad ttl", []string{"--config", write("enrollment:\n  token_ttl: 0s\n")}, "token_ttl"},
		{"missing file", []string{"--config", filepath.Join(dir, "none.yaml")}, "none.yaml"},
		{"stray argument", []string{"serve"}, "unexpected arguments"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, err := load(t, tc.args...)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("err = %v, want it to mention %q", err, tc.want)
			}
		})
	}
}
