package nftcanon

import (
	"bytes"
	"math/bits"
)

// post puts delinearized statements into the form nft prints: payload loads are named
// after the header fields the protocol context gives them, masks fold into fields,
// prefixes and flag tests, and the protocol matches nft adds as dependencies of a later
// match are dropped again.
type post struct {
	d   *delin
	ctx [3]*proto // current protocol per payload base
	// vlan counts the VLAN headers selected so far (`ether type 8021q`, then
	// `vlan type 8021q` for a stacked tag): link-layer loads past the ethernet header
	// belong to them.
	vlan int
	// dep holds, per payload base, the protocol match that selected the protocol at
	// that base, until a use of that protocol's header makes it redundant; depVlan is
	// the `ether type vlan` match.
	dep     [3]*relS
	depVlan *relS
	// icmpType is the last `icmp type` match, which selects the meaning of the ICMP
	// header's second word.
	icmpType *relS
}

func newPost(d *delin) *post {
	p := &post{d: d}
	p.ctx[baseLL] = protoEther
	switch d.fam {
	case famIPv4:
		p.ctx[baseNH] = protoIP
	case famIPv6:
		p.ctx[baseNH] = protoIP6
	case famARP:
		p.ctx[baseNH] = protoARP
	}
	return p
}

// run rewrites the statement list in place.
func (p *post) run() {
	p.d.stmts = mergeRanges(p.d.stmts)
	var out []stmt
	for _, s := range p.d.stmts {
		if r, ok := s.(*relS); ok {
			out = append(out, p.rel(r)...)
			continue
		}
		out = append(out, p.other(s))
		// The dependencies nft generates sit right before the match that needs them;
		// a statement in between ends their scope.
		p.dep = [3]*relS{}
		p.depVlan = nil
	}
	var kept []stmt
	for _, s := range out {
		if r, ok := s.(*relS); ok && r.killed {
			continue
		}
		kept = append(kept, s)
	}
	p.d.stmts = kept
}

// other post-processes a statement that is not a match.
func (p *post) other(s stmt) stmt {
	switch s := s.(type) {
	case *verdictS:
		if s.vmap != nil {
			s.vmap.key = p.resolve(s.vmap.key, true)
		}
	case *rejectS:
		p.reject(s)
	case *natS:
		s.addrMin = p.resolve(s.addrMin, true)
		s.protoMin = p.resolve(s.protoMin, true)
	case *dynsetS:
		s.key = p.resolve(s.key, true)
		s.data = p.resolve(s.data, true)
	case *objrefS:
		if s.m != nil {
			s.m.key = p.resolve(s.m.key, true)
		}
	case *metaSetS:
		s.src = p.resolve(s.src, true)
	case *ctSetS:
		s.src = p.resolve(s.src, true)
	case *payloadSetS:
		p.resolvePayload(s.dst, true)
		if s.dst.f == nil {
			p.rmw(s)
		}
		s.src = p.resolve(s.src, true)
	case *exthdrSetS:
		s.src = p.resolve(s.src, true)
	case *dupS:
		s.addr = p.resolve(s.addr, true)
		s.dev = p.resolve(s.dev, true)
	case *fwdS:
		s.addr = p.resolve(s.addr, true)
		s.dev = p.resolve(s.dev, true)
	case *tproxyS:
		s.addr = p.resolve(s.addr, true)
		s.port = p.resolve(s.port, true)
	case *queueS:
		s.sreg = p.resolve(s.sreg, true)
	}
	return s
}

