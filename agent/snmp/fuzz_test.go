package snmp

import (
	"strings"
	"testing"

	"github.com/gosnmp/gosnmp"
)

// fuzzProfile covers every table kind and column option of the shipped profiles.
func fuzzProfile(t testing.TB) *Profile {
	p := &Profile{Name: "fuzz", Tables: []*TableSpec{
		{Name: "system", Kind: KindScalars, OID: "1.3.6.1.2.1.1", Columns: []Column{
			{ID: 3, Name: "sysUpTime", Volatile: true}, {ID: 5, Name: "sysName"}}},
		{Name: "ifTable", Kind: KindTable, Entry: "ifEntry", OID: "1.3.6.1.2.1.2.2.1", Columns: []Column{
			{ID: 6, Name: "ifPhysAddress", Syntax: "mac"},
			{ID: 7, Name: "ifAdminStatus", Enum: map[int]string{1: "up", 2: "down"}}}},
		{Name: "routes", Kind: KindTable, Entry: "r", OID: "1.3.6.1.2.1.4.21.1", Unlisted: "drop",
			Select: &Select{Column: 9, Values: []int{3}}, Columns: []Column{{ID: 7, Name: "nh"}}},
		{Name: "dates", Kind: KindScalars, OID: "1.3.6.1.4.1.2636.3.18.1", Columns: []Column{
			{ID: 3, Name: "d", Syntax: "datetime"}, {ID: 4, Name: "ip", Syntax: "ip"}}},
	}}
	if err := p.check(); err != nil {
		t.Fatal(err)
	}
	return p
}

// FuzzResponseToState feeds raw bytes as an SNMP response through gosnmp's decoder and
// the conversion into the canonical model: no input may panic, and whatever converts
// must convert the same way twice, into ASCII text with no empty value.
func FuzzResponseToState(f *testing.F) {
	enc := &gosnmp.GoSNMP{Version: gosnmp.Version2c, Community: "public", Logger: gosnmp.NewLogger(nil)}
	seed := func(vbs []gosnmp.SnmpPDU) {
		pkt := &gosnmp.SnmpPacket{Version: gosnmp.Version2c, Community: "public",
			PDUType: gosnmp.GetResponse, RequestID: 7, Variables: vbs}
		b, err := pkt.MarshalMsg()
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	seed([]gosnmp.SnmpPDU{
		{Name: ".1.3.6.1.2.1.1.5.0", Type: gosnmp.OctetString, Value: []byte("fw-1")},
		{Name: ".1.3.6.1.2.1.1.3.0", Type: gosnmp.TimeTicks, Value: uint32(4294967295)},
		{Name: ".1.3.6.1.2.1.2.2.1.7.3", Type: gosnmp.Integer, Value: 2},
		{Name: ".1.3.6.1.2.1.2.2.1.6.3", Type: gosnmp.OctetString, Value: []byte{0, 1, 2, 3, 4, 5}},
		{Name: ".1.3.6.1.2.1.2.2.1.10.3", Type: gosnmp.Counter32, Value: uint32(99)},
		{Name: ".1.3.6.1.2.1.4.21.1.9.10.0.0.0", Type: gosnmp.Integer, Value: 3},
		{Name: ".1.3.6.1.2.1.4.21.1.7.10.0.0.0", Type: gosnmp.IPAddress, Value: "10.0.0.1"},
		{Name: ".1.3.6.1.4.1.2636.3.18.1.3.0", Type: gosnmp.OctetString,
			Value: []byte{7, 0xe1, 12, 16, 17, 15, 33, 0, '+', 8, 0}},
		{Name: ".1.3.6.1.2.1.31.1.1.1.6.3", Type: gosnmp.Counter64, Value: uint64(1 << 40)},
		{Name: ".1.3.6.1.2.1.1.2.0", Type: gosnmp.ObjectIdentifier, Value: ".1.3.6.1.4.1.9.1.617"},
	})
	seed([]gosnmp.SnmpPDU{{Name: ".1.3.6.1.2.1.2.2.1.7.1", Type: gosnmp.NoSuchInstance},
		{Name: ".1.3.6.1.2.1.2.2.1.7.2", Type: gosnmp.EndOfMibView}})
	f.Add([]byte{0x30, 0x03, 0x02, 0x01, 0x01})
	p := fuzzProfile(f)
	f.Fuzz(func(t *testing.T, b []byte) {
		pkt, err := enc.SnmpDecodePacket(b)
		if err != nil || pkt == nil {
			return
		}
		walks := walksOf(p, pkt.Variables)
		rs, err := Build(p, walks)
		if err != nil {
			return
		}
		rs2, err := Build(p, walks)
		if err != nil || rs2.Digest() != rs.Digest() {
			t.Fatalf("second conversion differs: %v", err)
		}
		text := rs.Text()
		for i := 0; i < len(text); i++ {
			if text[i] > 0x7e {
				t.Fatalf("non-ASCII state text %q", text)
			}
		}
		for _, tab := range rs.Tables {
			for _, o := range tab.Objects {
				for _, l := range o.Spec {
					if l == "" || strings.HasSuffix(l, "= ") || strings.ContainsAny(l, "\n\r") {
						t.Fatalf("bad value line %q in %s %s", l, o.Type, o.Name)
					}
				}
			}
		}
	})
}
