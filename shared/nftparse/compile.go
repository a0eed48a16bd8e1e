package nftparse

import (
	"fmt"
	"math/big"
	"slices"
)

// compiler turns parsed statements into the nf_tables expressions nft would send for
// them: it types constants, adds the protocol dependencies nft adds, and builds anonymous
// sets and maps.
type compiler struct {
	in      string
	fam     byte
	family  string
	ctx     [3]*proto // protocol known at each payload base
	vlan    bool
	out     []nlExpr
	sets    []*anonSet
	named   map[string]*setDecl
	used    []*setDecl // named sets the rule refers to, in order of first use
	ifnames map[string]uint32
}

// anonSet is an anonymous set or map the rule carries.
type anonSet struct {
	name    string
	id      uint32
	flags   uint32
	key     typ
	data    *typ // nil for a plain set
	objType uint32
	elems   []nlAttrs
	counter bool // every element carries a counter
}

// Set flags.
const (
	setAnonymous = 0x1
	setConstant  = 0x2
	setInterval  = 0x4
	setMap       = 0x8
	setTimeout   = 0x10
	setEval      = 0x20
	setObject    = 0x40
	setConcat    = 0x80
)

// Registers: the verdict register and the first 16-byte register, in 32-bit units.
const (
	regVerdict = 0
	reg1       = 8
)

// regAttr is how a register is numbered in an attribute: the four 16-byte registers
// have their own numbers, nft uses them when a value starts on one.
func regAttr(r uint32) uint32 {
	if r >= 8 && (r-8)%4 == 0 && r < 24 {
		return (r-8)/4 + 1
	}
	return r
}

func (c *compiler) errExpr(e interface{ span() at }, err error, format string, args ...any) *Error {
	a := e.span()
	return errAt(c.in, a.pos, max(a.end-a.pos, 1), err, fmt.Sprintf(format, args...))
}

func (c *compiler) emit(name string, a nlAttrs) { c.out = append(c.out, nlExpr{name, a}) }

func (c *compiler) payloadLoad(base, off, n int, reg uint32) {
	var a nlAttrs
	a.u32(1, regAttr(reg)) // DREG
	a.u32(2, uint32(base))
	a.u32(3, uint32(off))
	a.u32(4, uint32(n))
	c.emit("payload", a)
}

var cmpOps = map[relOp]uint32{relEq: 0, relImplicit: 0, relNeq: 1, relLt: 2, relLte: 3,
	relGt: 4, relGte: 5}

func (c *compiler) cmp(reg uint32, op uint32, data []byte) {
	var a nlAttrs
	a.u32(1, regAttr(reg))
	a.u32(2, op)
	a.nested(3, value(data))
	c.emit("cmp", a)
}

func (c *compiler) bitwise(reg uint32, n int, mask, xor []byte) {
	var a nlAttrs
	a.u32(1, regAttr(reg))
	a.u32(2, regAttr(reg))
	a.u32(3, uint32(n))
	a.nested(4, value(mask))
	a.nested(5, value(xor))
	c.emit("bitwise", a)
}

func (c *compiler) shift(reg uint32, n int, op uint32, by uint32) {
	var a nlAttrs
	a.u32(1, regAttr(reg))
	a.u32(2, regAttr(reg))
	a.u32(3, uint32(n))
	a.u32(6, op)
	b := make([]byte, 4)
	b[0], b[1], b[2], b[3] = byte(by), byte(by>>8), byte(by>>16), byte(by>>24)
	a.nested(7, value(b))
	c.emit("bitwise", a)
}

// hton converts a host-order register to network order (ranges and intervals compare
// big-endian).
func (c *compiler) hton(reg uint32, n int) {
	var a nlAttrs
	a.u32(1, regAttr(reg))
	a.u32(2, regAttr(reg))
	a.u32(3, 1) // NFT_BYTEORDER_HTON
	a.u32(4, uint32(n))
	a.u32(5, uint32(min(n, 8)))
	c.emit("byteorder", a)
}

func (c *compiler) immediate(reg uint32, data []byte) {
	var a nlAttrs
	a.u32(1, regAttr(reg))
	a.nested(2, value(data))
	c.emit("immediate", a)
}

func (c *compiler) verdict(v eVerdict) {
	var a nlAttrs
	a.u32(1, regVerdict)
	a.nested(2, verdictValue(v.code, v.chain))
	c.emit("immediate", a)
}

