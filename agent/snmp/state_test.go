package snmp

import (
	"errors"
	"log/slog"
	"net"
	"net/netip"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/gosnmp/gosnmp"

	"github.com/fenceline/fenceline/shared/ruleset"
)

func TestShippedProfilesResolve(t *testing.T) {
	ps := shippedProfiles(t)
	for _, name := range []string{"mib2", "cisco-ios", "cisco-asa", "juniper", "fortigate",
		"paloalto", "mikrotik"} {
		p, err := ps.Resolve(name)
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		if len(p.Tables) < 5 {
			t.Errorf("%s: %d tables; every profile extends mib2's five", name, len(p.Tables))
		}
	}
	if p := resolve(t, "cisco-asa"); len(p.Traps) != 2 || p.History == nil {
		t.Errorf("cisco-asa lost cisco-ios's traps or history: %+v", p)
	}
}

// Tables that keep only their listed columns are walked column by column: the
// configuration columns and the select column, or the first column when all are volatile.
func TestWalkRoots(t *testing.T) {
	byName := map[string]*TableSpec{}
	for _, name := range []string{"mib2", "fortigate"} {
		for _, tab := range resolve(t, name).Tables {
			byName[tab.Name] = tab
		}
	}
	for name, want := range map[string][]string{
		"system":           {"1.3.6.1.2.1.1"},
		"ipCidrRouteTable": {"1.3.6.1.2.1.4.24.4.1.5", "1.3.6.1.2.1.4.24.4.1.6", "1.3.6.1.2.1.4.24.4.1.7", "1.3.6.1.2.1.4.24.4.1.11"},
		"ifTable":          {"1.3.6.1.2.1.2.2.1.2", "1.3.6.1.2.1.2.2.1.3", "1.3.6.1.2.1.2.2.1.4", "1.3.6.1.2.1.2.2.1.6", "1.3.6.1.2.1.2.2.1.7"},
		"fgFwPolTable":     {"1.3.6.1.4.1.12356.101.5.1.2.1.1.2"},
	} {
		if got := byName[name].WalkRoots(); !slices.Equal(got, want) {
			t.Errorf("%s: %v, want %v", name, got, want)
		}
	}
}

func TestProfileErrors(t *testing.T) {
	dir := t.TempDir()
	for name, body := range map[string]string{
		"unknown-key.yaml": "name: x\ntables: []\nbogus: 1\n",
		"bad-oid.yaml":     "name: x\ntables: [{name: t, kind: table, entry: e, oid: 1.3.x}]\n",
		"bad-kind.yaml":    "name: x\ntables: [{name: t, kind: list, oid: 1.3}]\n",
		"no-name.yaml":     "tables: []\n",
	} {
		path := dir + "/" + name
		if err := writeFile(path, body); err != nil {
			t.Fatal(err)
		}
		if _, err := ParseProfile(path); !errors.Is(err, ErrProfile) {
			t.Errorf("%s: err = %v, want ErrProfile", name, err)
		}
	}
	ps := Profiles{"a": {Name: "a", Extends: []string{"b"}}, "b": {Name: "b", Extends: []string{"a"}}}
	if _, err := ps.Resolve("a"); !errors.Is(err, ErrProfile) {
		t.Errorf("cycle: err = %v", err)
	}
	if _, err := ps.Resolve("c"); !errors.Is(err, ErrProfile) {
		t.Errorf("unknown: err = %v", err)
	}
}