// resolve names the payloads inside n; kill says whether their use makes the protocol
// matches they depend on redundant.
func (p *post) resolve(n node, kill bool) node {
	switch n := n.(type) {
	case *payloadN:
		p.resolvePayload(n, kill)
	case *exthdrN:
		// An IPv6 extension header implies IPv6, which nft adds as `meta nfproto ipv6`.
		if kill && n.op == 0 && p.ctx[baseNH] == protoIP6 {
			p.kill(baseNH, protoIP6)
		}
	case *concatN:
		for i := range n.items {
			n.items[i] = p.resolve(n.items[i], kill)
		}
	case *binopN:
		if f := p.foldMask(n, kill); f != nil {
			return f
		}
		n.left = p.resolve(n.left, kill)
	case *byteorderN:
		n.inner = p.resolve(n.inner, kill)
	case *mapN:
		n.key = p.resolve(n.key, kill)
	case *hashN:
		if n.src != nil {
			n.src = p.resolve(n.src, kill)
		}
	}
	return n
}

// protoAt returns the protocol a payload at this base and offset reads, and the offset
// of that protocol's header.
func (p *post) protoAt(base, off int) *proto {
	if base < 0 || base >= len(p.ctx) {
		return nil // inner headers: nft 1.0.6 prints them raw
	}
	pr := p.ctx[base]
	if base == baseLL && p.vlan >= 2 && off >= protoVlan2.hdrOff {
		return protoVlan2
	}
	if base == baseLL && p.vlan >= 1 && off >= protoVlan.hdrOff {
		return protoVlan
	}
	if pr == nil && base == baseTH {
		return protoTH
	}
	return pr
}

// resolvePayload names a payload load after its header field.
func (p *post) resolvePayload(n *payloadN, kill bool) {
	pr := p.protoAt(n.base, n.off)
	if pr == nil {
		return
	}
	n.ctxp = pr
	f := pr.fieldAt(n.off-pr.hdrOff, n.bits)
	if f == nil {
		f = prefixField(pr, n.off-pr.hdrOff, n.bits)
		if f == nil {
			return
		}
		n.partial = n.bits
	}
	n.p, n.f = pr, f
	if kill {
		p.kill(n.base, pr)
	}
}

// setDep records a protocol match that selects the protocol at base.
func (p *post) setDep(r *relS, base int) {
	if base == vlanBase {
		p.depVlan = r
		return
	}
	p.dep[base] = r
}

// prefixField returns the field a load of the first bits of starts, if byte-aligned.
func prefixField(pr *proto, off, bits int) *field {
	if off%8 != 0 || bits%8 != 0 {
		return nil
	}
	for i := range pr.fields {
		f := &pr.fields[i]
		if f.off == off && f.bits > bits && f.bits%8 == 0 && f.dt.prefix {
			return f
		}
	}
	return nil
}

// kill drops the dependency that selected the protocol at base, now that a use of that
// protocol's header implies it.
func (p *post) kill(base int, pr *proto) {
	if pr == protoTH {
		return
	}
	if pr == protoVlan2 {
		return // the inner tag's selector is the user's `vlan type 8021q`
	}
	if pr == protoVlan {
		if p.depVlan != nil {
			p.depVlan.killed = true
			p.depVlan = nil
		}
		return
	}
	dep := p.dep[base]
	if dep == nil {
		return
	}
	// In families where the network protocol is not fixed, nft itself generates
	// `meta l4proto`; an explicit `ip protocol` or `ip6 nexthdr` match stays.
	if base == baseTH && (p.d.fam == famInet || p.d.fam == famBridge || p.d.fam == famNetdev) {
		if _, ok := dep.left.(*payloadN); ok {
			return
		}
	}
	dep.killed = true
	p.dep[base] = nil
}

// vlanBase is the pseudo base of a dependency that selects the VLAN header.
const vlanBase = -1

// rel post-processes one relational statement; payload expansion may split it.
func (p *post) rel(r *relS) []stmt {
	// The type field of a VLAN header is a protocol selector stacked on another
	// link-layer selector; it does not make `ether type 8021q` redundant.
	kill := true
	if pl, ok := r.left.(*payloadN); ok && pl.base == baseLL && p.vlan > 0 &&
		(pl.off == protoVlan.hdrOff+16 || pl.off == protoVlan2.hdrOff+16) {
		kill = false
	}
	r.left = p.resolve(r.left, kill)
	if pl, ok := r.left.(*payloadN); ok && (pl.p == protoICMP || pl.p == protoICMP6) {
		if split := p.icmpEcho(r, pl); split != nil {
			return split
		}
		p.icmpField(pl)
	}
	if split := p.expand(r); split != nil {
		var out []stmt
		for _, s := range split {
			out = append(out, p.rel(s)...)
		}
		return out
	}
	p.protocolMatch(r)
	return []stmt{r}
}

