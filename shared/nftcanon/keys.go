package nftcanon

// keyInfo describes what a meta, ct, rt, socket, xfrm or fib key loads.
type keyInfo struct {
	name  string // as printed, without the expression keyword where nft omits it
	dt    *dtype
	order byteOrder
	bits  int
}

var metaKeys = map[uint32]keyInfo{
	0:  {"meta length", dtInteger, hostOrder, 32},
	1:  {"meta protocol", dtEthType, bigEndian, 16},
	2:  {"meta priority", dtClassid, hostOrder, 32},
	3:  {"meta mark", dtMark, hostOrder, 32},
	4:  {"iif", dtIfindex, hostOrder, 32},
	5:  {"oif", dtIfindex, hostOrder, 32},
	6:  {"iifname", dtIfname, hostOrder, 128},
	7:  {"oifname", dtIfname, hostOrder, 128},
	8:  {"meta iiftype", dtARPHRD, hostOrder, 16},
	9:  {"meta oiftype", dtARPHRD, hostOrder, 16},
	10: {"meta skuid", dtUID, hostOrder, 32},
	11: {"meta skgid", dtGID, hostOrder, 32},
	12: {"meta nftrace", dtInteger, hostOrder, 8},
	13: {"meta rtclassid", dtRealm, hostOrder, 32},
	14: {"meta secmark", dtInteger, hostOrder, 32},
	15: {"meta nfproto", dtNfproto, hostOrder, 8},
	16: {"meta l4proto", dtInetProt, hostOrder, 8},
	17: {"meta ibrname", dtIfname, hostOrder, 128},
	18: {"meta obrname", dtIfname, hostOrder, 128},
	19: {"meta pkttype", dtPktType, hostOrder, 8},
	20: {"meta cpu", dtInteger, hostOrder, 32},
	21: {"iifgroup", dtDevgroup, hostOrder, 32},
	22: {"oifgroup", dtDevgroup, hostOrder, 32},
	23: {"meta cgroup", dtInteger, hostOrder, 32},
	24: {"meta random", dtInteger, bigEndian, 32},
	25: {"meta ipsec", dtBoolean, hostOrder, 8},
	26: {"meta iifkind", dtIfname, hostOrder, 128},
	27: {"meta oifkind", dtIfname, hostOrder, 128},
	28: {"meta ibrpvid", dtInteger, hostOrder, 16},
	29: {"meta ibrvproto", dtEthType, bigEndian, 16},
	30: {"meta time", dtTimeDate, hostOrder, 64},
	31: {"meta day", dtTimeDay, hostOrder, 8},
	32: {"meta hour", dtTimeHour, hostOrder, 32},
	33: {"meta sdif", dtIfindex, hostOrder, 32},
	34: {"meta sdifname", dtIfname, hostOrder, 128},
	35: {"meta broute", dtInteger, hostOrder, 8},
}

func metaKeyInfo(k uint32) keyInfo {
	if ki, ok := metaKeys[k]; ok {
		return ki
	}
	return keyInfo{"meta " + itoa(uint64(k)), dtInteger, hostOrder, 32}
}

// Conntrack keys.
const (
	ctKeyState    = 0
	ctKeyDir      = 1
	ctKeyStatus   = 2
	ctKeyMark     = 3
	ctKeyHelper   = 6
	ctKeyL3       = 7
	ctKeySrc      = 8
	ctKeyDst      = 9
	ctKeyProto    = 10
	ctKeyProtoSrc = 11
	ctKeyProtoDst = 12
	ctKeySrcIP    = 19
	ctKeyDstIP6   = 22
)

var ctKeys = map[uint32]keyInfo{
	0:  {"state", dtCtState, hostOrder, 32},
	1:  {"direction", dtCtDir, hostOrder, 8},
	2:  {"status", dtCtStatus, hostOrder, 32},
	3:  {"mark", dtMark, hostOrder, 32},
	4:  {"secmark", dtInteger, hostOrder, 32},
	5:  {"expiration", dtTime, hostOrder, 32},
	6:  {"helper", dtString, hostOrder, 128},
	7:  {"l3proto", dtNfproto, hostOrder, 8},
	8:  {"saddr", dtIPv4, bigEndian, 32},
	9:  {"daddr", dtIPv4, bigEndian, 32},
	10: {"protocol", dtInetProt, bigEndian, 8},
	11: {"proto-src", dtService, bigEndian, 16},
	12: {"proto-dst", dtService, bigEndian, 16},
	13: {"label", dtCtLabel, hostOrder, 128},
	14: {"packets", dtInteger, hostOrder, 64},
	15: {"bytes", dtInteger, hostOrder, 64},
	16: {"avgpkt", dtInteger, hostOrder, 64},
	17: {"zone", dtInteger, hostOrder, 16},
	18: {"event", dtCtEvent, hostOrder, 32},
	19: {"ip saddr", dtIPv4, bigEndian, 32},
	20: {"ip daddr", dtIPv4, bigEndian, 32},
	21: {"ip6 saddr", dtIPv6, bigEndian, 128},
	22: {"ip6 daddr", dtIPv6, bigEndian, 128},
	23: {"id", dtInteger, bigEndian, 32},
}

