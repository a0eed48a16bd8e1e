// Package nft reads the live nftables ruleset of a network namespace through netlink and
// reports committed changes. It is the agent's only window on nftables: it never runs the
// nft binary. The bytes it reads are turned into the canonical model by shared/nftcanon.
package nft

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync"

	"github.com/mdlayher/netlink"
	"golang.org/x/sys/unix"
)

// NetnsDir is where named network namespaces live (`ip netns add NAME`).
const NetnsDir = "/var/run/netns"

// Reader reads one network namespace's nftables state. It is safe for concurrent use;
// reads are serialized on one netlink socket.
type Reader struct {
	ns *os.File // nil for the current namespace
	// name is the namespace's name under NetnsDir, and nsDev, nsIno identify the
	// namespace it named when it was opened (see CheckNamespace).
	name         string
	nsDev, nsIno uint64

	mu     sync.Mutex
	conn   *netlink.Conn // query socket, dialled on first use and after errors
	closed bool
	refs   int // users of ns besides the Reader itself: running watches
	// watchBuf is the receive buffer of notification sockets; 0 means monitorRcvBuf.
	watchBuf int
	// consts remembers the elements of constant sets between reads (guarded by mu).
	consts *constSets
	// watchHold, when set, keeps the next watches from reading their socket until it is
	// closed: tests fill the socket's buffer with it to make the kernel drop messages.
	watchHold <-chan struct{}
}

// SetWatchBuffer sets the receive buffer of the sockets later Watch calls listen on.
// The default (32 MiB) carries a 10k-rule load in one commit; a smaller one makes the
// kernel drop notifications sooner (tests use it to force an overrun).
func (r *Reader) SetWatchBuffer(bytes int) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.watchBuf = bytes
}

// SetWatchHold makes the sockets of later Watch calls go unread until hold is closed, so
// that commits meanwhile overrun them as they would a stalled agent. It is for tests that
// need the kernel to drop notifications without depending on scheduling.
func (r *Reader) SetWatchHold(hold <-chan struct{}) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.watchHold = hold
}

// Open prepares a reader for the named namespace under /var/run/netns, or for the
// namespace of the calling process when netns is "". It checks that nf_tables answers.
func Open(netns string) (*Reader, error) {
	r := &Reader{consts: &constSets{}}
	if netns != "" {
		if netns != filepath.Base(netns) || netns == "." || netns == ".." {
			return nil, fmt.Errorf("netns %q: not a namespace name", netns)
		}
		f, err := os.Open(filepath.Join(NetnsDir, netns))
		if err != nil {
			return nil, fmt.Errorf("open netns: %w", err)
		}
		var st unix.Stat_t
		if err := unix.Fstat(int(f.Fd()), &st); err != nil {
			f.Close()
			return nil, fmt.Errorf("open netns %s: %w", netns, err)
		}
		r.ns, r.name, r.nsDev, r.nsIno = f, netns, uint64(st.Dev), st.Ino
	}
	if _, err := r.Generation(); err != nil {
		r.Close()
		return nil, err
	}
	return r, nil
}

// ErrNamespaceGone reports that the named namespace a Reader watches was deleted, or
// replaced by another namespace of the same name: the Reader still reads the old one,
// which nothing else can reach.
var ErrNamespaceGone = errors.New("network namespace gone")

// CheckNamespace reports whether the name the Reader was opened with still names the
// namespace it reads. A Reader of the current namespace always passes.
func (r *Reader) CheckNamespace() error {
	if r.name == "" {
		return nil
	}
	var st unix.Stat_t
	err := unix.Stat(filepath.Join(NetnsDir, r.name), &st)
	switch {
	case errors.Is(err, unix.ENOENT):
		return fmt.Errorf("%w: %s was deleted", ErrNamespaceGone, r.name)
	case err != nil:
		return fmt.Errorf("check netns %s: %w", r.name, err)
	case uint64(st.Dev) != r.nsDev || st.Ino != r.nsIno:
		return fmt.Errorf("%w: %s now names another namespace (deleted and created again)",
			ErrNamespaceGone, r.name)
	}
	return nil
}

// nsfd is the namespace descriptor for dialling; 0 means the current namespace. The
// *os.File stays referenced by r, so the descriptor stays valid while r is open.
func (r *Reader) nsfd() int {
	if r.ns == nil {
		return 0
	}
	return int(r.ns.Fd())
}

// Close releases the reader. Running watches keep the namespace open until they end.
func (r *Reader) Close() error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.closed {
		return nil
	}
	r.closed = true
	r.dropConnLocked()
	return r.releaseNSLocked()
}

// acquire takes a reference on the namespace for a watch.
func (r *Reader) acquire() error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.closed {
		return ErrClosed
	}
	r.refs++
	return nil
}

// release drops a watch's reference; the last one out closes the namespace file.
func (r *Reader) release() {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.refs--
	_ = r.releaseNSLocked()
}

func (r *Reader) releaseNSLocked() error {
	if !r.closed || r.refs > 0 || r.ns == nil {
		return nil
	}
	err := r.ns.Close()
	r.ns = nil
	return err
}

// withConn runs f with the query socket, dialling it if needed. A socket that saw an
// error is dropped, so that a reply left unread cannot confuse the next request.
func (r *Reader) withConn(f func(c *netlink.Conn) error) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.closed {
		return ErrClosed
	}
	if r.conn == nil {
		c, err := dial(r.nsfd(), unix.NETLINK_NETFILTER, rcvBuf)
		if err != nil {
			return err
		}
		r.conn = c
	}
	err := f(r.conn)
	if err != nil {
		r.dropConnLocked()
	}
	return err
}

func (r *Reader) dropConnLocked() {
	if r.conn != nil {
		_ = r.conn.Close()
		r.conn = nil
	}
}