// icmpFields picks the ICMP field that the message type makes of bytes 4 to 8 of the
// header, by the `icmp type` match nft adds in front of such matches, and drops that.
var icmpFields = map[*proto]map[uint64]string{
	protoICMP: {0: "id", 8: "id", 13: "id", 14: "id", 15: "id", 16: "id", 17: "id", 18: "id",
		5: "gateway", 3: "mtu"},
	protoICMP6: {128: "id", 129: "id", 2: "mtu", 4: "param-problem", 130: "max-delay",
		131: "max-delay", 132: "max-delay"},
}

// icmpEcho splits a 32-bit load of the second ICMP word, after a match on a set of
// message types, into the echo fields `id` and `sequence`: nft merges `icmp id 1 icmp
// sequence 2` into one load and adds `icmp type { echo-reply, echo-request }` for it.
func (p *post) icmpEcho(r *relS, pl *payloadN) []stmt {
	t := p.icmpType
	v, ok := r.right.(valR)
	if t == nil || !ok || (r.op != relEq && r.op != relNeq) || pl.bits != 32 ||
		pl.off-pl.p.hdrOff != 32 || len(v.v) != 4 {
		return nil
	}
	if _, isSet := t.right.(setR); !isSet {
		return nil
	}
	p.icmpType = nil
	var out []stmt
	for i, name := range []string{"id", "sequence"} {
		f := pl.p.field(name)
		out = append(out, &relS{op: r.op, right: valR{v: v.v[2*i : 2*i+2]},
			left: &payloadN{base: pl.base, off: pl.off + 16*i, bits: 16, p: pl.p, f: f,
				ctxp: pl.p}})
	}
	return out
}

func (p *post) icmpField(pl *payloadN) {
	off := pl.off - pl.p.hdrOff
	if off < 32 || p.icmpType == nil || p.icmpType.killed {
		return
	}
	t := p.icmpType
	if _, ok := t.right.(valR); !ok {
		return
	}
	p.icmpType = nil
	name, ok := icmpFields[pl.p][value{b: t.right.(valR).v}.uint()]
	if !ok {
		return
	}
	for i := range pl.p.fields {
		f := &pl.p.fields[i]
		if f.off == off && f.bits == pl.bits && (f.name == name ||
			(name == "id" && f.name == "sequence")) {
			pl.f = f
			// nft adds a single type only for the fields of one message type; echo
			// fields serve two, so a single echo type was the user's.
			t.killed = name != "id"
			return
		}
	}
}

