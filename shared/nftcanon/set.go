package nftcanon

import (
	"bytes"
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"slices"
	"strings"
)

// setInfo is a set or map as the kernel describes it, with its elements.
type setInfo struct {
	family  byte
	table   string
	name    string
	handle  uint64
	flags   uint32
	keyType uint32
	keyLen  uint32
	// dataType is the map's data type id; 0xffffff00 is a verdict map.
	dataType   uint32
	dataLen    uint32
	objType    uint32
	policy     uint32
	hasPolicy  bool
	size       uint32
	timeout    uint64
	gcInterval uint32
	fieldLens  []uint32 // NFTA_SET_DESC_CONCAT: bytes per concatenated key component
	keyOrder   byteOrder
	dataOrder  byteOrder
	hasKeyOrd  bool
	hasDataOrd bool
	merge      bool
	comment    string
	keyTypeof  []byte // user data describing `typeof` key expressions
	dataTypeof []byte
	exprs      []rawExpr // stateful expressions attached to every element (`counter`)
	elems      []elem    // see elements
	// load parses the elements on first use (elements); loaded says it ran.
	load      func() []elem
	loaded    bool
	dynTarget bool // the target of a dynset statement
	// dataInterval marks a map whose data are ranges (`: interval ipv4_addr`): each
	// element's data holds the low then the high value.
	dataInterval bool
}

const verdictType = 0xffffff00

// elem is one set element as dumped.
type elem struct {
	key, keyEnd []byte
	data        []byte
	verdict     *verdictData
	flags       uint32
	timeout     uint64
	hasTimeout  bool
	comment     string
	objref      string
	exprs       []rawExpr
}

// elements returns the set's elements, parsed on first use: a read of a ruleset with
// tens of thousands of anonymous sets parses each only while its rule is rendered.
func (s *setInfo) elements() []elem {
	if !s.loaded && s.load != nil {
		s.elems, s.loaded = s.load(), true
	}
	return s.elems
}

func (s *setInfo) isMap() bool       { return s.flags&(setFlagMap|setFlagObject) != 0 }
func (s *setInfo) isAnonymous() bool { return s.flags&setFlagAnonymous != 0 }
func (s *setInfo) isInterval() bool  { return s.flags&setFlagInterval != 0 }

func parseSet(m Msg) (*setInfo, error) {
	if len(m) < 4 {
		return nil, errShort
	}
	a, err := parseAttrs(m[4:])
	if err != nil {
		return nil, fmt.Errorf("set: %w", err)
	}
	s := &setInfo{
		family: m.Family(), table: a.str(nftaSetTable), name: a.str(nftaSetName),
		handle: a.u64(nftaSetHandle), flags: a.u32(nftaSetFlags),
		keyType: a.u32(nftaSetKeyType), keyLen: a.u32(nftaSetKeyLen),
		dataType: a.u32(nftaSetDataType), dataLen: a.u32(nftaSetDataLen),
		objType: a.u32(nftaSetObjType), timeout: a.u64(nftaSetTimeout),
		gcInterval: a.u32(nftaSetGCInterval),
	}
	if a.has(nftaSetPolicy) {
		s.policy, s.hasPolicy = a.u32(nftaSetPolicy), true
	}
	if desc := a.nested(nftaSetDesc); desc != nil {
		s.size = desc.u32(nftaSetDescSize)
		if c, ok := desc.lookup(nftaSetDescConcat); ok {
			list, _ := attrs(c)
			for _, f := range list {
				if fm, err := parseAttrs(f.data); err == nil {
					s.fieldLens = append(s.fieldLens, fm.u32(nftaSetFieldLen))
				}
			}
		}
	}
	if b, ok := a.lookup(nftaSetUserdata); ok {
		u := parseUdata(b)
		if v, ok := u.u32(udataSetKeyByteorder); ok {
			s.keyOrder, s.hasKeyOrd = udataOrder(v), true
		}
		if v, ok := u.u32(udataSetDataByteorder); ok {
			s.dataOrder, s.hasDataOrd = udataOrder(v), true
		}
		if v, ok := u.u32(udataSetMerge); ok && v != 0 {
			s.merge = true
		}
		s.comment, _ = u.str(udataSetComment)
		s.keyTypeof = u[udataSetKeyTypeof]
		s.dataTypeof = u[udataSetDataTypeof]
		if v, ok := u.u32(udataSetDataInterval); ok && v != 0 {
			s.dataInterval = true
		}
	}
	if b, ok := a.lookup(nftaSetExpr); ok {
		if e, err := parseExpr(b); err == nil {
			s.exprs = append(s.exprs, e)
		}
	}
	if b, ok := a.lookup(nftaSetExpressions); ok {
		s.exprs = append(s.exprs, parseExprList(b)...)
	}
	return s, nil
}

