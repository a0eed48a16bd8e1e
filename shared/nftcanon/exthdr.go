package nftcanon

import "strings"

// exthdrDesc describes an extension header, TCP option or IP option.
type exthdrDesc struct {
	name   string
	fields []field
}

var (
	ip6Exthdrs = map[uint32]*exthdrDesc{
		0: {"hbh", []field{{"nexthdr", 0, 8, dtInetProt}, {"hdrlength", 8, 8, dtInteger}}},
		43: {"rt", []field{{"nexthdr", 0, 8, dtInetProt}, {"hdrlength", 8, 8, dtInteger},
			{"type", 16, 8, dtInteger}, {"seg-left", 24, 8, dtInteger}}},
		44: {"frag", []field{{"nexthdr", 0, 8, dtInetProt}, {"reserved", 8, 8, dtInteger},
			{"frag-off", 16, 13, dtInteger}, {"reserved2", 29, 2, dtInteger},
			{"more-fragments", 31, 1, dtInteger}, {"id", 32, 32, dtInteger}}},
		60: {"dst", []field{{"nexthdr", 0, 8, dtInetProt}, {"hdrlength", 8, 8, dtInteger}}},
		135: {"mh", []field{{"nexthdr", 0, 8, dtInetProt}, {"hdrlength", 8, 8, dtInteger},
			{"type", 16, 8, dtMHType}, {"reserved", 24, 8, dtInteger},
			{"checksum", 32, 16, dtInteger}}},
	}
	tcpOptions = map[uint32]*exthdrDesc{
		0: {"eol", []field{{"kind", 0, 8, dtInteger}}},
		1: {"nop", []field{{"kind", 0, 8, dtInteger}}},
		2: {"maxseg", []field{{"kind", 0, 8, dtInteger}, {"length", 8, 8, dtInteger},
			{"size", 16, 16, dtInteger}}},
		3: {"window", []field{{"kind", 0, 8, dtInteger}, {"length", 8, 8, dtInteger},
			{"count", 16, 8, dtInteger}}},
		4: {"sack-perm", []field{{"kind", 0, 8, dtInteger}, {"length", 8, 8, dtInteger}}},
		// A SACK option carries up to four blocks; nft names the first `sack` and the
		// others `sack1` to `sack3`.
		5: {"sack", []field{{"kind", 0, 8, dtInteger}, {"length", 8, 8, dtInteger},
			{"left", 16, 32, dtInteger}, {"right", 48, 32, dtInteger},
			{"sack1 left", 80, 32, dtInteger}, {"sack1 right", 112, 32, dtInteger},
			{"sack2 left", 144, 32, dtInteger}, {"sack2 right", 176, 32, dtInteger},
			{"sack3 left", 208, 32, dtInteger}, {"sack3 right", 240, 32, dtInteger}}},
		8: {"timestamp", []field{{"kind", 0, 8, dtInteger}, {"length", 8, 8, dtInteger},
			{"tsval", 16, 32, dtInteger}, {"tsecr", 48, 32, dtInteger}}},
		19: {"md5sig", []field{{"kind", 0, 8, dtInteger}, {"length", 8, 8, dtInteger}}},
		30: {"mptcp", []field{{"kind", 0, 8, dtInteger}, {"length", 8, 8, dtInteger},
			{"subtype", 16, 4, dtInteger}}},
		34: {"fastopen", []field{{"kind", 0, 8, dtInteger}, {"length", 8, 8, dtInteger}}},
	}
	// srhDesc is the IPv6 segment routing header (routing type 4): nft names loads
	// from a routing header that only fit its layout after it.
	srhDesc = &exthdrDesc{"srh", []field{{"last-entry", 32, 8, dtInteger},
		{"flags", 40, 8, dtInteger}, {"tag", 48, 16, dtInteger},
		{"sid[1]", 64, 128, dtIPv6}, {"sid[2]", 192, 128, dtIPv6}}}
	// sctpChunks are the SCTP chunk types nft 1.0.6 knows (RFC 4960, 3758, 5061) with
	// their fields; every chunk starts with type, flags and length.
	sctpChunks = map[uint32]*exthdrDesc{
		0: sctpChunk("data", field{"tsn", 32, 32, dtInteger},
			field{"stream", 64, 16, dtInteger}, field{"ssn", 80, 16, dtInteger},
			field{"ppid", 96, 32, dtInteger}),
		1: sctpChunk("init", sctpInitFields...),
		2: sctpChunk("init-ack", sctpInitFields...),
		3: sctpChunk("sack", field{"cum-tsn-ack", 32, 32, dtInteger},
			field{"a-rwnd", 64, 32, dtInteger}, field{"num-gap-ack-blocks", 96, 16, dtInteger},
			field{"num-dup-tsns", 112, 16, dtInteger}),
		4:   sctpChunk("heartbeat"),
		5:   sctpChunk("heartbeat-ack"),
		6:   sctpChunk("abort"),
		7:   sctpChunk("shutdown", field{"cum-tsn-ack", 32, 32, dtInteger}),
		8:   sctpChunk("shutdown-ack"),
		9:   sctpChunk("error"),
		10:  sctpChunk("cookie-echo"),
		11:  sctpChunk("cookie-ack"),
		12:  sctpChunk("ecne", field{"lowest-tsn", 32, 32, dtInteger}),
		13:  sctpChunk("cwr", field{"lowest-tsn", 32, 32, dtInteger}),
		14:  sctpChunk("shutdown-complete"),
		128: sctpChunk("asconf-ack", field{"seqno", 32, 32, dtInteger}),
		192: sctpChunk("forward-tsn", field{"new-cum-tsn", 32, 32, dtInteger}),
		193: sctpChunk("asconf", field{"seqno", 32, 32, dtInteger}),
	}
	ipOptions = map[uint32]*exthdrDesc{
		131: {"lsrr", []field{{"type", 0, 8, dtInteger}, {"length", 8, 8, dtInteger},
			{"ptr", 16, 8, dtInteger}, {"addr", 24, 32, dtIPv4}}},
		7: {"rr", []field{{"type", 0, 8, dtInteger}, {"length", 8, 8, dtInteger},
			{"ptr", 16, 8, dtInteger}, {"addr", 24, 32, dtIPv4}}},
		137: {"ssrr", []field{{"type", 0, 8, dtInteger}, {"length", 8, 8, dtInteger},
			{"ptr", 16, 8, dtInteger}, {"addr", 24, 32, dtIPv4}}},
		148: {"ra", []field{{"type", 0, 8, dtInteger}, {"length", 8, 8, dtInteger},
			{"value", 16, 16, dtInteger}}},
	}
)

