package nft

import (
	"encoding/binary"
	"errors"
	"fmt"
	"sync"
	"syscall"

	"github.com/mdlayher/netlink"
	"golang.org/x/sys/unix"
)

// rcvBuf is the receive buffer of query sockets: a dump of a large chain arrives in
// 32 KiB messages, and a bigger buffer lets the kernel run ahead of the reader.
const rcvBuf = 4 << 20

// recvChunk is the read size; the kernel fills dump messages up to 32 KiB when the
// reader offers that much.
const recvChunk = 64 << 10

// recvBufs holds receive buffers: a read of a big ruleset makes one request per set,
// and a fresh 64 KiB buffer for each was most of the allocation.
var recvBufs = sync.Pool{New: func() any {
	b := make([]byte, recvChunk)
	return &b
}}

// dial opens a netfilter netlink socket in the namespace nsfd refers to (0: current).
func dial(nsfd int, proto int, buf int) (*netlink.Conn, error) {
	c, err := netlink.Dial(proto, &netlink.Config{NetNS: nsfd})
	if err != nil {
		return nil, fmt.Errorf("netlink dial: %w", err)
	}
	if err := setRcvBuf(c, buf); err != nil {
		c.Close()
		return nil, err
	}
	return c, nil
}

// setRcvBuf sets the socket's receive buffer, beyond net.core.rmem_max when privileged.
func setRcvBuf(c *netlink.Conn, n int) error {
	rc, err := c.SyscallConn()
	if err != nil {
		return fmt.Errorf("rcvbuf: %w", err)
	}
	var serr error
	err = rc.Control(func(fd uintptr) {
		serr = unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_RCVBUFFORCE, n)
		if serr != nil {
			serr = unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_RCVBUF, n)
		}
	})
	if err == nil {
		err = serr
	}
	if err != nil {
		return fmt.Errorf("rcvbuf: %w", err)
	}
	return nil
}

// request sends one nf_tables request and collects the payloads of its answer: all
// parts of a dump, or the single reply of a plain request. Payloads are copies.
func request(c *netlink.Conn, msgType uint16, family byte, flags netlink.HeaderFlags,
	data []byte) ([][]byte, error) {
	var out [][]byte
	err := requestEach(c, msgType, family, flags, data, func(p []byte) error {
		out = append(out, append([]byte(nil), p...))
		return nil
	})
	if err != nil {
		return nil, err
	}
	return out, nil
}

// requestEach is request handing each payload to f as it arrives instead of collecting
// them, so that a big dump need not be held whole. The payload is only valid during the
// call (it lies in the receive buffer). An error from f ends the request; the socket
// may then hold the rest of the answer, and withConn drops it.
func requestEach(c *netlink.Conn, msgType uint16, family byte, flags netlink.HeaderFlags,
	data []byte, f func([]byte) error) error {
	body := make([]byte, 4, 4+len(data))
	body[0] = family
	body[1] = unix.NFNETLINK_V0
	body = append(body, data...)
	req, err := c.Send(netlink.Message{
		Header: netlink.Header{
			Type:  netlink.HeaderType(unix.NFNL_SUBSYS_NFTABLES<<8 | msgType),
			Flags: netlink.Request | flags,
		},
		Data: body,
	})
	if err != nil {
		return fmt.Errorf("send: %w", err)
	}
	rc, err := c.SyscallConn()
	if err != nil {
		return err
	}
	dump := flags&netlink.Dump != 0
	bp := recvBufs.Get().(*[]byte)
	defer recvBufs.Put(bp)
	buf := *bp
	interrupted := false
	for {
		n, err := recvInto(rc, buf)
		if err != nil {
			return fmt.Errorf("receive: %w", err)
		}
		done, err := parseInto(buf[:n], req.Header.Sequence, dump, f, &interrupted)
		if err != nil {
			return err
		}
		if done {
			break
		}
	}
	if interrupted {
		return errDumpInterrupted
	}
	return nil
}

// recvInto reads one datagram, waiting on the runtime poller.
func recvInto(rc syscall.RawConn, buf []byte) (int, error) {
	var n int
	var rerr error
	err := rc.Read(func(fd uintptr) bool {
		n, _, rerr = unix.Recvfrom(int(fd), buf, 0)
		return rerr != unix.EAGAIN && rerr != unix.EWOULDBLOCK
	})
	if err != nil {
		return 0, err
	}
	if rerr != nil {
		return 0, rerr
	}
	if n > len(buf) {
		return 0, errors.New("netlink message truncated")
	}
	return n, nil
}

const (
	nlmsgHdrLen  = 16
	nlmFDumpIntr = 0x10
)

// parseInto hands the payloads of one datagram to f and reports whether the answer is
// complete.
func parseInto(b []byte, seq uint32, dump bool, f func([]byte) error, intr *bool) (bool, error) {
	for len(b) >= nlmsgHdrLen {
		l := int(binary.NativeEndian.Uint32(b))
		typ := binary.NativeEndian.Uint16(b[4:])
		flags := binary.NativeEndian.Uint16(b[6:])
		mseq := binary.NativeEndian.Uint32(b[8:])
		if l < nlmsgHdrLen || l > len(b) {
			return false, errors.New("malformed netlink message")
		}
		payload := b[nlmsgHdrLen:l]
		adv := (l + 3) &^ 3
		if adv > len(b) {
			adv = len(b)
		}
		b = b[adv:]
		if mseq != seq {
			continue // a stale answer to an earlier, abandoned request
		}
		if flags&nlmFDumpIntr != 0 {
			*intr = true
		}
		switch typ {
		case unix.NLMSG_DONE:
			return true, nil
		case unix.NLMSG_ERROR:
			if len(payload) < 4 {
				return false, errors.New("short netlink error")
			}
			if errno := int32(binary.NativeEndian.Uint32(payload)); errno != 0 {
				return false, syscall.Errno(-errno)
			}
			return true, nil // an acknowledgement
		case unix.NLMSG_NOOP:
			continue
		}
		if err := f(payload); err != nil {
			return false, err
		}
		if !dump {
			return true, nil
		}
	}
	return false, nil
}