// udataOrder maps nft's byte order enum (1 host, 2 big endian) to ours.
func udataOrder(v uint32) byteOrder {
	if v == 1 {
		return hostOrder
	}
	return bigEndian
}

// parseElems decodes the messages of one element dump.
func parseElems(msgs []Msg) ([]elem, error) {
	var lists [][]attr
	n := 0
	for _, m := range msgs {
		if len(m) < 4 {
			return nil, errShort
		}
		a, err := parseAttrs(m[4:])
		if err != nil {
			return nil, fmt.Errorf("elements: %w", err)
		}
		list, err := attrs(a.get(nftaSetElemListElements))
		if err != nil {
			return nil, fmt.Errorf("elements: %w", err)
		}
		lists = append(lists, list)
		n += len(list)
	}
	out := make([]elem, n)
	i := 0
	for _, list := range lists {
		for _, la := range list {
			if err := parseElem(la.data, &out[i]); err != nil {
				return nil, err
			}
			i++
		}
	}
	return out, nil
}

func parseElem(b []byte, e *elem) error {
	list, err := attrs(b)
	if err != nil {
		return fmt.Errorf("element: %w", err)
	}
	for _, a := range list {
		switch a.typ {
		case nftaSetElemFlags:
			e.flags = be32(a.data)
		case nftaSetElemObjref:
			e.objref = cstr(a.data)
		case nftaSetElemKey:
			e.key = dataValue(a.data)
		case nftaSetElemKeyEnd:
			e.keyEnd = dataValue(a.data)
		case nftaSetElemData:
			if v, ok := dataVerdict(a.data); ok {
				e.verdict = &v
			} else {
				e.data = dataValue(a.data)
			}
		case nftaSetElemTimeout:
			if len(a.data) >= 8 {
				e.timeout, e.hasTimeout = binary.BigEndian.Uint64(a.data), true
			}
		case nftaSetElemUserdata:
			e.comment, _ = parseUdata(a.data).str(udataElemComment)
		case nftaSetElemExpr:
			if ex, err := parseExpr(a.data); err == nil {
				e.exprs = append(e.exprs, ex)
			}
		case nftaSetElemExpressions:
			e.exprs = append(e.exprs, parseExprList(a.data)...)
		}
	}
	return nil
}

// part describes one component of a set key or data: datatype, width in bytes, byte
// order, the width in bits the type prints with, and for a header field narrower than
// the bytes it is loaded from, how far its value sits from the low end.
type part struct {
	dt    *dtype
	bytes int
	order byteOrder
	bits  int
	shift int
}

// splitTypes splits a concatenated type id into component datatypes.
func splitTypes(id uint32) []*dtype {
	if d, ok := dtypeByID[id]; ok {
		return []*dtype{d}
	}
	var out []*dtype
	for id != 0 {
		d, ok := dtypeByID[id&0x3f]
		if !ok {
			d = dtInteger
		}
		out = append([]*dtype{d}, out...)
		id >>= 6
	}
	return out
}

// defaultOrder is the byte order nft stores values of a datatype in.
func defaultOrder(d *dtype) byteOrder {
	switch d.id {
	case tMark, tIfindex, tARPHRD, tRealm, tClassid, tUID, tGID, tCtState, tCtStatus,
		tCtLabel, tDevgroup, tCtEvent, tTimeDate, tTimeHour, tTimeDay, tCgroupV2, tTime,
		tFIBAddr, tPktType, tNfproto, tCtDir:
		return hostOrder
	case tString, tIfname:
		return hostOrder
	}
	return bigEndian
}

