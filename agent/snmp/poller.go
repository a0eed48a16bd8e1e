package snmp

import (
	"context"
	"fmt"
	"maps"
	"slices"
	"strings"
	"time"

	"github.com/gosnmp/gosnmp"

	"github.com/fenceline/fenceline/shared/event"
	"github.com/fenceline/fenceline/shared/ruleset"
)

// Instances every cheap poll reads besides the profile's triggers.
const (
	OIDSysUpTime   = "1.3.6.1.2.1.1.3.0"
	OIDEngineBoots = "1.3.6.1.6.3.10.2.1.2.0"
	// OIDTrapOID is snmpTrapOID.0, the varbind that names a notification.
	OIDTrapOID = "1.3.6.1.6.3.1.1.4.1.0"
)

// maxAttempts bounds the reads of one snapshot (see Poller.Read).
const maxAttempts = 3

// Poller reads one target's state. It is owned by one goroutine.
type Poller struct {
	c    *Client
	p    *Profile
	now  func() time.Time
	last *Reading
	// indicators holds the values the device gave for its indicator scalars at the last
	// successful read, by "table name"; nil before the first.
	indicators map[string][]string
}

// NewPoller returns a poller for the client and the resolved profile.
func NewPoller(c *Client, p *Profile) *Poller {
	return &Poller{c: c, p: p, now: time.Now}
}

// Reading is one cheap poll: uptime, engine boots and the trigger scalars.
type Reading struct {
	At     time.Time
	Uptime uint32
	// HasUptime and HasBoots say whether the device answered those instances.
	HasUptime bool
	Boots     int
	HasBoots  bool
	// Triggers holds each trigger's rendered value ("absent" when not answered).
	Triggers map[string]string
}

// Check is what a cheap poll found compared with the previous one.
type Check struct {
	Reading *Reading
	// First is true for the first successful poll.
	First bool
	// Moved names the triggers whose value changed.
	Moved []string
	// Restarted is true when the device restarted since the previous poll; Note says how
	// that was concluded.
	Restarted bool
	Note      string
}

// Poll reads uptime, engine boots and the triggers in one GET and compares them with the
// previous poll.
func (p *Poller) Poll(ctx context.Context) (*Check, error) {
	r, err := p.read(ctx)
	if err != nil {
		return nil, err
	}
	c := &Check{Reading: r, First: p.last == nil}
	if p.last != nil {
		for _, t := range p.p.Triggers {
			if p.last.Triggers[t.Name] != r.Triggers[t.Name] {
				c.Moved = append(c.Moved, t.Name)
			}
		}
		c.Restarted, c.Note = Restarted(p.last, r)
	}
	p.last = r
	return c, nil
}

func (p *Poller) read(ctx context.Context) (*Reading, error) {
	oids := []string{OIDSysUpTime, OIDEngineBoots}
	for _, t := range p.p.Triggers {
		oids = append(oids, t.OID)
	}
	r := &Reading{At: p.now(), Triggers: map[string]string{}}
	for start := 0; start < len(oids); start += gosnmp.MaxOids {
		chunk := oids[start:min(start+gosnmp.MaxOids, len(oids))]
		vbs, err := p.c.Get(ctx, chunk)
		if err != nil {
			return nil, err
		}
		for i, v := range vbs {
			switch n := start + i; {
			case n == 0:
				r.Uptime, r.HasUptime = asUint32(v)
			case n == 1:
				if b, ok := v.Value.(int); ok && !absent(v.Type) {
					r.Boots, r.HasBoots = b, true
				}
			default:
				t := p.p.Triggers[n-2]
				if absent(v.Type) {
					r.Triggers[t.Name] = "absent"
				} else {
					r.Triggers[t.Name] = Render(v, "", nil)
				}
			}
		}
	}
	return r, nil
}

func asUint32(v gosnmp.SnmpPDU) (uint32, bool) {
	if v.Type != gosnmp.TimeTicks {
		return 0, false
	}
	switch n := v.Value.(type) {
	case uint32:
		return n, true
	case uint:
		return uint32(n), true
	}
	return 0, false
}

// ticksPerSecond: TimeTicks count hundredths of a second.
const ticksPerSecond = 100

// Restarted decides whether a device restarted between two polls. snmpEngineBoots going
// up is a restart. Otherwise sysUpTime must have advanced by about the wall-clock time
// between the polls, modulo 2^32: TimeTicks wrap after 497 days, and a wrap whose
// advance matches the elapsed time is not a restart. Uptime going backwards by any other
// amount is a restart. An uptime that stands still (a simulator) is not one.
func Restarted(prev, cur *Reading) (bool, string) {
	if prev.HasBoots && cur.HasBoots && cur.Boots != prev.Boots {
		return true, fmt.Sprintf("device restarted: snmpEngineBoots went from %d to %d",
			prev.Boots, cur.Boots)
	}
	if !prev.HasUptime || !cur.HasUptime || cur.Uptime >= prev.Uptime {
		return false, ""
	}
	elapsed := cur.At.Sub(prev.At)
	advance := uint64(cur.Uptime - prev.Uptime) // modulo 2^32
	expected := uint64(max(elapsed, 0)/time.Second) * ticksPerSecond
	slack := max(expected/10, 30*ticksPerSecond)
	if advance <= expected+slack && advance+slack >= expected {
		return false, ""
	}
	return true, fmt.Sprintf("device restarted: sysUpTime went from %d to %d in %s",
		prev.Uptime, cur.Uptime, elapsed.Round(time.Second))
}

