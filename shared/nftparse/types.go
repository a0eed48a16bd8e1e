package nftparse

// Datatypes as nft numbers and sizes them (the ids are the ones set declarations carry in
// NFTA_SET_KEY_TYPE), with the names `type` declarations use and the symbols values may be
// written with.

type byteOrder uint8

const (
	bigEndian byteOrder = iota
	hostOrder
)

type kind uint8

const (
	kInteger kind = iota
	kIPv4
	kIPv6
	kLLAddr
	kString
	kIfindex
	kBitmask
	kSymbol
	kProto
	kService
	kMsecs
	kHour
	kDay
	kDate
	kClassid
	kUID
	kGID
	kBoolean
	kLabel
	kVerdict
	kQuotedSym
)

type sym struct {
	name string
	val  uint64
}

type dtype struct {
	name   string
	id     uint32
	bits   int
	kind   kind
	order  byteOrder // the order nft stores values of the type in
	syms   []sym
	prefix bool // values may be written as prefixes
}

var (
	dtVerdict = &dtype{name: "verdict", id: 1, kind: kVerdict}
	dtNfproto = &dtype{name: "nf_proto", id: 2, bits: 8, kind: kSymbol, order: hostOrder,
		syms: []sym{{"ipv4", 2}, {"ipv6", 10}}}
	dtInteger = &dtype{name: "integer", id: 4, kind: kInteger}
	dtString  = &dtype{name: "string", id: 5, kind: kString, order: hostOrder}
	dtIPv4    = &dtype{name: "ipv4_addr", id: 7, bits: 32, kind: kIPv4, prefix: true}
	dtIPv6    = &dtype{name: "ipv6_addr", id: 8, bits: 128, kind: kIPv6, prefix: true}
	dtEther   = &dtype{name: "ether_addr", id: 9, bits: 48, kind: kLLAddr}
	dtEthType = &dtype{name: "ether_type", id: 10, bits: 16, kind: kSymbol, syms: []sym{
		{"ip", 0x0800}, {"arp", 0x0806}, {"ip6", 0x86dd}, {"8021q", 0x8100},
		{"8021ad", 0x88a8}, {"vlan", 0x8100}}}
	dtARPOp = &dtype{name: "arp_op", id: 11, bits: 16, kind: kSymbol, syms: []sym{
		{"request", 1}, {"reply", 2}, {"rrequest", 3}, {"rreply", 4}, {"inrequest", 8},
		{"inreply", 9}, {"nak", 10}}}
	dtInetProto = &dtype{name: "inet_proto", id: 12, bits: 8, kind: kProto}
	dtService   = &dtype{name: "inet_service", id: 13, bits: 16, kind: kService}
	dtICMPType  = &dtype{name: "icmp_type", id: 14, bits: 8, kind: kSymbol, syms: []sym{
		{"echo-reply", 0}, {"destination-unreachable", 3}, {"source-quench", 4}, {"redirect", 5},
		{"echo-request", 8}, {"router-advertisement", 9}, {"router-solicitation", 10},
		{"time-exceeded", 11}, {"parameter-problem", 12}, {"timestamp-request", 13},
		{"timestamp-reply", 14}, {"info-request", 15}, {"info-reply", 16},
		{"address-mask-request", 17}, {"address-mask-reply", 18}}}
	dtTCPFlag = &dtype{name: "tcp_flag", id: 15, bits: 8, kind: kBitmask, syms: []sym{
		{"fin", 0x01}, {"syn", 0x02}, {"rst", 0x04}, {"psh", 0x08}, {"ack", 0x10}, {"urg", 0x20},
		{"ecn", 0x40}, {"cwr", 0x80}}}
	dtDCCPPkt = &dtype{name: "dccp_pkttype", id: 16, bits: 4, kind: kSymbol, syms: []sym{
		{"request", 0}, {"response", 1}, {"data", 2}, {"ack", 3}, {"dataack", 4},
		{"closereq", 5}, {"close", 6}, {"reset", 7}, {"sync", 8}, {"syncack", 9}}}
	dtMHType = &dtype{name: "mh_type", id: 17, bits: 8, kind: kSymbol, syms: []sym{
		{"binding-refresh-request", 0}, {"home-test-init", 1}, {"careof-test-init", 2},
		{"home-test", 3}, {"careof-test", 4}, {"binding-update", 5},
		{"binding-acknowledgement", 6}, {"binding-error", 7}, {"fast-binding-update", 8},
		{"fast-binding-acknowledgement", 9}, {"fast-binding-advertisement", 10},
		{"experimental-mobility-header", 11}, {"home-agent-switch-message", 12}}}
	dtTime    = &dtype{name: "time", id: 18, bits: 64, kind: kMsecs, order: hostOrder}
	dtMark    = &dtype{name: "mark", id: 19, bits: 32, kind: kInteger, order: hostOrder}
	dtIfindex = &dtype{name: "iface_index", id: 20, bits: 32, kind: kIfindex, order: hostOrder}
	dtARPHRD  = &dtype{name: "iface_type", id: 21, bits: 16, kind: kSymbol, order: hostOrder,
		syms: []sym{{"ether", 1}, {"ppp", 512}, {"ipip", 768}, {"ipip6", 769},
			{"loopback", 772}, {"sit", 776}, {"ipgre", 778}}}
	dtRealm = &dtype{name: "realm", id: 22, bits: 32, kind: kQuotedSym, order: hostOrder,
		syms: []sym{{"cosmos", 0}}}
	dtClassid = &dtype{name: "classid", id: 23, bits: 32, kind: kClassid, order: hostOrder}
	dtUID     = &dtype{name: "uid", id: 24, bits: 32, kind: kUID, order: hostOrder}
	dtGID     = &dtype{name: "gid", id: 25, bits: 32, kind: kGID, order: hostOrder}
	dtCtState = &dtype{name: "ct_state", id: 26, bits: 32, kind: kBitmask, order: hostOrder,
		syms: []sym{{"invalid", 1}, {"established", 2}, {"related", 4}, {"new", 8},
			{"untracked", 64}}}
	dtCtDir = &dtype{name: "ct_dir", id: 27, bits: 8, kind: kSymbol, order: hostOrder,
		syms: []sym{{"original", 0}, {"reply", 1}}}
	dtCtStatus = &dtype{name: "ct_status", id: 28, bits: 32, kind: kBitmask, order: hostOrder,
		syms: []sym{{"expected", 1}, {"seen-reply", 2}, {"assured", 4}, {"confirmed", 8},
			{"snat", 16}, {"dnat", 32}, {"dying", 512}}}
	dtICMP6Type = &dtype{name: "icmpv6_type", id: 29, bits: 8, kind: kSymbol, syms: []sym{
		{"destination-unreachable", 1}, {"packet-too-big", 2}, {"time-exceeded", 3},
		{"parameter-problem", 4}, {"echo-request", 128}, {"echo-reply", 129},
		{"mld-listener-query", 130}, {"mld-listener-report", 131}, {"mld-listener-done", 132},
		{"mld-listener-reduction", 132},
		{"nd-router-solicit", 133}, {"nd-router-advert", 134}, {"nd-neighbor-solicit", 135},
		{"nd-neighbor-advert", 136}, {"nd-redirect", 137}, {"router-renumbering", 138},
		{"ind-neighbor-solicit", 141}, {"ind-neighbor-advert", 142},
		{"mld2-listener-report", 143}}}
	dtCtLabel = &dtype{name: "ct_label", id: 30, bits: 128, kind: kLabel, order: hostOrder}
	dtPktType = &dtype{name: "pkt_type", id: 31, bits: 8, kind: kSymbol, order: hostOrder,
		syms: []sym{{"host", 0}, {"unicast", 0}, {"broadcast", 1}, {"multicast", 2},
			{"other", 3}}}
	dtICMPCode = &dtype{name: "icmp_code", id: 32, bits: 8, kind: kSymbol, syms: []sym{
		{"net-unreachable", 0}, {"host-unreachable", 1}, {"prot-unreachable", 2},
		{"port-unreachable", 3}, {"frag-needed", 4}, {"net-prohibited", 9},
		{"host-prohibited", 10}, {"admin-prohibited", 13}}}
	dtICMP6Code = &dtype{name: "icmpv6_code", id: 33, bits: 8, kind: kSymbol, syms: []sym{
		{"no-route", 0}, {"admin-prohibited", 1}, {"addr-unreachable", 3},
		{"port-unreachable", 4}, {"policy-fail", 5}, {"reject-route", 6}}}
	dtICMPXCode = &dtype{name: "icmpx_code", id: 34, bits: 8, kind: kSymbol, syms: []sym{
		{"port-unreachable", 1}, {"admin-prohibited", 3}, {"no-route", 0},
		{"host-unreachable", 2}}}
	dtDevgroup = &dtype{name: "devgroup", id: 35, bits: 32, kind: kQuotedSym, order: hostOrder,
		syms: []sym{{"default", 0}}}
	dtDSCP = &dtype{name: "dscp", id: 36, bits: 6, kind: kSymbol, syms: []sym{
		{"cs0", 0x00}, {"cs1", 0x08}, {"cs2", 0x10}, {"cs3", 0x18}, {"cs4", 0x20},
		{"cs5", 0x28}, {"cs6", 0x30}, {"cs7", 0x38}, {"df", 0x00}, {"be", 0x00},
		{"lephb", 0x01}, {"af11", 0x0a}, {"af12", 0x0c}, {"af13", 0x0e}, {"af21", 0x12},
		{"af22", 0x14}, {"af23", 0x16}, {"af31", 0x1a}, {"af32", 0x1c}, {"af33", 0x1e},
		{"af41", 0x22}, {"af42", 0x24}, {"af43", 0x26}, {"va", 0x2c}, {"ef", 0x2e}}}
	dtECN = &dtype{name: "ecn", id: 37, bits: 2, kind: kSymbol, syms: []sym{
		{"not-ect", 0}, {"ect1", 1}, {"ect0", 2}, {"ce", 3}}}
	dtFIBAddr = &dtype{name: "fib_addrtype", id: 38, bits: 32, kind: kSymbol, order: hostOrder,
		syms: []sym{{"unspec", 0}, {"unicast", 1}, {"local", 2}, {"broadcast", 3},
			{"anycast", 4}, {"multicast", 5}, {"blackhole", 6}, {"unreachable", 7},
			{"prohibit", 8}, {"throw", 9}, {"nat", 10}, {"xresolve", 11}}}
	dtBoolean = &dtype{name: "boolean", id: 39, bits: 1, kind: kBoolean, order: hostOrder}
	dtCtEvent = &dtype{name: "ct_event", id: 40, bits: 32, kind: kBitmask, order: hostOrder,
		syms: []sym{{"new", 1}, {"related", 2}, {"destroy", 4}, {"reply", 8},
			{"assured", 16}, {"protoinfo", 32}, {"helper", 64}, {"mark", 128},
			{"seqadj", 256}, {"secmark", 512}, {"label", 1024}}}
	dtIfname   = &dtype{name: "ifname", id: 41, bits: 128, kind: kString, order: hostOrder}
	dtIGMPType = &dtype{name: "igmp_type", id: 42, bits: 8, kind: kSymbol, syms: []sym{
		{"membership-query", 0x11}, {"membership-report-v1", 0x12},
		{"membership-report-v2", 0x16}, {"membership-report-v3", 0x22},
		{"leave-group", 0x17}}}
	dtTimeDate = &dtype{name: "time", id: 43, bits: 64, kind: kDate, order: hostOrder}
	dtTimeHour = &dtype{name: "hour", id: 44, bits: 32, kind: kHour, order: hostOrder}
	dtTimeDay  = &dtype{name: "day", id: 45, bits: 8, kind: kDay, order: hostOrder}
	dtCgroupV2 = &dtype{name: "cgroupsv2", id: 46, bits: 64, kind: kInteger, order: hostOrder}
	dtBitmask  = &dtype{name: "bitmask", id: 3, kind: kInteger}
	dtLLAddr   = &dtype{name: "ll_addr", id: 6, kind: kLLAddr}
)

