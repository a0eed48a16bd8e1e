package nftcanon

import "strings"

// Expression kinds in set typeof user data (nft's enum expr_types).
const (
	typeofPayload = 7
	typeofExthdr  = 8
	typeofMeta    = 9
	typeofSocket  = 10
	typeofOsf     = 11
	typeofCt      = 12
	typeofConcat  = 13
	typeofNumgen  = 23
	typeofXfrm    = 27
)

// protoByID maps nft's protocol description ids (typeof user data) to headers.
var protoByID = map[uint32]*proto{1: protoAH, 2: protoESP, 3: protoComp, 4: protoICMP,
	5: protoIGMP, 6: protoUDP, 7: protoUDPLite, 8: protoTCP, 9: protoDCCP, 10: protoSCTP,
	11: protoTH, 12: protoIP, 13: protoIP6, 14: protoICMP6, 15: protoARP, 16: protoVlan,
	17: protoEther}

// typeofText prints the `typeof` line of a set declared with typeof, or "" when the set
// was declared with `type` or its user data cannot be read.
func (e *env) typeofText(s *setInfo) string {
	if s.keyTypeof == nil {
		return ""
	}
	k, ok := typeofExpr(s.keyTypeof, s.family)
	if !ok {
		return ""
	}
	t := "typeof " + k
	switch {
	case s.flags&setFlagObject != 0:
		t += " : " + objTypeName(s.objType)
	case s.flags&setFlagMap == 0:
	case s.dataType == verdictType:
		t += " : verdict"
	case s.dataTypeof != nil:
		d, ok := typeofExpr(s.dataTypeof, s.family)
		if !ok {
			return ""
		}
		t += " : " + d
	default:
		t += " : " + typeNames(s.dataType)
	}
	return t
}

// typeofExpr decodes one typeof expression record (kind and kind-specific data).
func typeofExpr(b []byte, fam byte) (string, bool) {
	u := parseUdata(b)
	kind, ok := u.u32(0)
	if !ok {
		return "", false
	}
	data := parseUdata(u[1])
	switch kind {
	case typeofPayload:
		desc, _ := data.u32(0)
		idx, _ := data.u32(1)
		if desc == 0 {
			base, _ := data.u32(2)
			off, _ := data.u32(3)
			n, _ := data.u32(4)
			bases := []string{"", "ll", "nh", "th", "ih"}
			if int(base) >= len(bases) || base == 0 {
				return "", false
			}
			return "@" + bases[base] + "," + itoa(uint64(off)) + "," + itoa(uint64(n)), true
		}
		p := protoByID[desc]
		if p == nil || idx == 0 || int(idx) > len(p.fields) {
			return "", false
		}
		return p.name + " " + p.fields[idx-1].name, true
	case typeofMeta:
		key, ok := data.u32(0)
		if !ok {
			return "", false
		}
		return metaKeyInfo(key).name, true
	case typeofCt:
		key, ok := data.u32(0)
		if !ok {
			return "", false
		}
		dir := -1
		if v, ok := data.u32(1); ok && v <= 1 {
			dir = int(v)
		}
		return "ct " + ctDirText(dir) + ctKeyInfo(key, fam).name, true
	case typeofOsf:
		return "osf name", true
	case typeofNumgen:
		typ, _ := data.u32(0)
		mod, _ := data.u32(1)
		off, _ := data.u32(2)
		t := "numgen inc"
		if typ == 1 {
			t = "numgen random"
		}
		t += " mod " + itoa(uint64(mod))
		if off != 0 {
			t += " offset " + itoa(uint64(off))
		}
		return t, true
	case typeofXfrm:
		key, _ := data.u32(0)
		dir, _ := data.u32(1)
		spnum, _ := data.u32(2)
		return (&printer{}).expr(&xfrmN{key: key, dir: uint8(dir), spnum: spnum}), true
	case typeofConcat:
		var parts []string
		for i := uint8(0); ; i++ {
			item, ok := data[i]
			if !ok {
				break
			}
			t, ok := typeofExpr(item, fam)
			if !ok {
				return "", false
			}
			parts = append(parts, t)
		}
		if len(parts) == 0 {
			return "", false
		}
		return strings.Join(parts, " . "), true
	}
	// TODO: typeof with exthdr, socket, rt, fib and hash keys falls back to `type`.
	return "", false
}

// typeofParts types the components of a key or data declared with typeof, which says
// more than the datatype ids: the width of integers and which values are raw payload.
func typeofParts(b []byte, fam byte) ([]part, bool) {
	if b == nil {
		return nil, false
	}
	u := parseUdata(b)
	kind, ok := u.u32(0)
	if !ok {
		return nil, false
	}
	data := parseUdata(u[1])
	ki := func(k keyInfo) ([]part, bool) {
		return []part{{dt: k.dt, bytes: (k.bits + 7) / 8, order: k.order, bits: k.bits}}, true
	}
	switch kind {
	case typeofPayload:
		desc, _ := data.u32(0)
		idx, _ := data.u32(1)
		if desc == 0 {
			n, _ := data.u32(4)
			return []part{{dt: dtRaw, bytes: (int(n) + 7) / 8, order: bigEndian, bits: int(n)}}, true
		}
		p := protoByID[desc]
		if p == nil || idx == 0 || int(idx) > len(p.fields) {
			return nil, false
		}
		f := p.fields[idx-1]
		return []part{{dt: f.dt, bytes: (f.bits + 7) / 8, order: bigEndian, bits: f.bits}}, true
	case typeofMeta:
		k, ok := data.u32(0)
		if !ok {
			return nil, false
		}
		return ki(metaKeyInfo(k))
	case typeofCt:
		k, ok := data.u32(0)
		if !ok {
			return nil, false
		}
		return ki(ctKeyInfo(k, fam))
	case typeofXfrm:
		k, _ := data.u32(0)
		return ki(xfrmKeyInfo(k))
	case typeofNumgen:
		return ki(keyInfo{"", dtInteger, hostOrder, 32})
	case typeofOsf:
		return ki(keyInfo{"", dtString, hostOrder, 128})
	case typeofConcat:
		var out []part
		for i := uint8(0); ; i++ {
			item, ok := data[i]
			if !ok {
				break
			}
			ps, ok := typeofParts(item, fam)
			if !ok {
				return nil, false
			}
			out = append(out, ps...)
		}
		return out, len(out) > 0
	}
	return nil, false
}