// A Linux host's full walk under the MIB-2 profile: interfaces, addresses and static
// routes become rows; counters, uptime and learned routes do not.
func TestBuildLinuxWalk(t *testing.T) {
	p := resolve(t, "mib2")
	pdus := readSnmprec(t, corpus(t, "snmpsim-debian/linux-full-walk.snmprec"))
	rs, err := Build(p, walksOf(p, pdus))
	if err != nil {
		t.Fatal(err)
	}
	text := rs.Text()
	for _, want := range []string{
		"table snmp ifTable {", "ifEntry 2 {", `ifDescr = "eth0"`, "ifAdminStatus = up(1)",
		"scalar sysName {", `"tt"`, "ipAddrEntry 195.218.254.105 {",
	} {
		if !strings.Contains(text, want) {
			t.Errorf("state lacks %q:\n%s", want, text)
		}
	}
	for _, volatile := range []string{"ifInOctets", "sysUpTime", "ifOperStatus", "col10"} {
		if strings.Contains(text, volatile) {
			t.Errorf("volatile %s in state:\n%s", volatile, text)
		}
	}
	// The recording's routes are all direct or learned (ipRouteProto local(2)): none is
	// configuration.
	if tab := rs.Table(Family, "ipRouteTable"); tab == nil || len(tab.Objects) != 0 {
		t.Errorf("ipRouteTable = %+v, want present and empty", tab)
	}

	// Counters, gauges and uptime moving change nothing.
	moved := cloneWith(pdus, map[string]any{
		".1.3.6.1.2.1.1.3.0": uint32(999999), ".1.3.6.1.2.1.2.2.1.10.2": uint(12345),
		".1.3.6.1.2.1.2.2.1.8.2": 2,
	})
	rs2, err := Build(p, walksOf(p, moved))
	if err != nil {
		t.Fatal(err)
	}
	if rs2.Digest() != rs.Digest() {
		t.Fatalf("volatile values changed the digest: %+v", ruleset.Diff(rs, rs2))
	}

	// One configuration column of one row: exactly one change naming that row.
	down := cloneWith(pdus, map[string]any{".1.3.6.1.2.1.2.2.1.7.2": 2})
	rs3, err := Build(p, walksOf(p, down))
	if err != nil {
		t.Fatal(err)
	}
	d := ruleset.Diff(rs, rs3)
	if len(d) != 1 || d[0].Kind != ruleset.ObjectChanged || d[0].Family != "snmp" ||
		d[0].Table != "ifTable" || d[0].Object != "ifEntry 2" ||
		!strings.Contains(d[0].Before, "ifAdminStatus = up(1)") ||
		!strings.Contains(d[0].After, "ifAdminStatus = down(2)") {
		t.Fatalf("diff = %+v, want one object_changed of ifEntry 2 from up to down", d)
	}
}

func cloneWith(pdus []gosnmp.SnmpPDU, set map[string]any) []gosnmp.SnmpPDU {
	out := make([]gosnmp.SnmpPDU, len(pdus))
	copy(out, pdus)
	for i := range out {
		if v, ok := set[out[i].Name]; ok {
			out[i].Value = v
		}
	}
	return out
}

// A Cisco switch: the running-config change time is state, its history table is not.
func TestBuildCiscoHistoryIsNotState(t *testing.T) {
	p := resolve(t, "cisco-ios")
	pdus := readSnmprec(t, corpus(t, "config-change-focus/snmpsim-data__switch__cisco-c3560.snmprec"))
	rs, err := Build(p, walksOf(p, pdus))
	if err != nil {
		t.Fatal(err)
	}
	tab := rs.Table(Family, "ccmHistory")
	if tab == nil {
		t.Fatal("no ccmHistory table")
	}
	var lines []string
	for _, o := range tab.Objects {
		lines = append(lines, o.Type+" "+o.Name+" = "+strings.Join(o.Spec, ";"))
	}
	want := []string{"indicator ccmHistoryRunningLastChanged = 16144", "scalar ccmHistoryMaxEventEntries = 10"}
	if strings.Join(lines, "|") != strings.Join(want, "|") {
		t.Fatalf("ccmHistory = %q, want %q", lines, want)
	}
	// The c3560's ten history rows are nightly `copy startup-config tftp` backups: none
	// is a change of the running configuration, so none names a committer.
	var hist []gosnmp.SnmpPDU
	for _, v := range pdus {
		if strings.HasPrefix(v.Name, "."+p.History.OID+".") {
			hist = append(hist, v)
		}
	}
	rows, err := historyRows(p.History, hist)
	if err != nil || len(rows) != 0 || len(hist) < 100 {
		t.Fatalf("history: %d varbinds, %d accepted rows (%v); want only backups", len(hist), len(rows), err)
	}
}