func (c *compiler) metaLoad(key uint32, reg uint32) {
	var a nlAttrs
	a.u32(1, regAttr(reg))
	a.u32(2, key)
	c.emit("meta", a)
}

// ---- protocol dependencies ----

// protos lists the headers an expression reads, in order.
func protos(e expr, acc []*proto) []*proto {
	switch e := e.(type) {
	case *ePayload:
		acc = append(acc, e.p)
	case *eExthdr:
		if e.op == 1 {
			acc = append(acc, protoTCP)
		} else {
			acc = append(acc, protoIP6)
		}
	case *eConcat:
		for _, it := range e.items {
			acc = protos(it, acc)
		}
	case *eBinop:
		acc = protos(e.left, acc)
	case *eMap:
		acc = protos(e.key, acc)
	case *eHash:
		if e.src != nil {
			acc = protos(e.src, acc)
		}
	}
	return acc
}

// need makes sure the protocol context has pr at its base, adding the match nft adds
// when nothing in the rule said so yet.
func (c *compiler) need(pr *proto, e expr) error {
	if pr == protoTH {
		return nil
	}
	b := pr.base
	if pr == protoVlan {
		if c.vlan {
			return nil
		}
		if err := c.need(protoEther, e); err != nil {
			return err
		}
		c.payloadLoad(baseLL, 12, 2, reg1)
		c.cmp(reg1, 0, []byte{0x81, 0x00})
		c.vlan = true
		return nil
	}
	if c.ctx[b] == pr {
		return nil
	}
	if c.ctx[b] != nil {
		return c.errExpr(e, ErrType, "conflicting protocols: %s after %s", pr.name, c.ctx[b].name)
	}
	switch b {
	case baseLL:
		if pr != protoEther {
			return c.errExpr(e, ErrUnsupported, "%s header", pr.name)
		}
		c.metaLoad(8, reg1) // iiftype
		c.cmp(reg1, 0, []byte{1, 0})
	case baseNH:
		switch c.family {
		case "inet":
			if pr.nfp == 0 {
				return c.errExpr(e, ErrType, "%s header in an inet table", pr.name)
			}
			c.metaLoad(15, reg1) // nfproto
			c.cmp(reg1, 0, []byte{byte(pr.nfp)})
		case "bridge", "netdev":
			c.metaLoad(1, reg1) // protocol
			c.cmp(reg1, 0, []byte{byte(pr.l3 >> 8), byte(pr.l3)})
		default:
			return c.errExpr(e, ErrType, "%s header in an %s table", pr.name, c.family)
		}
	case baseTH:
		switch {
		case pr == protoICMP || pr == protoIGMP:
			if c.ctx[baseNH] == nil {
				if err := c.need(protoIP, e); err != nil {
					return err
				}
			}
		case pr == protoICMP6:
			if c.ctx[baseNH] == nil {
				if err := c.need(protoIP6, e); err != nil {
					return err
				}
			}
		}
		c.metaLoad(16, reg1) // l4proto
		c.cmp(reg1, 0, []byte{byte(pr.l4)})
	}
	c.ctx[b] = pr
	return nil
}

func (c *compiler) needAll(es ...expr) error {
	for _, e := range es {
		if e == nil {
			continue
		}
		for _, pr := range protos(e, nil) {
			if err := c.need(pr, e); err != nil {
				return err
			}
		}
	}
	return nil
}

// learn updates the protocol context after a match that selects a protocol.
func (c *compiler) learn(left expr, v scalar) {
	if v.n == nil || !v.n.IsUint64() {
		return
	}
	n := v.n.Uint64()
	switch l := left.(type) {
	case *eMeta:
		switch l.ki.key {
		case 16: // l4proto
			if pr := l4ByNumber(n); pr != nil && c.ctx[baseTH] == nil {
				c.ctx[baseTH] = pr
			}
		case 15: // nfproto
			if c.ctx[baseNH] == nil {
				switch n {
				case 2:
					c.ctx[baseNH] = protoIP
				case 10:
					c.ctx[baseNH] = protoIP6
				}
			}
		case 1: // protocol
			if pr := l3ByEtherType(n); pr != nil && c.ctx[baseNH] == nil {
				c.ctx[baseNH] = pr
			}
		case 8: // iiftype
			if n == 1 && c.ctx[baseLL] == nil {
				c.ctx[baseLL] = protoEther
			}
		}
	case *ePayload:
		if l.f.name != l.p.selector {
			return
		}
		switch l.p {
		case protoIP, protoIP6:
			if pr := l4ByNumber(n); pr != nil && c.ctx[baseTH] == nil {
				c.ctx[baseTH] = pr
			}
		case protoEther, protoVlan:
			if n == 0x8100 {
				c.vlan = true
			} else if pr := l3ByEtherType(n); pr != nil && c.ctx[baseNH] == nil {
				c.ctx[baseNH] = pr
			}
		}
	}
}