// protocolMatch updates the protocol context when r selects the next header's protocol.
func (p *post) protocolMatch(r *relS) {
	if pl, ok := r.left.(*payloadN); ok && pl.f != nil && pl.f.name == "type" &&
		(pl.p == protoICMP || pl.p == protoICMP6) && r.op == relImplicit {
		if _, isSet := r.right.(setR); isSet {
			p.icmpType = r
		}
	}
	v, ok := r.right.(valR)
	if !ok || r.op != relEq {
		return
	}
	if pl, ok := r.left.(*payloadN); ok && pl.f != nil && pl.f.name == "type" &&
		(pl.p == protoICMP || pl.p == protoICMP6) {
		p.icmpType = r
	}
	switch l := r.left.(type) {
	case *metaN:
		val := value{b: v.v, order: metaKeyInfo(l.key).order}.uint()
		switch l.key {
		case 15: // nfproto
			if p.d.fam == famInet {
				p.ctx[baseNH] = nfprotoL3(val)
				p.setDep(r, baseNH)
			}
		case 1: // protocol
			if p.d.fam == famNetdev || p.d.fam == famBridge {
				p.ctx[baseNH] = l3Proto(val)
				p.setDep(r, baseNH)
			}
		case 16: // l4proto
			p.killL3ForICMP(val)
			p.ctx[baseTH] = l4Proto(val)
			p.setDep(r, baseTH)
		case 8: // iiftype
			if val == 1 {
				if p.ctx[baseLL] == nil {
					p.ctx[baseLL] = protoEther
				}
				p.setDep(r, baseLL)
			}
		}
	case *payloadN:
		if l.f == nil || l.p == nil || l.f.name != l.p.next {
			return
		}
		val := value{b: v.v}.uint()
		switch l.p {
		case protoEther, protoVlan, protoVlan2:
			if val == 0x8100 || val == 0x88a8 {
				if l.p == protoEther {
					p.vlan = 1
				} else {
					p.vlan = 2
				}
				// nft's own dependency is `ether type 8021q`; 802.1ad and the type of an
				// inner tag are always the user's.
				if val == 0x8100 && l.p == protoEther {
					p.setDep(r, vlanBase)
				}
				return
			}
			p.ctx[baseNH] = l3Proto(val)
			p.setDep(r, baseNH)
		case protoIP, protoIP6:
			p.ctx[baseTH] = l4Proto(val)
			p.setDep(r, baseTH)
		}
	}
}

// killL3ForICMP drops a network-protocol dependency implied by an ICMP protocol match:
// `meta l4proto icmp` only matches IPv4 and `meta l4proto ipv6-icmp` only IPv6.
func (p *post) killL3ForICMP(l4 uint64) {
	dep := p.dep[baseNH]
	if dep == nil {
		return
	}
	var ipv4, ipv6 bool
	switch l := dep.left.(type) {
	case *metaN:
		v := value{b: dep.right.(valR).v, order: metaKeyInfo(l.key).order}.uint()
		ipv4 = (l.key == 15 && v == famIPv4) || (l.key == 1 && v == 0x0800)
		ipv6 = (l.key == 15 && v == famIPv6) || (l.key == 1 && v == 0x86dd)
	case *payloadN:
		v := value{b: dep.right.(valR).v}.uint()
		ipv4, ipv6 = v == 0x0800, v == 0x86dd
	}
	if (l4 == 1 && ipv4) || (l4 == 58 && ipv6) {
		dep.killed = true
		p.dep[baseNH] = nil
	}
}

// expand splits an equality on a payload load that spans several header fields (nft
// merges adjacent matches into one load) into one match per field.
func (p *post) expand(r *relS) []*relS {
	pl, ok := r.left.(*payloadN)
	if !ok || pl.f != nil || (r.op != relEq && r.op != relNeq) {
		return nil
	}
	v, ok := r.right.(valR)
	if !ok || len(v.v)*8 != pl.bits || pl.off%8 != 0 {
		return nil
	}
	pr := p.protoAt(pl.base, pl.off)
	if pr == nil {
		return nil
	}
	var out []*relS
	off := pl.off - pr.hdrOff
	end := off + pl.bits
	for off < end {
		var f *field
		for i := range pr.fields {
			c := &pr.fields[i]
			if c.off == off && c.bits%8 == 0 && off+c.bits <= end {
				f = c
				break
			}
		}
		if f == nil {
			return nil
		}
		lo := (off - (pl.off - pr.hdrOff)) / 8
		out = append(out, &relS{op: r.op,
			left:  &payloadN{base: pl.base, off: off + pr.hdrOff, bits: f.bits},
			right: valR{v: v.v[lo : lo+f.bits/8]}})
		off += f.bits
	}
	if len(out) < 2 {
		return nil
	}
	return out
}

