package snmp

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/gosnmp/gosnmp"
)

// Target says how to reach one device.
type Target struct {
	// Address is host:port (the port defaults to 161).
	Address string
	// Version is "2c" or "3".
	Version   string
	Community string
	V3        USM
	// Timeout bounds one request attempt; Retries is how many more attempts follow.
	Timeout time.Duration
	Retries int
	// MaxRepetitions is the GETBULK repetition count of a walk (default 20).
	MaxRepetitions uint32
}

// USM holds SNMPv3 user-based security settings. The security level follows from what
// is set: a privacy protocol means authPriv, an auth protocol alone authNoPriv.
type USM struct {
	User           string
	AuthProtocol   string // SHA, SHA224, SHA256, SHA384, SHA512
	AuthPassphrase string
	PrivProtocol   string // AES (AES-128), AES192, AES256
	PrivPassphrase string
	ContextName    string
}

// Check reports what is wrong with the settings, or nil.
func (u USM) Check() error {
	_, _, err := u.usm()
	return err
}

// usm builds gosnmp's security parameters and message flags for u.
func (u USM) usm() (*gosnmp.UsmSecurityParameters, gosnmp.SnmpV3MsgFlags, error) {
	sp := &gosnmp.UsmSecurityParameters{UserName: u.User}
	if u.User == "" {
		return nil, 0, errors.New("v3 user is empty")
	}
	flags := gosnmp.NoAuthNoPriv
	if u.AuthProtocol != "" {
		switch strings.ToUpper(u.AuthProtocol) {
		case "SHA":
			sp.AuthenticationProtocol = gosnmp.SHA
		case "SHA224":
			sp.AuthenticationProtocol = gosnmp.SHA224
		case "SHA256":
			sp.AuthenticationProtocol = gosnmp.SHA256
		case "SHA384":
			sp.AuthenticationProtocol = gosnmp.SHA384
		case "SHA512":
			sp.AuthenticationProtocol = gosnmp.SHA512
		default:
			return nil, 0, fmt.Errorf("v3 auth protocol %q: want SHA, SHA224, SHA256, SHA384 or SHA512",
				u.AuthProtocol)
		}
		if len(u.AuthPassphrase) < 8 {
			return nil, 0, errors.New("v3 auth passphrase is shorter than 8 characters")
		}
		sp.AuthenticationPassphrase = u.AuthPassphrase
		flags = gosnmp.AuthNoPriv
	}
	if u.PrivProtocol != "" {
		if flags == gosnmp.NoAuthNoPriv {
			return nil, 0, errors.New("v3 privacy needs an auth protocol")
		}
		switch strings.ToUpper(u.PrivProtocol) {
		case "AES", "AES128":
			sp.PrivacyProtocol = gosnmp.AES
		case "AES192":
			sp.PrivacyProtocol = gosnmp.AES192
		case "AES256":
			sp.PrivacyProtocol = gosnmp.AES256
		default:
			return nil, 0, fmt.Errorf("v3 privacy protocol %q: want AES, AES192 or AES256", u.PrivProtocol)
		}
		if len(u.PrivPassphrase) < 8 {
			return nil, 0, errors.New("v3 privacy passphrase is shorter than 8 characters")
		}
		sp.PrivacyPassphrase = u.PrivPassphrase
		flags = gosnmp.AuthPriv
	}
	return sp, flags, nil
}

// Client talks to one target. It is not safe for concurrent use: one goroutine per
// target owns it (gosnmp instances must not be shared).
type Client struct {
	t Target
	g *gosnmp.GoSNMP
}

// Dial prepares a client for t: it resolves the address and opens a UDP socket, which
// sends nothing yet.
func Dial(t Target) (*Client, error) {
	if t.Timeout <= 0 {
		t.Timeout = 2 * time.Second
	}
	if t.MaxRepetitions == 0 {
		t.MaxRepetitions = 20
	}
	g, err := session(t)
	if err != nil {
		return nil, err
	}
	return &Client{t: t, g: g}, nil
}

