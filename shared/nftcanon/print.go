package nftcanon

import (
	"bytes"
	"fmt"
	"slices"
	"strings"
)

// printer prints a post-processed rule.
type printer struct {
	d *delin
	e *env
}

func (p *printer) stmts() string {
	parts := make([]string, 0, len(p.d.stmts))
	for _, s := range p.d.stmts {
		if t := p.stmt(s); t != "" {
			parts = append(parts, t)
		}
	}
	return strings.Join(parts, " ")
}

func (p *printer) stmt(s stmt) string {
	switch s := s.(type) {
	case *relS:
		return p.rel(s)
	case *verdictS:
		if s.vmap != nil {
			return p.expr(s.vmap.key) + " vmap " + p.setText(s.vmap.set, s.vmap.key, true)
		}
		return verdictText(s.v)
	case *counterS:
		return "counter"
	case *notrackS:
		return "notrack"
	case *limitS:
		return limitText(s)
	case *logS:
		return logText(s)
	case *quotaS:
		t := "quota "
		if s.over {
			t += "over "
		}
		n, u := byteUnit(s.bytes)
		return t + itoa(n) + " " + u
	case *rejectS:
		return p.reject(s)
	case *natS:
		return p.nat(s)
	case *objrefS:
		return p.objref(s)
	case *dynsetS:
		return p.dynset(s)
	case *metaSetS:
		ki := metaKeyInfo(s.key)
		name := ki.name
		if !strings.HasPrefix(name, "meta ") {
			name = "meta " + name
		}
		return name + " set " + p.valueOf(s.src, ki.dt, ki.order, ki.bits)
	case *ctSetS:
		ki := ctKeyInfo(s.key, p.d.fam)
		return "ct " + ctDirText(s.dir) + ki.name + " set " + p.valueOf(s.src, ki.dt, ki.order, ki.bits)
	case *payloadSetS:
		return p.payloadSet(s)
	case *exthdrSetS:
		dt, o, b := p.d.typeOf(s.dst)
		return p.expr(s.dst) + " set " + p.valueOf(s.src, dt, o, b)
	case *exthdrResetS:
		return exthdrResetText(s.x)
	case *queueS:
		return p.queue(s)
	case *dupS:
		if s.addr == nil {
			return "dup to " + p.valueOf(s.dev, dtIfindex, hostOrder, 32)
		}
		dt := dtIPv4
		if p.d.fam == famIPv6 {
			dt = dtIPv6
		}
		t := "dup to " + p.valueOf(s.addr, dt, bigEndian, dt.bits)
		if s.dev != nil {
			t += " device " + p.valueOf(s.dev, dtIfindex, hostOrder, 32)
		}
		return t
	case *fwdS:
		t := "fwd"
		if s.addr != nil {
			dt, fam := dtIPv4, "ip"
			if s.nfproto == famIPv6 {
				dt, fam = dtIPv6, "ip6"
			}
			return t + " " + fam + " to " + p.valueOf(s.addr, dt, bigEndian, dt.bits) +
				" device " + p.valueOf(s.dev, dtIfindex, hostOrder, 32)
		}
		return t + " to " + p.valueOf(s.dev, dtIfindex, hostOrder, 32)
	case *tproxyS:
		return p.tproxy(s)
	case *synproxyS:
		return synproxyText(s)
	case *connlimitS:
		t := "ct count "
		if s.over {
			t += "over "
		}
		return t + itoa(uint64(s.count))
	case *flowS:
		return "flow add @" + s.table
	case *lastS:
		return "last"
	case *rawS:
		return s.text
	}
	return fmt.Sprintf("[unknown %T]", s)
}

