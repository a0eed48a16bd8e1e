package nftcanon

import (
	"encoding/binary"
	"fmt"
	"math/big"
	"slices"
	"strconv"
	"strings"
	"time"
)

// byteOrder is how a value sits in a register: network (big-endian) or host order.
type byteOrder uint8

const (
	bigEndian byteOrder = iota
	hostOrder
)

// kind selects how a datatype's values print.
type kind uint8

const (
	kInteger kind = iota // decimal
	kHex                 // 0x-prefixed, zero padded to the width
	kIPv4
	kIPv6
	kLLAddr  // colon-separated hex bytes
	kString  // quoted, NUL-terminated
	kIfindex // interface name, quoted, or the number
	kBitmask // symbol names joined by ","
	kSymbol  // one symbol name, else the integer
	kClassid
	kUID
	kGID
	kTime  // absolute time in ns
	kHour  // seconds since midnight
	kDay   // day of week
	kMsecs // relative time in ms (ct expiration)
	kVerdict
	kBoolean
	kProto // inet_proto
	kLabel
	kRawHex    // 0x-prefixed, unpadded (raw payload loads)
	kQuotedSym // a quoted symbol name, else the integer
)

// dtype is one of nft's datatypes: its name in `type` declarations, its id in set
// key/data type fields, its size and how its values print.
type dtype struct {
	name string
	id   uint32
	bits int
	kind kind
	syms []sym // for kSymbol and kBitmask
	// symHex prints values without a symbol in hex (integer-based types print decimal).
	symHex bool
	// prefix: a masked match of this type prints as a prefix (10.0.0.0/8).
	prefix bool
	desc   string // nft's description, used in error-free fallbacks
}

type sym struct {
	name string
	val  uint64
}

// Datatype ids as nft numbers them (enum datatypes).
const (
	tInvalid     = 0
	tVerdict     = 1
	tNfproto     = 2
	tBitmask     = 3
	tInteger     = 4
	tString      = 5
	tLLAddr      = 6
	tIPAddr      = 7
	tIP6Addr     = 8
	tEtherAddr   = 9
	tEtherType   = 10
	tARPOp       = 11
	tInetProto   = 12
	tInetService = 13
	tICMPType    = 14
	tTCPFlag     = 15
	tDCCPPktType = 16
	tMHType      = 17
	tTime        = 18
	tMark        = 19
	tIfindex     = 20
	tARPHRD      = 21
	tRealm       = 22
	tClassid     = 23
	tUID         = 24
	tGID         = 25
	tCtState     = 26
	tCtDir       = 27
	tCtStatus    = 28
	tICMP6Type   = 29
	tCtLabel     = 30
	tPktType     = 31
	tICMPCode    = 32
	tICMP6Code   = 33
	tICMPXCode   = 34
	tDevgroup    = 35
	tDSCP        = 36
	tECN         = 37
	tFIBAddr     = 38
	tBoolean     = 39
	tCtEvent     = 40
	tIfname      = 41
	tIGMPType    = 42
	tTimeDate    = 43
	tTimeHour    = 44
	tTimeDay     = 45
	tCgroupV2    = 46
)