// ---- loads ----

// load emits what puts e's value into register reg and returns its type.
func (c *compiler) load(e expr, reg uint32) (typ, error) {
	switch e := e.(type) {
	case *ePayload:
		off := e.p.hdrOff + e.f.off
		return c.loadBits(e.p.base, off, e.f.bits, e.f.dt, reg), nil
	case *eRaw:
		return c.loadBits(e.base, e.off, e.bits, dtInteger, reg), nil
	case *eMeta:
		c.metaLoad(e.ki.key, reg)
		return keyTyp(e.ki), nil
	case *eCt:
		var a nlAttrs
		a.u32(1, regAttr(reg))
		a.u32(2, e.ki.key)
		if e.dir >= 0 {
			a.u8(3, uint8(e.dir))
		}
		c.emit("ct", a)
		return keyTyp(e.ki), nil
	case *eRt:
		ki := e.ki
		if ki.key == 0xffff {
			ki = rtKeys["ip nexthop"]
			if c.family == "ip6" {
				ki = rtKeys["ip6 nexthop"]
			}
		}
		var a nlAttrs
		a.u32(1, regAttr(reg))
		a.u32(2, ki.key)
		c.emit("rt", a)
		return keyTyp(ki), nil
	case *eSocket:
		var a nlAttrs
		a.u32(1, e.ki.key)
		a.u32(2, regAttr(reg))
		c.emit("socket", a)
		return keyTyp(e.ki), nil
	case *eFib:
		var a nlAttrs
		a.u32(1, regAttr(reg))
		a.u32(2, e.result.key)
		fl := e.flags
		ki := e.result
		if e.present {
			fl |= 32
			ki = keyInfo{dt: dtBoolean, order: hostOrder, bits: 8}
		}
		a.u32(3, fl)
		c.emit("fib", a)
		return keyTyp(ki), nil
	case *eNumgen:
		var a nlAttrs
		a.u32(1, regAttr(reg))
		a.u32(2, e.mod)
		a.u32(3, e.typ)
		if e.off != 0 {
			a.u32(4, e.off)
		}
		c.emit("numgen", a)
		return typ{dt: dtInteger, order: hostOrder, bytes: 4}, nil
	case *eHash:
		var a nlAttrs
		if !e.sym {
			st, err := c.load(e.src, reg)
			if err != nil {
				return typ{}, err
			}
			a.u32(1, regAttr(reg))
			a.u32(2, regAttr(reg))
			a.u32(3, uint32(st.width()))
		} else {
			a.u32(2, regAttr(reg))
		}
		a.u32(4, e.mod)
		if e.hasSeed {
			a.u32(5, e.seed)
		}
		if e.hasOff {
			a.u32(6, e.off)
		}
		if e.sym {
			a.u32(7, 1)
		} else {
			a.u32(7, 0)
		}
		c.emit("hash", a)
		return typ{dt: dtInteger, order: hostOrder, bytes: 4}, nil
	case *eExthdr:
		return c.loadExthdr(e, reg), nil
	case *eConcat:
		t := typ{dt: dtInteger}
		r := reg
		for _, it := range e.items {
			if _, ok := it.(*eConcat); ok {
				return typ{}, c.errExpr(it, ErrSyntax, "nested concatenation")
			}
			pt, err := c.load(it, r)
			if err != nil {
				return typ{}, err
			}
			t.parts = append(t.parts, pt)
			r += uint32(pad4(pt.bytes) / 4)
		}
		t.bytes = t.width()
		return t, nil
	case *eBinop:
		// nft folds a chain of and/or/xor into one bitwise expression.
		var chain []*eBinop
		var base expr = e
		for {
			b, ok := base.(*eBinop)
			if !ok || (len(chain) > 0 && (b.op == opLshift || b.op == opRshift)) {
				break
			}
			chain = append(chain, b)
			if b.op == opLshift || b.op == opRshift {
				base = b.left
				break
			}
			base = b.left
		}
		t, err := c.load(base, reg)
		if err != nil {
			return typ{}, err
		}
		slices.Reverse(chain)
		if chain[0].op == opLshift || chain[0].op == opRshift {
			if err := c.binop(chain[0], t, reg); err != nil {
				return typ{}, err
			}
			chain = chain[1:]
		}
		if len(chain) > 0 {
			return t, c.boolChain(chain, t, reg)
		}
		return t, nil
	case *eMap:
		return c.loadMap(e, reg, nil)
	}
	return typ{}, c.errExpr(e, ErrSyntax, "expected an expression")
}

