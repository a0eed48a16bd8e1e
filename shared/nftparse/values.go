package nftparse

import (
	"encoding/hex"
	"errors"
	"fmt"
	"math/big"
	"net/netip"
	"strconv"
	"strings"
	"time"
)

// typ is what an expression loads into a register: the datatype, the byte order, the
// bytes loaded, and for a header field narrower than those bytes its width and its
// distance from their low end. A concatenation has parts.
type typ struct {
	dt        *dtype
	order     byteOrder
	bytes     int
	fieldBits int
	shift     int
	parts     []typ
}

func (t typ) isConcat() bool { return len(t.parts) > 0 }

// width is the bytes a value of t occupies in a set key or register span.
func (t typ) width() int {
	if !t.isConcat() {
		return t.bytes
	}
	n := 0
	for _, p := range t.parts {
		n += pad4(p.bytes)
	}
	return n
}

func pad4(n int) int { return (n + 3) &^ 3 }

// typeID is the NFTA_SET_KEY_TYPE of t: concatenations pack 6 bits per component.
func (t typ) typeID() uint32 {
	if !t.isConcat() {
		return t.dt.id
	}
	var id uint32
	for _, p := range t.parts {
		id = id<<6 | p.dt.id
	}
	return id
}

// valueBits is the width of the value itself: the field's bits, or the bytes loaded.
func (t typ) valueBits() int {
	if t.fieldBits > 0 {
		return t.fieldBits
	}
	return t.bytes * 8
}

// scalar is one parsed constant.
type scalar struct {
	n    *big.Int
	s    []byte // strings
	wild bool   // a string prefix match: `"eth*"`
}

// interval is a constant that is a single value, a range or a prefix: lo and hi are the
// bounds as numbers (strings as their bytes).
type ival struct {
	lo, hi scalar
	plen   int // prefix length, -1 when not written as a prefix
	single bool
}

var errNotValue = errors.New("not a value of this type")

// parseScalar reads one constant of type dt whose value has the given bits.
func (c *compiler) parseScalar(text string, quoted bool, dt *dtype, bits int) (scalar, error) {
	if dt.kind == kString {
		if !quoted && strings.HasSuffix(text, "*") && !strings.HasSuffix(text, `\*`) {
			return scalar{s: []byte(strings.TrimSuffix(text, "*")), wild: true}, nil
		}
		if quoted && strings.HasSuffix(text, "*") && !strings.HasSuffix(text, `\*`) {
			return scalar{s: []byte(strings.TrimSuffix(text, "*")), wild: true}, nil
		}
		text = strings.ReplaceAll(text, `\*`, "*")
		if bits > 0 && len(text) >= bits/8 {
			return scalar{}, fmt.Errorf("%q is longer than %d characters", text, bits/8-1)
		}
		return scalar{s: []byte(text)}, nil
	}
	n, err := c.parseNumber(text, dt)
	if err != nil {
		return scalar{}, err
	}
	if bits > 0 && n.BitLen() > bits {
		return scalar{}, fmt.Errorf("value %s exceeds %d bits", text, bits)
	}
	return scalar{n: n}, nil
}