var (
	dtInvalid = &dtype{name: "invalid", id: tInvalid, kind: kInteger}
	dtVerdict = &dtype{name: "verdict", id: tVerdict, kind: kVerdict}
	dtNfproto = &dtype{name: "nf_proto", id: tNfproto, bits: 8, kind: kSymbol, syms: []sym{
		{"ipv4", 2}, {"ipv6", 10}}}
	dtBitmask = &dtype{name: "bitmask", id: tBitmask, kind: kRawHex}
	dtInteger = &dtype{name: "integer", id: tInteger, kind: kInteger}
	dtString  = &dtype{name: "string", id: tString, kind: kString}
	dtLLAddr  = &dtype{name: "ll_addr", id: tLLAddr, kind: kLLAddr}
	dtIPv4    = &dtype{name: "ipv4_addr", id: tIPAddr, bits: 32, kind: kIPv4, prefix: true}
	dtIPv6    = &dtype{name: "ipv6_addr", id: tIP6Addr, bits: 128, kind: kIPv6, prefix: true}
	dtEther   = &dtype{name: "ether_addr", id: tEtherAddr, bits: 48, kind: kLLAddr}
	dtEthType = &dtype{name: "ether_type", id: tEtherType, bits: 16, kind: kSymbol, symHex: true,
		syms: []sym{
			{"ip", 0x0800}, {"arp", 0x0806}, {"ip6", 0x86dd}, {"8021q", 0x8100},
			{"8021ad", 0x88a8}, {"vlan", 0x8100}}}
	dtARPOp = &dtype{name: "arp_op", id: tARPOp, bits: 16, kind: kSymbol, syms: []sym{
		{"request", 1}, {"reply", 2}, {"rrequest", 3}, {"rreply", 4}, {"inrequest", 8},
		{"inreply", 9}, {"nak", 10}}}
	dtInetProt = &dtype{name: "inet_proto", id: tInetProto, bits: 8, kind: kProto}
	dtService  = &dtype{name: "inet_service", id: tInetService, bits: 16, kind: kInteger}
	dtICMPType = &dtype{name: "icmp_type", id: tICMPType, bits: 8, kind: kSymbol, syms: []sym{
		{"echo-reply", 0}, {"destination-unreachable", 3}, {"source-quench", 4}, {"redirect", 5},
		{"echo-request", 8}, {"router-advertisement", 9}, {"router-solicitation", 10},
		{"time-exceeded", 11}, {"parameter-problem", 12}, {"timestamp-request", 13},
		{"timestamp-reply", 14}, {"info-request", 15}, {"info-reply", 16},
		{"address-mask-request", 17}, {"address-mask-reply", 18}}}
	dtTCPFlag = &dtype{name: "tcp_flag", id: tTCPFlag, bits: 8, kind: kBitmask, syms: []sym{
		{"fin", 0x01}, {"syn", 0x02}, {"rst", 0x04}, {"psh", 0x08}, {"ack", 0x10}, {"urg", 0x20},
		{"ecn", 0x40}, {"cwr", 0x80}}}
	dtDCCPPkt = &dtype{name: "dccp_pkttype", id: tDCCPPktType, bits: 4, kind: kSymbol, syms: []sym{
		{"request", 0}, {"response", 1}, {"data", 2}, {"ack", 3}, {"dataack", 4}, {"closereq", 5},
		{"close", 6}, {"reset", 7}, {"sync", 8}, {"syncack", 9}}}
	dtMHType = &dtype{name: "mh_type", id: tMHType, bits: 8, kind: kSymbol, syms: []sym{
		{"binding-refresh-request", 0}, {"home-test-init", 1}, {"careof-test-init", 2},
		{"home-test", 3}, {"careof-test", 4}, {"binding-update", 5},
		{"binding-acknowledgement", 6}, {"binding-error", 7}, {"fast-binding-update", 8},
		{"fast-binding-acknowledgement", 9}, {"fast-binding-advertisement", 10},
		{"experimental-mobility-header", 11}, {"home-agent-switch-message", 12}}}
	dtTime    = &dtype{name: "time", id: tTime, bits: 64, kind: kMsecs}
	dtMark    = &dtype{name: "mark", id: tMark, bits: 32, kind: kHex}
	dtIfindex = &dtype{name: "iface_index", id: tIfindex, bits: 32, kind: kIfindex}
	dtARPHRD  = &dtype{name: "iface_type", id: tARPHRD, bits: 16, kind: kSymbol, syms: []sym{
		{"ether", 1}, {"ppp", 512}, {"ipip", 768}, {"ipip6", 769}, {"loopback", 772},
		{"sit", 776}, {"ipgre", 778}}}
	// Realms and device groups print with the names of iproute2's default tables.
	// TODO: nft reads /etc/iproute2/{rt_realms,group}; only the defaults are known here.
	dtRealm = &dtype{name: "realm", id: tRealm, bits: 32, kind: kQuotedSym, syms: []sym{
		{"cosmos", 0}}}
	dtClassid = &dtype{name: "classid", id: tClassid, bits: 32, kind: kClassid}
	dtUID     = &dtype{name: "uid", id: tUID, bits: 32, kind: kUID}
	dtGID     = &dtype{name: "gid", id: tGID, bits: 32, kind: kGID}
	dtCtState = &dtype{name: "ct_state", id: tCtState, bits: 32, kind: kBitmask, syms: []sym{
		{"invalid", 1}, {"established", 2}, {"related", 4}, {"new", 8}, {"untracked", 64}}}
	dtCtDir = &dtype{name: "ct_dir", id: tCtDir, bits: 8, kind: kSymbol, syms: []sym{
		{"original", 0}, {"reply", 1}}}
	dtCtStatus = &dtype{name: "ct_status", id: tCtStatus, bits: 32, kind: kBitmask, syms: []sym{
		{"expected", 1}, {"seen-reply", 2}, {"assured", 4}, {"confirmed", 8}, {"snat", 16},
		{"dnat", 32}, {"dying", 512}}}
	dtICMP6 = &dtype{name: "icmpv6_type", id: tICMP6Type, bits: 8, kind: kSymbol, syms: []sym{
		{"destination-unreachable", 1}, {"packet-too-big", 2}, {"time-exceeded", 3},
		{"parameter-problem", 4}, {"echo-request", 128}, {"echo-reply", 129},
		{"mld-listener-query", 130}, {"mld-listener-report", 131}, {"mld-listener-done", 132},
		{"nd-router-solicit", 133}, {"nd-router-advert", 134}, {"nd-neighbor-solicit", 135},
		{"nd-neighbor-advert", 136}, {"nd-redirect", 137}, {"router-renumbering", 138},
		{"ind-neighbor-solicit", 141}, {"ind-neighbor-advert", 142},
		{"mld2-listener-report", 143}}}
	dtCtLabel = &dtype{name: "ct_label", id: tCtLabel, bits: 128, kind: kLabel}
	dtPktType = &dtype{name: "pkt_type", id: tPktType, bits: 8, kind: kSymbol, syms: []sym{
		{"host", 0}, {"broadcast", 1}, {"multicast", 2}, {"other", 3}}}
	dtICMPCode = &dtype{name: "icmp_code", id: tICMPCode, bits: 8, kind: kSymbol, syms: []sym{
		{"net-unreachable", 0}, {"host-unreachable", 1}, {"prot-unreachable", 2},
		{"port-unreachable", 3}, {"frag-needed", 4}, {"net-prohibited", 9},
		{"host-prohibited", 10}, {"admin-prohibited", 13}}}
	dtICMP6Code = &dtype{name: "icmpv6_code", id: tICMP6Code, bits: 8, kind: kSymbol, syms: []sym{
		{"no-route", 0}, {"admin-prohibited", 1}, {"addr-unreachable", 3},
		{"port-unreachable", 4}, {"policy-fail", 5}, {"reject-route", 6}}}
	dtICMPXCode = &dtype{name: "icmpx_code", id: tICMPXCode, bits: 8, kind: kSymbol, syms: []sym{
		{"port-unreachable", 1}, {"admin-prohibited", 3}, {"no-route", 0}, {"host-unreachable", 2}}}
	dtDevgroup = &dtype{name: "devgroup", id: tDevgroup, bits: 32, kind: kQuotedSym, syms: []sym{
		{"default", 0}}}
	dtDSCP = &dtype{name: "dscp", id: tDSCP, bits: 6, kind: kSymbol, symHex: true, syms: []sym{
		{"cs0", 0x00}, {"cs1", 0x08}, {"cs2", 0x10}, {"cs3", 0x18}, {"cs4", 0x20}, {"cs5", 0x28},
		{"cs6", 0x30}, {"cs7", 0x38}, {"df", 0x00}, {"be", 0x00}, {"lephb", 0x01},
		{"af11", 0x0a}, {"af12", 0x0c}, {"af13", 0x0e}, {"af21", 0x12}, {"af22", 0x14},
		{"af23", 0x16}, {"af31", 0x1a}, {"af32", 0x1c}, {"af33", 0x1e}, {"af41", 0x22},
		{"af42", 0x24}, {"af43", 0x26}, {"va", 0x2c}, {"ef", 0x2e}}}
	dtECN = &dtype{name: "ecn", id: tECN, bits: 2, kind: kSymbol, symHex: true, syms: []sym{
		{"not-ect", 0}, {"ect1", 1}, {"ect0", 2}, {"ce", 3}}}
	dtFIBAddr = &dtype{name: "fib_addrtype", id: tFIBAddr, bits: 32, kind: kSymbol, syms: []sym{
		{"unspec", 0}, {"unicast", 1}, {"local", 2}, {"broadcast", 3}, {"anycast", 4},
		{"multicast", 5}, {"blackhole", 6}, {"unreachable", 7}, {"prohibit", 8}, {"throw", 9},
		{"nat", 10}, {"xresolve", 11}}}
	dtBoolean = &dtype{name: "boolean", id: tBoolean, bits: 1, kind: kBoolean}
	dtCtEvent = &dtype{name: "ct_event", id: tCtEvent, bits: 32, kind: kBitmask, syms: []sym{
		{"new", 1}, {"related", 2}, {"destroy", 4}, {"reply", 8}, {"assured", 16},
		{"protoinfo", 32}, {"helper", 64}, {"mark", 128}, {"seqadj", 256}, {"secmark", 512},
		{"label", 1024}}}
	dtIfname   = &dtype{name: "ifname", id: tIfname, bits: 128, kind: kString}
	dtIGMPType = &dtype{name: "igmp_type", id: tIGMPType, bits: 8,
		kind: kSymbol, symHex: true, syms: []sym{
			{"membership-query", 0x11}, {"membership-report-v1", 0x12},
			{"membership-report-v2", 0x16}, {"membership-report-v3", 0x22}, {"leave-group", 0x17}}}
	dtTimeDate = &dtype{name: "time", id: tTimeDate, bits: 64, kind: kTime}
	dtTimeHour = &dtype{name: "hour", id: tTimeHour, bits: 32, kind: kHour}
	dtTimeDay  = &dtype{name: "day", id: tTimeDay, bits: 8, kind: kDay}
	dtCgroupV2 = &dtype{name: "cgroupsv2", id: tCgroupV2, bits: 64, kind: kInteger}
	// dtRaw types raw payload loads (`@nh,8,8 0xff`).
	dtRaw = &dtype{name: "integer", id: tInteger, kind: kRawHex}
)

