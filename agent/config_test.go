package agent

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/spf13/pflag"
)

// loadConfigFile loads the configuration as `fenceline-agent run --config path` would.
func loadConfigFile(t *testing.T, path string) (*Config, error) {
	t.Helper()
	fs := pflag.NewFlagSet("run", pflag.ContinueOnError)
	AddFlags(fs)
	if err := fs.Parse([]string{"--config", path}); err != nil {
		t.Fatal(err)
	}
	return Load(fs)
}

func TestUplinkWindowConfig(t *testing.T) {
	// The example configuration names the key with its default.
	cfg, err := loadConfigFile(t, filepath.Join("..", "configs", "agent.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Uplink.Window != 256 || cfg.Uplink.Batch != 128 {
		t.Errorf("example config: window %d batch %d, want 256 and 128", cfg.Uplink.Window, cfg.Uplink.Batch)
	}

	dir := t.TempDir()
	write := func(body string) string {
		p := filepath.Join(dir, "agent.yaml")
		if err := os.WriteFile(p, []byte("state_dir: "+dir+"\n"+body), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	cfg, err = loadConfigFile(t, write("uplink:\n  batch: 32\n  window: 64\n"))
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Uplink.Window != 64 {
		t.Errorf("uplink.window %d, want 64", cfg.Uplink.Window)
	}
	t.Setenv("FENCELINE_UPLINK_WINDOW", "128")
	if cfg, err = loadConfigFile(t, write("uplink:\n  batch: 32\n")); err != nil || cfg.Uplink.Window != 128 {
		t.Errorf("FENCELINE_UPLINK_WINDOW=128: window %v, err %v", cfg.Uplink.Window, err)
	}
	t.Setenv("FENCELINE_UPLINK_WINDOW", "16")
	_, err = loadConfigFile(t, write("uplink:\n  batch: 32\n"))
	if err == nil || !strings.Contains(err.Error(), "uplink.window 16 is below uplink.batch 32") {
		t.Errorf("window below batch: err %v", err)
	}
}

// TestConfigAddresses: a broker URL the uplink cannot dial and a metrics address without
// a port are refused at start, not retried forever or found out after the first events.
func TestConfigAddresses(t *testing.T) {
	dir := t.TempDir()
	for _, c := range []struct{ body, want string }{
		{"broker:\n  url: ftp://127.0.0.1:1\n", `scheme "ftp"`},
		{"broker:\n  url: tcp://127.0.0.1\n", "SCHEME://HOST:PORT"},
		{"metrics:\n  listen: notanaddr\n", "metrics.listen"},
		{"broker:\n  url: tcp://127.0.0.1:1883\nmetrics:\n  listen: 127.0.0.1:9464\n", ""},
	} {
		p := filepath.Join(dir, "agent.yaml")
		if err := os.WriteFile(p, []byte("state_dir: "+dir+"\n"+c.body), 0o600); err != nil {
			t.Fatal(err)
		}
		_, err := loadConfigFile(t, p)
		switch {
		case c.want == "" && err != nil:
			t.Errorf("%q: %v", c.body, err)
		case c.want != "" && (err == nil || !strings.Contains(err.Error(), c.want)):
			t.Errorf("%q: %v, want an error with %q", c.body, err, c.want)
		}
	}
}
