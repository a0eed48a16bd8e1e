package agent

import (
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"net"
	"os"
	"strings"
	"time"

	"github.com/fenceline/fenceline/agent/snmp"
	shippedprofiles "github.com/fenceline/fenceline/configs/snmp"
	"github.com/fenceline/fenceline/shared/event"
)

// SNMPConfig lists the devices the agent watches over SNMP besides its own ruleset
// (firewalls that cannot host an agent). Each target is a device of its own: its own
// enrollment, key, outbox and event chain, kept under state_dir/snmp/NAME.
type SNMPConfig struct {
	// ProfilesDir holds site profiles. The shipped profiles (configs/snmp/) are built into
	// the agent; a profile here is added to them, or replaces the shipped one of the same
	// name. A directory that does not exist means the shipped profiles only.
	ProfilesDir string `mapstructure:"profiles_dir"`
	// TrapListen is the UDP address traps and informs are received on (e.g.
	// 0.0.0.0:162); empty means no trap listener.
	TrapListen string `mapstructure:"trap_listen"`
	// TrapEngineID is the trap listener's SNMPv3 engine id in hex (5 to 32 octets, e.g.
	// 80001f8804 followed by text), which devices sending v3 informs are configured
	// with. Empty: v3 informs are not accepted (v3 traps, v2c traps and informs are).
	TrapEngineID string `mapstructure:"trap_engine_id"`
	// Targets is a list (not a map keyed by name: configuration keys are
	// case-insensitive, device names are not).
	Targets []SNMPTarget `mapstructure:"targets"`
}

// SNMPTarget is one device watched over SNMP.
type SNMPTarget struct {
	// Name is the target's local name: its state directory and log label. The device
	// name events carry is the one it was enrolled as.
	Name string `mapstructure:"name"`
	// EnrollToken enrolls the target at start if its state directory holds no
	// enrollment yet (a token from `fencectl enroll --device DEVICE`).
	EnrollToken string `mapstructure:"enroll_token"`
	// Address is host:port (port 161 by default).
	Address string `mapstructure:"address"`
	// Version is 2c or 3.
	Version   string     `mapstructure:"version"`
	Community string     `mapstructure:"community"`
	V3        SNMPv3User `mapstructure:"v3"`
	// Profile names a profile in ProfilesDir (mib2, cisco-ios, cisco-asa, juniper,
	// fortigate, paloalto, mikrotik).
	Profile string `mapstructure:"profile"`
	// PollInterval paces the cheap change scalars (and retries of an unreachable
	// target); WalkInterval is the backstop walk of every configuration table.
	PollInterval time.Duration `mapstructure:"poll_interval"`
	WalkInterval time.Duration `mapstructure:"walk_interval"`
	// Timeout bounds one request attempt; Retries more attempts follow a timeout (default
	// 1: one lost UDP datagram does not make the target unreachable).
	Timeout        time.Duration `mapstructure:"timeout"`
	Retries        *int          `mapstructure:"retries"`
	MaxRepetitions int           `mapstructure:"max_repetitions"`
	// TrapCommunity is the community its v2c traps carry (default: Community). Its v3
	// traps must come from V3.User.
	TrapCommunity string `mapstructure:"trap_community"`
	// Broker overrides the agent's broker credentials for this device (one broker user
	// per device under the example ACL); empty fields take the agent's.
	Broker BrokerConfig `mapstructure:"broker"`
}

// SNMPv3User holds SNMPv3 USM credentials. A privacy protocol means authPriv.
type SNMPv3User struct {
	User           string `mapstructure:"user"`
	AuthProtocol   string `mapstructure:"auth_protocol"` // SHA, SHA224, SHA256, SHA384, SHA512
	AuthPassphrase string `mapstructure:"auth_passphrase"`
	PrivProtocol   string `mapstructure:"priv_protocol"` // AES, AES192, AES256
	PrivPassphrase string `mapstructure:"priv_passphrase"`
	ContextName    string `mapstructure:"context_name"`
}

// SNMP target defaults.
const (
	defaultSNMPPoll    = 30 * time.Second
	defaultSNMPWalk    = 15 * time.Minute
	defaultSNMPTimeout = 2 * time.Second
	defaultSNMPRetries = 1
)