// foldMask turns `payload & mask` into the header field the mask selects, when the
// load is wider than the field (nft loads whole bytes and masks sub-byte fields).
func (p *post) foldMask(b *binopN, kill bool) node {
	if b.op != opAnd {
		return nil
	}
	if x, ok := b.left.(*exthdrN); ok {
		f := foldExthdr(x, b.right.b)
		if f != nil {
			p.resolve(f, kill) // the IPv6 dependency, as for a whole-byte field
		}
		return f
	}
	pl, ok := b.left.(*payloadN)
	if !ok || pl.f != nil || len(b.right.b)*8 != pl.bits {
		return nil
	}
	lo, hi, ok := maskRange(b.right.b)
	if !ok {
		return nil
	}
	pr := p.protoAt(pl.base, pl.off+lo)
	if pr == nil {
		return nil
	}
	f := pr.fieldAt(pl.off+lo-pr.hdrOff, hi-lo)
	if f == nil {
		return nil
	}
	if kill {
		p.kill(pl.base, pr)
	}
	return &payloadN{base: pl.base, off: pl.off + lo, bits: hi - lo, p: pr, f: f, ctxp: pr,
		shift: pl.bits - hi}
}

// maskRange returns the contiguous run of one bits [lo, hi) of a mask.
func maskRange(m []byte) (int, int, bool) {
	lo, hi := -1, -1
	for i := 0; i < len(m)*8; i++ {
		if bit(m, i) == 1 {
			if lo < 0 {
				lo = i
			} else if hi >= 0 {
				return 0, 0, false
			}
		} else if lo >= 0 && hi < 0 {
			hi = i
		}
	}
	if lo < 0 {
		return 0, 0, false
	}
	if hi < 0 {
		hi = len(m) * 8
	}
	return lo, hi, true
}

// extractBits returns bits [lo, hi) of b as a big-endian value of whole bytes.
func extractBits(b []byte, lo, hi int) []byte {
	n := (hi - lo + 7) / 8
	out := make([]byte, n)
	for i := lo; i < hi; i++ {
		j := (hi - lo) - 1 - (i - lo) // bit index from the least significant end
		if bit(b, i) == 1 {
			out[n-1-j/8] |= 1 << (j % 8)
		}
	}
	return out
}

// prefixLen returns the length of a prefix mask (ones then zeros), or -1.
func prefixLen(m []byte) int {
	n := 0
	for _, c := range m {
		if c == 0xff {
			n += 8
			continue
		}
		l := bits.LeadingZeros8(^c)
		if c<<l != 0 {
			return -1
		}
		n += l
		break
	}
	for i := (n + 7) / 8; i < len(m); i++ {
		if n%8 != 0 && i == n/8 {
			continue
		}
		if m[i] != 0 {
			return -1
		}
	}
	if !bytes.Equal(m, prefixMask(n, len(m))) {
		return -1
	}
	return n
}

func prefixMask(n, size int) []byte {
	m := make([]byte, size)
	for i := 0; i < n; i++ {
		m[i/8] |= 0x80 >> (i % 8)
	}
	return m
}

// reject records the network protocol a reject in a mixed-family table answers with,
// and drops the `meta nfproto` dependency nft added for it.
func (p *post) reject(s *rejectS) {
	if s.typ == 1 && (p.d.fam == famIPv4 || p.d.fam == famIPv6) {
		// `reject with tcp reset` needs `meta l4proto tcp`, which nft adds itself.
		if dep := p.dep[baseTH]; dep != nil && p.ctx[baseTH] == protoTCP {
			dep.killed = true
			p.dep[baseTH] = nil
		}
		return
	}
	if s.typ != 0 { // only ICMP rejects depend on the network protocol
		return
	}
	s.l3 = p.ctx[baseNH]
	if dep := p.dep[baseNH]; dep != nil {
		dep.killed = true
		p.dep[baseNH] = nil
	}
}

