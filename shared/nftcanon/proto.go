package nftcanon

// Payload bases.
const (
	baseLL = 0
	baseNH = 1
	baseTH = 2
)

// field is a header field of a protocol: bit offset and length from the start of the
// protocol's header.
type field struct {
	name string
	off  int
	bits int
	dt   *dtype
}

// proto describes a protocol header: its fields, the field that selects the protocol
// on top of it, and which protocols that field's values select.
type proto struct {
	name   string
	base   int
	hdrOff int // bit offset of this header within its base (vlan sits after ether)
	fields []field
	next   string // selector field, e.g. "protocol" for ip
	upper  map[uint64]*proto
}

func (p *proto) field(name string) *field {
	for i := range p.fields {
		if p.fields[i].name == name {
			return &p.fields[i]
		}
	}
	return nil
}

// fieldAt returns the first field at exactly this offset and length.
func (p *proto) fieldAt(off, bits int) *field {
	for i := range p.fields {
		f := &p.fields[i]
		if f.off == off && f.bits == bits {
			return f
		}
	}
	return nil
}

var (
	protoEther = &proto{name: "ether", base: baseLL, next: "type", fields: []field{
		{"daddr", 0, 48, dtEther}, {"saddr", 48, 48, dtEther}, {"type", 96, 16, dtEthType}}}
	protoVlan = &proto{name: "vlan", base: baseLL, hdrOff: 112, next: "type", fields: []field{
		{"pcp", 0, 3, dtInteger}, {"dei", 3, 1, dtInteger}, {"cfi", 3, 1, dtInteger},
		{"id", 4, 12, dtInteger}, {"type", 16, 16, dtEthType}}}
	// protoVlan2 is a second, stacked VLAN tag (802.1ad outer tag, 802.1Q inner tag).
	protoVlan2 = &proto{name: "vlan", base: baseLL, hdrOff: 144, next: "type",
		fields: protoVlan.fields}
	protoARP = &proto{name: "arp", base: baseNH, fields: []field{
		{"htype", 0, 16, dtInteger}, {"ptype", 16, 16, dtEthType}, {"hlen", 32, 8, dtInteger},
		{"plen", 40, 8, dtInteger}, {"operation", 48, 16, dtARPOp},
		{"saddr ether", 64, 48, dtEther}, {"saddr ip", 112, 32, dtIPv4},
		{"daddr ether", 144, 48, dtEther}, {"daddr ip", 192, 32, dtIPv4}}}
	protoIP = &proto{name: "ip", base: baseNH, next: "protocol", fields: []field{
		{"version", 0, 4, dtInteger}, {"hdrlength", 4, 4, dtInteger}, {"dscp", 8, 6, dtDSCP},
		{"ecn", 14, 2, dtECN}, {"length", 16, 16, dtInteger}, {"id", 32, 16, dtInteger},
		{"frag-off", 48, 16, dtInteger}, {"ttl", 64, 8, dtInteger},
		{"protocol", 72, 8, dtInetProt}, {"checksum", 80, 16, dtInteger},
		{"saddr", 96, 32, dtIPv4}, {"daddr", 128, 32, dtIPv4}}}
	protoIP6 = &proto{name: "ip6", base: baseNH, next: "nexthdr", fields: []field{
		{"version", 0, 4, dtInteger}, {"dscp", 4, 6, dtDSCP}, {"ecn", 10, 2, dtECN},
		{"flowlabel", 12, 20, dtInteger}, {"length", 32, 16, dtInteger},
		{"nexthdr", 48, 8, dtInetProt}, {"hoplimit", 56, 8, dtInteger},
		{"saddr", 64, 128, dtIPv6}, {"daddr", 192, 128, dtIPv6}}}
	protoTCP = &proto{name: "tcp", base: baseTH, fields: []field{
		{"sport", 0, 16, dtService}, {"dport", 16, 16, dtService},
		{"sequence", 32, 32, dtInteger}, {"ackseq", 64, 32, dtInteger},
		{"doff", 96, 4, dtInteger}, {"reserved", 100, 4, dtInteger},
		{"flags", 104, 8, dtTCPFlag}, {"window", 112, 16, dtInteger},
		{"checksum", 128, 16, dtInteger}, {"urgptr", 144, 16, dtInteger}}}
	protoUDP = &proto{name: "udp", base: baseTH, fields: []field{
		{"sport", 0, 16, dtService}, {"dport", 16, 16, dtService},
		{"length", 32, 16, dtInteger}, {"checksum", 48, 16, dtInteger}}}
	protoUDPLite = &proto{name: "udplite", base: baseTH, fields: []field{
		{"sport", 0, 16, dtService}, {"dport", 16, 16, dtService},
		{"csumcov", 32, 16, dtInteger}, {"checksum", 48, 16, dtInteger}}}
	protoICMP = &proto{name: "icmp", base: baseTH, fields: []field{
		{"type", 0, 8, dtICMPType}, {"code", 8, 8, dtICMPCode}, {"checksum", 16, 16, dtInteger},
		{"id", 32, 16, dtInteger}, {"sequence", 48, 16, dtInteger},
		{"gateway", 32, 32, dtInteger}, {"mtu", 48, 16, dtInteger}}}
	protoICMP6 = &proto{name: "icmpv6", base: baseTH, fields: []field{
		{"type", 0, 8, dtICMP6}, {"code", 8, 8, dtICMP6Code}, {"checksum", 16, 16, dtInteger},
		{"param-problem", 32, 32, dtInteger}, {"mtu", 32, 32, dtInteger},
		{"id", 32, 16, dtInteger}, {"sequence", 48, 16, dtInteger},
		{"max-delay", 32, 16, dtInteger}}}
	protoIGMP = &proto{name: "igmp", base: baseTH, fields: []field{
		{"type", 0, 8, dtIGMPType}, {"mrt", 8, 8, dtInteger}, {"checksum", 16, 16, dtInteger},
		{"group", 32, 32, dtInteger}}}
	protoSCTP = &proto{name: "sctp", base: baseTH, fields: []field{
		{"sport", 0, 16, dtService}, {"dport", 16, 16, dtService},
		{"vtag", 32, 32, dtInteger}, {"checksum", 64, 32, dtInteger}}}
	protoDCCP = &proto{name: "dccp", base: baseTH, fields: []field{
		{"sport", 0, 16, dtService}, {"dport", 16, 16, dtService},
		{"type", 67, 4, dtDCCPPkt}}}
	protoAH = &proto{name: "ah", base: baseTH, fields: []field{
		{"nexthdr", 0, 8, dtInetProt}, {"hdrlength", 8, 8, dtInteger},
		{"reserved", 16, 16, dtInteger}, {"spi", 32, 32, dtInteger},
		{"sequence", 64, 32, dtInteger}}}
	protoESP = &proto{name: "esp", base: baseTH, fields: []field{
		{"spi", 0, 32, dtInteger}, {"sequence", 32, 32, dtInteger}}}
	protoComp = &proto{name: "comp", base: baseTH, fields: []field{
		{"nexthdr", 0, 8, dtInetProt}, {"flags", 8, 8, dtBitmask}, {"cpi", 16, 16, dtInteger}}}
	// protoTH is the transport header seen without knowing the protocol.
	protoTH = &proto{name: "th", base: baseTH, fields: []field{
		{"sport", 0, 16, dtService}, {"dport", 16, 16, dtService}}}
)