// expr prints an expression that loads a value.
func (p *printer) expr(n node) string {
	switch n := n.(type) {
	case *payloadN:
		if n.f != nil {
			return n.p.name + " " + n.f.name
		}
		bases := [...]string{"ll", "nh", "th", "ih"}
		return fmt.Sprintf("@%s,%d,%d", bases[max(0, min(n.base, 3))], n.off, n.bits)
	case *exthdrN:
		return exthdrText(n)
	case *metaN:
		return metaKeyInfo(n.key).name
	case *ctN:
		return "ct " + ctDirText(n.dir) + ctKeyInfo(n.key, p.d.fam).name
	case *rtN:
		return rtKeyInfo(n.key).name
	case *socketN:
		t := socketKeyInfo(n.key).name
		if n.key == 3 {
			t += " level " + itoa(uint64(n.level))
		}
		return t
	case *osfN:
		t := "osf"
		switch n.ttl {
		case 1:
			t += " ttl loose"
		case 2:
			t += " ttl skip"
		}
		if n.flags&1 != 0 {
			return t + " version"
		}
		return t + " name"
	case *xfrmN:
		dir := "in"
		if n.dir == 1 {
			dir = "out"
		}
		t := "ipsec " + dir
		if n.spnum != 0 {
			t += " spnum " + itoa(uint64(n.spnum))
		}
		return t + " " + xfrmKeyInfo(n.key).name
	case *fibN:
		var fl []string
		for _, f := range []struct {
			bit  uint32
			name string
		}{{fibSaddr, "saddr"}, {fibDaddr, "daddr"}, {fibMark, "mark"}, {fibIIF, "iif"}, {fibOIF, "oif"}} {
			if n.flags&f.bit != 0 {
				fl = append(fl, f.name)
			}
		}
		return "fib " + strings.Join(fl, " . ") + " " + fibResultInfo(n).name
	case *numgenN:
		t := "numgen inc"
		if n.typ == 1 {
			t = "numgen random"
		}
		t += " mod " + itoa(uint64(n.mod))
		if n.off != 0 {
			t += " offset " + itoa(uint64(n.off))
		}
		return t
	case *hashN:
		var t string
		if n.isSym {
			t = "symhash"
		} else {
			t = "jhash " + p.expr(n.src)
		}
		t += " mod " + itoa(uint64(n.mod))
		if n.hasSeed {
			t += fmt.Sprintf(" seed 0x%x", n.seed)
		}
		if n.off != 0 {
			t += " offset " + itoa(uint64(n.off))
		}
		return t
	case *concatN:
		parts := make([]string, len(n.items))
		for i, it := range n.items {
			parts[i] = p.expr(it)
		}
		return strings.Join(parts, " . ")
	case *binopN:
		return p.binop(n)
	case *byteorderN:
		return p.expr(n.inner)
	case *mapN:
		return p.expr(n.key) + " map " + p.setText(n.set, n.key, true)
	case *immN:
		return p.e.format(dtInteger, value{b: n.v, order: hostOrder}, len(n.v)*8)
	case *unknownN:
		return fmt.Sprintf("[reg %d]", n.reg)
	}
	return fmt.Sprintf("[%T]", n)
}

var binopText = map[binop]string{opAnd: "&", opOr: "|", opXor: "^", opLshift: "<<", opRshift: ">>"}

// binopPrec is C precedence, as nft prints parentheses by it.
var binopPrec = map[binop]int{opLshift: 5, opRshift: 5, opAnd: 4, opXor: 3, opOr: 2}

func (p *printer) binop(n *binopN) string {
	left := p.expr(n.left)
	if in, ok := n.left.(*binopN); ok && binopPrec[in.op] < binopPrec[n.op] {
		left = "(" + left + ")"
	}
	var right string
	if n.op == opLshift || n.op == opRshift {
		right = itoa(value{b: n.right.b, order: hostOrder}.uint())
	} else {
		dt, o, b := p.d.typeOf(n.left)
		v := value{b: n.right.b, order: o}
		right = p.e.format(dt, v, b)
		if dt.kind == kBitmask {
			right = formatBitmask(dt, v, b, " | ")
			if strings.Contains(right, " | ") {
				right = "(" + right + ")"
			}
		}
	}
	return left + " " + binopText[n.op] + " " + right
}

// valueOf prints n as the source of a statement whose destination has type dt.
func (p *printer) valueOf(n node, dt *dtype, o byteOrder, bits int) string {
	if im, ok := n.(*immN); ok {
		return p.e.format(dt, value{b: im.v, order: o}, bits)
	}
	return p.expr(n)
}

var relText = map[relOp]string{relEq: "", relNeq: "!= ", relLt: "< ", relLte: "<= ",
	relGt: "> ", relGte: ">= ", relImplicit: ""}

