package nftparse

import "encoding/binary"

// nlAttrs builds netlink attributes the way the kernel lays them out: native-endian
// length and type, payload padded to 4 bytes; nf_tables puts numbers big-endian.
type nlAttrs []byte

func (a *nlAttrs) put(typ uint16, data []byte) {
	var h [4]byte
	binary.NativeEndian.PutUint16(h[:], uint16(4+len(data)))
	binary.NativeEndian.PutUint16(h[2:], typ)
	*a = append(*a, h[:]...)
	*a = append(*a, data...)
	for len(*a)%4 != 0 {
		*a = append(*a, 0)
	}
}

func (a *nlAttrs) u8(typ uint16, v uint8) { a.put(typ, []byte{v}) }

func (a *nlAttrs) u16(typ uint16, v uint16) {
	a.put(typ, binary.BigEndian.AppendUint16(nil, v))
}

func (a *nlAttrs) u32(typ uint16, v uint32) {
	a.put(typ, binary.BigEndian.AppendUint32(nil, v))
}

func (a *nlAttrs) u64(typ uint16, v uint64) {
	a.put(typ, binary.BigEndian.AppendUint64(nil, v))
}

func (a *nlAttrs) str(typ uint16, s string) { a.put(typ, append([]byte(s), 0)) }

func (a *nlAttrs) nested(typ uint16, inner nlAttrs) { a.put(typ|0x8000, inner) }

// value is an nft_data attribute holding bytes.
func value(b []byte) nlAttrs {
	var v nlAttrs
	v.put(1, b) // NFTA_DATA_VALUE
	return v
}

// verdictValue is an nft_data attribute holding a verdict.
func verdictValue(code int32, chain string) nlAttrs {
	var vd nlAttrs
	vd.u32(1, uint32(code)) // NFTA_VERDICT_CODE
	if chain != "" {
		vd.str(2, chain) // NFTA_VERDICT_CHAIN
	}
	var v nlAttrs
	v.nested(2, vd) // NFTA_DATA_VERDICT
	return v
}

// nlExpr is one rule expression: its kernel name and its attributes.
type nlExpr struct {
	name string
	data nlAttrs
}

func (e nlExpr) encode() nlAttrs {
	var a nlAttrs
	a.str(1, e.name) // NFTA_EXPR_NAME
	a.nested(2, e.data)
	return a
}

// msg prefixes attributes with the nfgenmsg header.
func msg(fam byte, a nlAttrs) []byte {
	return append([]byte{fam, 0, 0, 0}, a...)
}

// Family numbers (NFPROTO_*).
var familyNumbers = map[string]byte{"inet": 1, "ip": 2, "arp": 3, "netdev": 5, "bridge": 7,
	"ip6": 10}