// Juniper: the commit date is state; index, uptime-based time and user are not.
func TestBuildJuniper(t *testing.T) {
	p := resolve(t, "juniper")
	pdus := readSnmprec(t, corpus(t, "config-change-focus/snmpsim-data__router__juniper-mx960-16-1r6-7-a.snmprec"))
	rs, err := Build(p, walksOf(p, pdus))
	if err != nil {
		t.Fatal(err)
	}
	text := rs.Table(Family, "jnxCmCfgChg")
	got := ""
	for _, o := range text.Objects {
		got += o.Name + "=" + strings.Join(o.Spec, ";") + " "
	}
	if got != "jnxCmCfgChgLatestDate=2017-12-20T17:35:35.0+08:00 jnxCmCfgChgMaxEventEntries=64 " {
		t.Fatalf("jnxCmCfgChg = %q", got)
	}
}

func TestBuildRejectsGarbage(t *testing.T) {
	p := resolve(t, "mib2")
	for name, vbs := range map[string][]gosnmp.SnmpPDU{
		"outside": {{Name: ".1.3.6.1.2.1.2.3.1.1", Type: gosnmp.Integer, Value: 1}},
		"repeat": {{Name: ".1.3.6.1.2.1.2.2.1.7.1", Type: gosnmp.Integer, Value: 1},
			{Name: ".1.3.6.1.2.1.2.2.1.7.1", Type: gosnmp.Integer, Value: 2}},
		"not-an-oid": {{Name: ".1.3.6.1.2.1.2.2.1.7.x", Type: gosnmp.Integer, Value: 1}},
		"no-index":   {{Name: ".1.3.6.1.2.1.2.2.1.7", Type: gosnmp.Integer, Value: 1}},
	} {
		if _, err := Build(p, map[string][]gosnmp.SnmpPDU{"ifTable": vbs}); !errors.Is(err, ErrMalformed) {
			t.Errorf("%s: err = %v, want ErrMalformed", name, err)
		}
	}
}

func TestRender(t *testing.T) {
	for _, c := range []struct {
		pdu    gosnmp.SnmpPDU
		syntax string
		want   string
	}{
		{gosnmp.SnmpPDU{Type: gosnmp.OctetString, Value: []byte("eth0")}, "", `"eth0"`},
		{gosnmp.SnmpPDU{Type: gosnmp.OctetString, Value: []byte{0, 0x1b, 0xff}}, "", "0x001bff"},
		{gosnmp.SnmpPDU{Type: gosnmp.OctetString, Value: []byte{0, 0x1b, 0xff}}, "mac", "00:1b:ff"},
		{gosnmp.SnmpPDU{Type: gosnmp.OctetString, Value: []byte("a\"b\\\x01")}, "", "0x6122625c01"},
		{gosnmp.SnmpPDU{Type: gosnmp.OctetString, Value: []byte("é")}, "", `"\u00e9"`},
		{gosnmp.SnmpPDU{Type: gosnmp.OctetString, Value: []byte{}}, "", `""`},
		{gosnmp.SnmpPDU{Type: gosnmp.ObjectIdentifier, Value: ".1.3.6.1.4.1.9"}, "", "1.3.6.1.4.1.9"},
		{gosnmp.SnmpPDU{Type: gosnmp.IPAddress, Value: "10.3.9.10"}, "", "10.3.9.10"},
		{gosnmp.SnmpPDU{Type: gosnmp.TimeTicks, Value: uint32(4294967295)}, "", "4294967295"},
		{gosnmp.SnmpPDU{Type: gosnmp.OctetString, Value: []byte{7, 0xe1, 12, 16, 17, 15, 33, 0, '+', 8, 0}},
			"datetime", "2017-12-16T17:15:33.0+08:00"},
		{gosnmp.SnmpPDU{Type: gosnmp.OctetString, Value: []byte{7, 0xe1, 13, 16, 17, 15, 33, 0}},
			"datetime", "0x07e10d10110f2100"},
	} {
		if got := Render(c.pdu, c.syntax, nil); got != c.want {
			t.Errorf("Render(%v, %q) = %q, want %q", c.pdu.Value, c.syntax, got, c.want)
		}
	}
	enum := map[int]string{1: "up", 2: "down"}
	if got := Render(gosnmp.SnmpPDU{Type: gosnmp.Integer, Value: 2}, "", enum); got != "down(2)" {
		t.Errorf("enum: %q", got)
	}
}