// keyParts returns the key components of the set, sized from the concat description,
// the datatypes, or the key length.
func (s *setInfo) keyParts() []part {
	ps := s.parts(s.keyType, s.keyLen, s.fieldLens, s.keyOrder, s.hasKeyOrd)
	if tps, ok := typeofParts(s.keyTypeof, s.family); ok && len(tps) == len(ps) {
		ps = tps
	}
	if s.isInterval() {
		// Interval sets compare keys bytewise, so nft stores every key big-endian.
		for i := range ps {
			ps[i].order = bigEndian
		}
	}
	return ps
}

func (s *setInfo) dataParts() []part {
	if s.dataType == verdictType {
		return []part{{dt: dtVerdict}}
	}
	ps := s.parts(s.dataType, s.dataLen, nil, s.dataOrder, s.hasDataOrd)
	if tps, ok := typeofParts(s.dataTypeof, s.family); ok && len(tps) == len(ps) {
		ps = tps
	}
	if s.dataInterval {
		for i := range ps {
			ps[i].order = bigEndian
		}
	}
	return ps
}

func (s *setInfo) parts(id, total uint32, lens []uint32, ord byteOrder, hasOrd bool) []part {
	types := splitTypes(id)
	out := make([]part, len(types))
	rest := int(total)
	if s.dataInterval && id == s.dataType {
		rest /= 2 // the data holds a low and a high value
	}
	for i, d := range types {
		n := (d.bits + 7) / 8
		if i < len(lens) {
			n = int(lens[i])
		} else if len(types) == 1 || n == 0 {
			n = rest
		}
		o := defaultOrder(d)
		if len(types) == 1 && hasOrd && d.id != tString && d.id != tIfname {
			o = ord
		}
		out[i] = part{dt: d, bytes: max(n, 0), order: o, bits: d.bits}
		rest -= pad4(n)
	}
	return out
}

func pad4(n int) int { return (n + 3) &^ 3 }

// formatParts prints a (possibly concatenated) key value.
func (e *env) formatParts(parts []part, b []byte) string {
	return e.formatPartsAs(parts, b, false)
}

func (e *env) formatPartsAs(parts []part, b []byte, numeric bool) string {
	if len(parts) == 1 {
		return e.formatPart(parts[0], b, numeric)
	}
	var out []string
	for _, p := range parts {
		n := max(0, min(p.bytes, len(b)))
		out = append(out, e.formatPart(p, b[:n], numeric))
		b = b[max(0, min(pad4(p.bytes), len(b))):]
	}
	return strings.Join(out, " . ")
}

func (e *env) formatPart(p part, b []byte, numeric bool) string {
	if p.bytes > 0 && len(b) > p.bytes {
		b = b[:p.bytes]
	}
	v := value{b: b, order: p.order}
	if p.shift > 0 {
		n := v.uint() >> p.shift
		v = value{b: u64be(n, len(b))}
	}
	bits := p.bits
	if bits == 0 {
		bits = p.dt.bits
	}
	return e.formatAs(p.dt, v, bits, numeric)
}

// elemText is one printed element with the key it sorts by.
type elemText struct {
	sortKey []byte
	text    string
}

// renderElems prints the set's elements as nft prints them inside `{ … }`. keyParts
// and dataParts type the values (a rule may type an anonymous set more precisely than
// the set's own declaration). Interval sets are merged into prefixes and ranges.
func (e *env) renderElems(s *setInfo, keyParts, dataParts []part) []elemText {
	var out []elemText
	if s.isInterval() && len(keyParts) == 1 && !hasKeyEnds(s.elements()) {
		out = e.renderIntervals(s, keyParts[0], dataParts)
	} else {
		for _, el := range s.elements() {
			if el.flags&elemFlagIntervalEnd != 0 {
				continue
			}
			var key string
			var sortKey []byte
			switch {
			case el.flags&elemFlagCatchall != 0:
				key = "*"
				sortKey = []byte{0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff}
			case el.keyEnd != nil:
				key = e.formatRangeParts(keyParts, el.key, el.keyEnd)
				sortKey = sortBytes(keyParts, el.key)
			default:
				key = e.formatParts(keyParts, el.key)
				sortKey = sortBytes(keyParts, el.key)
			}
			out = append(out, elemText{sortKey, key + e.elemSuffix(s, el, dataParts)})
		}
	}
	return out
}