func keyTyp(ki keyInfo) typ {
	return typ{dt: ki.dt, order: ki.order, bytes: (ki.bits + 7) / 8}
}

// loadBits loads the bytes covering a header field and masks a field that does not
// fill them.
func (c *compiler) loadBits(base, off, bits int, dt *dtype, reg uint32) typ {
	first := off / 8
	last := (off + bits + 7) / 8
	n := last - first
	c.payloadLoad(base, first, n, reg)
	t := typ{dt: dt, order: bigEndian, bytes: n}
	if off%8 != 0 || bits%8 != 0 {
		t.fieldBits = bits
		t.shift = n*8 - (off - first*8) - bits
		c.bitwise(reg, n, fieldMask(t), make([]byte, n))
	}
	return t
}

func (c *compiler) loadExthdr(e *eExthdr, reg uint32) typ {
	var a nlAttrs
	a.u32(1, regAttr(reg))
	a.u8(2, uint8(e.typ))
	if e.f == nil {
		a.u32(3, 0)
		a.u32(4, 1)
		a.u32(5, 1) // NFT_EXTHDR_F_PRESENT
		a.u32(6, e.op)
		c.emit("exthdr", a)
		return typ{dt: dtBoolean, order: hostOrder, bytes: 1}
	}
	first := e.f.off / 8
	n := (e.f.off+e.f.bits+7)/8 - first
	a.u32(3, uint32(first))
	a.u32(4, uint32(n))
	a.u32(6, e.op)
	c.emit("exthdr", a)
	t := typ{dt: e.f.dt, order: bigEndian, bytes: n}
	if e.f.off%8 != 0 || e.f.bits%8 != 0 {
		t.fieldBits = e.f.bits
		t.shift = n*8 - (e.f.off - first*8) - e.f.bits
		c.bitwise(reg, n, fieldMask(t), make([]byte, n))
	}
	return t
}

// binop applies `& | ^ << >>` with a constant to the register holding a value of type t.
func (c *compiler) binop(e *eBinop, t typ, reg uint32) error {
	if t.isConcat() {
		return c.errExpr(e, ErrUnsupported, "bitwise operation on a concatenation")
	}
	if e.op == opLshift || e.op == opRshift {
		k, ok := e.right.(*eConst)
		var n uint64
		var err error
		if ok {
			var v *big.Int
			v, err = c.parseNumber(k.text, dtInteger)
			if err == nil && v.IsUint64() {
				n = v.Uint64()
			}
		}
		if !ok || err != nil || n >= uint64(t.bytes*8) {
			return c.errExpr(e.right, ErrType, "shift needs a number below %d", t.bytes*8)
		}
		op := uint32(1)
		if e.op == opRshift {
			op = 2
		}
		c.shift(reg, t.bytes, op, uint32(n))
		return nil
	}
	return c.boolChain([]*eBinop{e}, t, reg)
}

// boolChain emits and/or/xor operations, applied left to right, as one mask-and-xor.
func (c *compiler) boolChain(ops []*eBinop, t typ, reg uint32) error {
	if t.isConcat() {
		return c.errExpr(ops[0], ErrUnsupported, "bitwise operation on a concatenation")
	}
	mask := make([]byte, t.bytes)
	for i := range mask {
		mask[i] = 0xff
	}
	xor := make([]byte, t.bytes)
	for _, e := range ops {
		if e.op == opLshift || e.op == opRshift {
			return c.errExpr(e, ErrUnsupported, "a shift after and/or/xor")
		}
		v, err := c.flags(e.right, t)
		if err != nil {
			return err
		}
		b := encode(v, t)
		for i := range b {
			switch e.op {
			case opAnd: // (x & m ^ x0) & b
				mask[i] &= b[i]
				xor[i] &= b[i]
			case opOr: // (x & m ^ x0) | b
				mask[i] &^= b[i]
				xor[i] = xor[i]&^b[i] | b[i]
			case opXor:
				xor[i] ^= b[i]
			}
		}
	}
	c.bitwise(reg, t.bytes, mask, xor)
	return nil
}

