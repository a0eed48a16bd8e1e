package snmp

import (
	"context"
	"errors"
	"net"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gosnmp/gosnmp"
)

// badPeer is an SNMPv2c agent that misbehaves on purpose, over a real UDP socket on
// loopback: answer decides the reply to each request (nil: stay silent; raw bytes are
// sent as they are).
type badPeer struct {
	conn   *net.UDPConn
	answer func(req *gosnmp.SnmpPacket, n int) any
	wg     sync.WaitGroup
}

func newBadPeer(t *testing.T, answer func(req *gosnmp.SnmpPacket, n int) any) string {
	t.Helper()
	conn, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	p := &badPeer{conn: conn, answer: answer}
	p.wg.Add(1)
	go p.serve()
	t.Cleanup(func() {
		conn.Close()
		p.wg.Wait()
	})
	return conn.LocalAddr().String()
}

func (p *badPeer) serve() {
	defer p.wg.Done()
	dec := &gosnmp.GoSNMP{Version: gosnmp.Version2c, Logger: gosnmp.NewLogger(nil)}
	buf := make([]byte, 65536)
	for n := 0; ; n++ {
		k, from, err := p.conn.ReadFromUDP(buf)
		if err != nil {
			return
		}
		req, err := dec.SnmpDecodePacket(buf[:k])
		if err != nil {
			continue
		}
		var out []byte
		switch a := p.answer(req, n).(type) {
		case nil:
			continue
		case []byte:
			out = a
		case *gosnmp.SnmpPacket:
			a.Version, a.Community, a.PDUType, a.RequestID = gosnmp.Version2c, req.Community,
				gosnmp.GetResponse, req.RequestID
			if out, err = a.MarshalMsg(); err != nil {
				panic(err)
			}
		}
		p.conn.WriteToUDP(out, from)
	}
}

func vb(oid string, v int) gosnmp.SnmpPDU {
	return gosnmp.SnmpPDU{Name: oid, Type: gosnmp.Integer, Value: v}
}