func (p *printer) rel(r *relS) string {
	if pl, ok := r.left.(*payloadN); ok && pl.partial > 0 {
		if v, ok := r.right.(valR); ok {
			full := make([]byte, pl.f.bits/8)
			copy(full, v.v)
			return p.expr(pl) + " " + relText[r.op] +
				p.e.format(pl.f.dt, value{b: full}, pl.f.bits) + "/" + itoa(uint64(pl.partial))
		}
	}
	if r.prefixBits > 0 {
		if v, ok := r.right.(valR); ok {
			dt, o, bits := p.d.typeOf(r.left)
			full := make([]byte, bits/8)
			copy(full, v.v)
			return p.expr(r.left) + " " + relText[r.op] +
				p.e.format(dt, value{b: full, order: o}, bits) + "/" + itoa(uint64(r.prefixBits))
		}
	}
	op := relText[r.op]
	if b, ok := r.left.(*binopN); ok {
		if t, ok := p.maskMatch(r, b); ok {
			return t
		}
		if r.op == relEq || r.op == relImplicit {
			op = "== "
		}
	} else if dt, _, _ := p.d.typeOf(r.left); dt.kind == kBitmask {
		if r.op == relEq {
			op = "== "
		}
		sep := p.e.flagSep
		p.e.flagSep = " | "
		defer func() { p.e.flagSep = sep }()
	}
	return p.expr(r.left) + " " + op + p.right(r)
}

// maskMatch prints `(x & mask) op value` the short ways nft has for it: a prefix
// (`ip saddr 10.0.0.0/8`), a flag test (`tcp flags syn,ack`, `ct state ! new`) or a flag
// subset (`tcp flags syn / fin,syn,rst,ack`).
func (p *printer) maskMatch(r *relS, b *binopN) (string, bool) {
	if b.op != opAnd {
		return "", false
	}
	v, ok := r.right.(valR)
	if !ok {
		return "", false
	}
	dt, o, bits := p.d.typeOf(b.left)
	val := value{b: v.v, order: o}
	mask := value{b: b.right.b, order: o}
	left := p.expr(b.left)
	if dt.kind == kLabel && r.op == relNeq && val.isZero() {
		return left + " " + p.e.format(dt, mask, bits), true
	}
	if dt.kind == kBitmask {
		maskT := formatBitmask(dt, mask, bits, ",")
		m, x := mask.uint(), val.uint()
		switch {
		case r.op == relNeq && x == 0:
			return left + " " + maskT, true
		case r.op == relEq && x == 0:
			return left + " ! " + maskT, true
		case x&^m != 0 || (x == m && bitsSet(m) == 1):
			return "", false
		case r.op == relEq:
			return left + " " + formatBitmask(dt, val, bits, ",") + " / " + maskT, true
		case r.op == relNeq:
			return left + " != " + formatBitmask(dt, val, bits, ",") + " / " + maskT, true
		}
		return "", false
	}
	if (r.op == relEq || r.op == relNeq) && dt != dtRaw && len(b.right.b) == len(v.v) {
		if n := prefixLen(mask.be()); n >= 0 {
			return left + " " + relText[r.op] + p.e.format(dt, val, bits) + "/" + itoa(uint64(n)), true
		}
	}
	return "", false
}

// right prints the right-hand side of a relational statement, typed by its left side.
func (p *printer) right(r *relS) string {
	switch v := r.right.(type) {
	case valR:
		if r.prefixLen > 0 {
			s := formatString(v.v, false)
			return s[:len(s)-1] + `*"`
		}
		return p.e.formatParts(p.partsOf(r.left, len(v.v)), v.v)
	case rangeR:
		parts := p.partsOf(r.left, len(v.lo))
		return p.e.formatPartsAs(parts, v.lo, true) + "-" + p.e.formatPartsAs(parts, v.hi, true)
	case setR:
		return p.setText(v.set, r.left, false)
	}
	return "?"
}

// partsOf types the components of a value that n is compared with.
func (p *printer) partsOf(n node, size int) []part {
	if c, ok := n.(*concatN); ok {
		var out []part
		for _, it := range c.items {
			out = append(out, p.partsOf(it, 0)...)
		}
		return out
	}
	if b, ok := n.(*binopN); ok && (b.op == opAnd || b.op == opOr || b.op == opXor) {
		return p.partsOf(b.left, size)
	}
	dt, o, bits := p.d.typeOf(n)
	nb := (p.d.width(n) + 7) / 8
	if size > 0 {
		nb = size
	}
	pt := part{dt: dt, bytes: nb, order: o, bits: bits}
	switch x := n.(type) {
	case *payloadN:
		pt.shift = x.shift
	case *exthdrN:
		pt.shift = x.shift
	}
	return []part{pt}
}

