package nftcanon

import (
	"fmt"
	"strings"

	"github.com/google/nftables/expr"
)

// delin reads one rule's expressions into statements, tracking what each register holds.
type delin struct {
	fam       byte
	sets      func(name string) *setInfo // nil when there is none
	regs      map[uint32]node
	stmts     []stmt
	undecoded int
	// dynTargets names the sets this rule's add/update statements fill.
	dynTargets []string
}

func (d *delin) put(r uint32, n node) { d.regs[reg32(r)] = n }

// get returns what register r holds; when the reader consumes more bytes than that node
// is wide, the following registers are read as a concatenation.
func (d *delin) get(r uint32, bytes int) node {
	r = reg32(r)
	n, ok := d.regs[r]
	if !ok {
		return &unknownN{reg: r}
	}
	w := (d.width(n) + 7) / 8
	if bytes <= 0 || w == 0 || w >= bytes {
		return n
	}
	items := []node{n}
	total := pad4(w)
	next := r + uint32(pad4(w)/4)
	for total < bytes {
		m, ok := d.regs[next]
		if !ok {
			break
		}
		mw := (d.width(m) + 7) / 8
		if mw == 0 {
			break
		}
		items = append(items, m)
		total += pad4(mw)
		next += uint32(pad4(mw) / 4)
	}
	if len(items) == 1 {
		return n
	}
	return &concatN{items: items}
}

// width is the width of a node's value in bits.
func (d *delin) width(n node) int {
	switch n := n.(type) {
	case *payloadN:
		return n.bits
	case *exthdrN:
		if n.present {
			return 8
		}
		return n.bits
	case *metaN:
		return metaKeyInfo(n.key).bits
	case *ctN:
		return ctKeyInfo(n.key, d.fam).bits
	case *concatN:
		t := 0
		for _, it := range n.items {
			t += pad4((d.width(it)+7)/8) * 8
		}
		return t
	case *binopN:
		return d.width(n.left)
	case *byteorderN:
		return n.bytes * 8
	case *immN:
		return len(n.v) * 8
	case *mapN:
		if n.set != nil {
			return int(n.set.dataLen) * 8
		}
	case *numgenN, *hashN:
		return 32
	case *fibN:
		return fibResultInfo(n).bits
	case *rtN:
		return rtKeyInfo(n.key).bits
	case *socketN:
		return socketKeyInfo(n.key).bits
	case *osfN:
		return 128
	case *xfrmN:
		return xfrmKeyInfo(n.key).bits
	}
	return 0
}

func (d *delin) emit(s stmt) { d.stmts = append(d.stmts, s) }

// raw keeps an expression in the lossless fallback form.
func (d *delin) raw(e rawExpr) {
	d.undecoded++
	d.emit(&rawS{text: fmt.Sprintf("[expr %s %s]", e.name, hexText(e.data))})
}

func (d *delin) setByName(name string) *setInfo {
	if d.sets != nil {
		if s := d.sets(name); s != nil {
			return s
		}
	}
	return &setInfo{name: name}
}

