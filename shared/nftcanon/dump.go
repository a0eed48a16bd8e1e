package nftcanon

// Msg is the payload of one nf_tables netlink message: the 4-byte nfgenmsg header
// (family, version, resource id) followed by the message's attributes.
type Msg []byte

// Family returns the address family in the message's nfgenmsg header.
func (m Msg) Family() byte {
	if len(m) == 0 {
		return 0
	}
	return m[0]
}

// SetElems holds the answer to one element dump of one set.
type SetElems struct {
	Family byte   `json:"family"`
	Table  string `json:"table"`
	Set    string `json:"set"`
	Msgs   []Msg  `json:"msgs"`
}

// Dump is everything one read of a namespace's ruleset returned, as the kernel sent it:
// per object kind the messages of one dump over all families, in kernel order, plus the
// element dumps of every set (anonymous ones included) and the interface names that
// rules referring to interfaces by index are printed with.
type Dump struct {
	Tables     []Msg      `json:"tables,omitempty"`
	Chains     []Msg      `json:"chains,omitempty"`
	Sets       []Msg      `json:"sets,omitempty"`
	Elements   []SetElems `json:"elements,omitempty"`
	Objects    []Msg      `json:"objects,omitempty"`
	Flowtables []Msg      `json:"flowtables,omitempty"`
	Rules      []Msg      `json:"rules,omitempty"`
	// Ifnames maps interface indexes of the namespace to names (`iif "lo"`). nft prints
	// an index it cannot resolve as a number, and so does Build.
	Ifnames map[uint32]string `json:"ifnames,omitempty"`

	idx *dumpIndex // built by Apply
}

// SetRef names a set in a Dump.
type SetRef struct {
	Family byte
	Table  string
	Name   string
	// TableHandle and Handle are the kernel's handles of the table and the set (0 when
	// the messages lack them); Flags are the set's NFT_SET_* flags.
	TableHandle, Handle uint64
	Flags               uint32
	// Verdicts is set for a verdict map: its elements' jumps and gotos name chains.
	Verdicts bool
}

// Constant reports whether the set's elements can no longer change: an anonymous set
// (constant once its transaction committed) without element timeouts. A constant set
// with the same table and set handles holds the same elements. A verdict map is never
// constant here: the kernel prints its jumps with the chains' current names, and a chain
// can be renamed.
func (s SetRef) Constant() bool {
	const anonymous, constant, timeout = 0x1, 0x2, 0x10 // NFT_SET_*
	return s.Flags&(anonymous|constant) == anonymous|constant && s.Flags&timeout == 0 &&
		s.Handle != 0 && s.TableHandle != 0 && !s.Verdicts
}

// SetRefs lists the sets of the dump's set messages, in order, so that the reader can
// fetch their elements; tables are the dump's table messages, for the table handles.
// Messages that do not parse are skipped; Build reports them.
func SetRefs(tables, sets []Msg) []SetRef {
	th := map[tableKey]uint64{}
	for _, m := range tables {
		if len(m) < 4 {
			continue
		}
		if a, err := parseAttrs(m[4:]); err == nil {
			th[tableKey{m.Family(), a.str(nftaTableName)}] = a.u64(nftaTableHandle)
		}
	}
	var out []SetRef
	for _, m := range sets {
		if len(m) < 4 {
			continue
		}
		a, err := parseAttrs(m[4:])
		if err != nil {
			continue
		}
		table := a.str(nftaSetTable)
		out = append(out, SetRef{Family: m.Family(), Table: table, Name: a.str(nftaSetName),
			TableHandle: th[tableKey{m.Family(), table}], Handle: a.u64(nftaSetHandle),
			Flags: a.u32(nftaSetFlags), Verdicts: a.u32(nftaSetDataType) == verdictType})
	}
	return out
}
