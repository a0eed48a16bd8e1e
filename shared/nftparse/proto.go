package nftparse

// Payload bases.
const (
	baseLL = 0
	baseNH = 1
	baseTH = 2
)

type field struct {
	name string
	off  int // bits from the start of the header
	bits int
	dt   *dtype
}

// proto is a protocol header: where it sits and its fields. dep describes the match
// that makes the protocol known when nothing in the rule did.
type proto struct {
	name   string
	base   int
	hdrOff int // bits from the start of the base (vlan follows the ethernet header)
	fields []field
	// selector is the field that names the next header's protocol, if any.
	selector string
	// l4 is the IP protocol number of a transport header, l3 the ether type of a
	// network header.
	l4  uint64
	l3  uint64
	nfp uint64 // NFPROTO value for ip and ip6
}

func (p *proto) field(name string) *field {
	for i := range p.fields {
		if p.fields[i].name == name {
			return &p.fields[i]
		}
	}
	return nil
}

var (
	protoEther = &proto{name: "ether", base: baseLL, selector: "type", fields: []field{
		{"daddr", 0, 48, dtEther}, {"saddr", 48, 48, dtEther}, {"type", 96, 16, dtEthType}}}
	protoVlan = &proto{name: "vlan", base: baseLL, hdrOff: 112, selector: "type",
		fields: []field{{"pcp", 0, 3, dtInteger}, {"dei", 3, 1, dtInteger},
			{"cfi", 3, 1, dtInteger}, {"id", 4, 12, dtInteger}, {"type", 16, 16, dtEthType}}}
	protoARP = &proto{name: "arp", base: baseNH, l3: 0x0806, fields: []field{
		{"htype", 0, 16, dtInteger}, {"ptype", 16, 16, dtEthType}, {"hlen", 32, 8, dtInteger},
		{"plen", 40, 8, dtInteger}, {"operation", 48, 16, dtARPOp},
		{"saddr ether", 64, 48, dtEther}, {"saddr ip", 112, 32, dtIPv4},
		{"daddr ether", 144, 48, dtEther}, {"daddr ip", 192, 32, dtIPv4}}}
	protoIP = &proto{name: "ip", base: baseNH, selector: "protocol", l3: 0x0800, nfp: 2,
		fields: []field{{"version", 0, 4, dtInteger}, {"hdrlength", 4, 4, dtInteger},
			{"dscp", 8, 6, dtDSCP}, {"ecn", 14, 2, dtECN}, {"length", 16, 16, dtInteger},
			{"id", 32, 16, dtInteger}, {"frag-off", 48, 16, dtInteger},
			{"ttl", 64, 8, dtInteger}, {"protocol", 72, 8, dtInetProto},
			{"checksum", 80, 16, dtInteger}, {"saddr", 96, 32, dtIPv4},
			{"daddr", 128, 32, dtIPv4}}}
	protoIP6 = &proto{name: "ip6", base: baseNH, selector: "nexthdr", l3: 0x86dd, nfp: 10,
		fields: []field{{"version", 0, 4, dtInteger}, {"dscp", 4, 6, dtDSCP},
			{"ecn", 10, 2, dtECN}, {"flowlabel", 12, 20, dtInteger},
			{"length", 32, 16, dtInteger}, {"nexthdr", 48, 8, dtInetProto},
			{"hoplimit", 56, 8, dtInteger}, {"saddr", 64, 128, dtIPv6},
			{"daddr", 192, 128, dtIPv6}}}
	protoTCP = &proto{name: "tcp", base: baseTH, l4: 6, fields: []field{
		{"sport", 0, 16, dtService}, {"dport", 16, 16, dtService},
		{"sequence", 32, 32, dtInteger}, {"ackseq", 64, 32, dtInteger},
		{"doff", 96, 4, dtInteger}, {"reserved", 100, 4, dtInteger},
		{"flags", 104, 8, dtTCPFlag}, {"window", 112, 16, dtInteger},
		{"checksum", 128, 16, dtInteger}, {"urgptr", 144, 16, dtInteger}}}
	protoUDP = &proto{name: "udp", base: baseTH, l4: 17, fields: []field{
		{"sport", 0, 16, dtService}, {"dport", 16, 16, dtService},
		{"length", 32, 16, dtInteger}, {"checksum", 48, 16, dtInteger}}}
	protoUDPLite = &proto{name: "udplite", base: baseTH, l4: 136, fields: []field{
		{"sport", 0, 16, dtService}, {"dport", 16, 16, dtService},
		{"csumcov", 32, 16, dtInteger}, {"checksum", 48, 16, dtInteger}}}
	protoICMP = &proto{name: "icmp", base: baseTH, l4: 1, fields: []field{
		{"type", 0, 8, dtICMPType}, {"code", 8, 8, dtICMPCode},
		{"checksum", 16, 16, dtInteger}, {"id", 32, 16, dtInteger},
		{"sequence", 48, 16, dtInteger}, {"gateway", 32, 32, dtInteger},
		{"mtu", 48, 16, dtInteger}}}
	protoICMP6 = &proto{name: "icmpv6", base: baseTH, l4: 58, fields: []field{
		{"type", 0, 8, dtICMP6Type}, {"code", 8, 8, dtICMP6Code},
		{"checksum", 16, 16, dtInteger}, {"param-problem", 32, 32, dtInteger},
		{"mtu", 32, 32, dtInteger}, {"id", 32, 16, dtInteger},
		{"sequence", 48, 16, dtInteger}, {"max-delay", 32, 16, dtInteger}}}
	protoIGMP = &proto{name: "igmp", base: baseTH, l4: 2, fields: []field{
		{"type", 0, 8, dtIGMPType}, {"mrt", 8, 8, dtInteger}, {"checksum", 16, 16, dtInteger},
		{"group", 32, 32, dtInteger}}}
	protoSCTP = &proto{name: "sctp", base: baseTH, l4: 132, fields: []field{
		{"sport", 0, 16, dtService}, {"dport", 16, 16, dtService},
		{"vtag", 32, 32, dtInteger}, {"checksum", 64, 32, dtInteger}}}
	protoDCCP = &proto{name: "dccp", base: baseTH, l4: 33, fields: []field{
		{"sport", 0, 16, dtService}, {"dport", 16, 16, dtService},
		{"type", 67, 4, dtDCCPPkt}}}
	protoAH = &proto{name: "ah", base: baseTH, l4: 51, fields: []field{
		{"nexthdr", 0, 8, dtInetProto}, {"hdrlength", 8, 8, dtInteger},
		{"reserved", 16, 16, dtInteger}, {"spi", 32, 32, dtInteger},
		{"sequence", 64, 32, dtInteger}}}
	protoESP = &proto{name: "esp", base: baseTH, l4: 50, fields: []field{
		{"spi", 0, 32, dtInteger}, {"sequence", 32, 32, dtInteger}}}
	protoComp = &proto{name: "comp", base: baseTH, l4: 108, fields: []field{
		{"nexthdr", 0, 8, dtInetProto}, {"flags", 8, 8, dtInteger}, {"cpi", 16, 16, dtInteger}}}
	// protoTH is the transport header of any protocol: ports only, no dependency.
	protoTH = &proto{name: "th", base: baseTH, fields: []field{
		{"sport", 0, 16, dtService}, {"dport", 16, 16, dtService}}}
)