// flags reads a constant or a list of flags OR-ed together.
func (c *compiler) flags(e expr, t typ) (scalar, error) {
	switch e := e.(type) {
	case *eList:
		acc := new(big.Int)
		for _, it := range e.items {
			v, err := c.flags(it, t)
			if err != nil {
				return scalar{}, err
			}
			acc.Or(acc, v.n)
		}
		return scalar{n: acc}, nil
	case *eConst:
		iv, err := c.interval(e, t)
		if err != nil {
			return scalar{}, err
		}
		if !iv.single || iv.lo.n == nil {
			return scalar{}, c.errExpr(e, ErrType, "expected a single value")
		}
		return iv.lo, nil
	}
	return scalar{}, c.errExpr(e, ErrType, "expected a value of type %s", t.dt.name)
}

// ---- matches ----

func (c *compiler) match(m *sMatch) error {
	if s, ok := m.right.(*eSet); ok && len(s.elems) == 1 && s.elems[0].data == nil &&
		m.mask == nil {
		// nft compares with the element of a one-element set directly.
		if _, isConcat := s.elems[0].key.(*eValConcat); !isConcat {
			m.right = s.elems[0].key
		}
	}
	if f, ok := m.left.(*eFib); ok {
		if k, ok := m.right.(*eConst); ok && (k.text == "exists" || k.text == "missing") {
			f.present = true
		}
	}
	if err := c.needAll(m.left); err != nil {
		return err
	}
	// A byte-aligned prefix of a whole header field loads only the prefix bytes.
	if pl, ok := m.left.(*ePayload); ok && (m.op == relImplicit || m.op == relEq ||
		m.op == relNeq) && pl.f.dt.prefix {
		if k, ok := m.right.(*eConst); ok {
			t := typ{dt: pl.f.dt, bytes: pl.f.bits / 8}
			if iv, err := c.interval(k, t); err == nil && iv.plen > 0 && iv.plen%8 == 0 &&
				iv.plen < pl.f.bits {
				n := iv.plen / 8
				c.payloadLoad(pl.p.base, (pl.p.hdrOff+pl.f.off)/8, n, reg1)
				b := encode(iv.lo, t)[:n]
				c.cmp(reg1, cmpOps[m.op], b)
				return nil
			}
		}
	}
	t, err := c.load(m.left, reg1)
	if err != nil {
		return err
	}
	switch r := m.right.(type) {
	case *eSetRef:
		d, err := c.namedSet(r)
		if err != nil {
			return err
		}
		if d.flags&setInterval != 0 && !t.isConcat() && t.order == hostOrder && t.bytes > 1 {
			c.hton(reg1, t.bytes)
		}
		return c.lookup(r.name, 0, reg1, nil, m.op == relNeq)
	case *eSet:
		s, err := c.anonSet(r, t, nil)
		if err != nil {
			return err
		}
		if s.flags&setInterval != 0 && !t.isConcat() && t.order == hostOrder && t.bytes > 1 {
			c.hton(reg1, t.bytes)
		}
		return c.lookup(s.name, s.id, reg1, nil, m.op == relNeq)
	case *eList:
		if t.dt.kind != kBitmask {
			return c.errExpr(r, ErrType, "a list of values needs braces: { a, b }")
		}
		v, err := c.flags(r, t)
		if err != nil {
			return err
		}
		return c.flagMatch(m, t, v)
	}
	if t.isConcat() {
		return c.concatMatch(m, t)
	}
	iv, err := c.interval(m.right, t)
	if err != nil {
		return err
	}
	switch {
	case iv.lo.wild:
		c.cmp(reg1, cmpOps[m.op], encode(iv.lo, t))
		return nil
	case t.dt.kind == kBitmask && iv.single:
		return c.flagMatch(m, t, iv.lo)
	case iv.plen >= 0 && !iv.single:
		if m.op != relImplicit && m.op != relEq && m.op != relNeq {
			return c.errExpr(m.right, ErrType, "a prefix only compares with == or !=")
		}
		mask := new(big.Int).Sub(new(big.Int).Lsh(big.NewInt(1), uint(t.valueBits())), big.NewInt(1))
		mask.Xor(mask, new(big.Int).Sub(iv.hi.n, iv.lo.n))
		c.bitwise(reg1, t.bytes, encode(scalar{n: mask}, t), make([]byte, t.bytes))
		c.cmp(reg1, cmpOps[m.op], encode(iv.lo, t))
		return nil
	case !iv.single:
		if t.order == hostOrder && t.bytes > 1 {
			c.hton(reg1, t.bytes)
		}
		lo, hi := encodeBE(iv.lo, t), encodeBE(iv.hi, t)
		switch m.op {
		case relImplicit, relEq:
			c.cmp(reg1, 5, lo)
			c.cmp(reg1, 3, hi)
		case relNeq:
			var a nlAttrs
			a.u32(1, regAttr(reg1))
			a.u32(2, 1)
			a.nested(3, value(lo))
			a.nested(4, value(hi))
			c.emit("range", a)
		default:
			return c.errExpr(m.right, ErrType, "a range only compares with == or !=")
		}
		return nil
	}
	switch m.op {
	case relLt, relLte, relGt, relGte:
		if t.order == hostOrder && t.bytes > 1 {
			c.hton(reg1, t.bytes)
		}
		c.cmp(reg1, cmpOps[m.op], encodeBE(iv.lo, t))
		return nil
	case relNeg:
		return c.errExpr(m.right, ErrType, "! only negates flags; use !=")
	}
	c.cmp(reg1, cmpOps[m.op], encode(iv.lo, t))
	if m.op != relNeq {
		c.learn(m.left, iv.lo)
	}
	return nil
}