// mergeRanges joins `x >= a` followed by `x <= b` into the range match `x a-b`, which is
// how nft encodes a range it cannot express with the range expression.
func mergeRanges(in []stmt) []stmt {
	var out []stmt
	for i := 0; i < len(in); i++ {
		r, ok := in[i].(*relS)
		if ok && r.op == relGte && i+1 < len(in) {
			if r2, ok := in[i+1].(*relS); ok && r2.op == relLte && sameNode(r.left, r2.left) {
				lo, ok1 := r.right.(valR)
				hi, ok2 := r2.right.(valR)
				if ok1 && ok2 {
					out = append(out, &relS{op: relEq, left: r.left, right: rangeR{lo: lo.v, hi: hi.v}})
					i++
					continue
				}
			}
		}
		out = append(out, in[i])
	}
	return out
}

// sameNode reports whether two loads read the same thing.
func sameNode(a, b node) bool {
	switch a := a.(type) {
	case *payloadN:
		b, ok := b.(*payloadN)
		return ok && a.base == b.base && a.off == b.off && a.bits == b.bits
	case *metaN:
		b, ok := b.(*metaN)
		return ok && a.key == b.key
	case *ctN:
		b, ok := b.(*ctN)
		return ok && a.key == b.key && a.dir == b.dir
	case *exthdrN:
		b, ok := b.(*exthdrN)
		return ok && *a == *b
	case *xfrmN:
		b, ok := b.(*xfrmN)
		return ok && *a == *b
	case *binopN:
		b, ok := b.(*binopN)
		return ok && a.op == b.op && bytes.Equal(a.right.b, b.right.b) && sameNode(a.left, b.left)
	case *byteorderN:
		b, ok := b.(*byteorderN)
		return ok && a.order == b.order && sameNode(a.inner, b.inner)
	}
	return false
}

// foldExthdr turns `exthdr & mask` into the sub-byte extension header field it selects.
func foldExthdr(x *exthdrN, mask []byte) node {
	d := exthdrDescOf(x)
	if d == nil || x.present || len(mask)*8 != x.bits {
		return nil
	}
	lo, hi, ok := maskRange(mask)
	if !ok {
		return nil
	}
	for i := range d.fields {
		f := &d.fields[i]
		if f.off == x.off+lo && f.bits == hi-lo {
			return &exthdrN{op: x.op, typ: x.typ, off: f.off, bits: f.bits, f: f,
				shift: x.bits - hi}
		}
	}
	return nil
}

// rmw recognizes a read-modify-write of a header field narrower than the bytes written:
// the source is the same bytes with the field's bits cleared and the new value or-ed in.
func (p *post) rmw(s *payloadSetS) {
	var keep, set []byte
	n := s.src
	for {
		b, ok := n.(*binopN)
		if !ok {
			break
		}
		switch b.op {
		case opAnd:
			keep = b.right.b
		case opOr, opXor:
			set = orBytes(set, b.right.b)
		default:
			return
		}
		n = b.left
	}
	dst := s.dst
	pl, ok := n.(*payloadN)
	if !ok || keep == nil || pl.base != dst.base || pl.off != dst.off || pl.bits != dst.bits {
		return
	}
	mask := make([]byte, len(keep))
	for i := range keep {
		mask[i] = ^keep[i]
		if i < len(set) {
			mask[i] |= set[i]
		}
	}
	lo, hi, ok := maskRange(mask)
	if !ok {
		return
	}
	pr := p.protoAt(dst.base, dst.off+lo)
	if pr == nil {
		return
	}
	f := pr.fieldAt(dst.off+lo-pr.hdrOff, hi-lo)
	if f == nil {
		return
	}
	if set == nil {
		set = make([]byte, len(keep))
	}
	s.field = &payloadN{base: dst.base, off: dst.off + lo, bits: hi - lo, p: pr, f: f, ctxp: pr}
	s.val = extractBits(padLeft(set, len(keep)), lo, hi)
	p.kill(dst.base, pr)
}

func orBytes(a, b []byte) []byte {
	if a == nil {
		return append([]byte(nil), b...)
	}
	out := append([]byte(nil), a...)
	for i := range out {
		if i < len(b) {
			out[i] |= b[i]
		}
	}
	return out
}