// Snapshot is a consistent read of a device's configuration.
type Snapshot struct {
	State  *ruleset.Ruleset
	Digest ruleset.Sum
	// Committer is who made the latest change, where the device says (history table or
	// committer scalars); nil when it does not.
	Committer *event.Committer
	// Attempts is how many reads it took.
	Attempts int
	// Restarted is true when the device restarted since the previous poll or read;
	// Note says how that was concluded.
	Restarted bool
	Note      string
}

// Read takes a consistent snapshot. The triggers are read before and after the walks
// and must agree, or the walks are repeated; when the state differs from prev (the
// state last reported, nil before the first) the walks are repeated once more and must
// give the same state, so a table that changed during a walk is never reported half
// old, half new. After maxAttempts reads without agreement it returns ErrUnstable.
//
// Indicator scalars keep the value last reported unless the device moved them since the
// previous read: a restart resets an indicator such as Cisco's
// ccmHistoryRunningLastChanged (sysUpTime at the last change) without any configuration
// change, and that is not reported, then or at later reads.
func (p *Poller) Read(ctx context.Context, prev *ruleset.Ruleset) (*Snapshot, error) {
	var prevDigest ruleset.Sum
	if prev != nil {
		prevDigest = prev.Digest()
	}
	var candidate *Snapshot
	restarted, note := false, ""
	for attempt := 1; attempt <= maxAttempts; attempt++ {
		before, err := p.read(ctx)
		if err != nil {
			return nil, err
		}
		// A read also tells a restart (a backstop or trap read may come before the next
		// poll). The reading it compares with moves on only when the read succeeds: a
		// read that fails after seeing a restart leaves it for the next poll to see.
		if p.last != nil && !restarted {
			restarted, note = Restarted(p.last, before)
		}
		walks := map[string][]gosnmp.SnmpPDU{}
		for _, t := range p.p.Tables {
			for _, root := range t.WalkRoots() {
				vbs, err := p.c.Walk(ctx, root, t.MaxRows)
				if err != nil {
					return nil, fmt.Errorf("table %s: %w", t.Name, err)
				}
				walks[t.Name] = append(walks[t.Name], vbs...)
			}
		}
		after, err := p.read(ctx)
		if err != nil {
			return nil, err
		}
		if !maps.Equal(before.Triggers, after.Triggers) {
			candidate = nil
			continue
		}
		rs, err := Build(p.p, walks)
		if err != nil {
			return nil, err
		}
		raw := stickIndicators(rs, prev, p.indicators, restarted)
		s := &Snapshot{State: rs, Digest: rs.Digest(), Attempts: attempt, Restarted: restarted,
			Note: note}
		switch {
		case s.Digest == prevDigest:
			p.last, p.indicators = after, raw
			return s, nil
		case candidate != nil && candidate.Digest == s.Digest:
			p.last, p.indicators = after, raw
			s.Committer = p.committer(ctx)
			return s, nil
		}
		candidate = s
	}
	return nil, fmt.Errorf("%s: %w (%d reads)", p.c.t.Address, ErrUnstable, maxAttempts)
}

// committer reads who made the latest change: the newest accepted history row, else the
// committer scalars. Failures only lose the name; they are not errors of the snapshot.
func (p *Poller) committer(ctx context.Context) *event.Committer {
	if h := p.p.History; h != nil {
		if c := p.historyCommitter(ctx, h); c != nil {
			return c
		}
	}
	w := p.p.Committer
	if w == nil {
		return nil
	}
	var oids []string
	refs := []*Ref{w.User, w.Source, w.Address}
	for _, r := range refs {
		if r != nil {
			oids = append(oids, r.OID)
		}
	}
	if len(oids) == 0 {
		return nil
	}
	vbs, err := p.c.Get(ctx, oids)
	if err != nil {
		return nil
	}
	byOID := map[string]gosnmp.SnmpPDU{}
	for _, v := range vbs {
		byOID[strings.TrimPrefix(v.Name, ".")] = v
	}
	return w.committer(func(r *Ref) (gosnmp.SnmpPDU, bool) {
		v, ok := byOID[r.OID]
		return v, ok && !absent(v.Type)
	})
}