// dtypeByName finds a datatype by the name `type` declarations use.
var dtypeByName = map[string]*dtype{}

func init() {
	for _, d := range []*dtype{dtVerdict, dtNfproto, dtBitmask, dtInteger, dtString, dtLLAddr,
		dtIPv4, dtIPv6, dtEther, dtEthType, dtARPOp, dtInetProto, dtService, dtICMPType,
		dtTCPFlag, dtDCCPPkt, dtMHType, dtTime, dtMark, dtIfindex, dtARPHRD, dtRealm,
		dtClassid, dtUID, dtGID, dtCtState, dtCtDir, dtCtStatus, dtICMP6Type, dtCtLabel,
		dtPktType, dtICMPCode, dtICMP6Code, dtICMPXCode, dtDevgroup, dtDSCP, dtECN,
		dtFIBAddr, dtBoolean, dtCtEvent, dtIfname, dtIGMPType, dtTimeDate, dtTimeHour,
		dtTimeDay, dtCgroupV2} {
		if _, dup := dtypeByName[d.name]; !dup {
			dtypeByName[d.name] = d
		}
	}
}

// protocols are the IP protocol names of netbase's /etc/protocols (as nft resolves them
// on Debian), by number.
var protocols = map[string]uint64{
	"ip": 0, "hopopt": 0, "icmp": 1, "igmp": 2, "ggp": 3, "ipencap": 4, "st": 5, "tcp": 6,
	"egp": 8, "igp": 9, "pup": 12, "udp": 17, "hmp": 20, "xns-idp": 22, "rdp": 27,
	"iso-tp4": 29, "dccp": 33, "xtp": 36, "ddp": 37, "idpr-cmtp": 38, "ipv6": 41,
	"ipv6-route": 43, "ipv6-frag": 44, "idrp": 45, "rsvp": 46, "gre": 47, "esp": 50,
	"ah": 51, "skip": 57, "ipv6-icmp": 58, "icmpv6": 58, "ipv6-nonxt": 59, "ipv6-opts": 60,
	"rspf": 73, "vmtp": 81, "eigrp": 88, "ospf": 89, "ax.25": 93, "ipip": 94,
	"etherip": 97, "encap": 98, "pim": 103, "ipcomp": 108, "vrrp": 112, "l2tp": 115,
	"isis": 124, "sctp": 132, "fc": 133, "mobility-header": 135, "udplite": 136,
	"mpls-in-ip": 137, "manet": 138, "hip": 139, "shim6": 140, "wesp": 141, "rohc": 142,
	"ethernet": 143,
}

