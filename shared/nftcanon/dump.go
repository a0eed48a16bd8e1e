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
}

// SetRefs lists the sets of the dump's set messages, in order, so that the reader can
// fetch their elements. Messages that do not parse are skipped; Build reports them.
func SetRefs(sets []Msg) []SetRef {
	var out []SetRef
	for _, m := range sets {
		if len(m) < 4 {
			continue
		}
		a, err := parseAttrs(m[4:])
		if err != nil {
			continue
		}
		out = append(out, SetRef{Family: m.Family(), Table: a.str(nftaSetTable),
			Name: a.str(nftaSetName)})
	}
	return out
}