func (p *Poller) historyCommitter(ctx context.Context, h *HistorySpec) *event.Committer {
	vbs, err := p.c.Walk(ctx, h.OID, 10000)
	if err != nil {
		return nil
	}
	rows, err := historyRows(h, vbs)
	if err != nil || len(rows) == 0 {
		return nil
	}
	newest := rows[len(rows)-1]
	return h.Who.committer(func(r *Ref) (gosnmp.SnmpPDU, bool) {
		v, ok := newest[r.OID]
		return v, ok
	})
}

// historyRows groups a history walk into rows keyed by column OID (entry.column), in
// index order, keeping only the rows Select accepts.
func historyRows(h *HistorySpec, vbs []gosnmp.SnmpPDU) ([]map[string]gosnmp.SnmpPDU, error) {
	base, err := parseOID(h.OID)
	if err != nil {
		return nil, err
	}
	type hrow struct {
		index []uint32
		cols  map[string]gosnmp.SnmpPDU
		sel   map[uint32]gosnmp.SnmpPDU
	}
	byIndex := map[string]*hrow{}
	for _, v := range vbs {
		oid, err := parseOID(strings.TrimPrefix(v.Name, "."))
		if err != nil || len(oid) < len(base)+2 || compareOID(oid[:len(base)], base) != 0 {
			return nil, fmt.Errorf("%w: history OID %s", ErrMalformed, v.Name)
		}
		idx := oid[len(base)+1:]
		k := joinOID(idx)
		r := byIndex[k]
		if r == nil {
			r = &hrow{index: idx, cols: map[string]gosnmp.SnmpPDU{}, sel: map[uint32]gosnmp.SnmpPDU{}}
			byIndex[k] = r
		}
		r.cols[joinOID(oid[:len(base)+1])] = v
		r.sel[oid[len(base)]] = v
	}
	var rows []*hrow
	for _, r := range byIndex {
		if s := h.Select; s != nil {
			v, ok := r.sel[s.Column]
			n, isInt := v.Value.(int)
			if !ok || !isInt || !slices.Contains(s.Values, n) {
				continue
			}
		}
		rows = append(rows, r)
	}
	slices.SortFunc(rows, func(a, b *hrow) int { return compareOID(a.index, b.index) })
	out := make([]map[string]gosnmp.SnmpPDU, len(rows))
	for i, r := range rows {
		out[i] = r.cols
	}
	return out, nil
}

// committer builds an event.Committer from the values the refs point at: the user name
// in LoginUID, the means of the change (CLI, SNMP, NETCONF …) in Comm and the address it
// came from in Session. nil when none is known.
func (w *Who) committer(lookup func(*Ref) (gosnmp.SnmpPDU, bool)) *event.Committer {
	val := func(r *Ref) string {
		if r == nil {
			return ""
		}
		v, ok := lookup(r)
		if !ok {
			return ""
		}
		return plain(v, r)
	}
	c := &event.Committer{LoginUID: val(w.User), Comm: val(w.Source), Session: val(w.Address)}
	if *c == (event.Committer{}) {
		return nil
	}
	return c
}

// plain renders a committer value without quotes: text as text, an enum by its name.
func plain(v gosnmp.SnmpPDU, r *Ref) string {
	if absent(v.Type) {
		return ""
	}
	if n, ok := v.Value.(int); ok {
		if name, ok := r.Enum[n]; ok {
			return name
		}
	}
	s := Render(v, r.Syntax, nil)
	if strings.HasPrefix(s, `"`) {
		s = strings.Trim(s, `"`)
		if strings.ContainsRune(s, '\\') {
			return Render(v, r.Syntax, nil) // keep the escaped form for odd bytes
		}
	}
	if s == "" {
		return ""
	}
	const maxLen = 128
	if len(s) > maxLen {
		s = s[:maxLen]
	}
	return s
}

// stickIndicators gives each indicator object of rs the value it has in prev, the state
// last reported, unless the device moved it: since the previous read (seen, the values
// that read gave), and not by restarting. Without a previous read (the agent just
// started) the device's value stands. It returns the device's values, for the next read.
func stickIndicators(rs, prev *ruleset.Ruleset, seen map[string][]string, restarted bool) map[string][]string {
	raw := map[string][]string{}
	for _, t := range rs.Tables {
		for _, o := range t.Objects {
			if o.Type != IndicatorType {
				continue
			}
			key := t.Name + " " + o.Name
			raw[key] = o.Spec
			last, known := seen[key]
			if !restarted && (!known || !slices.Equal(last, o.Spec)) {
				continue // moved (or first seen): the device's value is the news
			}
			if reported := indicatorIn(prev, t.Name, o.Name); reported != nil {
				o.Spec = reported.Spec
			}
		}
	}
	return raw
}

func indicatorIn(rs *ruleset.Ruleset, table, name string) *ruleset.Object {
	if rs == nil {
		return nil
	}
	t := rs.Table(Family, table)
	if t == nil {
		return nil
	}
	for _, o := range t.Objects {
		if o.Type == IndicatorType && o.Name == name {
			return o
		}
	}
	return nil
}
