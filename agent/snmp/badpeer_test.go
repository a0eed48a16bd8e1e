package snmp

import (
	"context"
	"errors"
	"fmt"
	"net"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gosnmp/gosnmp"

	"github.com/fenceline/fenceline/shared/event"
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

// tablePeer serves sysUpTime.0 and snmpEngineBoots.0 to GETs (uptime from the function,
// boots absent), and to GETBULKs the conceptual table 1.3.6.1.4.1.99.1.1 with rows 1 to
// 6 whose column 2 is value(row), then the end of the MIB.
func tablePeer(t *testing.T, uptime func() uint32, value func(req, row int) int) string {
	const entry = ".1.3.6.1.4.1.99.1.1.2."
	var mu sync.Mutex
	bulks := 0
	return newBadPeer(t, func(req *gosnmp.SnmpPacket, n int) any {
		mu.Lock()
		defer mu.Unlock()
		if req.PDUType == gosnmp.GetRequest {
			var vbs []gosnmp.SnmpPDU
			for _, v := range req.Variables {
				if strings.TrimPrefix(v.Name, ".") == OIDSysUpTime {
					vbs = append(vbs, gosnmp.SnmpPDU{Name: v.Name, Type: gosnmp.TimeTicks, Value: uptime()})
				} else {
					vbs = append(vbs, gosnmp.SnmpPDU{Name: v.Name, Type: gosnmp.NoSuchObject})
				}
			}
			return &gosnmp.SnmpPacket{Variables: vbs}
		}
		bulks++
		after := strings.TrimPrefix(req.Variables[0].Name, ".")
		row := 0
		if strings.HasPrefix("."+after, entry) {
			row, _ = strconv.Atoi(strings.TrimPrefix("."+after, entry))
		}
		var vbs []gosnmp.SnmpPDU
		for i := row + 1; i <= row+int(req.MaxRepetitions) && i <= 6; i++ {
			vbs = append(vbs, vb(entry+itoa(i), value(bulks, i)))
		}
		if len(vbs) < int(req.MaxRepetitions) {
			vbs = append(vbs, gosnmp.SnmpPDU{Name: ".1.3.6.1.4.1.99.2", Type: gosnmp.EndOfMibView})
		}
		return &gosnmp.SnmpPacket{Variables: vbs}
	})
}

func tableProfile(t *testing.T) *Profile {
	p := &Profile{Name: "t", Tables: []*TableSpec{{Name: "policies", Kind: KindTable,
		Entry: "policy", OID: "1.3.6.1.4.1.99.1.1", Columns: []Column{{ID: 2, Name: "action"}}}}}
	if err := p.check(); err != nil {
		t.Fatal(err)
	}
	return p
}

// A table that changes in the middle of a walk (between its two GETBULK pages) is never
// reported half old, half new: the snapshot is the new table, read the same twice.
func TestTableChangesMidWalk(t *testing.T) {
	// Bulk requests 1 and 2 are the first walk's two pages: the table changes between
	// them, from 1 to 2 in every row.
	addr := tablePeer(t, func() uint32 { return 100 }, func(req, row int) int {
		if req >= 2 {
			return 2
		}
		return 1
	})
	s, err := NewPoller(dialPeer(t, addr), tableProfile(t)).Read(context.Background(), nil)
	if err != nil {
		t.Fatal(err)
	}
	want := []string{"action = 2"}
	for _, o := range s.State.Tables[0].Objects {
		if !slices.Equal(o.Spec, want) {
			t.Fatalf("row %s = %q in a snapshot:\n%s", o.Name, o.Spec, s.State.Text())
		}
	}
	if n := len(s.State.Tables[0].Objects); n != 6 || s.Attempts != 3 {
		t.Fatalf("%d rows after %d reads, want 6 rows after 3 (mixed, new, new again)", n, s.Attempts)
	}
}

// A table that changes during every walk gives no snapshot: ErrUnstable, a clear error,
// and the watcher marks the target unreachable rather than report a state never seen
// whole. It keeps running and reports once the table holds still.
func TestTableChangesEveryWalk(t *testing.T) {
	var still atomic.Bool
	addr := tablePeer(t, func() uint32 { return 100 }, func(req, row int) int {
		if still.Load() {
			return 7
		}
		return req // a new value on every page
	})
	iv := Intervals{Poll: 50 * time.Millisecond, Walk: time.Hour, Heartbeat: time.Hour}
	w, sink := runWatcher(t, Target{Address: addr, Version: "2c", Community: "public",
		Timeout: 200 * time.Millisecond, MaxRepetitions: 3}, tableProfile(t), iv)
	waitFor(t, 5*time.Second, "unstable", func() (bool, string) {
		s := w.Stats()
		return s.Unreachable && strings.Contains(s.LastError, ErrUnstable.Error()), s.LastError
	})
	if r, _ := sink.get(); len(r) != 0 {
		t.Fatalf("reported a state of an unstable table: %+v", r)
	}
	still.Store(true)
	got := waitReports(t, sink, 1, 5*time.Second)
	if got[0].kind != event.Baseline || !strings.Contains(got[0].rs.Text(), "action = 7") {
		t.Fatalf("after the table held still: %s\n%s", got[0].kind, got[0].rs.Text())
	}
}

// sysUpTime wrapping at 2^32 (497 days) is not a restart; sysUpTime going back to a small
// value is one. The verdicts are counted, and the wrap reports nothing.
func TestUptimeWrap(t *testing.T) {
	start := time.Now()
	var restartedAt atomic.Int64 // unix nanoseconds; 0 while the device runs on
	addr := tablePeer(t, func() uint32 {
		now := time.Now()
		if at := restartedAt.Load(); at != 0 {
			return uint32(now.Sub(time.Unix(0, at)) / (10 * time.Millisecond))
		}
		// 0.3 s before the wrap when the test starts.
		return uint32(1<<32 - 30 + uint64(now.Sub(start)/(10*time.Millisecond)))
	}, func(int, int) int { return 1 })
	iv := Intervals{Poll: 50 * time.Millisecond, Walk: time.Hour, Heartbeat: time.Hour}
	w, sink := runWatcher(t, Target{Address: addr, Version: "2c", Community: "public",
		Timeout: 200 * time.Millisecond, MaxRepetitions: 3}, tableProfile(t), iv)
	waitReports(t, sink, 1, 5*time.Second)
	waitFor(t, 5*time.Second, "polls well past the wrap", func() (bool, string) {
		return time.Since(start) > time.Second && w.Stats().Polls >= 10, fmt.Sprintf("%+v", w.Stats())
	})
	if s := w.Stats(); s.Restarts != 0 || s.PollErrors != 0 {
		t.Fatalf("the 2^32 wrap was taken for a restart or failed: %+v", s)
	}
	// Restarted now: uptime goes back from about a second to 0.
	restartedAt.Store(time.Now().UnixNano())
	waitFor(t, 5*time.Second, "the restart seen", func() (bool, string) {
		return w.Stats().Restarts == 1, fmt.Sprintf("%+v", w.Stats())
	})
	if r, _ := sink.get(); len(r) != 1 {
		t.Fatalf("reports %+v, want the baseline only (nothing changed)", r)
	}
}

// Each kind of bad answer, at the watcher: the target is marked unreachable with a clear
// error naming what was wrong, nothing is reported, the watcher keeps running, and once
// the peer answers properly the device's baseline is reported.
func TestWatcherBadPeers(t *testing.T) {
	const entry = ".1.3.6.1.4.1.99.1.1.2."
	good := func(req *gosnmp.SnmpPacket) any {
		if req.PDUType == gosnmp.GetRequest {
			var vbs []gosnmp.SnmpPDU
			for _, v := range req.Variables {
				vbs = append(vbs, gosnmp.SnmpPDU{Name: v.Name, Type: gosnmp.NoSuchObject})
			}
			return &gosnmp.SnmpPacket{Variables: vbs}
		}
		return &gosnmp.SnmpPacket{Variables: []gosnmp.SnmpPDU{vb(entry+"1", 1),
			{Name: ".1.3.6.1.4.1.99.2", Type: gosnmp.EndOfMibView}}}
	}
	for name, c := range map[string]struct {
		bad  func(req *gosnmp.SnmpPacket) any
		want error
	}{
		"silent":  {func(*gosnmp.SnmpPacket) any { return nil }, ErrTimeout},
		"garbage": {func(*gosnmp.SnmpPacket) any { return []byte("\x30\x82\xff\xff not ber") }, ErrMalformed},
		"genErr on walk": {func(req *gosnmp.SnmpPacket) any {
			if req.PDUType == gosnmp.GetRequest {
				return good(req)
			}
			return &gosnmp.SnmpPacket{Error: gosnmp.GenErr, ErrorIndex: 1, Variables: req.Variables}
		}, ErrPDU},
		"walk loops": {func(req *gosnmp.SnmpPacket) any {
			if req.PDUType == gosnmp.GetRequest {
				return good(req)
			}
			return &gosnmp.SnmpPacket{Variables: []gosnmp.SnmpPDU{vb(entry+"1", 1), vb(entry+"1", 1)}}
		}, ErrNotIncreasing},
		"authorizationError": {func(req *gosnmp.SnmpPacket) any {
			return &gosnmp.SnmpPacket{Error: gosnmp.AuthorizationError, Variables: req.Variables}
		}, ErrAuth},
	} {
		t.Run(name, func(t *testing.T) {
			var healed atomic.Bool
			addr := newBadPeer(t, func(req *gosnmp.SnmpPacket, n int) any {
				if healed.Load() {
					return good(req)
				}
				return c.bad(req)
			})
			iv := Intervals{Poll: 50 * time.Millisecond, Walk: time.Hour, Heartbeat: time.Hour}
			w, sink := runWatcher(t, Target{Address: addr, Version: "2c", Community: "public",
				Timeout: 100 * time.Millisecond, MaxRepetitions: 3}, tableProfile(t), iv)
			waitFor(t, 5*time.Second, "unreachable with "+c.want.Error(), func() (bool, string) {
				s := w.Stats()
				return s.Unreachable && strings.Contains(s.LastError, c.want.Error()) &&
					s.PollErrors+s.ReadErrors >= 3, fmt.Sprintf("%+v", s)
			})
			if r, _ := sink.get(); len(r) != 0 {
				t.Fatalf("reported %+v from a bad peer", r)
			}
			healed.Store(true)
			got := waitReports(t, sink, 1, 5*time.Second)
			if got[0].kind != event.Baseline || w.Stats().Unreachable {
				t.Fatalf("after healing: %s, %+v", got[0].kind, w.Stats())
			}
		})
	}
}

// A restart found by a read that comes before any poll (a trap's read here): the new
// state is a reconcile saying the device restarted, not a plain change.
func TestRestartSeenByRead(t *testing.T) {
	var uptime atomic.Uint32
	var value atomic.Int64
	uptime.Store(500000)
	value.Store(1)
	addr := tablePeer(t, uptime.Load, func(int, int) int { return int(value.Load()) })
	iv := Intervals{Poll: time.Hour, Walk: time.Hour, Heartbeat: time.Hour}
	w, sink := runWatcher(t, Target{Address: addr, Version: "2c", Community: "public",
		Timeout: 200 * time.Millisecond, MaxRepetitions: 3}, tableProfile(t), iv)
	waitReports(t, sink, 1, 5*time.Second)
	uptime.Store(300) // up for 3 s: it restarted, with another configuration
	value.Store(2)
	w.Trap(TrapNote{Trap: "test", At: time.Now()})
	got := waitReports(t, sink, 2, 5*time.Second)
	if got[1].kind != event.Reconcile || !strings.Contains(got[1].note, "sysUpTime went from 500000 to 300") ||
		w.Stats().Restarts != 1 {
		t.Fatalf("%s %q, %+v", got[1].kind, got[1].note, w.Stats())
	}
}