func (c *compiler) parseNumber(text string, dt *dtype) (*big.Int, error) {
	num := func() (*big.Int, error) {
		n, ok := new(big.Int).SetString(text, 0)
		if !ok || n.Sign() < 0 {
			return nil, errNotValue
		}
		return n, nil
	}
	symbol := func() (*big.Int, bool) {
		for _, s := range dt.syms {
			if s.name == text {
				return new(big.Int).SetUint64(s.val), true
			}
		}
		return nil, false
	}
	switch dt.kind {
	case kInteger:
		return num()
	case kSymbol, kBitmask, kQuotedSym:
		if n, ok := symbol(); ok {
			return n, nil
		}
		return num()
	case kProto:
		if v, ok := protocols[text]; ok {
			return new(big.Int).SetUint64(v), nil
		}
		return num()
	case kService:
		if n, err := num(); err == nil {
			return n, nil
		}
		if v, ok := services[text]; ok {
			return new(big.Int).SetUint64(v), nil
		}
		return nil, fmt.Errorf("unknown service name %q (use the port number)", text)
	case kIPv4:
		a, err := netip.ParseAddr(text)
		if err != nil || !a.Is4() {
			return nil, fmt.Errorf("%q is not an IPv4 address", text)
		}
		b := a.As4()
		return new(big.Int).SetBytes(b[:]), nil
	case kIPv6:
		a, err := netip.ParseAddr(text)
		if err != nil || !a.Is6() || a.Zone() != "" {
			return nil, fmt.Errorf("%q is not an IPv6 address", text)
		}
		b := a.As16()
		return new(big.Int).SetBytes(b[:]), nil
	case kLLAddr:
		b, err := hex.DecodeString(strings.ReplaceAll(text, ":", ""))
		if err != nil || len(b) == 0 || strings.Count(text, ":") != len(b)-1 {
			return nil, fmt.Errorf("%q is not a link-layer address", text)
		}
		return new(big.Int).SetBytes(b), nil
	case kIfindex:
		if n, err := num(); err == nil {
			return n, nil
		}
		return new(big.Int).SetUint64(uint64(c.ifindex(text))), nil
	case kMsecs:
		ms, err := parseDuration(text)
		if err != nil {
			return nil, err
		}
		return new(big.Int).SetUint64(ms), nil
	case kHour:
		return parseHour(text)
	case kDay:
		for i, d := range days {
			if strings.EqualFold(text, d) || strings.EqualFold(text, d[:3]) {
				return big.NewInt(int64(i)), nil
			}
		}
		return num()
	case kDate:
		for _, layout := range []string{"2006-01-02 15:04:05", "2006-01-02 15:04", "2006-01-02"} {
			if t, err := time.ParseInLocation(layout, text, time.UTC); err == nil {
				return new(big.Int).SetUint64(uint64(t.UnixNano())), nil
			}
		}
		if n, err := num(); err == nil {
			return n.Mul(n, big.NewInt(1e9)), nil
		}
		return nil, fmt.Errorf("%q is not a date like \"2025-01-31 08:00:00\"", text)
	case kClassid:
		switch text {
		case "root":
			return big.NewInt(0xffffffff), nil
		case "none":
			return big.NewInt(0), nil
		}
		maj, min, ok := strings.Cut(text, ":")
		a, err1 := strconv.ParseUint(maj, 16, 16)
		b, err2 := strconv.ParseUint(min, 16, 16)
		if !ok || err1 != nil || err2 != nil {
			return nil, fmt.Errorf("%q is not a class id like 1:10", text)
		}
		return new(big.Int).SetUint64(a<<16 | b), nil
	case kUID:
		if v, ok := users[text]; ok {
			return new(big.Int).SetUint64(v), nil
		}
		return num()
	case kGID:
		if v, ok := groups[text]; ok {
			return new(big.Int).SetUint64(v), nil
		}
		return num()
	case kBoolean:
		switch text {
		case "exists", "true":
			return big.NewInt(1), nil
		case "missing", "false":
			return big.NewInt(0), nil
		}
		return nil, fmt.Errorf("%q: want exists or missing", text)
	}
	return nil, fmt.Errorf("values of type %s: %w", dt.name, ErrUnsupported)
}

// parseDuration reads nft's time format (1d2h3m4s5ms, or plain seconds) as milliseconds.
func parseDuration(s string) (uint64, error) {
	if n, err := strconv.ParseUint(s, 10, 64); err == nil {
		return n * 1000, nil
	}
	var total uint64
	rest := s
	for rest != "" {
		i := 0
		for i < len(rest) && rest[i] >= '0' && rest[i] <= '9' {
			i++
		}
		if i == 0 {
			return 0, fmt.Errorf("%q is not a duration like 1h30m", s)
		}
		n, _ := strconv.ParseUint(rest[:i], 10, 64)
		rest = rest[i:]
		j := 0
		for j < len(rest) && (rest[j] < '0' || rest[j] > '9') {
			j++
		}
		unit := map[string]uint64{"d": 86400000, "h": 3600000, "m": 60000, "s": 1000,
			"ms": 1}[rest[:j]]
		if unit == 0 {
			return 0, fmt.Errorf("%q is not a duration like 1h30m", s)
		}
		total += n * unit
		rest = rest[j:]
	}
	return total, nil
}

func parseHour(s string) (*big.Int, error) {
	parts := strings.Split(s, ":")
	if len(parts) < 2 || len(parts) > 3 {
		return nil, fmt.Errorf("%q is not a time of day like 08:30", s)
	}
	var secs int64
	for i, p := range parts {
		n, err := strconv.Atoi(p)
		lim := []int{24, 60, 60}[i]
		if err != nil || n < 0 || n >= lim {
			return nil, fmt.Errorf("%q is not a time of day like 08:30", s)
		}
		secs += int64(n) * []int64{3600, 60, 1}[i]
	}
	// TODO: nft converts from the host's local time zone; times are taken as UTC here,
	// as the agent's canonical text prints them.
	return big.NewInt(secs), nil
}

