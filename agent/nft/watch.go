package nft

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"syscall"
	"time"

	"github.com/mdlayher/netlink"
	"golang.org/x/sys/unix"

	"github.com/fenceline/fenceline/shared/nftcanon"
)

// monitorRcvBuf is the receive buffer of the notification socket: a 10k-rule load is
// one burst of messages, which overflowed the default and was carried by 32 MiB.
const monitorRcvBuf = 32 << 20

// queueCap bounds the notifications held for a slow consumer; beyond it they fold into
// one overrun notification.
const queueCap = 1024

// maxUpdates bounds the messages kept for one generation. A bigger commit (a whole
// ruleset loaded at once) is reported without them: reading the ruleset again is then
// cheaper than applying every message.
const maxUpdates = 8192

// monitorChunk is the read size of the notification socket; the kernel packs several
// notifications into one datagram.
const monitorChunk = 1 << 20

// nfnlGroupNftables is NFNLGRP_NFTABLES, the multicast group of nf_tables changes.
const nfnlGroupNftables = 7

// Notification reports one committed ruleset generation, or that notifications were lost
// (Overrun) and the consumer must re-read the ruleset to catch up.
type Notification struct {
	Gen  uint32 // the generation the commit produced
	PID  uint32 // the committing process, as the kernel's generation message names it
	Comm string // its name, as the kernel reports it (at most 15 bytes)
	// LoginUID and Session are the committing process's audit login uid and session id,
	// read from /proc when the generation message arrived; empty when unset (no login
	// session) or when the process was already gone.
	LoginUID string
	Session  string
	// Updates are the object messages of the generation in the order the kernel sent
	// them; Complete says they are all there. A generation whose messages were lost or
	// were too many to keep has Complete false: the consumer reads the ruleset instead.
	Updates  []nftcanon.Update
	Complete bool
	// Overrun reports lost notifications: the kernel dropped messages (ENOBUFS) or the
	// consumer fell queueCap notifications behind. Gen is then the newest generation
	// known to be lost, or 0.
	Overrun bool
	Err     error // what was lost, with Overrun
}

// Watch reports every committed generation of the namespace's ruleset, with the messages
// it consisted of, until ctx ends, when the channel closes. It listens on its own netlink
// socket with a large receive buffer; when the kernel overruns it, Watch sends a
// notification with Overrun set and goes on. Notifications are queued for a slow
// consumer, so the socket is always drained.
func (r *Reader) Watch(ctx context.Context) (<-chan Notification, error) {
	r.mu.Lock()
	buf := r.watchBuf
	r.mu.Unlock()
	if buf <= 0 {
		buf = monitorRcvBuf
	}
	return r.watch(ctx, buf)
}

func (r *Reader) watch(ctx context.Context, buf int) (<-chan Notification, error) {
	if err := r.acquire(); err != nil {
		return nil, err
	}
	r.mu.Lock()
	fd, hold := r.nsfd(), r.watchHold
	r.mu.Unlock()
	c, err := dial(fd, unix.NETLINK_NETFILTER, buf)
	if err != nil {
		r.release()
		return nil, fmt.Errorf("monitor: %w", err)
	}
	if err := c.JoinGroup(nfnlGroupNftables); err != nil {
		c.Close()
		r.release()
		return nil, fmt.Errorf("monitor: join group: %w", err)
	}
	out := make(chan Notification)
	in := make(chan Notification)
	stop := make(chan struct{})
	go func() {
		// Unblock the receiver when ctx ends.
		select {
		case <-ctx.Done():
			_ = c.SetReadDeadline(time.Unix(1, 0))
		case <-stop:
		}
	}()
	go func() {
		defer r.release()
		defer c.Close()
		defer close(stop)
		if hold != nil {
			select {
			case <-hold:
			case <-ctx.Done():
				close(in)
				return
			}
		}
		receive(ctx, c, in)
	}()
	go deliver(ctx, in, out)
	return out, nil
}

// genBuilder collects the messages of the generation being received.
type genBuilder struct {
	updates []nftcanon.Update
	count   int
	lost    bool // messages of this generation were lost or dropped
}