var dtypeByID = map[uint32]*dtype{}

func init() {
	for _, d := range []*dtype{dtVerdict, dtNfproto, dtBitmask, dtInteger, dtString, dtLLAddr,
		dtIPv4, dtIPv6, dtEther, dtEthType, dtARPOp, dtInetProt, dtService, dtICMPType,
		dtTCPFlag, dtDCCPPkt, dtMHType, dtTime, dtMark, dtIfindex, dtARPHRD, dtRealm,
		dtClassid, dtUID, dtGID, dtCtState, dtCtDir, dtCtStatus, dtICMP6, dtCtLabel,
		dtPktType, dtICMPCode, dtICMP6Code, dtICMPXCode, dtDevgroup, dtDSCP, dtECN,
		dtFIBAddr, dtBoolean, dtCtEvent, dtIfname, dtIGMPType, dtTimeDate, dtTimeHour,
		dtTimeDay, dtCgroupV2} {
		dtypeByID[d.id] = d
	}
}

// protoNames are the IP protocol names of the netbase /etc/protocols that nft prints.
var protoNames = map[uint64]string{
	0: "ip", 1: "icmp", 2: "igmp", 3: "ggp", 4: "ipencap", 5: "st", 6: "tcp", 8: "egp",
	9: "igp", 12: "pup", 17: "udp", 20: "hmp", 22: "xns-idp", 27: "rdp", 29: "iso-tp4",
	33: "dccp", 36: "xtp", 37: "ddp", 38: "idpr-cmtp", 41: "ipv6", 43: "ipv6-route",
	44: "ipv6-frag", 45: "idrp", 46: "rsvp", 47: "gre", 50: "esp", 51: "ah", 57: "skip",
	58: "ipv6-icmp", 59: "ipv6-nonxt", 60: "ipv6-opts", 73: "rspf", 81: "vmtp", 88: "eigrp",
	89: "ospf", 93: "ax.25", 94: "ipip", 97: "etherip", 98: "encap", 103: "pim", 108: "ipcomp",
	112: "vrrp", 115: "l2tp", 124: "isis", 132: "sctp", 133: "fc", 135: "mobility-header",
	136: "udplite", 137: "mpls-in-ip", 138: "manet", 139: "hip", 140: "shim6", 141: "wesp",
	142: "rohc", 143: "ethernet",
}