// session builds and connects a gosnmp instance for t, with fresh SNMPv3 security
// parameters (no engine discovered yet).
func session(t Target) (*gosnmp.GoSNMP, error) {
	host, port, err := net.SplitHostPort(t.Address)
	if err != nil {
		host, port = t.Address, "161"
	}
	p, err := strconv.ParseUint(port, 10, 16)
	if err != nil {
		return nil, fmt.Errorf("address %q: port: %w", t.Address, err)
	}
	g := &gosnmp.GoSNMP{
		Target: host, Port: uint16(p), Transport: "udp", Timeout: t.Timeout, Retries: t.Retries,
		MaxOids: gosnmp.MaxOids, MaxRepetitions: t.MaxRepetitions, Context: context.Background(),
	}
	switch t.Version {
	case "2c", "v2c":
		g.Version, g.Community = gosnmp.Version2c, t.Community
	case "3", "v3":
		sp, flags, err := t.V3.usm()
		if err != nil {
			return nil, err
		}
		g.Version, g.SecurityModel, g.MsgFlags, g.SecurityParameters = gosnmp.Version3,
			gosnmp.UserSecurityModel, flags, sp
		g.ContextName = t.V3.ContextName
	default:
		return nil, fmt.Errorf("snmp version %q: want 2c or 3", t.Version)
	}
	if err := g.Connect(); err != nil {
		return nil, fmt.Errorf("connect %s: %w", t.Address, err)
	}
	return g, nil
}

// rediscover reports whether an SNMPv3 request that failed with err is worth one more
// try on a new session. gosnmp discovers the target's engine once and keeps it; a device
// that was replaced or reset has a new engine id (and keys localized to it), and every
// request on the old session fails authentication. A wrong passphrase fails again on the
// new session, and the error stands.
func (c *Client) rediscover(err error) bool {
	if c.g.Version != gosnmp.Version3 || !errors.Is(err, ErrAuth) {
		return false
	}
	g, serr := session(c.t)
	if serr != nil {
		return false
	}
	c.g.Close()
	c.g = g
	return true
}

// Close closes the socket.
func (c *Client) Close() error { return c.g.Close() }

// Get reads the given instances in one request. A missing instance comes back as a
// varbind of type NoSuchObject or NoSuchInstance, not as an error.
func (c *Client) Get(ctx context.Context, oids []string) ([]gosnmp.SnmpPDU, error) {
	vbs, err := c.get(ctx, oids)
	if err != nil && c.rediscover(err) {
		vbs, err = c.get(ctx, oids)
	}
	return vbs, err
}

func (c *Client) get(ctx context.Context, oids []string) ([]gosnmp.SnmpPDU, error) {
	c.g.Context = ctx
	resp, err := c.g.Get(oids)
	if err != nil {
		return nil, c.classify(ctx, "get", err)
	}
	if resp.Error != gosnmp.NoError {
		return nil, fmt.Errorf("%s: get: %w %s at varbind %d", c.t.Address, statusErr(resp.Error),
			resp.Error, resp.ErrorIndex)
	}
	if len(resp.Variables) != len(oids) {
		return nil, fmt.Errorf("%s: get: %w: %d varbinds for %d OIDs", c.t.Address, ErrMalformed,
			len(resp.Variables), len(oids))
	}
	for i, v := range resp.Variables {
		if strings.TrimPrefix(v.Name, ".") != strings.TrimPrefix(oids[i], ".") {
			return nil, fmt.Errorf("%s: get: %w: asked for %s, got %s", c.t.Address, ErrMalformed,
				oids[i], v.Name)
		}
	}
	return resp.Variables, nil
}

// Walk returns every varbind under root, in order, with GETBULK. Unlike gosnmp's own
// walk it checks every varbind: each OID must come after the one before (ErrNotIncreasing
// otherwise, so a looping agent cannot keep it busy), a walk ends only at the end of the
// subtree or of the MIB (an error status is an error, never a silently short table), and
// it returns at most max varbinds (ErrWalkLimit).
func (c *Client) Walk(ctx context.Context, root string, max int) ([]gosnmp.SnmpPDU, error) {
	vbs, err := c.walk(ctx, root, max)
	if err != nil && c.rediscover(err) {
		vbs, err = c.walk(ctx, root, max)
	}
	return vbs, err
}

