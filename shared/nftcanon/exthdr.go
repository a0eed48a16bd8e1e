package nftcanon

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
		5: {"sack", []field{{"kind", 0, 8, dtInteger}, {"length", 8, 8, dtInteger},
			{"left", 16, 32, dtInteger}, {"right", 48, 32, dtInteger}}},
		8: {"timestamp", []field{{"kind", 0, 8, dtInteger}, {"length", 8, 8, dtInteger},
			{"tsval", 16, 32, dtInteger}, {"tsecr", 48, 32, dtInteger}}},
		19: {"md5sig", []field{{"kind", 0, 8, dtInteger}, {"length", 8, 8, dtInteger}}},
		30: {"mptcp", []field{{"kind", 0, 8, dtInteger}, {"length", 8, 8, dtInteger},
			{"subtype", 16, 4, dtInteger}}},
		34: {"fastopen", []field{{"kind", 0, 8, dtInteger}, {"length", 8, 8, dtInteger}}},
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

func exthdrDescOf(n *exthdrN) *exthdrDesc {
	switch n.op {
	case 0:
		return ip6Exthdrs[n.typ]
	case 1:
		return tcpOptions[n.typ]
	case 2:
		return ipOptions[n.typ]
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
	for i := range d.fields {
		if d.fields[i].off == n.off && (d.fields[i].bits+7)/8*8 == n.bits {
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
		return prefix + d.name + " " + f.name
	}
	return prefix + "@" + d.name + "," + itoa(uint64(n.off)) + "," + itoa(uint64(n.bits))
}