func ctKeyInfo(k uint32, fam byte) keyInfo {
	ki, ok := ctKeys[k]
	if !ok {
		return keyInfo{itoa(uint64(k)), dtInteger, hostOrder, 32}
	}
	if (k == ctKeySrc || k == ctKeyDst) && fam == famIPv6 {
		ki.dt, ki.bits = dtIPv6, 128
	}
	return ki
}

var rtKeys = map[uint32]keyInfo{
	0: {"rt classid", dtRealm, hostOrder, 32},
	1: {"rt ip nexthop", dtIPv4, bigEndian, 32},
	2: {"rt ip6 nexthop", dtIPv6, bigEndian, 128},
	3: {"rt mtu", dtInteger, hostOrder, 16},
	4: {"rt ipsec", dtBoolean, hostOrder, 8},
}

func rtKeyInfo(k uint32) keyInfo {
	if ki, ok := rtKeys[k]; ok {
		return ki
	}
	return keyInfo{"rt " + itoa(uint64(k)), dtInteger, hostOrder, 32}
}

var socketKeys = map[uint32]keyInfo{
	0: {"socket transparent", dtInteger, hostOrder, 8},
	1: {"socket mark", dtMark, hostOrder, 32},
	2: {"socket wildcard", dtInteger, hostOrder, 8},
	3: {"socket cgroupv2", dtCgroupV2, hostOrder, 64},
}

func socketKeyInfo(k uint32) keyInfo {
	if ki, ok := socketKeys[k]; ok {
		return ki
	}
	return keyInfo{"socket " + itoa(uint64(k)), dtInteger, hostOrder, 32}
}

var xfrmKeys = map[uint32]keyInfo{
	1: {"ip daddr", dtIPv4, bigEndian, 32},
	2: {"ip6 daddr", dtIPv6, bigEndian, 128},
	3: {"ip saddr", dtIPv4, bigEndian, 32},
	4: {"ip6 saddr", dtIPv6, bigEndian, 128},
	5: {"reqid", dtInteger, hostOrder, 32},
	6: {"spi", dtInteger, bigEndian, 32},
}

func xfrmKeyInfo(k uint32) keyInfo {
	if ki, ok := xfrmKeys[k]; ok {
		return ki
	}
	return keyInfo{itoa(uint64(k)), dtInteger, bigEndian, 32}
}

// fib flags and results.
const (
	fibSaddr   = 1
	fibDaddr   = 2
	fibMark    = 4
	fibIIF     = 8
	fibOIF     = 16
	fibPresent = 32
)

func fibResultInfo(f *fibN) keyInfo {
	if f.flags&fibPresent != 0 {
		name := map[uint32]string{1: "oif", 2: "oifname", 3: "type"}[f.result]
		return keyInfo{name, dtBoolean, hostOrder, 8}
	}
	switch f.result {
	case 1:
		return keyInfo{"oif", dtIfindex, hostOrder, 32}
	case 2:
		return keyInfo{"oifname", dtIfname, hostOrder, 128}
	case 3:
		return keyInfo{"type", dtFIBAddr, hostOrder, 32}
	}
	return keyInfo{itoa(uint64(f.result)), dtInteger, hostOrder, 32}
}

// typeOf returns the datatype, byte order and width of what a node loads.
func (d *delin) typeOf(n node) (*dtype, byteOrder, int) {
	switch n := n.(type) {
	case *payloadN:
		if n.f != nil {
			return n.f.dt, bigEndian, n.f.bits
		}
		return dtRaw, bigEndian, n.bits
	case *exthdrN:
		if n.present {
			return dtBoolean, hostOrder, 8
		}
		if f := exthdrField(n); f != nil {
			return f.dt, bigEndian, f.bits
		}
		return dtInteger, bigEndian, n.bits
	case *metaN:
		ki := metaKeyInfo(n.key)
		return ki.dt, ki.order, ki.bits
	case *ctN:
		ki := ctKeyInfo(n.key, d.fam)
		return ki.dt, ki.order, ki.bits
	case *rtN:
		ki := rtKeyInfo(n.key)
		return ki.dt, ki.order, ki.bits
	case *socketN:
		ki := socketKeyInfo(n.key)
		return ki.dt, ki.order, ki.bits
	case *xfrmN:
		ki := xfrmKeyInfo(n.key)
		return ki.dt, ki.order, ki.bits
	case *fibN:
		ki := fibResultInfo(n)
		return ki.dt, ki.order, ki.bits
	case *numgenN, *hashN:
		return dtInteger, hostOrder, 32
	case *osfN:
		return dtString, hostOrder, 128
	case *binopN:
		return d.typeOf(n.left)
	case *byteorderN:
		dt, _, b := d.typeOf(n.inner)
		return dt, n.order, b
	case *mapN:
		if n.set != nil {
			ps := n.set.dataParts()
			if len(ps) == 1 {
				return ps[0].dt, ps[0].order, ps[0].bytes * 8
			}
		}
	case *immN:
		return dtInteger, bigEndian, len(n.v) * 8
	}
	return dtInteger, bigEndian, d.width(n)
}
