package agent

import (
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/url"
	"strings"
	"time"

	"github.com/spf13/pflag"
	"github.com/spf13/viper"
)

// Config is the agent's configuration. Load fills it from (highest first) flags, the
// environment (FENCELINE_ and the key with dots as underscores, e.g.
// FENCELINE_BROKER_URL), the config file, and these defaults.
type Config struct {
	// StateDir holds the key, the enrollment and the outbox.
	StateDir string `mapstructure:"state_dir"`
	// AggregatorURL is the aggregator's API, used to enroll.
	AggregatorURL string `mapstructure:"aggregator_url"`
	// EnrollToken, when set and the agent is not enrolled yet, enrolls at start.
	EnrollToken string `mapstructure:"enroll_token"`

	Broker   BrokerConfig   `mapstructure:"broker"`
	Nftables NftablesConfig `mapstructure:"nftables"`
	Uplink   UplinkConfig   `mapstructure:"uplink"`
	Outbox   OutboxConfig   `mapstructure:"outbox"`
	Metrics  MetricsConfig  `mapstructure:"metrics"`
	// SNMP lists the devices watched over SNMP (snmp_config.go).
	SNMP SNMPConfig `mapstructure:"snmp"`
	// HeartbeatInterval is how often a heartbeat event carries the current digest.
	HeartbeatInterval time.Duration `mapstructure:"heartbeat_interval"`
	Log               LogConfig     `mapstructure:"log"`
}

// BrokerConfig says where to publish. An empty URL means the one the aggregator named at
// enrollment (its embedded broker).
type BrokerConfig struct {
	URL      string `mapstructure:"url"`
	ClientID string `mapstructure:"client_id"`
	Username string `mapstructure:"username"`
	Password string `mapstructure:"password"`
}

// NftablesConfig says which ruleset to watch.
type NftablesConfig struct {
	// Netns is a network namespace name (as in `ip netns`); empty means the agent's own.
	Netns string `mapstructure:"netns"`
	// BackstopInterval is how often the whole ruleset is re-read even without a kernel
	// notification, to catch anything the notifications missed.
	BackstopInterval time.Duration `mapstructure:"backstop_interval"`
}

// UplinkConfig tunes delivery.
type UplinkConfig struct {
	// Batch is how many events one publish round sends before waiting for their PUBACKs.
	Batch int `mapstructure:"batch"`
	// Window bounds the events published but not yet acknowledged by the aggregator, so
	// a long backlog does not overrun the aggregator's ingest queue: keep it at most the
	// aggregator's queue per worker (ingest.queue_size / ingest.workers, 256 by default).
	// At least Batch.
	Window int `mapstructure:"window"`
	// Rate paces publishing in events per second (0: unbounded), so a long backlog
	// replays at a pace the aggregator can take.
	Rate        float64       `mapstructure:"rate"`
	ResendAfter time.Duration `mapstructure:"resend_after"`
}

// OutboxConfig bounds the durable outbox.
type OutboxConfig struct {
	// MaxBytes bounds the undelivered events kept on disk; at the bound they are folded
	// into one state event, which the aggregator raises as a deviation.
	MaxBytes int64 `mapstructure:"max_bytes"`
}

// MetricsConfig says where Prometheus metrics (/metrics) and the health answer (/healthz)
// are served; empty means not at all.
type MetricsConfig struct {
	Listen string `mapstructure:"listen"`
}

// LogConfig sets the log level (debug, info, warn, error) and format (text, json).
type LogConfig struct {
	Level  string `mapstructure:"level"`
	Format string `mapstructure:"format"`
}

// defaults lists every key with its default; Load binds each to its environment variable.
var defaults = map[string]any{
	"state_dir":                  "/var/lib/fenceline-agent",
	"aggregator_url":             "http://127.0.0.1:8443",
	"enroll_token":               "",
	"broker.url":                 "",
	"broker.client_id":           "",
	"broker.username":            "",
	"broker.password":            "",
	"nftables.netns":             "",
	"nftables.backstop_interval": "60s",
	"uplink.batch":               128,
	"uplink.window":              256,
	"uplink.rate":                1000,
	"outbox.max_bytes":           256 << 20,
	"metrics.listen":             "",
	"uplink.resend_after":        "5s",
	"heartbeat_interval":         "30s",
	"log.level":                  "info",
	"log.format":                 "text",
	"snmp.profiles_dir":          "/etc/fenceline/snmp",
	"snmp.trap_listen":           "",
	"snmp.trap_engine_id":        "",
}

// ValidBrokerURL checks that u is an MQTT broker URL the uplink can dial: a scheme the
// MQTT client knows (tcp, mqtt, ssl, tls, mqtts, ws, wss) with a host and port.
func ValidBrokerURL(u string) error {
	p, err := url.Parse(u)
	if err != nil {
		return err
	}
	switch p.Scheme {
	case "tcp", "mqtt", "ssl", "tls", "mqtts", "ws", "wss":
	default:
		return fmt.Errorf("%q: scheme %q, want tcp, mqtt, ssl, tls, mqtts, ws or wss", u, p.Scheme)
	}
	if p.Hostname() == "" || p.Port() == "" {
		return fmt.Errorf("%q: want SCHEME://HOST:PORT", u)
	}
	return nil
}

