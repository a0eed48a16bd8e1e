package nftparse

import (
	"net/netip"
	"strings"
)

// stmt compiles one statement.
func (c *compiler) stmt(s stmt) error {
	switch s := s.(type) {
	case *sMatch:
		return c.match(s)
	case *sVerdict:
		c.verdict(s.v)
	case *sVmap:
		return c.vmap(s)
	case *sCounter:
		var a nlAttrs
		a.u64(1, 0)
		a.u64(2, 0)
		c.emit("counter", a)
	case *sNotrack:
		c.emit("notrack", nil)
	case *sLog:
		c.log(s)
	case *sLimit:
		c.emit("limit", limitAttrs(s))
	case *sQuota:
		var a nlAttrs
		a.u64(1, s.bytes)
		fl := uint32(0)
		if s.over {
			fl = 1
		}
		a.u32(2, fl)
		c.emit("quota", a)
	case *sReject:
		return c.reject(s)
	case *sNat:
		return c.nat(s)
	case *sSet:
		return c.set(s)
	case *sObjref:
		return c.objref(s)
	case *sDynset:
		return c.dynset(s)
	case *sConnlimit:
		var a nlAttrs
		a.u32(1, s.count)
		fl := uint32(0)
		if s.over {
			fl = 1
		}
		a.u32(2, fl)
		c.emit("connlimit", a)
	case *sFlow:
		var a nlAttrs
		a.str(1, s.table)
		c.emit("flow_offload", a)
	case *sQueue:
		var a nlAttrs
		a.u16(1, s.num)
		a.u16(2, s.total)
		a.u16(3, uint16(s.flags))
		c.emit("queue", a)
	case *sSynproxy:
		var a nlAttrs
		a.u16(1, s.mss)
		a.u8(2, s.wscale)
		a.u32(3, s.flags)
		c.emit("synproxy", a)
	case *sFwd:
		return c.fwd(s)
	case *sDup:
		return c.dup(s)
	case *sTproxy:
		return c.tproxy(s)
	default:
		return c.errExpr(s, ErrUnsupported, "statement")
	}
	return nil
}

func limitAttrs(s *sLimit) nlAttrs {
	var a nlAttrs
	a.u64(1, s.rate)
	a.u64(2, s.unit)
	a.u32(3, s.burst)
	typ := uint32(0)
	if s.bytes {
		typ = 1
	}
	a.u32(4, typ)
	fl := uint32(0)
	if s.over {
		fl = 1
	}
	a.u32(5, fl)
	return a
}

func (c *compiler) log(s *sLog) {
	var a nlAttrs
	if s.hasGroup {
		a.u16(1, s.group)
	}
	if s.hasPrefix {
		a.str(2, s.prefix)
	}
	if s.hasSnap {
		a.u32(3, s.snaplen)
	}
	if s.hasQ {
		a.u16(4, s.qthreshold)
	}
	if s.hasLevel {
		a.u32(5, s.level)
	}
	if s.flags != 0 {
		a.u32(6, s.flags)
	}
	c.emit("log", a)
}

func (c *compiler) vmap(s *sVmap) error {
	if err := c.needAll(s.key); err != nil {
		return err
	}
	t, err := c.load(s.key, reg1)
	if err != nil {
		return err
	}
	verdict := uint32(regVerdict)
	switch r := s.set.(type) {
	case *eSetRef:
		d, err := c.namedSet(r)
		if err != nil {
			return err
		}
		if d.data == nil || d.data.dt != dtVerdict {
			return c.errExpr(r, ErrType, "@%s is not a verdict map", r.name)
		}
		return c.lookup(r.name, 0, reg1, &verdict, false)
	case *eSet:
		as, err := c.anonSet(r, t, &elemData{verdict: true})
		if err != nil {
			return err
		}
		if as.flags&setInterval != 0 && !t.isConcat() && t.order == hostOrder && t.bytes > 1 {
			c.hton(reg1, t.bytes)
		}
		return c.lookup(as.name, as.id, reg1, &verdict, false)
	}
	return c.errExpr(s, ErrSyntax, "expected a verdict map")
}