// setText prints @name, or the elements of an anonymous set typed by key.
func (p *printer) setText(s *setInfo, key node, isMap bool) string {
	if !s.isAnonymous() {
		return "@" + s.name
	}
	kp := p.partsOf(key, int(s.keyLen))
	if c, ok := key.(*concatN); ok && len(s.fieldLens) == len(c.items) {
		for i := range kp {
			kp[i].bytes = int(s.fieldLens[i])
		}
	}
	if s.isInterval() {
		for i := range kp {
			kp[i].order = bigEndian // see setInfo.keyParts
		}
	}
	var dp []part
	if s.isMap() {
		dp = s.dataParts()
	}
	sep := p.e.flagSep
	p.e.flagSep = " | "
	elems := p.e.renderElems(s, kp, dp)
	p.e.flagSep = sep
	// nft sorts the elements of anonymous sets, except those of concatenated ranges,
	// which it lists in the kernel's order.
	if !(s.isInterval() && len(kp) > 1) {
		slices.SortStableFunc(elems, func(a, b elemText) int {
			return bytes.Compare(a.sortKey, b.sortKey)
		})
	}
	texts := make([]string, len(elems))
	for i, el := range elems {
		texts[i] = el.text
	}
	return "{ " + strings.Join(texts, ", ") + " }"
}

func bitsSet(n uint64) int {
	c := 0
	for ; n != 0; n &= n - 1 {
		c++
	}
	return c
}

func ctDirText(dir int) string {
	switch dir {
	case 0:
		return "original "
	case 1:
		return "reply "
	}
	return ""
}

var limitUnits = map[uint64]string{1: "second", 60: "minute", 3600: "hour", 86400: "day",
	604800: "week"}

func limitText(s *limitS) string {
	t := "limit rate "
	if s.over {
		t += "over "
	}
	unit := limitUnits[s.unit]
	if unit == "" {
		unit = itoa(s.unit) + "s"
	}
	if !s.bytes {
		t += itoa(s.rate) + "/" + unit
		if s.burst != 0 && s.burst != 5 {
			t += " burst " + itoa(uint64(s.burst)) + " packets"
		}
		return t
	}
	n, u := byteUnit(s.rate)
	t += itoa(n) + " " + u + "/" + unit
	if s.burst != 0 {
		n, u := byteUnit(uint64(s.burst))
		t += " burst " + itoa(n) + " " + u
	}
	return t
}

// byteUnit scales a byte count to the largest unit that divides it.
func byteUnit(n uint64) (uint64, string) {
	units := []string{"bytes", "kbytes", "mbytes"}
	i := 0
	for i < len(units)-1 && n != 0 && n%1024 == 0 {
		n /= 1024
		i++
	}
	return n, units[i]
}

var logLevels = []string{"emerg", "alert", "crit", "err", "warn", "notice", "info", "debug",
	"audit"}

func logText(s *logS) string {
	t := "log"
	if s.hasPrefix {
		t += ` prefix "` + s.prefix + `"`
	}
	if s.hasGroup {
		t += " group " + itoa(uint64(s.group))
	}
	if s.hasSnap {
		t += " snaplen " + itoa(uint64(s.snaplen))
	}
	if s.hasQ {
		t += " queue-threshold " + itoa(uint64(s.qthreshold))
	}
	if s.hasLevel && s.level != 4 {
		if int(s.level) < len(logLevels) {
			t += " level " + logLevels[s.level]
		} else {
			t += " level " + itoa(uint64(s.level))
		}
	}
	const all = 0x2f
	switch {
	case s.flags&all == all:
		t += " flags all"
	default:
		if s.flags&0x3 == 0x3 {
			t += " flags tcp sequence,options"
		} else if s.flags&0x1 != 0 {
			t += " flags tcp sequence"
		} else if s.flags&0x2 != 0 {
			t += " flags tcp options"
		}
		if s.flags&0x4 != 0 {
			t += " flags ip options"
		}
		if s.flags&0x8 != 0 {
			t += " flags skuid"
		}
		if s.flags&0x20 != 0 {
			t += " flags ether"
		}
	}
	return t
}