// receive turns the socket's messages into one notification per generation until ctx
// ends. It never blocks on the consumer for long: deliver queues for it.
func receive(ctx context.Context, c *netlink.Conn, in chan<- Notification) {
	defer close(in)
	rc, err := c.SyscallConn()
	if err != nil {
		return
	}
	buf := make([]byte, monitorChunk)
	var g genBuilder
	send := func(n Notification) bool {
		select {
		case in <- n:
			return true
		case <-ctx.Done():
			return false
		}
	}
	for {
		n, err := recvMonitor(rc, buf)
		if ctx.Err() != nil {
			return
		}
		if err != nil {
			// Messages were dropped: the generation being received is incomplete, and
			// whole generations may be gone.
			g.lost = true
			if !send(Notification{Overrun: true, Err: fmt.Errorf("monitor: %w", err)}) {
				return
			}
			if !errors.Is(err, unix.ENOBUFS) && !errors.Is(err, errTruncated) {
				// Not a loss the socket recovers from; back off before trying again.
				select {
				case <-ctx.Done():
					return
				case <-time.After(100 * time.Millisecond):
				}
			}
			continue
		}
		for _, note := range g.parse(buf[:n]) {
			if !send(note) {
				return
			}
		}
	}
}

var errTruncated = errors.New("notification truncated")

// recvMonitor reads one datagram, reporting truncation as an error.
func recvMonitor(rc syscall.RawConn, buf []byte) (int, error) {
	var n int
	var rerr error
	err := rc.Read(func(fd uintptr) bool {
		n, _, rerr = unix.Recvfrom(int(fd), buf, unix.MSG_TRUNC)
		return rerr != unix.EAGAIN && rerr != unix.EWOULDBLOCK
	})
	if err != nil {
		return 0, err
	}
	if rerr != nil {
		return 0, rerr
	}
	if n > len(buf) {
		return 0, errTruncated
	}
	return n, nil
}

// parse reads the nf_tables messages of one datagram and returns a notification for
// every generation message among them.
func (g *genBuilder) parse(b []byte) []Notification {
	var out []Notification
	for len(b) >= nlmsgHdrLen {
		l := int(binary.NativeEndian.Uint32(b))
		typ := binary.NativeEndian.Uint16(b[4:])
		flags := binary.NativeEndian.Uint16(b[6:])
		if l < nlmsgHdrLen || l > len(b) {
			g.lost = true
			break
		}
		payload := b[nlmsgHdrLen:l]
		b = b[min((l+3)&^3, len(b)):]
		if typ>>8 != unix.NFNL_SUBSYS_NFTABLES || len(payload) < 4 {
			continue
		}
		msgType := typ & 0xff
		if msgType == nftcanon.MsgNewGen {
			out = append(out, g.finish(payload))
			continue
		}
		g.count++
		if g.lost || g.count > maxUpdates {
			g.updates = nil
			continue
		}
		g.updates = append(g.updates, nftcanon.Update{Type: msgType, Flags: flags,
			Msg: append(nftcanon.Msg(nil), payload...)})
	}
	return out
}

// finish ends the generation its NEWGEN message closes.
func (g *genBuilder) finish(payload []byte) Notification {
	n := Notification{Updates: g.updates, Complete: !g.lost && g.count <= maxUpdates}
	if !n.Complete {
		n.Updates = nil
	}
	*g = genBuilder{}
	ad, err := netlink.NewAttributeDecoder(payload[4:])
	if err != nil {
		return Notification{Overrun: true, Err: fmt.Errorf("generation message: %w", err)}
	}
	ad.ByteOrder = binary.BigEndian
	for ad.Next() {
		switch ad.Type() {
		case unix.NFTA_GEN_ID:
			n.Gen = ad.Uint32()
		case unix.NFTA_GEN_PROC_PID:
			n.PID = ad.Uint32()
		case unix.NFTA_GEN_PROC_NAME:
			n.Comm = ad.String()
		}
	}
	if err := ad.Err(); err != nil {
		return Notification{Overrun: true, Err: fmt.Errorf("generation message: %w", err)}
	}
	n.LoginUID, n.Session = auditIDs(n.PID, n.Comm)
	return n
}

// deliver forwards notifications to out, holding up to queueCap for a slow consumer;
// when the queue is full the newest entries fold into one overrun notification.
func deliver(ctx context.Context, in <-chan Notification, out chan<- Notification) {
	defer close(out)
	var q []Notification
	for {
		var send chan<- Notification
		var head Notification
		if len(q) > 0 {
			send, head = out, q[0]
		}
		select {
		case <-ctx.Done():
			return
		case n, ok := <-in:
			if !ok {
				return
			}
			if len(q) >= queueCap {
				last := &q[len(q)-1]
				last.Gen, last.PID, last.Comm = max(last.Gen, n.Gen), n.PID, n.Comm
				last.LoginUID, last.Session = n.LoginUID, n.Session
				last.Updates, last.Complete, last.Overrun = nil, false, true
				if n.Err != nil {
					last.Err = n.Err
				} else if last.Err == nil {
					last.Err = errors.New("consumer fell behind")
				}
				continue
			}
			q = append(q, n)
		case send <- head:
			q[0] = Notification{}
			q = q[1:]
		}
	}
}