// reject: the kernel's reject types are ICMP (0), TCP reset (1) and ICMPX (2).
func (c *compiler) reject(s *sReject) error {
	var typ uint32
	var code uint8
	switch s.with {
	case "":
		switch {
		case c.family == "ip" || (c.family != "ip6" && c.ctx[baseNH] == protoIP):
			typ, code = 0, 3
		case c.family == "ip6" || c.ctx[baseNH] == protoIP6:
			typ, code = 0, 4
		default:
			typ, code = 2, 1
		}
	case "tcp reset":
		if err := c.need(protoTCP, s); err != nil {
			return err
		}
		typ = 1
	case "icmp", "icmpv6", "icmpx":
		dt := map[string]*dtype{"icmp": dtICMPCode, "icmpv6": dtICMP6Code,
			"icmpx": dtICMPXCode}[s.with]
		v, err := c.constValue(s.code, typ1(dt))
		if err != nil {
			return err
		}
		code = v[0]
		switch s.with {
		case "icmp":
			if c.family != "ip" {
				if err := c.need(protoIP, s); err != nil {
					return err
				}
			}
		case "icmpv6":
			if c.family != "ip6" {
				if err := c.need(protoIP6, s); err != nil {
					return err
				}
			}
		case "icmpx":
			typ = 2
		}
	}
	var a nlAttrs
	a.u32(1, typ)
	a.u8(2, code)
	c.emit("reject", a)
	return nil
}

func typ1(dt *dtype) typ { return typ{dt: dt, order: dt.order, bytes: (dt.bits + 7) / 8} }

// natFamily is the address family a NAT statement translates.
func (c *compiler) natFamily(s *sNat) string {
	switch {
	case s.family != "":
		return s.family
	case c.family == "ip" || c.family == "ip6":
		return c.family
	}
	if k, ok := s.addr.(*eConst); ok {
		host := k.text
		if strings.HasPrefix(host, "[") || strings.Count(host, ":") > 1 {
			return "ip6"
		}
	}
	return "ip"
}

func (c *compiler) nat(s *sNat) error {
	if err := c.needAll(s.addr, s.port); err != nil {
		return err
	}
	fam := c.natFamily(s)
	at := typ1(dtIPv4)
	if fam == "ip6" {
		at = typ1(dtIPv6)
	}
	pt := typ1(dtService)
	var a nlAttrs
	next := uint32(reg1)
	take := func() uint32 { r := next; next += 4; return r }
	var addrMin, addrMax, protoMin, protoMax uint32
	if k, ok := s.addr.(*eConst); ok && (s.kind == "masquerade" || s.kind == "redirect") &&
		s.port == nil {
		// `redirect to 8080`: these statements only take ports.
		s.port, s.addr, s.hasAddr = &eConst{at: k.at, text: strings.TrimPrefix(k.text, ":")},
			nil, false
	}
	if s.hasAddr {
		switch e := s.addr.(type) {
		case *eConst:
			host, lo, hi, err := c.natAddr(e, fam, at)
			if err != nil {
				return err
			}
			if host[0] != nil {
				addrMin = take()
				c.immediate(addrMin, host[0])
				if host[1] != nil {
					addrMax = take()
					c.immediate(addrMax, host[1])
				}
			}
			if lo != nil {
				protoMin = take()
				c.immediate(protoMin, lo)
				if hi != nil {
					protoMax = take()
					c.immediate(protoMax, hi)
				}
			}
		default:
			addrMin = take()
			if _, err := c.loadValue(e, addrMin, at); err != nil {
				return err
			}
		}
	}
	if s.port != nil {
		protoMin = take()
		if k, ok := s.port.(*eConst); ok {
			iv, err := c.interval(k, pt)
			if err != nil {
				return err
			}
			c.immediate(protoMin, encode(iv.lo, pt))
			if !iv.single {
				protoMax = take()
				c.immediate(protoMax, encode(iv.hi, pt))
			}
		} else if _, err := c.loadValue(s.port, protoMin, pt); err != nil {
			return err
		}
	}
	flags := s.flags
	if s.prefix {
		flags |= 64
	}
	if protoMin != 0 {
		flags |= 2
	}
	switch s.kind {
	case "snat", "dnat":
		if !s.hasAddr && protoMin == 0 {
			return c.errExpr(s, ErrSyntax, "%s needs an address or a port", s.kind)
		}
		typ := uint32(0)
		if s.kind == "dnat" {
			typ = 1
		}
		a.u32(1, typ)
		a.u32(2, uint32(familyNumbers[fam]))
		if addrMin != 0 {
			a.u32(3, regAttr(addrMin))
		}
		if addrMax != 0 {
			a.u32(4, regAttr(addrMax))
		}
		if protoMin != 0 {
			a.u32(5, regAttr(protoMin))
		}
		if protoMax != 0 {
			a.u32(6, regAttr(protoMax))
		}
		if flags != 0 {
			a.u32(7, flags)
		}
		c.emit("nat", a)
	case "masquerade", "redirect":
		if addrMin != 0 {
			return c.errExpr(s, ErrType, "%s takes a port only, e.g. to :1024-65535", s.kind)
		}
		base := uint16(1)
		if s.kind == "masquerade" {
			if flags != 0 {
				a.u32(1, flags)
			}
			base = 2
		}
		if protoMin != 0 {
			a.u32(base, regAttr(protoMin))
		}
		if protoMax != 0 {
			a.u32(base+1, regAttr(protoMax))
		}
		if s.kind == "redirect" && flags != 0 {
			a.u32(3, flags)
		}
		name := "masq"
		if s.kind == "redirect" {
			name = "redir"
		}
		c.emit(name, a)
	}
	return nil
}