func init() {
	l3 := map[uint64]*proto{0x0800: protoIP, 0x86dd: protoIP6, 0x0806: protoARP,
		0x8100: protoVlan, 0x88a8: protoVlan}
	protoEther.upper = l3
	protoVlan.upper = l3
	protoVlan2.upper = l3
	l4 := map[uint64]*proto{6: protoTCP, 17: protoUDP, 136: protoUDPLite, 1: protoICMP,
		2: protoIGMP, 132: protoSCTP, 33: protoDCCP, 51: protoAH, 50: protoESP, 108: protoComp}
	protoIP.upper = l4
	l6 := map[uint64]*proto{}
	for k, v := range l4 {
		if k != 1 && k != 2 {
			l6[k] = v
		}
	}
	l6[58] = protoICMP6
	protoIP6.upper = l6
}

// l4Protos maps an IP protocol number to its header description, any family.
func l4Proto(n uint64) *proto {
	if n == 58 {
		return protoICMP6
	}
	return protoIP.upper[n]
}

// l3Proto maps an ether type to a network header description.
func l3Proto(etherType uint64) *proto { return protoEther.upper[etherType] }

// nfprotoL3 maps an NFPROTO value (meta nfproto) to a network header description.
func nfprotoL3(n uint64) *proto {
	switch n {
	case famIPv4:
		return protoIP
	case famIPv6:
		return protoIP6
	}
	return nil
}
