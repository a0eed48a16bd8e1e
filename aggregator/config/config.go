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
	Cluster        ClusterConfig        `mapstructure:"cluster"`
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
// TODO: TLS for raft (a StreamLayer); until then raft binds loopback only.
type RaftConfig struct {
	// Listen is the address raft binds and advertises; peers reach the node there and
	// its outgoing raft connections leave from its IP address.
	Listen string `mapstructure:"listen"`
	NodeID string `mapstructure:"node_id"`
	// Timeouts of failure detection: a follower that hears nothing for HeartbeatTimeout
	// starts an election; a leader that cannot reach a quorum for LeaderLeaseTimeout
	// steps down.
	HeartbeatTimeout   time.Duration `mapstructure:"heartbeat_timeout"`
	ElectionTimeout    time.Duration `mapstructure:"election_timeout"`
	LeaderLeaseTimeout time.Duration `mapstructure:"leader_lease_timeout"`
	// SnapshotThreshold log entries since the last snapshot trigger a new one, checked
	// every SnapshotInterval; TrailingLogs entries stay in the log after a snapshot.
	SnapshotThreshold uint64        `mapstructure:"snapshot_threshold"`
	SnapshotInterval  time.Duration `mapstructure:"snapshot_interval"`
	TrailingLogs      uint64        `mapstructure:"trailing_logs"`
}

// ClusterConfig configures membership of a cluster of aggregators.
type ClusterConfig struct {
	// Bootstrap: a node without raft state starts a new cluster of itself. Set it on the
	// first node only; the others join.
	Bootstrap bool `mapstructure:"bootstrap"`
	// Join is the API URL of a member; a node without raft state asks it to be added
	// (it is forwarded to the leader). Setting it means no bootstrap.
	Join string `mapstructure:"join"`
	// AdvertiseAPI is this node's API URL as the other nodes reach it (they forward
	// writes to the leader there). Default: http:// and http.listen.
	AdvertiseAPI string `mapstructure:"advertise_api"`
	// Forward: a follower forwards writes to the leader; false answers 503 naming it.
	Forward bool `mapstructure:"forward"`
	// TickInterval is how often the leader proposes the time for deadline checks.
	TickInterval time.Duration `mapstructure:"tick_interval"`
}

// Clustered reports whether the node is meant to be one of several.
func (c *ClusterConfig) Clustered() bool { return c.Join != "" || !c.Bootstrap }

// APIURL is the URL the other nodes reach this node's API at.
func (c *Config) APIURL() string {
	if c.Cluster.AdvertiseAPI != "" {
		return c.Cluster.AdvertiseAPI
	}
	return "http://" + c.HTTP.Listen
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
	// QueueBytes bounds the payload bytes waiting, in total; at least the largest
	// envelope (64 MiB).
	QueueBytes int64 `mapstructure:"queue_bytes"`
	Workers    int   `mapstructure:"workers"`
}

// EnrollmentConfig configures enrollment tokens.
type EnrollmentConfig struct {
	// TokenTTL is how long a token is valid when the request names no ttl.
	TokenTTL time.Duration `mapstructure:"token_ttl"`
}