// natAddr splits `ADDR[-ADDR][:PORT[-PORT]]`, `ADDR/LEN`, `[V6]:PORT` and `:PORT`.
func (c *compiler) natAddr(e *eConst, fam string, at typ) (host [2][]byte, lo, hi []byte,
	err error) {
	text := e.text
	var port string
	isPort := strings.HasPrefix(text, ":") && !strings.HasPrefix(text, "::")
	switch {
	case isPort:
		port, text = text[1:], ""
	case fam == "ip6" && strings.HasPrefix(text, "["):
		end := strings.LastIndex(text, "]")
		if end < 0 {
			return host, nil, nil, c.errExpr(e, ErrSyntax, "missing ] in %q", text)
		}
		rest := text[end+1:]
		text = strings.ReplaceAll(text[:end+1], "[", "")
		text = strings.ReplaceAll(text, "]", "")
		if p, ok := strings.CutPrefix(rest, ":"); ok {
			port = p
		}
	case fam == "ip":
		if h, p, ok := strings.Cut(text, ":"); ok {
			text, port = h, p
		}
	}
	if text != "" {
		hc := &eConst{at: e.at, text: text}
		iv, err := c.interval(hc, at)
		if err != nil {
			return host, nil, nil, err
		}
		host[0] = encode(iv.lo, at)
		if !iv.single {
			host[1] = encode(iv.hi, at)
		}
	} else {
		host = [2][]byte{}
	}
	if port != "" {
		pt := typ1(dtService)
		iv, err := c.interval(&eConst{at: e.at, text: port}, pt)
		if err != nil {
			return host, nil, nil, err
		}
		lo = encode(iv.lo, pt)
		if !iv.single {
			hi = encode(iv.hi, pt)
		}
	}
	if text == "" {
		return [2][]byte{nil, nil}, lo, hi, nil
	}
	return host, lo, hi, nil
}

// loadValue puts the source of a statement into reg: an expression (a map yields data
// of type want), or a constant of type want.
func (c *compiler) loadValue(e expr, reg uint32, want typ) (typ, error) {
	switch v := e.(type) {
	case *eConst, *eValConcat, *eList, *eRange:
		b, err := c.constValue(v, want)
		if err != nil {
			return typ{}, err
		}
		c.immediate(reg, b)
		return want, nil
	case *eMap:
		return c.loadMap(v, reg, &want)
	}
	t, err := c.load(e, reg)
	if err != nil {
		return typ{}, err
	}
	if !t.isConcat() && !want.isConcat() && t.order != want.order && t.bytes > 1 &&
		t.bytes == want.bytes {
		c.hton(reg, t.bytes)
	}
	return t, nil
}

