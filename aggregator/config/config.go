// Package config is the fenceline-aggregator configuration: a struct with defaults and a
// validator, filled from (highest first) command-line flags, FENCELINE_* environment
// variables, a YAML file, and the defaults.
//
// Every key has an environment variable: FENCELINE_ and the key in upper case with dots
// as underscores (http.listen is FENCELINE_HTTP_LISTEN).
package config

import (
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/spf13/pflag"
	"github.com/spf13/viper"

	"github.com/fenceline/fenceline/shared/event"
)

// Config is the aggregator's configuration.
type Config struct {
	// DataDir holds the raft log, the state, the embedded broker's store and the
	// generated admin token.
	DataDir string `mapstructure:"data_dir"`

	Log            LogConfig            `mapstructure:"log"`
	HTTP           HTTPConfig           `mapstructure:"http"`
	Raft           RaftConfig           `mapstructure:"raft"`
	Broker         BrokerConfig         `mapstructure:"broker"`
	EmbeddedBroker EmbeddedBrokerConfig `mapstructure:"embedded_broker"`
	Ingest         IngestConfig         `mapstructure:"ingest"`
	Enrollment     EnrollmentConfig     `mapstructure:"enrollment"`
}

// LogConfig sets the log level (debug, info, warn, error) and format (text, json).
type LogConfig struct {
	Level  string `mapstructure:"level"`
	Format string `mapstructure:"format"`
}

// HTTPConfig configures the API listener and its admin token.
// TODO: TLS; the API serves plain HTTP and belongs on loopback until then.
type HTTPConfig struct {
	Listen string `mapstructure:"listen"`
	// AdminToken is the admin bearer token. Empty: read AdminTokenFile, generating it
	// at first start.
	AdminToken string `mapstructure:"admin_token"`
	// AdminTokenFile defaults to <data_dir>/admin.token.
	AdminTokenFile string `mapstructure:"admin_token_file"`
}

// RaftConfig configures the raft node.
// TODO: TLS for raft (a StreamLayer) and cluster membership; until then raft binds
// loopback only.
type RaftConfig struct {
	Listen string `mapstructure:"listen"`
	NodeID string `mapstructure:"node_id"`
}

// BrokerConfig names an external MQTT broker. An empty URL starts the embedded one.
type BrokerConfig struct {
	URL      string `mapstructure:"url"`
	ClientID string `mapstructure:"client_id"`
	Username string `mapstructure:"username"`
	Password string `mapstructure:"password"`
	// AdvertiseURL is the broker URL agents are given at enrollment, when they reach
	// the broker by another address than the aggregator does.
	AdvertiseURL string `mapstructure:"advertise_url"`
}

// EmbeddedBrokerConfig configures the embedded broker (used when broker.url is empty).
type EmbeddedBrokerConfig struct {
	Listen string `mapstructure:"listen"`
}

// IngestConfig bounds the ingest pipeline.
type IngestConfig struct {
	QueueSize int `mapstructure:"queue_size"`
	Workers   int `mapstructure:"workers"`
}

// EnrollmentConfig configures enrollment tokens.
type EnrollmentConfig struct {
	// TokenTTL is how long a token is valid when the request names no ttl.
	TokenTTL time.Duration `mapstructure:"token_ttl"`
}

// defaults lists every key and its default. Load binds each key to its environment
// variable: viper ignores the environment for keys it has not seen.
var defaults = map[string]any{
	"data_dir":               "/var/lib/fenceline-aggregator",
	"log.level":              "info",
	"log.format":             "text",
	"http.listen":            "127.0.0.1:8443",
	"http.admin_token":       "",
	"http.admin_token_file":  "",
	"raft.listen":            "127.0.0.1:7000",
	"raft.node_id":           "aggregator-1",
	"broker.url":             "",
	"broker.client_id":       "fenceline-aggregator",
	"broker.username":        "",
	"broker.password":        "",
	"broker.advertise_url":   "",
	"embedded_broker.listen": "127.0.0.1:1883",
	"ingest.queue_size":      1024,
	"ingest.workers":         4,
	"enrollment.token_ttl":   "24h",
}