func (c *Client) walk(ctx context.Context, root string, max int) ([]gosnmp.SnmpPDU, error) {
	root = strings.TrimPrefix(root, ".")
	base, err := parseOID(root)
	if err != nil {
		return nil, fmt.Errorf("walk %s: %w", root, err)
	}
	c.g.Context = ctx
	last := base
	var out []gosnmp.SnmpPDU
	for {
		resp, err := c.g.GetBulk([]string{"." + joinOID(last)}, 0, c.t.MaxRepetitions)
		if err != nil {
			return nil, c.classify(ctx, "walk "+root, err)
		}
		if resp.Error != gosnmp.NoError {
			return nil, fmt.Errorf("%s: walk %s: %w %s after %s", c.t.Address, root,
				statusErr(resp.Error), resp.Error, joinOID(last))
		}
		if len(resp.Variables) == 0 {
			return nil, fmt.Errorf("%s: walk %s: %w: empty response after %s", c.t.Address, root,
				ErrMalformed, joinOID(last))
		}
		for _, v := range resp.Variables {
			if v.Type == gosnmp.EndOfMibView {
				return out, nil
			}
			oid, err := parseOID(strings.TrimPrefix(v.Name, "."))
			if err != nil {
				return nil, fmt.Errorf("%s: walk %s: %w: OID %q", c.t.Address, root, ErrMalformed, v.Name)
			}
			if len(oid) <= len(base) || compareOID(oid[:len(base)], base) != 0 {
				if compareOID(oid, last) <= 0 {
					return nil, fmt.Errorf("%s: walk %s: %w: %s after %s", c.t.Address, root,
						ErrNotIncreasing, joinOID(oid), joinOID(last))
				}
				return out, nil // past the subtree
			}
			if compareOID(oid, last) <= 0 {
				return nil, fmt.Errorf("%s: walk %s: %w: %s after %s", c.t.Address, root,
					ErrNotIncreasing, joinOID(oid), joinOID(last))
			}
			if v.Type == gosnmp.NoSuchObject || v.Type == gosnmp.NoSuchInstance {
				return nil, fmt.Errorf("%s: walk %s: %w: exception %s in a walk at %s", c.t.Address,
					root, ErrMalformed, v.Type, joinOID(oid))
			}
			if len(out) >= max {
				return nil, fmt.Errorf("%s: walk %s: %w of %d", c.t.Address, root, ErrWalkLimit, max)
			}
			v.Name = joinOID(oid)
			out = append(out, v)
			last = oid
		}
	}
}

// statusErr is the sentinel for an error status: authorizationError (the agent's access
// control refused the user or community) is ErrAuth, the rest ErrPDU.
func statusErr(s gosnmp.SNMPError) error {
	if s == gosnmp.AuthorizationError {
		return ErrAuth
	}
	return ErrPDU
}

// classify maps gosnmp's errors onto this package's.
func (c *Client) classify(ctx context.Context, op string, err error) error {
	if ctx.Err() != nil {
		return ctx.Err()
	}
	switch {
	case errors.Is(err, gosnmp.ErrMaxRetriesExceeded), errors.Is(err, context.DeadlineExceeded),
		errors.Is(err, syscall.ECONNREFUSED), errors.Is(err, syscall.EHOSTUNREACH),
		errors.Is(err, syscall.ENETUNREACH):
		return fmt.Errorf("%s: %s: %w (timeout %s, %d retries): %v", c.t.Address, op, ErrTimeout,
			c.t.Timeout, c.t.Retries, err)
	case errors.Is(err, gosnmp.ErrUnknownUsername), errors.Is(err, gosnmp.ErrWrongDigest),
		errors.Is(err, gosnmp.ErrDecryption), errors.Is(err, gosnmp.ErrUnknownSecurityLevel),
		errors.Is(err, gosnmp.ErrUnknownEngineID), errors.Is(err, gosnmp.ErrNotInTimeWindow):
		return fmt.Errorf("%s: %s: %w: %v", c.t.Address, op, ErrAuth, err)
	case strings.Contains(err.Error(), "not authentic"):
		// gosnmp v1.47.0 has no sentinel for a response failing authentication (the
		// agent's unauthenticated wrongDigest report, or a forged reply).
		return fmt.Errorf("%s: %s: %w: %v", c.t.Address, op, ErrAuth, err)
	}
	return fmt.Errorf("%s: %s: %w: %v", c.t.Address, op, ErrMalformed, err)
}