// flagMatch compiles a match on a bitmask type: a flag test, an exact comparison, or a
// comparison under a mask.
func (c *compiler) flagMatch(m *sMatch, t typ, v scalar) error {
	zero := make([]byte, t.bytes)
	if m.mask != nil {
		mv, err := c.flags(m.mask, t)
		if err != nil {
			return err
		}
		c.bitwise(reg1, t.bytes, encode(mv, t), zero)
		op := uint32(0)
		if m.op == relNeq {
			op = 1
		}
		c.cmp(reg1, op, encode(v, t))
		return nil
	}
	switch m.op {
	case relImplicit:
		c.bitwise(reg1, t.bytes, encode(v, t), zero)
		c.cmp(reg1, 1, zero)
	case relNeg:
		c.bitwise(reg1, t.bytes, encode(v, t), zero)
		c.cmp(reg1, 0, zero)
	default:
		c.cmp(reg1, cmpOps[m.op], encode(v, t))
	}
	return nil
}

// concatMatch compares a concatenation with a concatenated constant.
func (c *compiler) concatMatch(m *sMatch, t typ) error {
	vc, ok := m.right.(*eValConcat)
	if !ok || len(vc.items) != len(t.parts) {
		return c.errExpr(m.right, ErrType, "expected %d values joined by \".\"", len(t.parts))
	}
	if m.op != relImplicit && m.op != relEq && m.op != relNeq {
		return c.errExpr(m.right, ErrType, "a concatenation only compares with == or !=")
	}
	var b []byte
	for i, it := range vc.items {
		iv, err := c.interval(it, t.parts[i])
		if err != nil {
			return err
		}
		if !iv.single {
			return c.errExpr(it, ErrType, "ranges in a concatenation need a set: { … }")
		}
		v := encode(iv.lo, t.parts[i])
		b = append(b, v...)
		for len(b)%4 != 0 {
			b = append(b, 0)
		}
	}
	c.cmp(reg1, cmpOps[m.op], b)
	return nil
}

func (c *compiler) lookup(set string, id uint32, sreg uint32, dreg *uint32, inv bool) error {
	var a nlAttrs
	a.str(1, set)
	a.u32(2, regAttr(sreg))
	if dreg != nil {
		a.u32(3, regAttr(*dreg))
	}
	a.u32(4, id)
	if inv {
		a.u32(5, 1)
	}
	c.emit("lookup", a)
	return nil
}

// ---- sets ----

func (c *compiler) namedSet(r *eSetRef) (*setDecl, error) {
	d, ok := c.named[r.name]
	if !ok {
		return nil, c.errExpr(r, ErrContext, "no set or map named %q in this table", r.name)
	}
	if !slices.Contains(c.used, d) {
		c.used = append(c.used, d)
	}
	return d, nil
}

// elemData is how a map element's data is typed: values, verdicts or object names.
type elemData struct {
	t       *typ
	verdict bool
	objType uint32
}

// anonSet builds an anonymous set or map keyed by values of type key.
func (c *compiler) anonSet(s *eSet, key typ, data *elemData) (*anonSet, error) {
	as := &anonSet{name: fmt.Sprintf("__set%d", len(c.sets)), id: uint32(len(c.sets) + 1),
		flags: setAnonymous | setConstant, key: key}
	if err := c.fillSet(as, s, data, true); err != nil {
		return nil, err
	}
	c.sets = append(c.sets, as)
	return as, nil
}