// expr reads one expression.
func (d *delin) expr(e rawExpr) {
	a := e.a
	switch e.name {
	case "immediate":
		dreg := a.u32(immDreg)
		if dreg == regVerdict {
			v, ok := a.verdict(immData)
			if !ok {
				d.raw(e)
				return
			}
			d.emit(&verdictS{v: v})
			return
		}
		var im expr.Immediate
		if err := expr.Unmarshal(d.fam, e.data, &im); err != nil {
			d.raw(e)
			return
		}
		d.put(im.Register, &immN{v: im.Data})
	case "payload":
		var p expr.Payload
		if err := expr.Unmarshal(d.fam, e.data, &p); err != nil {
			d.raw(e)
			return
		}
		pn := &payloadN{base: int(p.Base), off: int(p.Offset) * 8, bits: int(p.Len) * 8}
		if p.OperationType == expr.PayloadWrite {
			d.emit(&payloadSetS{dst: pn, src: d.get(p.SourceRegister, int(p.Len))})
			return
		}
		d.put(p.DestRegister, pn)
	case "meta":
		var m expr.Meta
		if err := expr.Unmarshal(d.fam, e.data, &m); err != nil {
			d.raw(e)
			return
		}
		if m.SourceRegister {
			w := (metaKeyInfo(uint32(m.Key)).bits + 7) / 8
			d.emit(&metaSetS{key: uint32(m.Key), src: d.get(m.Register, w)})
			return
		}
		d.put(m.Register, &metaN{key: uint32(m.Key)})
	case "ct":
		d.ct(e)
	case "cmp":
		var c expr.Cmp
		if err := expr.Unmarshal(d.fam, e.data, &c); err != nil {
			d.raw(e)
			return
		}
		left := d.get(c.Register, len(c.Data))
		rel := &relS{op: relOp(c.Op), left: left, right: valR{v: c.Data}}
		if len(c.Data)*8 < d.width(left) {
			if dt, _, _ := d.typeOf(left); dt.kind == kString {
				rel.prefixLen = len(c.Data)
			} else if dt.prefix {
				rel.prefixBits = len(c.Data) * 8
			}
		}
		d.emit(rel)
	case "range":
		var r expr.Range
		if err := expr.Unmarshal(d.fam, e.data, &r); err != nil {
			d.raw(e)
			return
		}
		op := relEq
		if r.Op == expr.CmpOpNeq {
			op = relNeq
		}
		d.emit(&relS{op: op, left: d.get(r.Register, len(r.FromData)),
			right: rangeR{lo: r.FromData, hi: r.ToData}})
	case "bitwise":
		d.bitwise(e)
	case "byteorder":
		src := d.get(a.u32(boSreg), int(a.u32(boLen)))
		ord := bigEndian
		if a.u32(boOp) == 0 { // NFT_BYTEORDER_NTOH
			ord = hostOrder
		}
		d.put(a.u32(boDreg), &byteorderN{inner: src, order: ord, bytes: int(a.u32(boLen))})
	case "lookup":
		d.lookup(e)
	case "counter":
		d.emit(&counterS{})
	case "notrack":
		d.emit(&notrackS{})
	case "limit":
		d.emit(&limitS{rate: a.u64(1), unit: a.u64(2), burst: a.u32(3), bytes: a.u32(4) == 1,
			over: a.u32(5)&1 != 0})
	case "log":
		l := &logS{}
		if p, ok := a.lookup(2); ok {
			l.prefix, l.hasPrefix = cstr(p), true
		}
		if a.has(1) {
			l.group, l.hasGroup = uint16(be16(a.get(1))), true
		}
		if a.has(3) {
			l.snaplen, l.hasSnap = a.u32(3), true
		}
		if a.has(4) {
			l.qthreshold, l.hasQ = uint16(be16(a.get(4))), true
		}
		if a.has(5) {
			l.level, l.hasLevel = a.u32(5), true
		}
		l.flags = a.u32(6)
		d.emit(l)
	case "reject":
		var r expr.Reject
		if err := expr.Unmarshal(d.fam, e.data, &r); err != nil {
			d.raw(e)
			return
		}
		d.emit(&rejectS{typ: r.Type, code: r.Code})
	case "nat":
		d.nat(e)
	case "masq":
		var m expr.Masq
		if err := expr.Unmarshal(d.fam, e.data, &m); err != nil {
			d.raw(e)
			return
		}
		n := &natS{kind: "masquerade", flags: a.u32(1)}
		if m.ToPorts {
			n.protoMin, n.hasPr = d.get(m.RegProtoMin, 2), true
			if m.RegProtoMax != 0 && m.RegProtoMax != m.RegProtoMin {
				n.protoMax = d.get(m.RegProtoMax, 2)
			}
		}
		d.emit(n)
	case "redir":
		var r expr.Redir
		if err := expr.Unmarshal(d.fam, e.data, &r); err != nil {
			d.raw(e)
			return
		}
		n := &natS{kind: "redirect", flags: r.Flags}
		if r.RegisterProtoMin != 0 {
			n.protoMin, n.hasPr = d.get(r.RegisterProtoMin, 2), true
			if r.RegisterProtoMax != 0 && r.RegisterProtoMax != r.RegisterProtoMin {
				n.protoMax = d.get(r.RegisterProtoMax, 2)
			}
		}
		d.emit(n)
	case "objref":
		if a.has(2) { // NFTA_OBJREF_IMM_NAME
			d.emit(&objrefS{typ: a.u32(1), name: a.str(2)})
			return
		}
		set := d.setByName(a.str(4))
		d.emit(&objrefS{typ: set.objType, m: &mapN{key: d.get(a.u32(3), int(set.keyLen)), set: set}})
	case "dynset":
		d.dynset(e)
	case "quota":
		var q expr.Quota
		if err := expr.Unmarshal(d.fam, e.data, &q); err != nil {
			d.raw(e)
			return
		}
		d.emit(&quotaS{bytes: q.Bytes, over: q.Over})
	case "numgen":
		var n expr.Numgen
		if err := expr.Unmarshal(d.fam, e.data, &n); err != nil {
			d.raw(e)
			return
		}
		d.put(n.Register, &numgenN{typ: n.Type, mod: n.Modulus, off: n.Offset})
	case "hash":
		h := &hashN{typ: a.u32(7), mod: a.u32(4), seed: a.u32(5), off: a.u32(6),
			hasSeed: a.has(5), hasOff: a.has(6)}
		if a.has(8) { // a hash feeding a map is not something nft 1.0.6 prints
			d.raw(e)
			return
		}
		if h.typ == 0 {
			h.src = d.get(a.u32(1), int(a.u32(3)))
		} else {
			h.isSym = true
		}
		d.put(a.u32(2), h)
	case "fib":
		var f expr.Fib
		if err := expr.Unmarshal(d.fam, e.data, &f); err != nil {
			d.raw(e)
			return
		}
		d.put(f.Register, &fibN{flags: a.u32(3), result: a.u32(2)})
	case "exthdr":
		var x expr.Exthdr
		if err := expr.Unmarshal(d.fam, e.data, &x); err != nil {
			d.raw(e)
			return
		}
		xn := &exthdrN{op: uint32(x.Op), typ: uint32(x.Type), off: int(x.Offset) * 8,
			bits: int(x.Len) * 8, present: x.Flags&1 != 0}
		if a.has(exthdrSreg) {
			d.emit(&exthdrSetS{dst: xn, src: d.get(x.SourceRegister, int(x.Len))})
			return
		}
		if !a.has(exthdrDreg) {
			// Neither loads nor stores: `reset tcp option` (NFT_EXTHDR_F_... reset).
			d.emit(&exthdrResetS{x: xn})
			return
		}
		d.put(x.DestRegister, xn)
	case "rt":
		d.put(a.u32(1), &rtN{key: a.u32(2)})
	case "socket":
		d.put(a.u32(2), &socketN{key: a.u32(1), level: a.u32(3)})
	case "osf":
		d.put(a.u32(1), &osfN{ttl: uint32(firstByte(a.get(2))), flags: a.u32(3)})
	case "xfrm":
		d.put(a.u32(1), &xfrmN{key: a.u32(2), dir: firstByte(a.get(3)), spnum: a.u32(4)})
	case "queue":
		q := &queueS{num: be16(a.get(1)), total: be16(a.get(2)), flags: uint32(be16(a.get(3)))}
		if a.has(4) {
			q.sreg = d.get(a.u32(4), 4)
		}
		d.emit(q)
	case "dup":
		s := &dupS{}
		if a.has(1) {
			s.addr = d.get(a.u32(1), 0)
		}
		if a.has(2) {
			s.dev = d.get(a.u32(2), 4)
		}
		d.emit(s)
	case "fwd":
		s := &fwdS{}
		if a.has(1) {
			s.dev = d.get(a.u32(1), 4)
		}
		if a.has(2) {
			s.addr = d.get(a.u32(2), 0)
		}
		if a.has(3) {
			s.nfproto, s.hasProto = a.u32(3), true
		}
		d.emit(s)
	case "tproxy":
		s := &tproxyS{family: a.u32(1)}
		if a.has(2) {
			s.addr = d.get(a.u32(2), 0)
		}
		if a.has(3) {
			s.port = d.get(a.u32(3), 2)
		}
		d.emit(s)
	case "synproxy":
		s := &synproxyS{flags: a.u32(3)}
		if a.has(1) {
			s.mss, s.hasMSS = uint16(be16(a.get(1))), true
		}
		if a.has(2) {
			s.wscale, s.hasWsc = firstByte(a.get(2)), true
		}
		d.emit(s)
	case "connlimit":
		d.emit(&connlimitS{count: a.u32(1), over: a.u32(2)&1 != 0})
	case "flow_offload":
		d.emit(&flowS{table: a.str(1)})
	case "last":
		d.emit(&lastS{})
	default:
		d.raw(e)
	}
}

