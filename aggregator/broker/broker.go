// Package broker runs the MQTT broker that the aggregator embeds when no external broker
// is configured: NATS server with its MQTT 3.1.1 listener (QoS 0/1, retained messages,
// wills, persistent sessions) on loopback. Durability of events never depends on it: the
// agent's outbox and the aggregator's acks after commit provide that.
package broker

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/nats-io/nats-server/v2/server"
)

// Config configures the embedded broker.
type Config struct {
	// Listen is the MQTT listen address, host:port. Port 0 picks a free port.
	Listen string
	// DataDir holds the broker's session and retained-message store.
	DataDir string
	// MaxPayload bounds one MQTT message; it must hold the largest baseline event.
	MaxPayload int32
}

// DefaultMaxPayload is 64 MiB, NATS' own upper bound and event.MaxEnvelopeSize.
const DefaultMaxPayload = 64 << 20

// Broker is a running embedded broker.
type Broker struct {
	srv *server.Server
	url string
}

// Start starts the broker and waits until it accepts connections.
func Start(cfg Config, log *slog.Logger) (*Broker, error) {
	host, portStr, err := net.SplitHostPort(cfg.Listen)
	if err != nil {
		return nil, fmt.Errorf("broker listen %q: %w", cfg.Listen, err)
	}
	port, err := strconv.Atoi(portStr)
	if err != nil {
		return nil, fmt.Errorf("broker listen port %q: %w", portStr, err)
	}
	if port == 0 {
		if port, err = freePort(host); err != nil {
			return nil, err
		}
	}
	if cfg.MaxPayload == 0 {
		cfg.MaxPayload = DefaultMaxPayload
	}
	if err := os.MkdirAll(cfg.DataDir, 0o700); err != nil {
		return nil, fmt.Errorf("broker data dir: %w", err)
	}
	opts := &server.Options{
		ServerName: "fenceline-embedded",
		// The NATS client port is not used by Fenceline; keep it on loopback and random.
		Host:       "127.0.0.1",
		Port:       server.RANDOM_PORT,
		JetStream:  true,
		StoreDir:   cfg.DataDir,
		MaxPayload: cfg.MaxPayload,
		NoSigs:     true,
	}
	opts.MQTT.Host = host
	opts.MQTT.Port = port
	// TODO: per-agent credentials and topic ACLs on the embedded broker; today it trusts
	// every client on its (loopback) listener, and the aggregator trusts only signatures.
	srv, err := server.NewServer(opts)
	if err != nil {
		return nil, fmt.Errorf("broker: %w", err)
	}
	srv.SetLoggerV2(&natsLogger{log: log.With("component", "broker")}, false, false, false)
	go srv.Start()
	if !srv.ReadyForConnections(15 * time.Second) {
		srv.Shutdown()
		return nil, errors.New("broker: not ready after 15s")
	}
	b := &Broker{srv: srv, url: "tcp://" + net.JoinHostPort(host, strconv.Itoa(port))}
	log.Info("embedded MQTT broker listening", "url", b.url)
	return b, nil
}

// URL is the broker's MQTT address as a client dials it, e.g. tcp://127.0.0.1:1883.
func (b *Broker) URL() string { return b.url }

// Shutdown stops the broker and waits for it to finish, or for ctx to end.
func (b *Broker) Shutdown(ctx context.Context) error {
	b.srv.Shutdown()
	done := make(chan struct{})
	go func() {
		b.srv.WaitForShutdown()
		close(done)
	}()
	select {
	case <-done:
		return nil
	case <-ctx.Done():
		return fmt.Errorf("broker shutdown: %w", ctx.Err())
	}
}

func freePort(host string) (int, error) {
	l, err := net.Listen("tcp", net.JoinHostPort(host, "0"))
	if err != nil {
		return 0, fmt.Errorf("broker: pick port: %w", err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

// natsLogger forwards the NATS server's log to slog: notices at debug (the server is
// chatty at start), warnings and errors as such.
type natsLogger struct{ log *slog.Logger }

func (l *natsLogger) Noticef(format string, v ...any) { l.log.Debug(fmt.Sprintf(format, v...)) }
func (l *natsLogger) Warnf(format string, v ...any) {
	msg := fmt.Sprintf(format, v...)
	// A large maximum payload is deliberate (baselines of big rulesets); NATS warns about it
	// on every start.
	if strings.HasPrefix(msg, "Maximum payloads over") {
		l.log.Debug(msg)
		return
	}
	l.log.Warn(msg)
}
func (l *natsLogger) Fatalf(format string, v ...any) { l.log.Error(fmt.Sprintf(format, v...)) }
func (l *natsLogger) Errorf(format string, v ...any) { l.log.Error(fmt.Sprintf(format, v...)) }
func (l *natsLogger) Debugf(format string, v ...any) { l.log.Debug(fmt.Sprintf(format, v...)) }
func (l *natsLogger) Tracef(format string, v ...any) { l.log.Debug(fmt.Sprintf(format, v...)) }