// defaults lists every key and its default. Load binds each key to its environment
// variable: viper ignores the environment for keys it has not seen.
var defaults = map[string]any{
	"data_dir":                  "/var/lib/fenceline-aggregator",
	"log.level":                 "info",
	"log.format":                "text",
	"http.listen":               "127.0.0.1:8443",
	"http.admin_token":          "",
	"http.admin_token_file":     "",
	"raft.listen":               "127.0.0.1:7000",
	"raft.node_id":              "aggregator-1",
	"raft.heartbeat_timeout":    "1s",
	"raft.election_timeout":     "1s",
	"raft.leader_lease_timeout": "500ms",
	"raft.snapshot_threshold":   8192,
	"raft.snapshot_interval":    "2m",
	"raft.trailing_logs":        10240,
	"cluster.bootstrap":         true,
	"cluster.join":              "",
	"cluster.advertise_api":     "",
	"cluster.forward":           true,
	"cluster.tick_interval":     "1s",
	"broker.url":                "",
	"broker.client_id":          "fenceline-aggregator",
	"broker.username":           "",
	"broker.password":           "",
	"broker.advertise_url":      "",
	"embedded_broker.listen":    "127.0.0.1:1883",
	"ingest.queue_size":         1024,
	"ingest.queue_bytes":        256 << 20,
	"ingest.workers":            4,
	"enrollment.token_ttl":      "24h",
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
	"node-id":                "raft.node_id",
	"join":                   "cluster.join",
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
	fs.String("node-id", "", "raft node id (default "+defaults["raft.node_id"].(string)+")")
	fs.String("join", "", "API URL of a cluster member to join at first start")
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
	errs = append(errs, c.validateCluster()...)
	if c.Ingest.Workers < 1 || c.Ingest.QueueSize < c.Ingest.Workers {
		bad("ingest: want workers >= 1 and queue_size >= workers, have %d and %d",
			c.Ingest.Workers, c.Ingest.QueueSize)
	}
	if c.Ingest.QueueBytes < event.MaxEnvelopeSize {
		bad("ingest.queue_bytes %d is below the largest envelope (%d bytes)",
			c.Ingest.QueueBytes, event.MaxEnvelopeSize)
	}
	if c.Enrollment.TokenTTL <= 0 || c.Enrollment.TokenTTL > 30*24*time.Hour {
		bad("enrollment.token_ttl %s: want more than 0 and at most 720h", c.Enrollment.TokenTTL)
	}
	return errors.Join(errs...)
}

func (c *Config) validateCluster() []error {
	var errs []error
	bad := func(format string, args ...any) { errs = append(errs, fmt.Errorf(format, args...)) }
	r := c.Raft
	if r.HeartbeatTimeout < 5*time.Millisecond || r.ElectionTimeout < 5*time.Millisecond ||
		r.LeaderLeaseTimeout < 5*time.Millisecond || r.LeaderLeaseTimeout > r.HeartbeatTimeout {
		bad("raft timeouts: want heartbeat_timeout, election_timeout and leader_lease_timeout "+
			"of 5ms or more, and leader_lease_timeout <= heartbeat_timeout; have %s, %s, %s",
			r.HeartbeatTimeout, r.ElectionTimeout, r.LeaderLeaseTimeout)
	}
	if r.SnapshotThreshold < 1 || r.SnapshotInterval < 10*time.Millisecond {
		bad("raft: want snapshot_threshold >= 1 and snapshot_interval >= 10ms")
	}
	if c.Cluster.TickInterval < 10*time.Millisecond {
		bad("cluster.tick_interval %s: want 10ms or more", c.Cluster.TickInterval)
	}
	if c.Cluster.Join != "" {
		if err := checkHTTPURL(c.Cluster.Join); err != nil {
			bad("cluster.join: %v", err)
		}
	}
	if c.Cluster.AdvertiseAPI != "" {
		if err := checkHTTPURL(c.Cluster.AdvertiseAPI); err != nil {
			bad("cluster.advertise_api: %v", err)
		}
	}
	if c.Cluster.Clustered() {
		if c.Broker.URL == "" {
			bad("a cluster needs an external MQTT broker: set broker.url (e.g. Mosquitto); the " +
				"embedded broker serves a single node")
		}
		if ip := net.ParseIP(hostOf(c.HTTP.Listen)); c.Cluster.AdvertiseAPI == "" &&
			(ip == nil || ip.IsUnspecified()) {
			bad("cluster.advertise_api: set it when http.listen (%s) is not an address the "+
				"other nodes can reach", c.HTTP.Listen)
		}
	}
	return errs
}

func checkHTTPURL(s string) error {
	u, err := url.Parse(s)
	if err != nil {
		return err
	}
	if (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return fmt.Errorf("%q: want http://host:port", s)
	}
	return nil
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