func TestRestarted(t *testing.T) {
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	r := func(at time.Duration, up uint32, boots int) *Reading {
		return &Reading{At: t0.Add(at), Uptime: up, HasUptime: true, Boots: boots, HasBoots: boots > 0}
	}
	for _, c := range []struct {
		name      string
		prev, cur *Reading
		want      bool
	}{
		{"advancing", r(0, 1000, 0), r(60*time.Second, 7000, 0), false},
		{"standing still (simulator)", r(0, 1000, 0), r(60*time.Second, 1000, 0), false},
		{"wrap at 2^32", r(0, 4294967000, 0), r(60*time.Second, 5704, 0), false},
		{"back to small uptime", r(0, 3600000000, 0), r(60*time.Second, 1500, 0), true},
		{"wrap that does not match the clock", r(0, 4294967000, 0), r(60*time.Second, 900000, 0), true},
		{"engine boots up", r(0, 1000, 7), r(60*time.Second, 7000, 8), true},
	} {
		if got, note := Restarted(c.prev, c.cur); got != c.want {
			t.Errorf("%s: restarted = %v (%s), want %v", c.name, got, note, c.want)
		}
	}
}

func TestNotificationCommitter(t *testing.T) {
	p := resolve(t, "juniper")
	vbs := []gosnmp.SnmpPDU{
		{Name: ".1.3.6.1.2.1.1.3.0", Type: gosnmp.TimeTicks, Value: uint32(5)},
		{Name: "." + OIDTrapOID, Type: gosnmp.ObjectIdentifier, Value: ".1.3.6.1.4.1.2636.4.5.0.1"},
		{Name: ".1.3.6.1.4.1.2636.3.18.1.7.1.4.79", Type: gosnmp.Integer, Value: 2},
		{Name: ".1.3.6.1.4.1.2636.3.18.1.7.1.5.79", Type: gosnmp.OctetString, Value: []byte("root")},
	}
	n, ok := Notification(p, "1.3.6.1.4.1.2636.4.5.0.1", vbs)
	if !ok || n.Trap != "jnxCmCfgChange" || n.Committer == nil || n.Committer.LoginUID != "root" ||
		n.Committer.Comm != "cli" {
		t.Fatalf("notification = %+v %+v, %v", n, n.Committer, ok)
	}
	if _, ok := Notification(p, "1.3.6.1.6.3.1.1.5.3", vbs); ok {
		t.Error("linkDown taken for a configuration change")
	}
}

// A history row that changed the running configuration names the committer; the
// backups logged after it do not hide it.
func TestHistoryCommitter(t *testing.T) {
	p := resolve(t, "cisco-ios")
	pdus := readSnmprec(t, corpus(t, "config-change-focus/snmpsim-data__switch__cisco-c3560.snmprec"))
	const e = ".1.3.6.1.4.1.9.9.43.1.1.6.1."
	edited := cloneWith(pdus, map[string]any{
		e + "4.57": 2, e + "5.57": 3, // commandSource -> running: a CLI change
		e + "8.57": []byte("bob"), e + "10.57": "10.3.9.77",
	})
	var hist []gosnmp.SnmpPDU
	for _, v := range edited {
		if strings.HasPrefix(v.Name, "."+p.History.OID+".") {
			hist = append(hist, v)
		}
	}
	rows, err := historyRows(p.History, hist)
	if err != nil || len(rows) != 1 {
		t.Fatalf("%d rows, %v", len(rows), err)
	}
	c := p.History.Who.committer(func(r *Ref) (gosnmp.SnmpPDU, bool) {
		v, ok := rows[0][r.OID]
		return v, ok
	})
	if c == nil || c.LoginUID != "bob" || c.Comm != "commandLine" || c.Session != "10.3.9.77" {
		t.Fatalf("committer = %+v", c)
	}
}