// value is a constant as it sits in a register, with the order it is stored in.
type value struct {
	b     []byte
	order byteOrder
}

// be returns the value's bytes in big-endian order.
func (v value) be() []byte {
	if v.order == bigEndian || len(v.b) <= 1 {
		return v.b
	}
	out := make([]byte, len(v.b))
	for i := range v.b {
		out[i] = v.b[len(v.b)-1-i]
	}
	return out
}

// uint returns the value as an integer (the low 64 bits).
func (v value) uint() uint64 {
	b := v.be()
	var n uint64
	for _, c := range b {
		n = n<<8 | uint64(c)
	}
	return n
}

func (v value) big() *big.Int { return new(big.Int).SetBytes(v.be()) }

func (v value) isZero() bool {
	for _, c := range v.b {
		if c != 0 {
			return false
		}
	}
	return true
}

// env carries what printing needs from outside the rule: interface names.
type env struct {
	ifnames map[uint32]string
	// flagSep joins flags in values printed as set elements or compared with == (" | "),
	// instead of the "," of flag tests.
	flagSep string
}

// format prints v as nft prints a value of type dt that is bits wide.
func (e *env) format(dt *dtype, v value, bits int) string { return e.formatAs(dt, v, bits, false) }

// formatAs prints a value; numeric selects the numeric form nft uses for the bounds of
// ranges (`meta l4proto 33-45`, `ct expiration 66s-88s`).
func (e *env) formatAs(dt *dtype, v value, bits int, numeric bool) string {
	if dt == nil {
		dt = dtInteger
	}
	if numeric {
		switch dt.kind {
		case kSymbol, kProto, kUID, kGID:
			if dt.symHex {
				return formatHex(v, bits)
			}
			return strconv.FormatUint(v.uint(), 10)
		case kMsecs:
			if ms := v.uint(); ms%1000 == 0 {
				return strconv.FormatUint(ms/1000, 10) + "s"
			}
		}
	}
	switch dt.kind {
	case kIPv4:
		b := v.be()
		if len(b) < 4 {
			b = padLeft(b, 4)
		}
		return fmt.Sprintf("%d.%d.%d.%d", b[0], b[1], b[2], b[3])
	case kIPv6:
		return formatIPv6(padLeft(v.be(), 16))
	case kLLAddr:
		b := v.b
		parts := make([]string, len(b))
		for i, c := range b {
			parts[i] = fmt.Sprintf("%02x", c)
		}
		return strings.Join(parts, ":")
	case kString:
		return formatString(v.b, true)
	case kIfindex:
		n := uint32(v.uint())
		if name, ok := e.ifnames[n]; ok {
			return `"` + name + `"`
		}
		return strconv.FormatUint(uint64(n), 10)
	case kBitmask:
		return formatBitmask(dt, v, bits, e.flagSep)
	case kLabel:
		var labels []string
		b := v.be()
		for i := len(b)*8 - 1; i >= 0; i-- {
			if b[len(b)-1-i/8]>>(i%8)&1 == 1 {
				labels = append(labels, strconv.Itoa(i))
			}
		}
		if len(labels) == 0 {
			return "0x0"
		}
		slices.Reverse(labels)
		return strings.Join(labels, ",")
	case kSymbol:
		n := v.uint()
		for _, s := range dt.syms {
			if s.val == n {
				return s.name
			}
		}
		if dt.symHex {
			return formatHex(v, bits)
		}
		return strconv.FormatUint(n, 10)
	case kQuotedSym:
		for _, sy := range dt.syms {
			if sy.val == v.uint() {
				return `"` + sy.name + `"`
			}
		}
		return strconv.FormatUint(v.uint(), 10)
	case kProto:
		if name, ok := protoNames[v.uint()]; ok {
			return name
		}
		return strconv.FormatUint(v.uint(), 10)
	case kHex:
		return formatHex(v, bits)
	case kRawHex:
		return "0x" + v.big().Text(16)
	case kClassid:
		n := uint32(v.uint())
		switch n {
		case 0xffffffff:
			return "root"
		case 0:
			return "none"
		}
		return fmt.Sprintf("%x:%x", n>>16, n&0xffff)
	case kBoolean:
		if v.isZero() {
			return "missing"
		}
		return "exists"
	case kDay:
		days := []string{"Sunday", "Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday"}
		if n := v.uint(); n < 7 {
			return `"` + days[n] + `"`
		}
		return strconv.FormatUint(v.uint(), 10)
	case kHour:
		n := v.uint()
		s := fmt.Sprintf("%02d:%02d", n/3600, n/60%60)
		if n%60 != 0 {
			s += fmt.Sprintf(":%02d", n%60)
		}
		return `"` + s + `"`
	case kTime:
		return formatDate(int64(v.uint()))
	case kMsecs:
		return formatDuration(v.uint())
	}
	if len(v.b) > 8 {
		return "0x" + fmt.Sprintf("%x", v.be())
	}
	return strconv.FormatUint(v.uint(), 10)
}