var protoByName = map[string]*proto{}

func init() {
	for _, p := range []*proto{protoEther, protoVlan, protoARP, protoIP, protoIP6, protoTCP,
		protoUDP, protoUDPLite, protoICMP, protoICMP6, protoIGMP, protoSCTP, protoDCCP,
		protoAH, protoESP, protoComp, protoTH} {
		protoByName[p.name] = p
	}
}

// l4ByNumber maps an IP protocol number to the transport header it selects.
func l4ByNumber(n uint64) *proto {
	for _, p := range []*proto{protoTCP, protoUDP, protoUDPLite, protoICMP, protoICMP6,
		protoIGMP, protoSCTP, protoDCCP, protoAH, protoESP, protoComp} {
		if p.l4 == n {
			return p
		}
	}
	return nil
}

// l3ByEtherType maps an ether type to the network header it selects.
func l3ByEtherType(n uint64) *proto {
	switch n {
	case 0x0800:
		return protoIP
	case 0x86dd:
		return protoIP6
	case 0x0806:
		return protoARP
	}
	return nil
}

// keyInfo is what a meta, ct, rt or socket key loads.
type keyInfo struct {
	key   uint32
	dt    *dtype
	order byteOrder
	bits  int
}

var metaKeys = map[string]keyInfo{
	"length": {0, dtInteger, hostOrder, 32}, "protocol": {1, dtEthType, bigEndian, 16},
	"priority": {2, dtClassid, hostOrder, 32}, "mark": {3, dtMark, hostOrder, 32},
	"iif": {4, dtIfindex, hostOrder, 32}, "oif": {5, dtIfindex, hostOrder, 32},
	"iifname": {6, dtIfname, hostOrder, 128}, "oifname": {7, dtIfname, hostOrder, 128},
	"iiftype": {8, dtARPHRD, hostOrder, 16}, "oiftype": {9, dtARPHRD, hostOrder, 16},
	"skuid": {10, dtUID, hostOrder, 32}, "skgid": {11, dtGID, hostOrder, 32},
	"nftrace": {12, dtInteger, hostOrder, 8}, "rtclassid": {13, dtRealm, hostOrder, 32},
	"secmark": {14, dtInteger, hostOrder, 32}, "nfproto": {15, dtNfproto, hostOrder, 8},
	"l4proto": {16, dtInetProto, hostOrder, 8}, "ibrname": {17, dtIfname, hostOrder, 128},
	"obrname": {18, dtIfname, hostOrder, 128}, "pkttype": {19, dtPktType, hostOrder, 8},
	"cpu": {20, dtInteger, hostOrder, 32}, "iifgroup": {21, dtDevgroup, hostOrder, 32},
	"oifgroup": {22, dtDevgroup, hostOrder, 32}, "cgroup": {23, dtInteger, hostOrder, 32},
	"random": {24, dtInteger, bigEndian, 32}, "ipsec": {25, dtBoolean, hostOrder, 8},
	"iifkind": {26, dtIfname, hostOrder, 128}, "oifkind": {27, dtIfname, hostOrder, 128},
	"ibrpvid": {28, dtInteger, hostOrder, 16}, "ibrvproto": {29, dtEthType, bigEndian, 16},
	"time": {30, dtTimeDate, hostOrder, 64}, "day": {31, dtTimeDay, hostOrder, 8},
	"hour": {32, dtTimeHour, hostOrder, 32}, "sdif": {33, dtIfindex, hostOrder, 32},
	"sdifname": {34, dtIfname, hostOrder, 128}, "broute": {35, dtInteger, hostOrder, 8},
	"ibriport": {17, dtIfname, hostOrder, 128}, "obriport": {18, dtIfname, hostOrder, 128},
}