func hasKeyEnds(els []elem) bool {
	for _, el := range els {
		if el.keyEnd != nil {
			return true
		}
	}
	return false
}

// sortBytes is the element's key as one big-endian number, as nft sorts them: keys in
// host order (and concatenations, whose components nft imports as one host-order
// number) compare from their last byte.
//
// A flag value with several bits set (`fin | psh | ack`) is an OR of flags to nft, which
// sorts it by its first flag, the lowest bit; values with the same lowest bit keep the
// kernel's order in nft's listing, which depends on the set's hash. The model breaks such
// ties by value instead, so that its text does not change with the kernel's hash order.
func sortBytes(parts []part, b []byte) []byte {
	if len(parts) == 1 && parts[0].dt.kind == kBitmask {
		v := value{b: b, order: parts[0].order}.be()
		return append(lowestBit(v), v...)
	}
	if len(parts) == 1 && parts[0].order != hostOrder {
		return b
	}
	return value{b: b, order: hostOrder}.be()
}

// lowestBit returns the big-endian value with only the lowest set bit of v.
func lowestBit(v []byte) []byte {
	out := make([]byte, len(v))
	for i := len(v) - 1; i >= 0; i-- {
		if v[i] != 0 {
			out[i] = v[i] & -v[i]
			break
		}
	}
	return out
}

// elemSuffix prints what follows an element's key: its statements, timeout, comment and
// mapped data.
func (e *env) elemSuffix(s *setInfo, el elem, dataParts []part) string {
	var sb strings.Builder
	for _, x := range el.exprs {
		sb.WriteString(" " + e.setExprText(x))
	}
	if el.hasTimeout && el.timeout != s.timeout {
		sb.WriteString(" timeout " + formatDuration(el.timeout))
	}
	if el.comment != "" {
		sb.WriteString(` comment "` + el.comment + `"`)
	}
	switch {
	case el.verdict != nil:
		sb.WriteString(" : " + verdictText(*el.verdict))
	case el.objref != "":
		sb.WriteString(` : "` + el.objref + `"`)
	case s.isMap() && el.data != nil && s.dataInterval:
		half := len(el.data) / 2
		lo, hi := el.data[:half], el.data[half:]
		if len(dataParts) == 1 && dataParts[0].dt.prefix && bytes.Equal(lo, hi) {
			// A single address as an interval is a full-length prefix to nft.
			sb.WriteString(" : " + e.formatPart(dataParts[0], lo, false) + "/" +
				itoa(uint64(len(lo)*8)))
			break
		}
		sb.WriteString(" : " + e.formatRangeParts(dataParts, lo, hi))
	case s.isMap() && el.data != nil:
		sb.WriteString(" : " + e.formatParts(dataParts, el.data))
	}
	return sb.String()
}

func (e *env) formatRangeParts(parts []part, lo, hi []byte) string {
	if len(parts) == 1 {
		return e.formatRange(parts[0], lo, hi)
	}
	var out []string
	for _, p := range parts {
		n := min(p.bytes, len(lo), len(hi))
		n = max(n, 0)
		out = append(out, e.formatRange(p, lo[:n], hi[:n]))
		adv := max(0, min(pad4(p.bytes), len(lo), len(hi)))
		lo, hi = lo[adv:], hi[adv:]
	}
	return strings.Join(out, " . ")
}