var sctpInitFields = []field{{"init-tag", 32, 32, dtInteger}, {"a-rwnd", 64, 32, dtInteger},
	{"num-outbound-streams", 96, 16, dtInteger}, {"num-inbound-streams", 112, 16, dtInteger},
	{"initial-tsn", 128, 32, dtInteger}}

func sctpChunk(name string, fields ...field) *exthdrDesc {
	common := []field{{"type", 0, 8, dtInteger}, {"flags", 8, 8, dtInteger},
		{"length", 16, 16, dtInteger}}
	return &exthdrDesc{name, append(common, fields...)}
}

// Extension header operations (NFTA_EXTHDR_OP).
const (
	exthdrOpIPv6   = 0
	exthdrOpTCPOpt = 1
	exthdrOpIPv4   = 2
	exthdrOpSCTP   = 3
)

func exthdrDescOf(n *exthdrN) *exthdrDesc {
	switch n.op {
	case exthdrOpIPv6:
		if n.typ == 43 && n.f == nil && !n.present {
			if d := ip6Exthdrs[43]; findExthdrField(d, n.off, n.bits) == nil &&
				findExthdrField(srhDesc, n.off, n.bits) != nil {
				return srhDesc
			}
		}
		return ip6Exthdrs[n.typ]
	case exthdrOpTCPOpt:
		return tcpOptions[n.typ]
	case exthdrOpIPv4:
		return ipOptions[n.typ]
	case exthdrOpSCTP:
		return sctpChunks[n.typ]
	}
	return nil
}

func exthdrField(n *exthdrN) *field {
	if n.f != nil {
		return n.f
	}
	d := exthdrDescOf(n)
	if d == nil {
		return nil
	}
	return findExthdrField(d, n.off, n.bits)
}

// findExthdrField returns the field at off whose whole bytes are bits long.
func findExthdrField(d *exthdrDesc, off, bits int) *field {
	for i := range d.fields {
		if d.fields[i].off == off && (d.fields[i].bits+7)/8*8 == bits {
			return &d.fields[i]
		}
	}
	return nil
}

// exthdrText prints an extension header, TCP option or IP option expression.
func exthdrText(n *exthdrN) string {
	d := exthdrDescOf(n)
	prefix := map[uint32]string{0: "", 1: "tcp option ", 2: "ip option ", 3: "sctp chunk "}[n.op]
	if d == nil {
		if n.present {
			return prefix + itoa(uint64(n.typ))
		}
		return prefix + "@" + itoa(uint64(n.typ)) + "," + itoa(uint64(n.off)) + "," +
			itoa(uint64(n.bits))
	}
	if n.present {
		if n.op == 0 {
			return "exthdr " + d.name
		}
		return prefix + d.name
	}
	if f := exthdrField(n); f != nil {
		if strings.Contains(f.name, " ") { // "sack1 left" names its block itself
			return prefix + f.name
		}
		return prefix + d.name + " " + f.name
	}
	return prefix + "@" + d.name + "," + itoa(uint64(n.off)) + "," + itoa(uint64(n.bits))
}

// exthdrResetText prints `reset tcp option NAME`: the option is overwritten with NOPs.
func exthdrResetText(n *exthdrN) string {
	if d := exthdrDescOf(n); d != nil && n.op == exthdrOpTCPOpt {
		return "reset tcp option " + d.name
	}
	return "reset tcp option " + itoa(uint64(n.typ))
}