// bareMetaKeys may be written without the `meta` keyword.
var bareMetaKeys = map[string]bool{
	"mark": true, "iif": true, "oif": true, "iifname": true, "oifname": true,
	"iiftype": true, "oiftype": true, "skuid": true, "skgid": true, "nftrace": true,
	"rtclassid": true, "ibrname": true, "obrname": true, "pkttype": true, "cpu": true,
	"iifgroup": true, "oifgroup": true, "cgroup": true, "ibriport": true, "obriport": true,
	"priority": true,
}

var ctKeys = map[string]keyInfo{
	"state": {0, dtCtState, hostOrder, 32}, "direction": {1, dtCtDir, hostOrder, 8},
	"status": {2, dtCtStatus, hostOrder, 32}, "mark": {3, dtMark, hostOrder, 32},
	"secmark": {4, dtInteger, hostOrder, 32}, "expiration": {5, dtTime, hostOrder, 32},
	"helper": {6, dtString, hostOrder, 128}, "l3proto": {7, dtNfproto, hostOrder, 8},
	"saddr": {8, dtIPv4, bigEndian, 32}, "daddr": {9, dtIPv4, bigEndian, 32},
	"protocol": {10, dtInetProto, bigEndian, 8}, "proto-src": {11, dtService, bigEndian, 16},
	"proto-dst": {12, dtService, bigEndian, 16}, "label": {13, dtCtLabel, hostOrder, 128},
	"packets": {14, dtInteger, hostOrder, 64}, "bytes": {15, dtInteger, hostOrder, 64},
	"avgpkt": {16, dtInteger, hostOrder, 64}, "zone": {17, dtInteger, hostOrder, 16},
	"event": {18, dtCtEvent, hostOrder, 32}, "id": {23, dtInteger, bigEndian, 32},
}

