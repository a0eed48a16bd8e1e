package nft

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/google/nftables"
	"github.com/mdlayher/netlink"
)

// monitorRcvBuf is the receive buffer of the notification socket: a 10k-rule load is
// one burst of messages, which overflowed the default and was carried by 32 MiB.
const monitorRcvBuf = 32 << 20

// queueCap bounds the notifications held for a slow consumer; beyond it they fold into
// one overrun notification.
const queueCap = 1024

// resubscribeDelay spaces attempts to subscribe again after a failure.
const resubscribeDelay = 100 * time.Millisecond

// Notification reports one committed ruleset generation, or that notifications were lost
// (Overrun) and the consumer must re-read the ruleset to catch up.
type Notification struct {
	Gen  uint32 // the generation the commit produced
	PID  uint32 // the committing process
	Comm string // its name, as the kernel reports it (at most 15 bytes)
	// Overrun reports lost notifications: the kernel dropped messages (ENOBUFS) or the
	// consumer fell queueCap notifications behind.
	Overrun bool
	Err     error // what ended the previous subscription, with Overrun
}

// Watch reports every committed generation of the namespace's ruleset until ctx ends,
// when the channel closes. It subscribes on its own netlink socket with a large receive
// buffer; when the kernel overruns it, Watch sends a notification with Overrun set and
// subscribes again. Notifications are queued for a slow consumer, so the socket is
// always drained.
func (r *Reader) Watch(ctx context.Context) (<-chan Notification, error) {
	return r.watch(ctx, monitorRcvBuf)
}

func (r *Reader) watch(ctx context.Context, buf int) (<-chan Notification, error) {
	if err := r.acquire(); err != nil {
		return nil, err
	}
	sub, err := r.subscribe(buf)
	if err != nil {
		r.release()
		return nil, err
	}
	out := make(chan Notification)
	in := make(chan Notification)
	go func() {
		defer r.release()
		r.receive(ctx, sub, buf, in)
	}()
	go deliver(ctx, in, out)
	return out, nil
}

// subscription is one monitor on a connection of its own.
type subscription struct {
	conn   *nftables.Conn
	mon    *nftables.Monitor
	events chan *nftables.MonitorEvents
}

// subscribe starts a generational monitor on a Conn that serves nothing else. The Conn
// is lasting so that closing it always closes the socket: after a receive error the
// library's monitor ends without closing a transient socket, and Monitor.Close then
// does nothing. Queries never use this Conn (a monitor shares a lasting socket badly).
func (r *Reader) subscribe(buf int) (*subscription, error) {
	r.mu.Lock()
	fd := r.nsfd()
	r.mu.Unlock()
	c, err := nftables.New(nftables.AsLasting(), nftables.WithNetNSFd(fd),
		nftables.WithSockOptions(func(c *netlink.Conn) error { return setRcvBuf(c, buf) }))
	if err != nil {
		return nil, fmt.Errorf("monitor: %w", err)
	}
	mon := nftables.NewMonitor(nftables.WithMonitorEventBuffer(64))
	events, err := c.AddGenerationalMonitor(mon)
	if err != nil {
		_ = c.CloseLasting()
		return nil, fmt.Errorf("monitor: %w", err)
	}
	return &subscription{conn: c, mon: mon, events: events}, nil
}

// close stops the monitor, closes its socket and drains its channel, which lets the
// library's reader goroutine finish.
func (s *subscription) close() {
	_ = s.mon.Close()
	_ = s.conn.CloseLasting()
	for range s.events {
	}
}

// receive turns monitor events into notifications until ctx ends, resubscribing after
// an overrun. It never blocks on the consumer: deliver queues for it.
func (r *Reader) receive(ctx context.Context, sub *subscription, buf int, in chan<- Notification) {
	defer close(in)
	defer func() {
		if sub != nil {
			sub.close()
		}
	}()
	for {
		if sub == nil {
			s, err := r.subscribe(buf)
			if err != nil {
				select {
				case <-ctx.Done():
					return
				case <-time.After(resubscribeDelay):
					continue
				}
			}
			sub = s
		}
		select {
		case <-ctx.Done():
			return
		case ev, ok := <-sub.events:
			n, lost := notification(ev, ok)
			if lost {
				sub.close()
				sub = nil
			}
			if n == nil {
				continue
			}
			select {
			case in <- *n:
			case <-ctx.Done():
				return
			}
		}
	}
}

// notification converts one generational monitor event. lost reports that the
// subscription ended and must be replaced.
func notification(ev *nftables.MonitorEvents, ok bool) (n *Notification, lost bool) {
	if !ok {
		return &Notification{Overrun: true, Err: errors.New("monitor closed")}, true
	}
	if ev == nil || ev.GeneratedBy == nil {
		return nil, false
	}
	g := ev.GeneratedBy
	if g.Type == nftables.MonitorEventTypeOOB {
		return &Notification{Overrun: true, Err: g.Error}, true
	}
	gen, isGen := g.Data.(*nftables.GenMsg)
	if g.Error != nil || !isGen || gen == nil {
		// A generation message we cannot read still marks a commit; report it as a gap.
		return &Notification{Overrun: true, Err: g.Error}, false
	}
	return &Notification{Gen: gen.ID, PID: gen.ProcPID, Comm: gen.ProcComm}, false
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
				last.Gen, last.PID, last.Comm = n.Gen, n.PID, n.Comm
				last.Overrun = true
				if n.Err != nil {
					last.Err = n.Err
				}
				continue
			}
			q = append(q, n)
		case send <- head:
			q = q[1:]
		}
	}
}
