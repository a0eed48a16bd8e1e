package nftparse

// The parsed form of a rule: expressions and statements, untyped. Constants keep their
// text until the compiler knows what they are compared with.

// at is where a syntax element starts and ends in the input.
type at struct{ pos, end int }

func (a at) span() at { return a }

type expr interface{ span() at }

type (
	// ePayload is a header field: `ip saddr`, `tcp dport`, `th dport`.
	ePayload struct {
		at
		p *proto
		f *field
	}
	// eRaw is a raw payload load: `@nh,8,8`.
	eRaw struct {
		at
		base, off, bits int
	}
	// eExthdr is an IPv6 extension header or TCP option field, or its presence.
	eExthdr struct {
		at
		op, typ uint32
		f       *field // nil for a presence test
	}
	eMeta struct {
		at
		ki keyInfo
	}
	eCt struct {
		at
		ki  keyInfo
		dir int // -1: none
	}
	eRt struct {
		at
		ki keyInfo
	}
	eSocket struct {
		at
		ki keyInfo
	}
	eFib struct {
		at
		flags   uint32
		result  keyInfo
		present bool
	}
	eNumgen struct {
		at
		typ, mod, off uint32
	}
	eHash struct {
		at
		sym             bool
		src             expr
		mod, seed, off  uint32
		hasSeed, hasOff bool
	}
	eConcat struct {
		at
		items []expr
	}
	eBinop struct {
		at
		op    binop
		left  expr
		right expr // a constant
	}
	// eMap is `key map { … }` or `key map @name`.
	eMap struct {
		at
		key expr
		set expr // *eSet or *eSetRef
	}

	// eConst is one constant token, typed later.
	eConst struct {
		at
		text   string
		quoted bool
	}
	// eList is a comma- or |-separated list of flags: `established,related`, `(syn|ack)`.
	eList struct {
		at
		items []expr
	}
	// eRange is `lo-hi` written with a separate dash (`"08:00"-"17:00"`).
	eRange struct {
		at
		lo, hi expr
	}
	// eValConcat is a concatenation of constants: `10.0.0.1 . 22`.
	eValConcat struct {
		at
		items []expr
	}
	eSet struct {
		at
		elems []*setElem
	}
	eSetRef struct {
		at
		name string
	}
	eVerdict struct {
		at
		code  int32
		chain string
	}
)

// setElem is one element of a set literal.
type setElem struct {
	key     expr
	data    expr // nil in a plain set
	timeout string
	comment string
	stmts   []stmt
}

type binop uint8

const (
	opAnd binop = iota
	opOr
	opXor
	opLshift
	opRshift
)

type relOp uint8

const (
	relImplicit relOp = iota
	relEq
	relNeq
	relLt
	relLte
	relGt
	relGte
	relNeg // `ct state ! established`
)

// Verdict codes.
const (
	verdictDrop     = 0
	verdictAccept   = 1
	verdictQueue    = 3
	verdictContinue = -1
	verdictJump     = -3
	verdictGoto     = -4
	verdictReturn   = -5
)

type stmt interface{ span() at }

type (
	sMatch struct {
		at
		left  expr
		op    relOp
		right expr
		mask  expr // `value / mask` of flag tests
	}
	sVerdict struct {
		at
		v eVerdict
	}
	sVmap struct {
		at
		key expr
		set expr
	}
	sCounter struct{ at }
	sLog     struct {
		at
		prefix     string
		hasPrefix  bool
		group      uint16
		hasGroup   bool
		snaplen    uint32
		hasSnap    bool
		qthreshold uint16
		hasQ       bool
		level      uint32
		hasLevel   bool
		flags      uint32
	}
	sLimit struct {
		at
		rate, unit uint64
		burst      uint32
		bytes      bool
		over       bool
	}
	sQuota struct {
		at
		bytes uint64
		over  bool
	}
	sReject struct {
		at
		with string // "", "tcp reset", "icmp", "icmpv6", "icmpx"
		code expr
	}
	sNat struct {
		at
		kind    string // snat, dnat, masquerade, redirect
		family  string // "", "ip", "ip6"
		prefix  bool
		addr    expr
		addrHi  expr
		port    expr
		portHi  expr
		flags   uint32
		hasAddr bool
	}
	// sSet is `target set value` for meta, ct, payload and exthdr targets.
	sSet struct {
		at
		target expr
		value  expr
	}
	sNotrack struct{ at }
	sObjref  struct {
		at
		typ  uint32
		name string
		m    *eMap
	}
	sDynset struct {
		at
		op      uint32
		set     string
		key     expr
		data    expr
		timeout uint64
		hasTO   bool
		stmts   []stmt
	}
	sFwd struct {
		at
		family string
		addr   expr
		dev    expr
	}
	sDup struct {
		at
		addr expr
		dev  expr
	}
	sQueue struct {
		at
		num, total uint16
		flags      uint32
	}
	sConnlimit struct {
		at
		count uint32
		over  bool
	}
	sFlow struct {
		at
		table string
	}
	sTproxy struct {
		at
		family string
		addr   expr
		port   expr
	}
	sSynproxy struct {
		at
		mss    uint16
		wscale uint8
		flags  uint32
	}
)