// ctAddrKeys are `ct [dir] ip|ip6 saddr|daddr`.
var ctAddrKeys = map[string]keyInfo{
	"ip saddr": {19, dtIPv4, bigEndian, 32}, "ip daddr": {20, dtIPv4, bigEndian, 32},
	"ip6 saddr": {21, dtIPv6, bigEndian, 128}, "ip6 daddr": {22, dtIPv6, bigEndian, 128},
}

var rtKeys = map[string]keyInfo{
	"classid": {0, dtRealm, hostOrder, 32}, "ip nexthop": {1, dtIPv4, bigEndian, 32},
	"ip6 nexthop": {2, dtIPv6, bigEndian, 128}, "mtu": {3, dtInteger, hostOrder, 16},
	"ipsec": {4, dtBoolean, hostOrder, 8},
}

var socketKeys = map[string]keyInfo{
	"transparent": {0, dtInteger, hostOrder, 8}, "mark": {1, dtMark, hostOrder, 32},
	"wildcard": {2, dtInteger, hostOrder, 8},
}

// fib flags and results.
var fibFlags = map[string]uint32{"saddr": 1, "daddr": 2, "mark": 4, "iif": 8, "oif": 16}

var fibResults = map[string]keyInfo{
	"oif": {1, dtIfindex, hostOrder, 32}, "oifname": {2, dtIfname, hostOrder, 128},
	"type": {3, dtFIBAddr, hostOrder, 32},
}

// exthdr descriptions: ip6 extension headers (op 0), TCP options (op 1).
type exthdrDesc struct {
	typ    uint32
	fields []field
}

var ip6Exthdrs = map[string]exthdrDesc{
	"hbh": {0, []field{{"nexthdr", 0, 8, dtInetProto}, {"hdrlength", 8, 8, dtInteger}}},
	"rt": {43, []field{{"nexthdr", 0, 8, dtInetProto}, {"hdrlength", 8, 8, dtInteger},
		{"type", 16, 8, dtInteger}, {"seg-left", 24, 8, dtInteger}}},
	"frag": {44, []field{{"nexthdr", 0, 8, dtInetProto}, {"reserved", 8, 8, dtInteger},
		{"frag-off", 16, 13, dtInteger}, {"reserved2", 29, 2, dtInteger},
		{"more-fragments", 31, 1, dtInteger}, {"id", 32, 32, dtInteger}}},
	"dst": {60, []field{{"nexthdr", 0, 8, dtInetProto}, {"hdrlength", 8, 8, dtInteger}}},
	"mh": {135, []field{{"nexthdr", 0, 8, dtInetProto}, {"hdrlength", 8, 8, dtInteger},
		{"type", 16, 8, dtMHType}, {"reserved", 24, 8, dtInteger},
		{"checksum", 32, 16, dtInteger}}},
}

var tcpOptions = map[string]exthdrDesc{
	"eol":            {0, []field{{"kind", 0, 8, dtInteger}}},
	"nop":            {1, []field{{"kind", 0, 8, dtInteger}}},
	"noop":           {1, []field{{"kind", 0, 8, dtInteger}}},
	"maxseg":         {2, []field{{"kind", 0, 8, dtInteger}, {"length", 8, 8, dtInteger}, {"size", 16, 16, dtInteger}}},
	"window":         {3, []field{{"kind", 0, 8, dtInteger}, {"length", 8, 8, dtInteger}, {"count", 16, 8, dtInteger}}},
	"sack-perm":      {4, []field{{"kind", 0, 8, dtInteger}, {"length", 8, 8, dtInteger}}},
	"sack-permitted": {4, []field{{"kind", 0, 8, dtInteger}, {"length", 8, 8, dtInteger}}},
	"timestamp": {8, []field{{"kind", 0, 8, dtInteger}, {"length", 8, 8, dtInteger},
		{"tsval", 16, 32, dtInteger}, {"tsecr", 48, 32, dtInteger}}},
}