// Keys returns every configuration key, sorted.
func Keys() []string {
	keys := make([]string, 0, len(defaults))
	for k := range defaults {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}

// EnvName is the environment variable of a key.
func EnvName(key string) string {
	return "FENCELINE_" + strings.ToUpper(strings.ReplaceAll(key, ".", "_"))
}

// flagKeys maps command-line flags to keys.
var flagKeys = map[string]string{
	"data-dir":               "data_dir",
	"http-listen":            "http.listen",
	"raft-listen":            "raft.listen",
	"broker-url":             "broker.url",
	"embedded-broker-listen": "embedded_broker.listen",
	"log-level":              "log.level",
	"log-format":             "log.format",
}

// NewFlagSet declares the aggregator's flags.
func NewFlagSet(name string) *pflag.FlagSet {
	fs := pflag.NewFlagSet(name, pflag.ContinueOnError)
	fs.String("config", "", "config file (YAML); env FENCELINE_CONFIG")
	fs.String("data-dir", "", "data directory (default "+defaults["data_dir"].(string)+")")
	fs.String("http-listen", "", "API listen address (default "+defaults["http.listen"].(string)+")")
	fs.String("raft-listen", "", "raft listen address (default "+defaults["raft.listen"].(string)+")")
	fs.String("broker-url", "", "external MQTT broker URL; empty starts the embedded broker")
	fs.String("embedded-broker-listen", "", "embedded broker listen address (default "+
		defaults["embedded_broker.listen"].(string)+")")
	fs.String("log-level", "", "debug, info, warn or error (default info)")
	fs.String("log-format", "", "text or json (default text)")
	return fs
}

// Load parses args and reads the configuration.
func Load(fs *pflag.FlagSet, args []string) (*Config, error) {
	if err := fs.Parse(args); err != nil {
		return nil, err
	}
	if fs.NArg() > 0 {
		return nil, fmt.Errorf("unexpected arguments: %v", fs.Args())
	}
	v := viper.New()
	for _, k := range Keys() {
		v.SetDefault(k, defaults[k])
		if err := v.BindEnv(k, EnvName(k)); err != nil {
			return nil, fmt.Errorf("bind %s: %w", k, err)
		}
	}
	for flag, key := range flagKeys {
		if err := v.BindPFlag(key, fs.Lookup(flag)); err != nil {
			return nil, fmt.Errorf("bind flag %s: %w", flag, err)
		}
	}
	path, _ := fs.GetString("config")
	if path == "" {
		path = os.Getenv("FENCELINE_CONFIG")
	}
	if path != "" {
		v.SetConfigFile(path)
		if err := v.ReadInConfig(); err != nil {
			return nil, fmt.Errorf("config %s: %w", path, err)
		}
	}
	var c Config
	if err := v.UnmarshalExact(&c); err != nil {
		return nil, fmt.Errorf("config: %w", err)
	}
	if err := c.Validate(); err != nil {
		return nil, err
	}
	return &c, nil
}

// Validate checks the configuration and reports every problem.
func (c *Config) Validate() error {
	var errs []error
	bad := func(format string, args ...any) { errs = append(errs, fmt.Errorf(format, args...)) }
	if c.DataDir == "" {
		bad("data_dir is empty")
	}
	if _, err := ParseLevel(c.Log.Level); err != nil {
		bad("log.level: %v", err)
	}
	if c.Log.Format != "text" && c.Log.Format != "json" {
		bad("log.format %q: want text or json", c.Log.Format)
	}
	if err := checkHostPort(c.HTTP.Listen); err != nil {
		bad("http.listen: %v", err)
	}
	if err := checkHostPort(c.Raft.Listen); err != nil {
		bad("raft.listen: %v", err)
	} else if ip := net.ParseIP(hostOf(c.Raft.Listen)); ip == nil || !ip.IsLoopback() {
		bad("raft.listen %q: raft has no TLS yet, so it must listen on a loopback IP address",
			c.Raft.Listen)
	}
	if !event.ValidName(c.Raft.NodeID) {
		bad("raft.node_id %q: use letters, digits, '.', '_' or '-'", c.Raft.NodeID)
	}
	if c.Broker.URL != "" {
		if err := checkBrokerURL(c.Broker.URL); err != nil {
			bad("broker.url: %v", err)
		}
	} else if err := checkHostPort(c.EmbeddedBroker.Listen); err != nil {
		bad("embedded_broker.listen: %v", err)
	}
	if c.Broker.AdvertiseURL != "" {
		if err := checkBrokerURL(c.Broker.AdvertiseURL); err != nil {
			bad("broker.advertise_url: %v", err)
		}
	}
	if c.Broker.ClientID == "" {
		bad("broker.client_id is empty")
	}
	if c.Ingest.Workers < 1 || c.Ingest.QueueSize < c.Ingest.Workers {
		bad("ingest: want workers >= 1 and queue_size >= workers, have %d and %d",
			c.Ingest.Workers, c.Ingest.QueueSize)
	}
	if c.Enrollment.TokenTTL <= 0 || c.Enrollment.TokenTTL > 30*24*time.Hour {
		bad("enrollment.token_ttl %s: want more than 0 and at most 720h", c.Enrollment.TokenTTL)
	}
	return errors.Join(errs...)
}

// AdminTokenPath is where the admin token is read from or generated into.
func (c *Config) AdminTokenPath() string {
	if c.HTTP.AdminTokenFile != "" {
		return c.HTTP.AdminTokenFile
	}
	return filepath.Join(c.DataDir, "admin.token")
}

// ParseLevel parses a log level name.
func ParseLevel(s string) (slog.Level, error) {
	var l slog.Level
	if err := l.UnmarshalText([]byte(s)); err != nil {
		return l, fmt.Errorf("level %q: want debug, info, warn or error", s)
	}
	return l, nil
}

func hostOf(hostport string) string {
	h, _, _ := net.SplitHostPort(hostport)
	return h
}

func checkHostPort(s string) error {
	host, port, err := net.SplitHostPort(s)
	if err != nil {
		return err
	}
	if host == "" {
		return fmt.Errorf("%q: name the host or IP address to listen on", s)
	}
	if port == "" {
		return fmt.Errorf("%q: no port", s)
	}
	return nil
}

func checkBrokerURL(s string) error {
	u, err := url.Parse(s)
	if err != nil {
		return err
	}
	switch u.Scheme {
	case "tcp", "mqtt", "ssl", "tls", "mqtts", "ws", "wss":
	default:
		return fmt.Errorf("%q: want a tcp://, ssl://, ws:// or wss:// URL", s)
	}
	if u.Host == "" {
		return fmt.Errorf("%q: no host", s)
	}
	return nil
}