// flagKeys maps command-line flags to config keys.
var flagKeys = map[string]string{
	"state-dir":  "state_dir",
	"aggregator": "aggregator_url",
	"token":      "enroll_token",
	"broker":     "broker.url",
	"netns":      "nftables.netns",
	"log-level":  "log.level",
	"metrics":    "metrics.listen",
}

// AddFlags declares the agent's configuration flags on fs.
func AddFlags(fs *pflag.FlagSet) {
	fs.String("config", "", "config file (YAML); default /etc/fenceline/agent.yaml if present")
	fs.String("state-dir", "", "directory for key, enrollment and outbox")
	fs.String("aggregator", "", "aggregator API URL (for enrollment)")
	fs.String("token", "", "one-time enrollment token")
	fs.String("broker", "", "MQTT broker URL (default: the one named at enrollment)")
	fs.String("netns", "", "network namespace to watch (default: the agent's own)")
	fs.String("log-level", "", "debug, info, warn or error")
	fs.String("metrics", "", "serve Prometheus metrics on this address (e.g. 127.0.0.1:9464)")
}

// Load reads the configuration.
func Load(fs *pflag.FlagSet) (*Config, error) {
	v := viper.New()
	for k, d := range defaults {
		v.SetDefault(k, d)
	}
	v.SetEnvPrefix("FENCELINE")
	v.SetEnvKeyReplacer(strings.NewReplacer(".", "_"))
	for k := range defaults {
		if err := v.BindEnv(k); err != nil {
			return nil, err
		}
	}
	if fs != nil {
		for flag, key := range flagKeys {
			if f := fs.Lookup(flag); f != nil {
				if err := v.BindPFlag(key, f); err != nil {
					return nil, err
				}
			}
		}
	}
	path := ""
	if fs != nil {
		path, _ = fs.GetString("config")
	}
	if path != "" {
		v.SetConfigFile(path)
		if err := v.ReadInConfig(); err != nil {
			return nil, fmt.Errorf("config %s: %w", path, err)
		}
	} else {
		v.SetConfigFile("/etc/fenceline/agent.yaml")
		if err := v.ReadInConfig(); err != nil && !errors.As(err, new(viper.ConfigFileNotFoundError)) &&
			!strings.Contains(err.Error(), "no such file") {
			return nil, fmt.Errorf("config: %w", err)
		}
	}
	var c Config
	if err := v.UnmarshalExact(&c); err != nil {
		return nil, fmt.Errorf("config: %w", err)
	}
	return &c, c.Validate()
}

// Validate checks the configuration.
func (c *Config) Validate() error {
	var errs []error
	if c.StateDir == "" {
		errs = append(errs, errors.New("state_dir is empty"))
	}
	if c.HeartbeatInterval < time.Millisecond {
		errs = append(errs, fmt.Errorf("heartbeat_interval %s is below 1ms", c.HeartbeatInterval))
	}
	if c.Nftables.BackstopInterval < time.Second {
		errs = append(errs, fmt.Errorf("nftables.backstop_interval %s is below 1s", c.Nftables.BackstopInterval))
	}
	if c.Outbox.MaxBytes < 1<<20 {
		errs = append(errs, fmt.Errorf("outbox.max_bytes %d is below 1 MiB", c.Outbox.MaxBytes))
	}
	if c.Uplink.Batch < 1 {
		errs = append(errs, fmt.Errorf("uplink.batch %d is below 1", c.Uplink.Batch))
	}
	if c.Uplink.Window < c.Uplink.Batch {
		errs = append(errs, fmt.Errorf("uplink.window %d is below uplink.batch %d: a round "+
			"could never be sent whole", c.Uplink.Window, c.Uplink.Batch))
	}
	if c.Uplink.ResendAfter < 100*time.Millisecond {
		errs = append(errs, fmt.Errorf("uplink.resend_after %s is below 100ms", c.Uplink.ResendAfter))
	}
	if c.Uplink.Rate < 0 {
		errs = append(errs, fmt.Errorf("uplink.rate %g is negative", c.Uplink.Rate))
	}
	if c.Broker.URL != "" {
		if err := ValidBrokerURL(c.Broker.URL); err != nil {
			errs = append(errs, fmt.Errorf("broker.url: %w", err))
		}
	}
	if c.Metrics.Listen != "" {
		if _, port, err := net.SplitHostPort(c.Metrics.Listen); err != nil || port == "" {
			errs = append(errs, fmt.Errorf("metrics.listen %q: want HOST:PORT, e.g. 127.0.0.1:9464",
				c.Metrics.Listen))
		}
	}
	errs = append(errs, c.SNMP.validate()...)
	if _, err := ParseLevel(c.Log.Level); err != nil {
		errs = append(errs, err)
	}
	if c.Log.Format != "text" && c.Log.Format != "json" {
		errs = append(errs, fmt.Errorf("log.format %q: want text or json", c.Log.Format))
	}
	return errors.Join(errs...)
}

// ParseLevel parses a log level name.
func ParseLevel(s string) (slog.Level, error) {
	var l slog.Level
	if err := l.UnmarshalText([]byte(s)); err != nil {
		return l, fmt.Errorf("log level %q: %w", s, err)
	}
	return l, nil
}