// interval reads a constant that may be a range (lo-hi) or a prefix (addr/len).
func (c *compiler) interval(e expr, t typ) (ival, error) {
	bits := t.valueBits()
	switch e := e.(type) {
	case *eRange:
		lo, err := c.interval(e.lo, t)
		if err != nil {
			return ival{}, err
		}
		hi, err := c.interval(e.hi, t)
		if err != nil {
			return ival{}, err
		}
		return c.checkRange(e, lo.lo, hi.hi)
	case *eConst:
		if sc, err := c.parseScalar(e.text, e.quoted, t.dt, bits); err == nil {
			return ival{lo: sc, hi: sc, plen: -1, single: !sc.wild}, nil
		} else if e.quoted || t.dt.kind == kString {
			return ival{}, c.errExpr(e, ErrType, "%v", err)
		}
		if t.dt.prefix || t.dt.kind == kInteger {
			if a, l, ok := strings.Cut(e.text, "/"); ok {
				return c.prefix(e, a, l, t)
			}
		}
		// A range: split at a dash where both sides parse.
		for i := 1; i < len(e.text)-1; i++ {
			if e.text[i] != '-' {
				continue
			}
			lo, err1 := c.parseScalar(e.text[:i], false, t.dt, bits)
			hi, err2 := c.parseScalar(e.text[i+1:], false, t.dt, bits)
			if err1 == nil && err2 == nil {
				return c.checkRange(e, lo, hi)
			}
		}
		_, err := c.parseScalar(e.text, false, t.dt, bits)
		return ival{}, c.errExpr(e, ErrType, "%v", typeErr(err, e.text, t.dt))
	}
	return ival{}, c.errExpr(e, ErrType, "expected a value of type %s", t.dt.name)
}

func typeErr(err error, text string, dt *dtype) error {
	if errors.Is(err, errNotValue) {
		return fmt.Errorf("%q is not a valid %s value", text, dt.name)
	}
	return err
}

func (c *compiler) checkRange(e expr, lo, hi scalar) (ival, error) {
	if lo.n == nil || hi.n == nil {
		return ival{}, c.errExpr(e, ErrType, "ranges of strings are not supported")
	}
	if lo.n.Cmp(hi.n) > 0 {
		return ival{}, c.errExpr(e, ErrType, "range has its low end above its high end")
	}
	return ival{lo: lo, hi: hi, plen: -1, single: lo.n.Cmp(hi.n) == 0}, nil
}

func (c *compiler) prefix(e *eConst, addr, l string, t typ) (ival, error) {
	bits := t.dt.bits
	if bits == 0 || t.dt.kind == kInteger {
		bits = t.valueBits()
	}
	n, err := c.parseNumber(addr, t.dt)
	if err != nil {
		return ival{}, c.errExpr(e, ErrType, "%v", err)
	}
	plen, err := strconv.Atoi(l)
	if err != nil || plen < 0 || plen > bits {
		return ival{}, c.errExpr(e, ErrType, "prefix length %q: want 0 to %d", l, bits)
	}
	host := new(big.Int).Sub(new(big.Int).Lsh(big.NewInt(1), uint(bits-plen)), big.NewInt(1))
	lo := new(big.Int).AndNot(n, host)
	hi := new(big.Int).Or(lo, host)
	return ival{lo: scalar{n: lo}, hi: scalar{n: hi}, plen: plen, single: plen == bits}, nil
}

// encode writes a scalar into the bytes of a register of type t: shifted into place for
// a sub-byte field, in t's byte order. Strings are NUL-padded; a wildcard keeps only its
// prefix.
func encode(s scalar, t typ) []byte {
	if s.n == nil {
		if s.wild {
			return append([]byte(nil), s.s...)
		}
		out := make([]byte, t.bytes)
		copy(out, s.s)
		return out
	}
	n := new(big.Int).Lsh(s.n, uint(t.shift))
	b := n.FillBytes(make([]byte, max(t.bytes, (n.BitLen()+7)/8)))
	b = b[len(b)-t.bytes:]
	if t.order == hostOrder {
		reverse(b)
	}
	return b
}

// encodeBE writes a scalar big-endian whatever t's order, as interval sets and range
// comparisons need.
func encodeBE(s scalar, t typ) []byte {
	t.order = bigEndian
	return encode(s, t)
}

func reverse(b []byte) {
	for i, j := 0, len(b)-1; i < j; i, j = i+1, j-1 {
		b[i], b[j] = b[j], b[i]
	}
}

// fieldMask is the mask of a sub-byte field within its loaded bytes.
func fieldMask(t typ) []byte {
	m := new(big.Int).Sub(new(big.Int).Lsh(big.NewInt(1), uint(t.fieldBits)), big.NewInt(1))
	m.Lsh(m, uint(t.shift))
	b := m.FillBytes(make([]byte, t.bytes))
	if t.order == hostOrder {
		reverse(b)
	}
	return b
}

// ifindex gives an interface name a stand-in index; the renderer prints it back as the
// name, as the agent prints the indexes of its interfaces.
func (c *compiler) ifindex(name string) uint32 {
	if i, ok := c.ifnames[name]; ok {
		return i
	}
	i := uint32(0x7f000000 + len(c.ifnames))
	c.ifnames[name] = i
	return i
}