func (p *printer) reject(s *rejectS) string {
	switch s.typ {
	case 1:
		return "reject with tcp reset"
	case 2:
		if s.code == 1 {
			return "reject"
		}
		return "reject with icmpx " + p.e.format(dtICMPXCode, value{b: []byte{s.code}}, 8)
	}
	l3 := s.l3
	switch p.d.fam {
	case famIPv4:
		if s.code == 3 {
			return "reject"
		}
		l3 = protoIP
	case famIPv6:
		if s.code == 4 {
			return "reject"
		}
		l3 = protoIP6
	}
	if l3 == protoIP6 {
		return "reject with icmpv6 " + p.e.format(dtICMP6Code, value{b: []byte{s.code}}, 8)
	}
	return "reject with icmp " + p.e.format(dtICMPCode, value{b: []byte{s.code}}, 8)
}

var natFlagNames = []struct {
	bit  uint32
	name string
}{{4, "random"}, {16, "fully-random"}, {8, "persistent"}}

func (p *printer) nat(s *natS) string {
	t := s.kind
	fam := s.family
	if fam == 0 {
		fam = uint32(p.d.fam)
	}
	if m, ok := s.addrMin.(*mapN); ok && s.hasAddr && m.set != nil {
		// A map that yields address and port (or address ranges) names its family.
		multi := len(m.set.dataParts()) > 1 || m.set.dataInterval
		if multi || p.d.fam == famInet || s.flags&64 != 0 {
			t += map[uint32]string{famIPv4: " ip", famIPv6: " ip6"}[fam]
		}
		if s.flags&64 != 0 {
			t += " prefix"
		}
		t += " to " + p.expr(m)
		if s.hasPr && !multi {
			if _, ok := s.protoMin.(*unknownN); !ok && s.protoMin != nil {
				t += ":" + p.valueOf(s.protoMin, dtService, bigEndian, 16)
			}
		}
		return t + p.natFlags(s)
	}
	if (s.kind == "snat" || s.kind == "dnat") && p.d.fam == famInet && s.hasAddr {
		if fam == famIPv6 {
			t += " ip6"
		} else {
			t += " ip"
		}
	}
	if s.flags&64 != 0 { // NF_NAT_RANGE_NETMAP
		t += " prefix"
	}
	dt := dtIPv4
	if fam == famIPv6 {
		dt = dtIPv6
	}
	var to string
	if s.hasAddr {
		to = p.natAddr(s, dt)
	}
	if s.hasPr {
		if _, ok := s.protoMin.(*unknownN); !ok || !s.hasAddr {
			port := p.valueOf(s.protoMin, dtService, bigEndian, 16)
			if s.protoMax != nil {
				port += "-" + p.valueOf(s.protoMax, dtService, bigEndian, 16)
			}
			to += ":" + port
		}
	}
	if to != "" {
		t += " to " + to
	}
	return t + p.natFlags(s)
}

func (p *printer) natFlags(s *natS) string {
	var fl []string
	for _, f := range natFlagNames {
		if s.flags&f.bit != 0 {
			fl = append(fl, f.name)
		}
	}
	if len(fl) == 0 {
		return ""
	}
	return " " + strings.Join(fl, ",")
}

// natAddr prints a NAT address or address range; a range that is a prefix prints as one.
func (p *printer) natAddr(s *natS, dt *dtype) string {
	lo := p.valueOf(s.addrMin, dt, bigEndian, dt.bits)
	br := func(a string) string {
		if dt == dtIPv6 && s.hasPr {
			return "[" + a + "]"
		}
		return a
	}
	if s.addrMax == nil {
		return br(lo)
	}
	l, ok1 := s.addrMin.(*immN)
	h, ok2 := s.addrMax.(*immN)
	if ok1 && ok2 {
		if n, ok := prefixOf(l.v, h.v); ok {
			return lo + "/" + itoa(uint64(n))
		}
	}
	return br(lo) + "-" + br(p.valueOf(s.addrMax, dt, bigEndian, dt.bits))
}