func padLeft(b []byte, n int) []byte {
	if len(b) >= n {
		return b[len(b)-n:]
	}
	out := make([]byte, n)
	copy(out[n-len(b):], b)
	return out
}

// formatHex prints 0x and the value zero-padded to the type's width in nibbles.
func formatHex(v value, bits int) string {
	digits := (bits + 3) / 4
	if digits == 0 {
		digits = 2 * len(v.b)
	}
	s := v.big().Text(16)
	if len(s) < digits {
		s = strings.Repeat("0", digits-len(s)) + s
	}
	return "0x" + s
}

func formatBitmask(dt *dtype, v value, bits int, sep string) string {
	if sep == "" {
		sep = ","
	}
	n := v.uint()
	if n == 0 {
		for _, s := range dt.syms {
			if s.val == 0 {
				return s.name
			}
		}
		return "0x0"
	}
	all := uint64(0)
	for _, s := range dt.syms {
		all |= s.val
	}
	if n == all && len(dt.syms) == bits {
		return "0x" + strconv.FormatUint(n, 16)
	}
	var parts []string
	for _, s := range dt.syms {
		if s.val != 0 && n&s.val == s.val {
			parts = append(parts, s.name)
			n &^= s.val
		}
	}
	if n != 0 {
		parts = append(parts, formatHex(value{b: u64be(n, (bits+7)/8)}, bits))
	}
	return strings.Join(parts, sep)
}