// fillSet encodes the elements of a set literal into as. merge joins overlapping and
// adjacent intervals, as nft does for anonymous sets and sets with auto-merge.
func (c *compiler) fillSet(as *anonSet, s *eSet, data *elemData, merge bool) error {
	key := as.key
	if data != nil {
		switch {
		case data.verdict:
			as.flags |= setMap
			as.data = &typ{dt: dtVerdict}
		case data.objType != 0:
			as.flags |= setObject
			as.objType = data.objType
		default:
			as.flags |= setMap
			as.data = data.t
		}
	}
	type el struct {
		lo, hi   []byte // big-endian bounds for intervals
		key      []byte // key as stored, for plain sets
		keyEnd   []byte
		single   bool
		comment  string
		counter  bool
		data     nlAttrs
		obj      string
		hasData  bool
		interval bool
	}
	var els []el
	anyInterval := false
	for _, se := range s.elems {
		if (data != nil) != (se.data != nil) {
			if data != nil {
				return c.errExpr(se.key, ErrType, "map element needs \": value\"")
			}
			return c.errExpr(se.data, ErrType, "set element cannot have data here")
		}
		var e el
		if key.isConcat() {
			vc, ok := se.key.(*eValConcat)
			if !ok || len(vc.items) != len(key.parts) {
				return c.errExpr(se.key, ErrType, "element needs %d values joined by \".\"",
					len(key.parts))
			}
			e.single = true
			for i, it := range vc.items {
				iv, err := c.interval(it, key.parts[i])
				if err != nil {
					return err
				}
				lo, hi := encode(iv.lo, key.parts[i]), encode(iv.hi, key.parts[i])
				if !iv.single {
					e.single = false
					lo, hi = encodeBE(iv.lo, key.parts[i]), encodeBE(iv.hi, key.parts[i])
				}
				e.key = append(e.key, padTo4(lo)...)
				e.keyEnd = append(e.keyEnd, padTo4(hi)...)
			}
		} else {
			iv, err := c.interval(se.key, key)
			if err != nil {
				return err
			}
			e.single = iv.single
			if iv.lo.wild {
				e.single = false
				lo := make([]byte, key.bytes)
				copy(lo, iv.lo.s)
				hi := make([]byte, key.bytes)
				copy(hi, iv.lo.s)
				for i := len(iv.lo.s); i < len(hi); i++ {
					hi[i] = 0xff
				}
				e.lo, e.hi = lo, hi
			} else {
				e.lo, e.hi = encodeBE(iv.lo, key), encodeBE(iv.hi, key)
			}
			e.key = encode(iv.lo, key)
		}
		if !e.single {
			anyInterval = true
		}
		e.comment = se.comment
		e.counter = as.counter
		for _, st := range se.stmts {
			if _, ok := st.(*sCounter); ok {
				e.counter = true
			}
		}
		if se.data != nil {
			e.hasData = true
			switch {
			case data.verdict:
				v, ok := se.data.(*eVerdict)
				if !ok {
					return c.errExpr(se.data, ErrType, "expected a verdict")
				}
				e.data = verdictValue(v.code, v.chain)
			case data.objType != 0:
				k, ok := se.data.(*eConst)
				if !ok {
					return c.errExpr(se.data, ErrType, "expected an object name")
				}
				e.obj = k.text
			default:
				b, err := c.constValue(se.data, *data.t)
				if err != nil {
					return err
				}
				e.data = value(b)
			}
		}
		els = append(els, e)
	}
	anyInterval = anyInterval || as.flags&setInterval != 0
	if anyInterval {
		as.flags |= setInterval
		if key.isConcat() {
			as.flags |= setConcat
		}
	}
	elem := func(k, kEnd []byte, flags uint32, e *el) nlAttrs {
		var a nlAttrs
		a.nested(1, value(k))
		if kEnd != nil {
			a.nested(10, value(kEnd))
		}
		if flags != 0 {
			a.u32(3, flags)
		}
		if e != nil && e.comment != "" {
			ud := []byte{0, byte(len(e.comment) + 1)}
			a.put(6, append(append(ud, e.comment...), 0))
		}
		if e != nil && e.counter {
			var ca nlAttrs
			ca.u64(1, 0)
			ca.u64(2, 0)
			a.nested(7, nlExpr{"counter", ca}.encode())
		}
		if e != nil && e.hasData {
			if e.obj != "" {
				a.str(9, e.obj)
			} else {
				a.nested(2, e.data)
			}
		}
		return a
	}
	switch {
	case !anyInterval:
		for i := range els {
			as.elems = append(as.elems, elem(els[i].key, nil, 0, &els[i]))
		}
	case key.isConcat():
		for i := range els {
			as.elems = append(as.elems, elem(els[i].key, els[i].keyEnd, 0, &els[i]))
		}
	default:
		// Intervals: sorted, overlapping and adjacent ones merged (sets only), stored as
		// a start element and the end element after it.
		slices.SortStableFunc(els, func(a, b el) int { return compareBytes(a.lo, b.lo) })
		if data == nil && merge {
			var merged []el
			for _, e := range els {
				if n := len(merged); n > 0 {
					last := &merged[n-1]
					if next, ok := increment(last.hi); !ok || compareBytes(e.lo, next) <= 0 {
						if compareBytes(e.hi, last.hi) > 0 {
							last.hi = e.hi
						}
						continue
					}
				}
				merged = append(merged, e)
			}
			els = merged
		}
		for i := range els {
			e := &els[i]
			as.elems = append(as.elems, elem(e.lo, nil, 0, e))
			end, ok := increment(e.hi)
			if !ok || (i+1 < len(els) && compareBytes(els[i+1].lo, end) == 0) {
				continue
			}
			as.elems = append(as.elems, elem(end, nil, 1, nil))
		}
	}
	return nil
}