func be16(b []byte) uint16 {
	if len(b) < 2 {
		return 0
	}
	return uint16(b[0])<<8 | uint16(b[1])
}

func firstByte(b []byte) uint8 {
	if len(b) == 0 {
		return 0
	}
	return b[0]
}

// ct reads a ct expression. google/nftables v0.3.0 fails on the direction attribute
// (it reads a u8 as a u32) and reads `ct … set` as a load, so this decodes it itself.
func (d *delin) ct(e rawExpr) {
	a := e.a
	dir := -1
	if b, ok := a.lookup(ctDir); ok && len(b) > 0 {
		dir = int(b[0])
	}
	n := &ctN{key: a.u32(ctKey), dir: dir}
	if a.has(ctSreg) {
		w := (ctKeyInfo(n.key, d.fam).bits + 7) / 8
		d.emit(&ctSetS{key: n.key, dir: dir, src: d.get(a.u32(ctSreg), w)})
		return
	}
	d.put(a.u32(ctDreg), n)
}

// bitwise reads a bitwise expression: a mask-and-xor (the only kind v0.3.0 knows) or a
// shift.
func (d *delin) bitwise(e rawExpr) {
	a := e.a
	n := int(a.u32(bitLen))
	src := d.get(a.u32(bitSreg), n)
	switch a.u32(bitOp) {
	case 0: // NFT_BITWISE_BOOL
		mask, xor := a.data(bitMask), a.data(bitXor)
		d.put(a.u32(bitDreg), boolBinop(src, mask, xor))
	case 1, 2: // shifts
		op := opLshift
		if a.u32(bitOp) == 2 {
			op = opRshift
		}
		sh := a.data(bitData)
		d.put(a.u32(bitDreg), &binopN{op: op, left: src, right: value{b: sh, order: bigEndian}})
	default:
		d.raw(e)
	}
}

