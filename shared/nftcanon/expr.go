package nftcanon

import (
	"encoding/binary"
	"errors"
)

// rawExpr is one expression of a rule as the kernel dumps it.
type rawExpr struct {
	name string
	data []byte // NFTA_EXPR_DATA payload
	a    attrMap
}

// parseExpr decodes one NFTA_LIST_ELEM expression (name and data).
func parseExpr(b []byte) (rawExpr, error) {
	m, err := parseAttrs(b)
	if err != nil {
		return rawExpr{}, err
	}
	e := rawExpr{name: m.str(nftaExprName), data: m.get(nftaExprData)}
	if e.name == "" {
		return e, errors.New("expression without name")
	}
	if e.a, err = parseAttrs(e.data); err != nil {
		return e, err
	}
	return e, nil
}

// parseExprList decodes a list of NFTA_LIST_ELEM expressions, skipping broken ones.
func parseExprList(b []byte) []rawExpr {
	list, err := attrs(b)
	if err != nil {
		return nil
	}
	var out []rawExpr
	for _, la := range list {
		if e, err := parseExpr(la.data); err == nil {
			out = append(out, e)
		}
	}
	return out
}

// Expression attributes, per expression kind.
const (
	immDreg = 1
	immData = 2

	cmpSreg = 1
	cmpOp   = 2
	cmpData = 3

	bitSreg = 1
	bitDreg = 2
	bitLen  = 3
	bitMask = 4
	bitXor  = 5
	bitOp   = 6
	bitData = 7

	boSreg = 1
	boDreg = 2
	boOp   = 3
	boLen  = 4
	boSize = 5

	rangeSreg = 1
	rangeOp   = 2
	rangeFrom = 3
	rangeTo   = 4

	lookupSet   = 1
	lookupSreg  = 2
	lookupDreg  = 3
	lookupFlags = 5

	plDreg      = 1
	plBase      = 2
	plOffset    = 3
	plLen       = 4
	plSreg      = 5
	plCsumType  = 6
	plCsumOff   = 7
	plCsumFlags = 8

	metaDreg = 1
	metaKey  = 2
	metaSreg = 3

	ctDreg = 1
	ctKey  = 2
	ctDir  = 3
	ctSreg = 4

	exthdrDreg   = 1
	exthdrType   = 2
	exthdrOffset = 3
	exthdrLen    = 4
	exthdrFlags  = 5
	exthdrOp     = 6
	exthdrSreg   = 7
)

// nested value helpers for expression attributes holding nft_data.
func (m attrMap) data(t uint16) []byte { return dataValue(m.get(t)) }

func (m attrMap) verdict(t uint16) (verdictData, bool) { return dataVerdict(m.get(t)) }

// reg32 maps a register number to 32-bit register units: the four 16-byte registers
// NFT_REG_1..4 alias NFT_REG32_00..15 (numbers 8..23).
func reg32(r uint32) uint32 {
	if r >= 1 && r <= 4 {
		return 8 + (r-1)*4
	}
	return r
}

func be32(b []byte) uint32 {
	if len(b) < 4 {
		return 0
	}
	return binary.BigEndian.Uint32(b)
}
