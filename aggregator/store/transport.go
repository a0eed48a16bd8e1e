package store

import (
	"fmt"
	"net"
	"time"

	"github.com/hashicorp/raft"
)

// tcpLayer is raft's stream layer: plain TCP that listens on the node's raft address and
// dials its peers from that same IP address. Binding outgoing connections to the raft IP
// keeps a node's cluster traffic on one address, so a firewall rule (or a test's
// partition) can name a node by its address in both directions.
// TODO: TLS (mutual, with a cluster CA); until then raft binds loopback only.
type tcpLayer struct {
	net.Listener
	advertise net.Addr
	dialer    net.Dialer
}

// newTCPLayer listens on bind, a host:port with a concrete IP address.
func newTCPLayer(bind string) (*tcpLayer, error) {
	addr, err := net.ResolveTCPAddr("tcp", bind)
	if err != nil {
		return nil, fmt.Errorf("raft listen %q: %w", bind, err)
	}
	if addr.IP == nil || addr.IP.IsUnspecified() {
		return nil, fmt.Errorf("raft listen %q: name the IP address peers reach this node at", bind)
	}
	ln, err := net.Listen("tcp", bind)
	if err != nil {
		return nil, fmt.Errorf("raft listen: %w", err)
	}
	l := &tcpLayer{Listener: ln, advertise: ln.Addr()}
	l.dialer.LocalAddr = &net.TCPAddr{IP: addr.IP}
	return l, nil
}

// Dial opens a connection to a peer from this node's raft IP address.
func (l *tcpLayer) Dial(address raft.ServerAddress, timeout time.Duration) (net.Conn, error) {
	d := l.dialer
	d.Timeout = timeout
	return d.Dial("tcp", string(address))
}

// Addr is the address peers dial: the listener's own, port included.
func (l *tcpLayer) Addr() net.Addr { return l.advertise }

// ClusterDialer returns a dialer whose connections leave from this node's raft IP address;
// the API uses it to forward requests to the leader.
func (s *Store) ClusterDialer() *net.Dialer {
	d := s.layer.dialer
	d.Timeout = 5 * time.Second
	return &d
}

func splitHostPort(addr string) (string, string, error) { return net.SplitHostPort(addr) }
