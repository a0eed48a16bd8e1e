package nftcanon

// The intermediate form of a rule: register contents (nodes) and statements. A rule's
// expressions are read into statements with registers resolved (delin.go), the
// statements are put into nft's printed form (post.go) and printed (print.go).

// node is an expression that produces a value in a register or describes one.
type node interface{}

type payloadN struct {
	base      int
	off, bits int // bits from the start of the base
	p         *proto
	f         *field
	ctxp      *proto // the protocol the context gives this base, field or not
	// partial is set when the load covers only the leading bits of field f: nft loads
	// just the bytes a byte-aligned prefix match needs (`ip saddr 10.0.0.0/8`).
	partial int
	// shift is how far a folded field sits from the low end of the bytes set elements
	// hold for it.
	shift int
}

type exthdrN struct {
	op, typ   uint32
	off, bits int // bytes as dumped, times 8
	present   bool
	f         *field // a sub-byte field selected by a mask
	shift     int
}

type metaN struct{ key uint32 }

type ctN struct {
	key uint32
	dir int // -1: no direction
}

type rtN struct{ key uint32 }

type socketN struct{ key, level uint32 }

type osfN struct{ ttl, flags uint32 }

type fibN struct{ flags, result uint32 }

type numgenN struct{ typ, mod, off uint32 }

type hashN struct {
	typ           uint32
	src           node
	mod, seed     uint32
	off           uint32
	hasSeed       bool
	hasOff, isSym bool
}

type xfrmN struct {
	key, spnum uint32
	dir        uint8
}

type concatN struct{ items []node }

type binop uint8

const (
	opAnd binop = iota
	opOr
	opXor
	opLshift
	opRshift
)

type binopN struct {
	op    binop
	left  node
	right value
}

// byteorderN converts the value below it; printing shows only the value below.
type byteorderN struct {
	inner node
	order byteOrder // order of the result
	bytes int
}

// immN is a constant loaded into a register.
type immN struct{ v []byte }

// mapN is `key map @set` (or vmap when it feeds the verdict register).
type mapN struct {
	key node
	set *setInfo
}

// unknownN stands for an empty register.
type unknownN struct{ reg uint32 }

// Right-hand sides of relational statements.
type (
	valR   struct{ v []byte }
	setR   struct{ set *setInfo }
	rangeR struct{ lo, hi []byte }
)

type relOp uint8

const (
	relEq relOp = iota
	relNeq
	relLt
	relLte
	relGt
	relGte
	relImplicit // set lookup
)

// stmt is one printed statement of a rule.
type stmt interface{}

type relS struct {
	op    relOp
	left  node
	right interface{}
	// prefixLen is the length of a string prefix match (`iifname "eth*"`), 0 otherwise.
	prefixLen int
	// prefixBits is the number of leading bits a shorter comparison covers, for types
	// that print prefixes (`ct original ip saddr 192.168.1.0/24`).
	prefixBits int
	killed     bool
}

type verdictS struct {
	v    verdictData
	vmap *mapN
}

type counterS struct{}

type limitS struct {
	rate, unit uint64
	burst      uint32
	bytes      bool
	over       bool
}

type logS struct {
	prefix        string
	hasPrefix     bool
	group         uint16
	hasGroup      bool
	snaplen       uint32
	qthreshold    uint16
	level         uint32
	hasLevel      bool
	flags         uint32
	hasSnap, hasQ bool
}

type rejectS struct {
	typ  uint32
	code uint8
	l3   *proto // network protocol known from the context, for inet/bridge/netdev
}

type natS struct {
	kind           string // snat, dnat, masquerade, redirect
	family         uint32
	addrMin        node
	addrMax        node
	protoMin       node
	protoMax       node
	flags          uint32
	hasAddr, hasPr bool
}

type notrackS struct{}

type objrefS struct {
	typ  uint32
	name string
	m    *mapN
}

type dynsetS struct {
	op         uint32
	set        *setInfo
	key, data  node
	timeout    uint64
	hasTimeout bool
	exprs      []rawExpr
}

type quotaS struct {
	bytes uint64
	over  bool
}

type queueS struct {
	num, total uint16
	flags      uint32
	sreg       node
}

type dupS struct{ addr, dev node }

type fwdS struct {
	dev, addr node
	nfproto   uint32
	hasProto  bool
}

type tproxyS struct {
	family     uint32
	addr, port node
}

type synproxyS struct {
	mss    uint16
	wscale uint8
	flags  uint32
	hasMSS bool
	hasWsc bool
}

type connlimitS struct {
	count uint32
	over  bool
}

type flowS struct{ table string }

type lastS struct{}

type metaSetS struct {
	key uint32
	src node
}

type ctSetS struct {
	key uint32
	dir int
	src node
}

type payloadSetS struct {
	dst *payloadN
	src node
	// field and val are set for a read-modify-write of a field narrower than the bytes
	// written: `ip dscp set cs1`.
	field *payloadN
	val   []byte
}

type exthdrSetS struct {
	dst *exthdrN
	src node
}

// exthdrResetS is `reset tcp option NAME`.
type exthdrResetS struct{ x *exthdrN }

// rawS is a statement kept in the lossless fallback form.
type rawS struct{ text string }