// set compiles `target set value`.
func (c *compiler) set(s *sSet) error {
	// nft adds no dependency for writing a TCP option: the kernel checks the protocol.
	if _, ok := s.target.(*eExthdr); !ok {
		if err := c.needAll(s.target); err != nil {
			return err
		}
	}
	if err := c.needAll(s.value); err != nil {
		return err
	}
	switch t := s.target.(type) {
	case *eMeta:
		want := keyTyp(t.ki)
		if _, err := c.loadValue(s.value, reg1, want); err != nil {
			return err
		}
		var a nlAttrs
		a.u32(2, t.ki.key)
		a.u32(3, regAttr(reg1))
		c.emit("meta", a)
	case *eCt:
		want := keyTyp(t.ki)
		if _, err := c.loadValue(s.value, reg1, want); err != nil {
			return err
		}
		var a nlAttrs
		a.u32(2, t.ki.key)
		if t.dir >= 0 {
			a.u8(3, uint8(t.dir))
		}
		a.u32(4, regAttr(reg1))
		c.emit("ct", a)
	case *ePayload:
		return c.payloadSet(t, s.value)
	case *eExthdr:
		if t.f == nil {
			return c.errExpr(t, ErrType, "cannot set an option's presence")
		}
		n := (t.f.bits + 7) / 8
		want := typ{dt: t.f.dt, order: bigEndian, bytes: n}
		if _, err := c.loadValue(s.value, reg1, want); err != nil {
			return err
		}
		var a nlAttrs
		a.u8(2, uint8(t.typ))
		a.u32(3, uint32(t.f.off/8))
		a.u32(4, uint32(n))
		a.u32(6, t.op)
		a.u32(7, regAttr(reg1))
		c.emit("exthdr", a)
	default:
		return c.errExpr(s.target, ErrUnsupported, "setting this expression")
	}
	return nil
}

func (c *compiler) payloadSet(t *ePayload, v expr) error {
	off := t.p.hdrOff + t.f.off
	csum := func(a *nlAttrs) {
		if t.p == protoIP {
			a.u32(6, 1) // NFT_PAYLOAD_CSUM_INET
			a.u32(7, 10)
		}
	}
	if off%8 == 0 && t.f.bits%8 == 0 {
		n := t.f.bits / 8
		want := typ{dt: t.f.dt, order: bigEndian, bytes: n}
		if _, err := c.loadValue(v, reg1, want); err != nil {
			return err
		}
		var a nlAttrs
		a.u32(5, regAttr(reg1))
		a.u32(2, uint32(t.p.base))
		a.u32(3, uint32(off/8))
		a.u32(4, uint32(n))
		csum(&a)
		c.emit("payload", a)
		return nil
	}
	// A field narrower than a byte: read the 16-bit word holding it, replace the field's
	// bits, write the word back (the checksum is updated per 16 bits).
	first := off / 16 * 2
	n := 2
	if (off+t.f.bits+7)/8 > first+2 {
		n = 4
	}
	ft := typ{dt: t.f.dt, order: bigEndian, bytes: n, fieldBits: t.f.bits,
		shift: n*8 - (off - first*8) - t.f.bits}
	k, ok := v.(*eConst)
	if !ok {
		return c.errExpr(v, ErrUnsupported, "setting %s %s from an expression", t.p.name, t.f.name)
	}
	iv, err := c.interval(k, ft)
	if err != nil {
		return err
	}
	if !iv.single {
		return c.errExpr(v, ErrType, "expected a single value")
	}
	mask := fieldMask(ft)
	keep := make([]byte, n)
	for i := range keep {
		keep[i] = ^mask[i]
	}
	c.payloadLoad(t.p.base, first, n, reg1)
	c.bitwise(reg1, n, keep, encode(iv.lo, ft))
	var a nlAttrs
	a.u32(5, regAttr(reg1))
	a.u32(2, uint32(t.p.base))
	a.u32(3, uint32(first))
	a.u32(4, uint32(n))
	csum(&a)
	c.emit("payload", a)
	return nil
}

func (c *compiler) objref(s *sObjref) error {
	var a nlAttrs
	if s.m == nil {
		a.u32(1, s.typ)
		a.str(2, s.name)
		c.emit("objref", a)
		return nil
	}
	if err := c.needAll(s.m.key); err != nil {
		return err
	}
	kt, err := c.load(s.m.key, reg1)
	if err != nil {
		return err
	}
	var name string
	var id uint32
	switch r := s.m.set.(type) {
	case *eSet:
		as, err := c.anonSet(r, kt, &elemData{objType: s.typ})
		if err != nil {
			return err
		}
		name, id = as.name, as.id
	case *eSetRef:
		if _, err := c.namedSet(r); err != nil {
			return err
		}
		name = r.name
	}
	a.u32(3, regAttr(reg1))
	a.str(4, name)
	a.u32(5, id)
	c.emit("objref", a)
	return nil
}