var objrefNames = map[uint32]string{1: "counter name", 2: "quota name", 3: "ct helper set",
	4: "limit name", 7: "ct timeout set", 8: "meta secmark set", 9: "ct expectation set",
	10: "synproxy name"}

func (p *printer) objref(s *objrefS) string {
	name, ok := objrefNames[s.typ]
	if !ok {
		name = "objref " + itoa(uint64(s.typ))
	}
	if s.m != nil {
		return name + " " + p.expr(s.m)
	}
	return name + ` "` + s.name + `"`
}

var dynsetOps = map[uint32]string{0: "add", 1: "update", 2: "delete"}

func (p *printer) dynset(s *dynsetS) string {
	t := dynsetOps[s.op] + " @" + s.set.name + " { " + p.keyExpr(s.key, s.set.keyParts())
	if s.hasTimeout && s.timeout != 0 {
		t += " timeout " + formatDuration(s.timeout)
	}
	for _, x := range s.exprs {
		t += " " + p.e.setExprText(x)
	}
	if s.data != nil {
		dp := s.set.dataParts()
		if len(dp) == 1 {
			t += " : " + p.valueOf(s.data, dp[0].dt, dp[0].order, dp[0].bytes*8)
		} else {
			t += " : " + p.expr(s.data)
		}
	}
	return t + " }"
}

// keyExpr prints a key built for a set: constants in a concatenation take the type of
// the set's key component (`ip saddr . 22`).
func (p *printer) keyExpr(n node, parts []part) string {
	c, ok := n.(*concatN)
	if !ok || len(c.items) != len(parts) {
		if im, ok := n.(*immN); ok && len(parts) == 1 {
			return p.e.formatPart(parts[0], im.v, false)
		}
		return p.expr(n)
	}
	out := make([]string, len(c.items))
	for i, it := range c.items {
		if im, ok := it.(*immN); ok {
			out[i] = p.e.formatPart(parts[i], im.v, false)
		} else {
			out[i] = p.expr(it)
		}
	}
	return strings.Join(out, " . ")
}

func (p *printer) payloadSet(s *payloadSetS) string {
	if s.field != nil {
		return p.expr(s.field) + " set " + p.e.format(s.field.f.dt, value{b: s.val}, s.field.f.bits)
	}
	dt, o, b := p.d.typeOf(s.dst)
	return p.expr(s.dst) + " set " + p.valueOf(s.src, dt, o, b)
}

func (p *printer) queue(s *queueS) string {
	t := "queue"
	var fl []string
	if s.flags&1 != 0 {
		fl = append(fl, "bypass")
	}
	if s.flags&2 != 0 {
		fl = append(fl, "fanout")
	}
	if len(fl) > 0 {
		t += " flags " + strings.Join(fl, ",")
	}
	switch {
	case s.sreg != nil:
		t += " to " + p.expr(s.sreg)
	case s.total > 1:
		t += fmt.Sprintf(" to %d-%d", s.num, int(s.num)+int(s.total)-1)
	case s.num != 0:
		t += fmt.Sprintf(" to %d", s.num)
	}
	return t
}

func (p *printer) tproxy(s *tproxyS) string {
	t := "tproxy"
	dt := dtIPv4
	if s.family == famIPv6 {
		dt = dtIPv6
	}
	if p.d.fam == famInet && s.family != 0 {
		if s.family == famIPv6 {
			t += " ip6"
		} else {
			t += " ip"
		}
	}
	t += " to "
	if s.addr != nil {
		a := p.valueOf(s.addr, dt, bigEndian, dt.bits)
		if dt == dtIPv6 {
			a = "[" + a + "]"
		}
		t += a
	}
	if s.port != nil {
		t += ":" + p.valueOf(s.port, dtService, bigEndian, 16)
	}
	return t
}

func synproxyText(s *synproxyS) string {
	t := "synproxy"
	if s.hasMSS && s.flags&1 != 0 {
		t += " mss " + itoa(uint64(s.mss))
	}
	if s.hasWsc && s.flags&2 != 0 {
		t += " wscale " + itoa(uint64(s.wscale))
	}
	if s.flags&8 != 0 {
		t += " timestamp"
	}
	if s.flags&4 != 0 {
		t += " sack-perm"
	}
	return t
}