func dialPeer(t *testing.T, addr string) *Client {
	t.Helper()
	c, err := Dial(Target{Address: addr, Version: "2c", Community: "public",
		Timeout: 200 * time.Millisecond, Retries: 1, MaxRepetitions: 3})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// An agent whose walk loops back to an earlier OID: the walk stops with a clear error.
func TestWalkLoopsBack(t *testing.T) {
	addr := newBadPeer(t, func(req *gosnmp.SnmpPacket, n int) any {
		const col = ".1.3.6.1.2.1.2.2.1.7."
		if n == 0 {
			return &gosnmp.SnmpPacket{Variables: []gosnmp.SnmpPDU{vb(col+"1", 1), vb(col+"2", 1), vb(col+"3", 1)}}
		}
		// The second page starts over.
		return &gosnmp.SnmpPacket{Variables: []gosnmp.SnmpPDU{vb(col+"1", 1), vb(col+"2", 1), vb(col+"3", 1)}}
	})
	_, err := dialPeer(t, addr).Walk(context.Background(), "1.3.6.1.2.1.2.2.1", 1000)
	if !errors.Is(err, ErrNotIncreasing) || !strings.Contains(err.Error(), "2.2.1.7.1 after 1.3.6.1.2.1.2.2.1.7.3") {
		t.Fatalf("err = %v, want ErrNotIncreasing naming both OIDs", err)
	}
}

// Inside one response, a varbind before its predecessor is caught too (gosnmp's own walk
// compares only against the request).
func TestWalkNotIncreasingWithinResponse(t *testing.T) {
	addr := newBadPeer(t, func(req *gosnmp.SnmpPacket, n int) any {
		const col = ".1.3.6.1.2.1.2.2.1.7."
		return &gosnmp.SnmpPacket{Variables: []gosnmp.SnmpPDU{vb(col+"5", 1), vb(col+"9", 1), vb(col+"6", 1)}}
	})
	_, err := dialPeer(t, addr).Walk(context.Background(), "1.3.6.1.2.1.2.2.1", 1000)
	if !errors.Is(err, ErrNotIncreasing) {
		t.Fatalf("err = %v, want ErrNotIncreasing", err)
	}
}

// An agent that never leaves the subtree is stopped by the walk's bound.
func TestWalkEndless(t *testing.T) {
	addr := newBadPeer(t, func(req *gosnmp.SnmpPacket, n int) any {
		var vbs []gosnmp.SnmpPDU
		for i := 0; i < 3; i++ {
			vbs = append(vbs, vb(".1.3.6.1.2.1.2.2.1.7."+itoa(n*3+i+1), 1))
		}
		return &gosnmp.SnmpPacket{Variables: vbs}
	})
	_, err := dialPeer(t, addr).Walk(context.Background(), "1.3.6.1.2.1.2.2.1", 50)
	if !errors.Is(err, ErrWalkLimit) {
		t.Fatalf("err = %v, want ErrWalkLimit", err)
	}
}

func TestBadPeerAnswers(t *testing.T) {
	for name, c := range map[string]struct {
		answer func(*gosnmp.SnmpPacket, int) any
		want   error
	}{
		"silent":  {func(*gosnmp.SnmpPacket, int) any { return nil }, ErrTimeout},
		"garbage": {func(*gosnmp.SnmpPacket, int) any { return []byte{0x30, 0x05, 0xff, 0x00, 0x01, 0x02} }, ErrMalformed},
		"genErr": {func(*gosnmp.SnmpPacket, int) any {
			return &gosnmp.SnmpPacket{Error: gosnmp.GenErr, ErrorIndex: 1,
				Variables: []gosnmp.SnmpPDU{{Name: ".1.3.6.1.2.1.1.3.0", Type: gosnmp.Null}}}
		}, ErrPDU},
		"another OID": {func(*gosnmp.SnmpPacket, int) any {
			return &gosnmp.SnmpPacket{Variables: []gosnmp.SnmpPDU{vb(".1.3.6.1.2.1.1.7.0", 1), vb(".1.3.6.1.2.1.1.8.0", 1)}}
		}, ErrMalformed},
	} {
		t.Run(name, func(t *testing.T) {
			addr := newBadPeer(t, c.answer)
			_, err := dialPeer(t, addr).Get(context.Background(), []string{OIDSysUpTime, OIDEngineBoots})
			if !errors.Is(err, c.want) {
				t.Fatalf("err = %v, want %v", err, c.want)
			}
		})
	}
}

// A target that stops answering is marked unreachable: no heartbeats while it is, the
// watcher keeps running, and it recovers without an event when nothing changed.
func TestWatcherUnreachable(t *testing.T) {
	var mu sync.Mutex
	silent := false
	addr := newBadPeer(t, func(req *gosnmp.SnmpPacket, n int) any {
		mu.Lock()
		defer mu.Unlock()
		if silent {
			return nil
		}
		if req.PDUType == gosnmp.GetRequest {
			var vbs []gosnmp.SnmpPDU
			for _, v := range req.Variables {
				vbs = append(vbs, gosnmp.SnmpPDU{Name: v.Name, Type: gosnmp.NoSuchObject})
			}
			return &gosnmp.SnmpPacket{Variables: vbs}
		}
		return &gosnmp.SnmpPacket{Variables: []gosnmp.SnmpPDU{{Name: ".1.3.6.1.2.1.1.5.0",
			Type: gosnmp.OctetString, Value: []byte("fw")}, {Name: ".1.9", Type: gosnmp.EndOfMibView}}}
	})
	p := &Profile{Name: "t", Tables: []*TableSpec{{Name: "system", Kind: KindScalars, OID: "1.3.6.1.2.1.1"}}}
	if err := p.check(); err != nil {
		t.Fatal(err)
	}
	iv := Intervals{Poll: 50 * time.Millisecond, Walk: time.Hour, Heartbeat: 50 * time.Millisecond}
	w, sink := runWatcher(t, Target{Address: addr, Version: "2c", Community: "public",
		Timeout: 100 * time.Millisecond}, p, iv)
	waitReports(t, sink, 1, 5*time.Second)
	waitFor(t, 5*time.Second, "heartbeats", func() (bool, string) {
		_, hb := sink.get()
		return hb >= 2, itoa(hb)
	})
	mu.Lock()
	silent = true
	mu.Unlock()
	waitFor(t, 5*time.Second, "unreachable", func() (bool, string) {
		s := w.Stats()
		return s.Unreachable && strings.Contains(s.LastError, ErrTimeout.Error()), s.LastError
	})
	_, hb := sink.get()
	waitFor(t, 5*time.Second, "more failed polls", func() (bool, string) {
		s := w.Stats()
		return s.PollErrors >= 3, itoa(int(s.PollErrors))
	})
	if _, hb2 := sink.get(); hb2 > hb+1 {
		t.Errorf("%d heartbeats while unreachable", hb2-hb)
	}
	mu.Lock()
	silent = false
	mu.Unlock()
	waitFor(t, 5*time.Second, "reachable again", func() (bool, string) {
		return !w.Stats().Unreachable, w.Stats().LastError
	})
	waitFor(t, 5*time.Second, "heartbeats again", func() (bool, string) {
		_, hb3 := sink.get()
		return hb3 >= hb+2, itoa(hb3)
	})
	if r, _ := sink.get(); len(r) != 1 {
		t.Errorf("recovery without a change reported %+v", r[1:])
	}
}

func itoa(n int) string { return strconv.Itoa(n) }