// TestV1TrapOID: SNMPv1 traps map to notification OIDs as RFC 3584 says, so v1 and v2
// forms of a device's configuration-change trap are the same profile trap.
func TestV1TrapOID(t *testing.T) {
	for _, c := range []struct {
		trap gosnmp.SnmpTrap
		want string
	}{
		{gosnmp.SnmpTrap{GenericTrap: 0}, "1.3.6.1.6.3.1.1.5.1"},                               // coldStart
		{gosnmp.SnmpTrap{GenericTrap: 3, Enterprise: ".1.3.6.1.4.1.9"}, "1.3.6.1.6.3.1.1.5.4"}, // linkUp
		{gosnmp.SnmpTrap{GenericTrap: 6, Enterprise: ".1.3.6.1.4.1.9.9.43.2", SpecificTrap: 2},
			"1.3.6.1.4.1.9.9.43.2.0.2"},
		{gosnmp.SnmpTrap{GenericTrap: 6, Enterprise: "1.3.6.1.4.1.2636.4.5", SpecificTrap: 1},
			"1.3.6.1.4.1.2636.4.5.0.1"},
	} {
		if got := v1TrapOID(c.trap); got != c.want {
			t.Errorf("%+v: %s, want %s", c.trap, got, c.want)
		}
	}
}

// TestStickIndicators: an indicator keeps the value last reported until the device
// moves it; a restart that resets it is no move, then or at later reads.
func TestStickIndicators(t *testing.T) {
	state := func(v string) *ruleset.Ruleset {
		return &ruleset.Ruleset{Tables: []*ruleset.Table{{Family: Family, Name: "ccmHistory",
			Objects: []*ruleset.Object{
				{Type: IndicatorType, Name: "ccmHistoryRunningLastChanged", Spec: []string{v}},
				{Type: ScalarType, Name: "ccmHistoryMaxEventEntries", Spec: []string{"10"}}}}}}
	}
	value := func(rs *ruleset.Ruleset) string { return rs.Tables[0].Objects[0].Spec[0] }
	reported := state("100")
	var seen map[string][]string
	for i, step := range []struct {
		device    string
		restarted bool
		want      string
	}{
		{"100", false, "100"}, // the agent starts: the device's value
		{"150", false, "150"}, // a configuration change moves it
		{"20", true, "150"},   // a reboot resets it: not a change
		{"20", false, "150"},  // and stays not one
		{"35", false, "35"},   // the next change after the reboot
		{"35", true, "35"},
	} {
		rs := state(step.device)
		seen = stickIndicators(rs, reported, seen, step.restarted)
		if got := value(rs); got != step.want {
			t.Fatalf("step %d (device %s, restarted %v): reported %s, want %s", i, step.device,
				step.restarted, got, step.want)
		}
		if seen["ccmHistory ccmHistoryRunningLastChanged"][0] != step.device {
			t.Fatalf("step %d: seen %v", i, seen)
		}
		reported = rs
	}
}

// TestTrapHostChanges: a target's notifications are matched by its address; after
// SetHost (its DNS name resolved to another address) they are matched by the new one.
func TestTrapHostChanges(t *testing.T) {
	p := &Profile{Traps: []TrapSpec{{Name: "cfg", OID: "1.3.6.1.4.1.9.9.43.2.0.2"}}}
	var got []TrapNote
	l, err := NewTrapListener("127.0.0.1:0", nil, nil, []TrapRoute{{Target: "fw",
		Host: netip.MustParseAddr("127.0.0.2"), Community: "c", Profile: p,
		Deliver: func(n TrapNote) { got = append(got, n) }}}, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	trap := &gosnmp.SnmpPacket{Version: gosnmp.Version2c, Community: "c",
		Variables: []gosnmp.SnmpPDU{{Name: "." + OIDTrapOID, Type: gosnmp.ObjectIdentifier,
			Value: ".1.3.6.1.4.1.9.9.43.2.0.2"}}}
	from := &net.UDPAddr{IP: net.ParseIP("127.0.0.1"), Port: 50000}
	l.handle(trap, from)
	if len(got) != 0 || l.Stats().Unmatched != 1 {
		t.Fatalf("a trap from another address: delivered %d, %+v", len(got), l.Stats())
	}
	if !l.SetHost("fw", netip.MustParseAddr("127.0.0.1")) || l.SetHost("fw", netip.MustParseAddr("127.0.0.1")) {
		t.Fatal("SetHost does not say what it changed")
	}
	l.handle(trap, from)
	if len(got) != 1 || got[0].Trap != "cfg" {
		t.Fatalf("after SetHost: delivered %+v, %+v", got, l.Stats())
	}
}