// validate fills target defaults and checks the section.
func (c *SNMPConfig) validate() []error {
	var errs []error
	if c.TrapListen != "" {
		if _, _, err := net.SplitHostPort(c.TrapListen); err != nil {
			errs = append(errs, fmt.Errorf("snmp.trap_listen %q: %w", c.TrapListen, err))
		}
	}
	if _, err := c.engineID(); err != nil {
		errs = append(errs, err)
	}
	names := map[string]bool{}
	for i := range c.Targets {
		t := &c.Targets[i]
		what := fmt.Sprintf("snmp.targets[%d] (%s)", i, t.Name)
		if !event.ValidName(t.Name) {
			errs = append(errs, fmt.Errorf("%s: name %q: letters, digits, '.', '_', '-'", what, t.Name))
		}
		if names[strings.ToLower(t.Name)] {
			errs = append(errs, fmt.Errorf("%s: name used twice", what))
		}
		names[strings.ToLower(t.Name)] = true
		if t.Address == "" {
			errs = append(errs, fmt.Errorf("%s: address is empty", what))
		}
		if t.Profile == "" {
			errs = append(errs, fmt.Errorf("%s: profile is empty", what))
		}
		if t.Version == "" {
			t.Version = "2c"
		}
		switch t.Version {
		case "2c":
			if t.Community == "" {
				errs = append(errs, fmt.Errorf("%s: community is empty", what))
			}
		case "3":
			if err := t.usm().Check(); err != nil {
				errs = append(errs, fmt.Errorf("%s: v3: %w", what, err))
			}
		default:
			errs = append(errs, fmt.Errorf("%s: version %q: want 2c or 3", what, t.Version))
		}
		if t.PollInterval == 0 {
			t.PollInterval = defaultSNMPPoll
		}
		if t.WalkInterval == 0 {
			t.WalkInterval = defaultSNMPWalk
		}
		if t.Timeout == 0 {
			t.Timeout = defaultSNMPTimeout
		}
		if t.PollInterval < 10*time.Millisecond || t.WalkInterval < 10*time.Millisecond ||
			t.Timeout < 10*time.Millisecond {
			errs = append(errs, fmt.Errorf("%s: poll_interval, walk_interval and timeout must be at least 10ms", what))
		}
		if t.Retries == nil {
			t.Retries = new(int)
			*t.Retries = defaultSNMPRetries
		}
		if *t.Retries < 0 || t.MaxRepetitions < 0 {
			errs = append(errs, fmt.Errorf("%s: retries and max_repetitions must not be negative", what))
		}
		if t.TrapCommunity == "" {
			t.TrapCommunity = t.Community
		}
	}
	return errs
}

// engineID decodes TrapEngineID; nil when it is empty.
func (c *SNMPConfig) engineID() ([]byte, error) {
	if c.TrapEngineID == "" {
		return nil, nil
	}
	b, err := hex.DecodeString(strings.TrimPrefix(strings.ToLower(c.TrapEngineID), "0x"))
	if err != nil || len(b) < 5 || len(b) > 32 {
		return nil, fmt.Errorf("snmp.trap_engine_id %q: want 5 to 32 octets in hex", c.TrapEngineID)
	}
	return b, nil
}

// loadSNMPProfiles returns the shipped profiles with those of dir laid over them, and
// says where they came from. A dir that does not exist adds nothing; a dir that exists
// but holds an invalid profile is an error.
func loadSNMPProfiles(dir string) (snmp.Profiles, string, error) {
	ps, err := snmp.LoadProfilesFS(shippedprofiles.Profiles)
	if err != nil {
		return nil, "", fmt.Errorf("shipped snmp profiles: %w", err)
	}
	if dir == "" {
		return ps, "built-in", nil
	}
	if _, err := os.Stat(dir); errors.Is(err, fs.ErrNotExist) {
		return ps, "built-in (" + dir + " does not exist)", nil
	}
	site, err := snmp.LoadProfiles(dir)
	if err != nil {
		return nil, "", err
	}
	return ps.Overlay(site), "built-in and " + dir, nil
}

func (t *SNMPTarget) usm() snmp.USM {
	return snmp.USM{User: t.V3.User, AuthProtocol: t.V3.AuthProtocol,
		AuthPassphrase: t.V3.AuthPassphrase, PrivProtocol: t.V3.PrivProtocol,
		PrivPassphrase: t.V3.PrivPassphrase, ContextName: t.V3.ContextName}
}

func (t *SNMPTarget) target() snmp.Target {
	return snmp.Target{Address: t.Address, Version: t.Version, Community: t.Community,
		V3: t.usm(), Timeout: t.Timeout, Retries: *t.Retries, MaxRepetitions: uint32(t.MaxRepetitions)}
}