// boolBinop turns `(x & mask) ^ xor` into the and/or/xor form nft prints.
func boolBinop(src node, mask, xor []byte) node {
	n := len(mask)
	or := make([]byte, n)   // bits xor sets where mask clears them
	flip := make([]byte, n) // bits xor toggles
	and := make([]byte, n)  // the and-mask with the or-bits folded in
	allOnes, anyOr, anyFlip := true, false, false
	for i := 0; i < n; i++ {
		var x byte
		if i < len(xor) {
			x = xor[i]
		}
		or[i] = x &^ mask[i]
		flip[i] = x & mask[i]
		and[i] = mask[i] | or[i]
		if and[i] != 0xff {
			allOnes = false
		}
		anyOr = anyOr || or[i] != 0
		anyFlip = anyFlip || flip[i] != 0
	}
	var out node = src
	if !allOnes {
		out = &binopN{op: opAnd, left: out, right: value{b: and}}
	}
	if anyOr {
		out = &binopN{op: opOr, left: out, right: value{b: or}}
	}
	if anyFlip {
		out = &binopN{op: opXor, left: out, right: value{b: flip}}
	}
	return out
}

func (d *delin) lookup(e rawExpr) {
	a := e.a
	set := d.setByName(a.str(lookupSet))
	key := d.get(a.u32(lookupSreg), int(set.keyLen))
	if a.has(lookupDreg) {
		m := &mapN{key: key, set: set}
		if a.u32(lookupDreg) == regVerdict {
			d.emit(&verdictS{vmap: m})
			return
		}
		d.put(a.u32(lookupDreg), m)
		return
	}
	op := relImplicit
	if a.u32(lookupFlags)&1 != 0 {
		op = relNeq
	}
	d.emit(&relS{op: op, left: key, right: setR{set: set}})
}