func u64be(n uint64, size int) []byte {
	if size <= 0 {
		size = 8
	}
	b := make([]byte, 8)
	binary.BigEndian.PutUint64(b, n)
	if size < 8 {
		return b[8-size:]
	}
	return padLeft(b, size)
}

// formatString prints a NUL-terminated string in quotes. A complete string that ends in
// "*" gets the star escaped, to tell it from a prefix match (`iifname "eth*"`).
func formatString(b []byte, full bool) string {
	i := 0
	for i < len(b) && b[i] != 0 {
		i++
	}
	s := string(b[:i])
	if full && strings.HasSuffix(s, "*") {
		s = s[:len(s)-1] + `\*`
	}
	return `"` + s + `"`
}

// formatIPv6 prints an IPv6 address as glibc's inet_ntop does: the longest run of two or
// more zero groups becomes "::", and an IPv4-mapped or -compatible address ends in
// dotted quad.
func formatIPv6(b []byte) string {
	var w [8]uint16
	for i := range w {
		w[i] = binary.BigEndian.Uint16(b[2*i:])
	}
	best, bestLen := -1, 0
	for i := 0; i < 8; {
		if w[i] != 0 {
			i++
			continue
		}
		j := i
		for j < 8 && w[j] == 0 {
			j++
		}
		if j-i > bestLen {
			best, bestLen = i, j-i
		}
		i = j
	}
	if bestLen < 2 {
		best = -1
	}
	var sb strings.Builder
	for i := 0; i < 8; i++ {
		if best >= 0 && i >= best && i < best+bestLen {
			if i == best {
				sb.WriteByte(':')
			}
			continue
		}
		if i != 0 {
			sb.WriteByte(':')
		}
		if i == 6 && best == 0 && (bestLen == 6 || (bestLen == 5 && w[5] == 0xffff)) {
			fmt.Fprintf(&sb, "%d.%d.%d.%d", b[12], b[13], b[14], b[15])
			break
		}
		sb.WriteString(strconv.FormatUint(uint64(w[i]), 16))
	}
	if best >= 0 && best+bestLen == 8 {
		sb.WriteByte(':')
	}
	return sb.String()
}

// formatDuration prints milliseconds as nft does: "1d2h3m4s5ms".
func formatDuration(ms uint64) string {
	if ms == 0 {
		return "0s"
	}
	var sb strings.Builder
	units := []struct {
		n uint64
		s string
	}{{86400000, "d"}, {3600000, "h"}, {60000, "m"}, {1000, "s"}, {1, "ms"}}
	for _, u := range units {
		if ms >= u.n {
			fmt.Fprintf(&sb, "%d%s", ms/u.n, u.s)
			ms %= u.n
		}
	}
	return sb.String()
}

// formatDate prints nanoseconds since the epoch as nft prints `meta time` values.
// TODO: nft prints local time; the agent's canonical text uses UTC, which matches nft on
// hosts running in UTC (firewall appliances usually do).
func formatDate(ns int64) string {
	return `"` + time.Unix(0, ns).UTC().Format("2006-01-02 15:04:05") + `"`
}