// formatRange prints lo-hi as a single value, a prefix or a range.
func (e *env) formatRange(p part, lo, hi []byte) string {
	if bytes.Equal(lo, hi) {
		return e.formatPart(p, lo, false)
	}
	lv, hv := value{b: lo, order: p.order}, value{b: hi, order: p.order}
	if p.dt.kind == kString {
		if w, ok := wildcard(lo, hi); ok {
			return w
		}
	}
	if p.dt.prefix {
		if n, ok := prefixOf(lv.be(), hv.be()); ok {
			return e.formatPart(p, lo, false) + "/" + itoa(uint64(n))
		}
	}
	return e.formatPart(p, lo, true) + "-" + e.formatPart(p, hi, true)
}

// prefixOf reports whether [lo, hi] is exactly a prefix and its length.
func prefixOf(lo, hi []byte) (int, bool) {
	if len(lo) != len(hi) {
		return 0, false
	}
	bits := len(lo) * 8
	n := 0
	for n < bits && bit(lo, n) == bit(hi, n) {
		n++
	}
	for i := n; i < bits; i++ {
		if bit(lo, i) != 0 || bit(hi, i) != 1 {
			return 0, false
		}
	}
	return n, true
}

func bit(b []byte, i int) byte { return b[i/8] >> (7 - i%8) & 1 }

// bound is one end of an interval as the kernel stores it.
type bound struct {
	k   []byte // big-endian key
	end bool   // the exclusive end of an interval
	el  *elem
}

// renderIntervals merges the start and end elements of an interval set into ranges.
func (e *env) renderIntervals(s *setInfo, kp part, dataParts []part) []elemText {
	elems := s.elements()
	bs := make([]bound, 0, len(elems))
	for i := range elems {
		el := &elems[i]
		if el.flags&elemFlagCatchall != 0 {
			continue
		}
		v := value{b: el.key, order: kp.order}
		bs = append(bs, bound{k: v.be(), end: el.flags&elemFlagIntervalEnd != 0, el: el})
	}
	slices.SortFunc(bs, func(a, b bound) int {
		if c := bytes.Compare(a.k, b.k); c != 0 {
			return c
		}
		// At equal keys an end closes the previous range before a start opens one.
		if a.end != b.end {
			if a.end {
				return -1
			}
			return 1
		}
		return 0
	})
	var out []elemText
	for i := 0; i < len(bs); i++ {
		if bs[i].end {
			continue
		}
		// A range runs up to the next bound: an end, or the start of an adjacent range
		// (nft stores no end between adjacent ranges), or to the maximum.
		start := bs[i]
		hi := bytes.Repeat([]byte{0xff}, len(start.k))
		if i+1 < len(bs) {
			hi = decrement(bs[i+1].k)
			if bs[i+1].end {
				i++
			}
		}
		text := e.formatRange(kp, fromBE(start.k, kp.order), fromBE(hi, kp.order))
		out = append(out, elemText{start.k, text + e.elemSuffix(s, *start.el, dataParts)})
	}
	for _, el := range elems {
		if el.flags&elemFlagCatchall != 0 {
			all := bytes.Repeat([]byte{0xff}, 17)
			out = append(out, elemText{all, "*" + e.elemSuffix(s, el, dataParts)})
		}
	}
	return out
}

func decrement(b []byte) []byte {
	out := slices.Clone(b)
	for i := len(out) - 1; i >= 0; i-- {
		if out[i] != 0 {
			out[i]--
			return out
		}
		out[i] = 0xff
	}
	return out
}

func fromBE(b []byte, o byteOrder) []byte {
	if o == bigEndian {
		return b
	}
	return value{b: b, order: hostOrder}.be() // reversing is its own inverse
}

// hexText is the lossless fallback for bytes nothing else can print.
func hexText(b []byte) string { return hex.EncodeToString(b) }

// wildcard prints an interval of strings sharing a prefix as that prefix and "*"
// (`"eth*"`), which is how nft stores interface name wildcards in interval sets.
func wildcard(lo, hi []byte) (string, bool) {
	i := 0
	for i < len(lo) && i < len(hi) && lo[i] == hi[i] {
		i++
	}
	if i == 0 || len(lo) != len(hi) {
		return "", false
	}
	for j := i; j < len(lo); j++ {
		if lo[j] != 0 || hi[j] != 0xff {
			return "", false
		}
	}
	return `"` + string(lo[:i]) + `*"`, true
}