func (d *delin) nat(e rawExpr) {
	var x expr.NAT
	if err := expr.Unmarshal(d.fam, e.data, &x); err != nil {
		d.raw(e)
		return
	}
	n := &natS{kind: "snat", family: x.Family, flags: e.a.u32(7)}
	if x.Type == expr.NATTypeDestNAT {
		n.kind = "dnat"
	}
	alen := 4
	if x.Family == famIPv6 {
		alen = 16
	}
	if x.RegAddrMin != 0 {
		n.hasAddr = true
		n.addrMin = d.get(x.RegAddrMin, alen)
		if x.RegAddrMax != 0 && x.RegAddrMax != x.RegAddrMin {
			n.addrMax = d.get(x.RegAddrMax, alen)
		}
	}
	if x.RegProtoMin != 0 {
		n.hasPr = true
		n.protoMin = d.get(x.RegProtoMin, 2)
		if x.RegProtoMax != 0 && x.RegProtoMax != x.RegProtoMin {
			n.protoMax = d.get(x.RegProtoMax, 2)
		}
	}
	d.emit(n)
}

func (d *delin) dynset(e rawExpr) {
	a := e.a
	set := d.setByName(a.str(1))
	set.dynTarget = true
	d.dynTargets = append(d.dynTargets, set.name)
	s := &dynsetS{op: a.u32(3), set: set, key: d.get(a.u32(4), int(set.keyLen))}
	if a.has(5) {
		s.data = d.get(a.u32(5), int(set.dataLen))
	}
	if a.has(6) {
		s.timeout, s.hasTimeout = a.u64(6), true
	}
	if x, ok := a.lookup(7); ok {
		if ex, err := parseExpr(x); err == nil {
			s.exprs = append(s.exprs, ex)
		}
	}
	if x, ok := a.lookup(10); ok {
		s.exprs = append(s.exprs, parseExprList(x)...)
	}
	d.emit(s)
}

// verdictText prints a verdict.
func verdictText(v verdictData) string {
	switch v.code {
	case verdictAccept:
		return "accept"
	case verdictDrop:
		return "drop"
	case verdictContinue:
		return "continue"
	case verdictReturn:
		return "return"
	case verdictJump:
		return "jump " + chainName(v.chain)
	case verdictGoto:
		return "goto " + chainName(v.chain)
	case verdictQueue:
		return "queue"
	case verdictBreak:
		return "break"
	case verdictStolen:
		return "stolen"
	case verdictRepeat:
		return "repeat"
	case verdictStop:
		return "stop"
	}
	return fmt.Sprintf("verdict %d", v.code)
}

// chainName prints a chain name in a jump; nft quotes names that are not identifiers.
func chainName(s string) string {
	if s == "" || strings.ContainsAny(s, " \t\"") {
		return `"` + s + `"`
	}
	return s
}