func padTo4(b []byte) []byte {
	for len(b)%4 != 0 {
		b = append(b, 0)
	}
	return b
}

func compareBytes(a, b []byte) int {
	for i := 0; i < len(a) && i < len(b); i++ {
		if a[i] != b[i] {
			if a[i] < b[i] {
				return -1
			}
			return 1
		}
	}
	return len(a) - len(b)
}

// increment returns b+1 as a big-endian number of the same width; false on overflow.
func increment(b []byte) ([]byte, bool) {
	out := slices.Clone(b)
	for i := len(out) - 1; i >= 0; i-- {
		out[i]++
		if out[i] != 0 {
			return out, true
		}
	}
	return out, false
}

// constValue encodes a constant (or a concatenation of constants) of type t.
func (c *compiler) constValue(e expr, t typ) ([]byte, error) {
	if t.isConcat() {
		vc, ok := e.(*eValConcat)
		if !ok || len(vc.items) != len(t.parts) {
			return nil, c.errExpr(e, ErrType, "expected %d values joined by \".\"", len(t.parts))
		}
		var b []byte
		for i, it := range vc.items {
			v, err := c.constValue(it, t.parts[i])
			if err != nil {
				return nil, err
			}
			b = append(b, padTo4(v)...)
		}
		return b, nil
	}
	if t.dt.kind == kBitmask {
		v, err := c.flags(e, t)
		if err != nil {
			return nil, err
		}
		return encode(v, t), nil
	}
	iv, err := c.interval(e, t)
	if err != nil {
		return nil, err
	}
	if !iv.single {
		return nil, c.errExpr(e, ErrType, "expected a single value of type %s", t.dt.name)
	}
	return encode(iv.lo, t), nil
}

// loadMap loads `key map {…}` or `key map @name`: the looked-up data lands in reg.
// want types the data of an anonymous map; nil takes it from the named map.
func (c *compiler) loadMap(e *eMap, reg uint32, want *typ) (typ, error) {
	kt, err := c.load(e.key, reg)
	if err != nil {
		return typ{}, err
	}
	switch s := e.set.(type) {
	case *eSetRef:
		d, err := c.namedSet(s)
		if err != nil {
			return typ{}, err
		}
		if d.data == nil {
			return typ{}, c.errExpr(s, ErrType, "@%s is not a map", s.name)
		}
		if err := c.lookup(s.name, 0, reg, &reg, false); err != nil {
			return typ{}, err
		}
		return *d.data, nil
	case *eSet:
		if want == nil {
			return typ{}, c.errExpr(s, ErrType, "cannot tell what this map yields here")
		}
		as, err := c.anonSet(s, kt, &elemData{t: want})
		if err != nil {
			return typ{}, err
		}
		if as.flags&setInterval != 0 && !kt.isConcat() && kt.order == hostOrder && kt.bytes > 1 {
			c.hton(reg, kt.bytes)
		}
		if err := c.lookup(as.name, as.id, reg, &reg, false); err != nil {
			return typ{}, err
		}
		return *want, nil
	}
	return typ{}, c.errExpr(e, ErrSyntax, "expected a map")
}
