package nftcanon

import (
	"encoding/binary"
	"errors"
	"strings"
)

// errShort reports a truncated netlink attribute.
var errShort = errors.New("truncated netlink attribute")

// attr is one netlink attribute: its type without the nested and byte-order flags, and
// its payload (a sub-slice of the message, not a copy).
type attr struct {
	typ  uint16
	data []byte
}

// attrs splits b into attributes. It fails on a truncated attribute.
func attrs(b []byte) ([]attr, error) {
	// Count first: one allocation of the right size instead of a growing slice (this was
	// the largest allocation of a big read).
	n := 0
	for c := b; len(c) >= 4; n++ {
		l := int(binary.LittleEndian.Uint16(c))
		if l < 4 {
			break
		}
		c = c[min((l+3)&^3, len(c)):]
	}
	out := make([]attr, 0, n)
	for len(b) >= 4 {
		n := int(binary.LittleEndian.Uint16(b))
		typ := binary.LittleEndian.Uint16(b[2:]) & 0x3fff
		if n < 4 || n > len(b) {
			return nil, errShort
		}
		out = append(out, attr{typ: typ, data: b[4:n]})
		adv := (n + 3) &^ 3
		if adv > len(b) {
			adv = len(b)
		}
		b = b[adv:]
	}
	if len(b) != 0 {
		return nil, errShort
	}
	return out, nil
}

// attrMap is a message's attributes in order; lookups scan it (messages hold a handful).
type attrMap []attr

func parseAttrs(b []byte) (attrMap, error) {
	list, err := attrs(b)
	return attrMap(list), err
}

// lookup returns the payload of the last attribute of type t.
func (m attrMap) lookup(t uint16) ([]byte, bool) {
	for i := len(m) - 1; i >= 0; i-- {
		if m[i].typ == t {
			return m[i].data, true
		}
	}
	return nil, false
}

// get returns the payload of the attribute of type t, or nil.
func (m attrMap) get(t uint16) []byte {
	b, _ := m.lookup(t)
	return b
}

func (m attrMap) has(t uint16) bool { _, ok := m.lookup(t); return ok }

// u32 reads a big-endian 32-bit attribute; absent or short attributes read as 0.
func (m attrMap) u32(t uint16) uint32 {
	b := m.get(t)
	if len(b) < 4 {
		return 0
	}
	return binary.BigEndian.Uint32(b)
}

func (m attrMap) u64(t uint16) uint64 {
	b := m.get(t)
	if len(b) < 8 {
		return 0
	}
	return binary.BigEndian.Uint64(b)
}

// str reads a NUL-terminated string attribute.
func (m attrMap) str(t uint16) string { return cstr(m.get(t)) }

func (m attrMap) nested(t uint16) attrMap {
	b, ok := m.lookup(t)
	if !ok {
		return nil
	}
	n, err := parseAttrs(b)
	if err != nil {
		return nil
	}
	return n
}

func cstr(b []byte) string {
	if i := strings.IndexByte(string(b), 0); i >= 0 {
		return string(b[:i])
	}
	return string(b)
}

// dataValue returns the NFTA_DATA_VALUE inside an nft_data attribute.
func dataValue(b []byte) []byte {
	for len(b) >= 4 {
		n := int(binary.LittleEndian.Uint16(b))
		if n < 4 || n > len(b) {
			return nil
		}
		if binary.LittleEndian.Uint16(b[2:])&0x3fff == nftaDataValue {
			return b[4:n]
		}
		b = b[min((n+3)&^3, len(b)):]
	}
	return nil
}

// verdictData is a decoded NFTA_DATA_VERDICT.
type verdictData struct {
	code  int32
	chain string
}

// dataVerdict decodes the NFTA_DATA_VERDICT inside an nft_data attribute.
func dataVerdict(b []byte) (verdictData, bool) {
	if len(b) < 4 || binary.LittleEndian.Uint16(b[2:])&0x3fff != nftaDataVerdict {
		return verdictData{}, false
	}
	m, err := parseAttrs(b)
	if err != nil {
		return verdictData{}, false
	}
	v := m.nested(nftaDataVerdict)
	if v == nil {
		return verdictData{}, false
	}
	return verdictData{code: int32(v.u32(nftaVerdictCode)), chain: v.str(nftaVerdictChain)}, true
}

// udata is libnftnl's user data: a list of type(u8) length(u8) value records.
type udata map[uint8][]byte

func parseUdata(b []byte) udata {
	u := udata{}
	for len(b) >= 2 {
		t, n := b[0], int(b[1])
		if 2+n > len(b) {
			break
		}
		u[t] = b[2 : 2+n]
		b = b[2+n:]
	}
	return u
}

func (u udata) str(t uint8) (string, bool) {
	b, ok := u[t]
	if !ok {
		return "", false
	}
	return cstr(b), true
}

// u32 reads a native-endian 32-bit record (libnftnl writes these in host order).
func (u udata) u32(t uint8) (uint32, bool) {
	b, ok := u[t]
	if !ok || len(b) < 4 {
		return 0, false
	}
	return binary.NativeEndian.Uint32(b), true
}