// services are common TCP/UDP service names of netbase's /etc/services, as nft resolves
// them on Debian.
// TODO: nft reads the whole services database of the host it runs on; only the usual
// names are known here, and others are refused rather than guessed.
var services = map[string]uint64{
	"tcpmux": 1, "echo": 7, "discard": 9, "daytime": 13, "ftp-data": 20, "ftp": 21,
	"ssh": 22, "telnet": 23, "smtp": 25, "time": 37, "whois": 43, "tacacs": 49,
	"domain": 53, "bootps": 67, "bootpc": 68, "tftp": 69, "gopher": 70, "finger": 79,
	"http": 80, "www": 80, "kerberos": 88, "pop3": 110, "sunrpc": 111, "auth": 113,
	"nntp": 119, "ntp": 123, "epmap": 135, "netbios-ns": 137, "netbios-dgm": 138,
	"netbios-ssn": 139, "imap2": 143, "imap": 143, "snmp": 161, "snmp-trap": 162,
	"bgp": 179, "irc": 194, "ldap": 389, "https": 443, "microsoft-ds": 445, "isakmp": 500,
	"syslog": 514, "printer": 515, "submission": 587, "ldaps": 636, "rsync": 873,
	"domain-s": 853, "ftps-data": 989, "ftps": 990, "imaps": 993, "pop3s": 995,
	"submissions": 465, "socks": 1080, "openvpn": 1194, "ms-sql-s": 1433,
	"l2tp": 1701, "pptp": 1723, "radius": 1812, "radius-acct": 1813, "nfs": 2049,
	"mysql": 3306, "ms-wbt-server": 3389, "ipsec-nat-t": 4500, "sip": 5060,
	"sip-tls": 5061, "postgresql": 5432, "x11": 6000, "http-alt": 8080,
	"dhcpv6-client": 546, "dhcpv6-server": 547, "ntalk": 518, "route": 520,
	"svn": 3690, "git": 9418, "zabbix-agent": 10050, "zabbix-trapper": 10051,
	"bacula-dir": 9101, "bacula-fd": 9102, "bacula-sd": 9103, "xmpp-client": 5222,
	"xmpp-server": 5269, "mdns": 5353, "llmnr": 5355, "kerberos-adm": 749,
	"webmin": 10000, "amanda": 10080, "iax": 4569, "rtsp": 554, "nut": 3493,
}

// users and groups nft would resolve on any Linux host.
var users = map[string]uint64{"root": 0}
var groups = map[string]uint64{"root": 0}

// days are `meta day` names, Sunday first.
var days = []string{"Sunday", "Monday", "Tuesday", "Wednesday", "Thursday", "Friday",
	"Saturday"}