func (c *compiler) dynset(s *sDynset) error {
	d, err := c.namedSet(&eSetRef{at: s.at, name: s.set})
	if err != nil {
		return err
	}
	if err := c.needAll(s.key, s.data); err != nil {
		return err
	}
	kt, err := c.loadValue(s.key, reg1, d.key)
	if err != nil {
		return err
	}
	var a nlAttrs
	a.str(1, s.set)
	a.u32(3, s.op)
	a.u32(4, regAttr(reg1))
	if s.data != nil {
		if d.data == nil {
			return c.errExpr(s.data, ErrType, "@%s is not a map", s.set)
		}
		dreg := uint32(reg1) + uint32(pad4(kt.width())/4)
		if _, err := c.loadValue(s.data, dreg, *d.data); err != nil {
			return err
		}
		a.u32(5, regAttr(dreg))
	}
	if s.hasTO {
		a.u64(6, s.timeout)
	}
	var exprs []nlExpr
	for _, st := range s.stmts {
		switch st := st.(type) {
		case *sCounter:
			var ca nlAttrs
			ca.u64(1, 0)
			ca.u64(2, 0)
			exprs = append(exprs, nlExpr{"counter", ca})
		case *sLimit:
			exprs = append(exprs, nlExpr{"limit", limitAttrs(st)})
		case *sQuota:
			var qa nlAttrs
			qa.u64(1, st.bytes)
			fl := uint32(0)
			if st.over {
				fl = 1
			}
			qa.u32(2, fl)
			exprs = append(exprs, nlExpr{"quota", qa})
		case *sConnlimit:
			var la nlAttrs
			la.u32(1, st.count)
			fl := uint32(0)
			if st.over {
				fl = 1
			}
			la.u32(2, fl)
			exprs = append(exprs, nlExpr{"connlimit", la})
		default:
			return c.errExpr(st, ErrUnsupported, "this statement inside a set statement")
		}
	}
	switch len(exprs) {
	case 0:
	case 1:
		a.nested(7, exprs[0].encode())
	default:
		var list nlAttrs
		for _, x := range exprs {
			list.nested(1, x.encode())
		}
		a.nested(10, list)
	}
	c.emit("dynset", a)
	return nil
}

func (c *compiler) fwd(s *sFwd) error {
	var a nlAttrs
	r := uint32(reg1)
	if _, err := c.loadValue(s.dev, r, typ1(dtIfindex)); err != nil {
		return err
	}
	a.u32(1, regAttr(r))
	if s.addr != nil {
		at := typ1(dtIPv4)
		fam := uint32(2)
		if s.family == "ip6" {
			at, fam = typ1(dtIPv6), 10
		}
		if _, err := c.loadValue(s.addr, r+4, at); err != nil {
			return err
		}
		a.u32(2, regAttr(r+4))
		a.u32(3, fam)
	}
	c.emit("fwd", a)
	return nil
}

func (c *compiler) dup(s *sDup) error {
	var a nlAttrs
	if s.addr != nil {
		at := typ1(dtIPv4)
		if c.family == "ip6" {
			at = typ1(dtIPv6)
		}
		if _, err := c.loadValue(s.addr, reg1, at); err != nil {
			return err
		}
		a.u32(1, regAttr(reg1))
	}
	if s.dev != nil {
		if _, err := c.loadValue(s.dev, reg1+4, typ1(dtIfindex)); err != nil {
			return err
		}
		a.u32(2, regAttr(reg1+4))
	}
	c.emit("dup", a)
	return nil
}

func (c *compiler) tproxy(s *sTproxy) error {
	var a nlAttrs
	fam := s.family
	if fam == "" && (c.family == "ip" || c.family == "ip6") {
		fam = c.family
	}
	if fam == "" {
		if k, ok := s.addr.(*eConst); ok {
			if ad, err := netip.ParseAddr(strings.Trim(k.text, "[]")); err == nil && ad.Is6() {
				fam = "ip6"
			} else {
				fam = "ip"
			}
		}
	}
	if fam != "" {
		a.u32(1, uint32(familyNumbers[fam]))
	}
	if s.addr != nil {
		at := typ1(dtIPv4)
		if fam == "ip6" {
			at = typ1(dtIPv6)
		}
		k := s.addr.(*eConst)
		if _, err := c.loadValue(&eConst{at: k.at, text: strings.Trim(k.text, "[]")}, reg1, at); err != nil {
			return err
		}
		a.u32(2, regAttr(reg1))
	}
	if s.port != nil {
		if _, err := c.loadValue(s.port, reg1+4, typ1(dtService)); err != nil {
			return err
		}
		a.u32(3, regAttr(reg1+4))
	}
	c.emit("tproxy", a)
	return nil
}
