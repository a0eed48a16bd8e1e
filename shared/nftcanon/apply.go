package nftcanon

import (
	"encoding/binary"
	"errors"
	"fmt"
)

// nf_tables message types (enum nf_tables_msg_types), as Update.Type carries them.
const (
	MsgNewTable     = 0
	MsgDelTable     = 2
	MsgNewChain     = 3
	MsgDelChain     = 5
	MsgNewRule      = 6
	MsgDelRule      = 8
	MsgNewSet       = 9
	MsgDelSet       = 11
	MsgNewSetElem   = 12
	MsgDelSetElem   = 14
	MsgNewGen       = 15
	MsgNewObj       = 18
	MsgDelObj       = 20
	MsgNewFlowtable = 22
	MsgDelFlowtable = 24
)

// ErrNotIncremental is returned by Dump.Apply for an update it cannot apply with
// certainty (a renamed chain, a device list the kernel sends only in part, a rule whose
// neighbour is unknown, a message type it does not know). The caller reads the whole
// ruleset again instead.
var ErrNotIncremental = errors.New("update cannot be applied incrementally")

// Update is one object message of a committed generation as the kernel multicasts it to
// nf_tables listeners (NFNLGRP_NFTABLES): the message type (MsgNewRule …) and
// its payload, in the same format as the answer to a dump request.
type Update struct {
	Type uint16 `json:"type"`
	// Flags are the netlink header flags of the message: a rule notification carries
	// NLM_F_APPEND when the rule was appended or replaced another.
	Flags uint16 `json:"flags,omitempty"`
	Msg   Msg    `json:"msg"`
}

// nlmFAppend is NLM_F_APPEND.
const nlmFAppend = 0x800

// maxUnresolved bounds the passes over rules whose neighbour arrives later in the same
// generation.
const maxUnresolved = 64

// Apply applies the messages of one committed generation, in the order the kernel sent
// them, so that d describes the ruleset after that generation. Volatile state in the
// messages (counters, expirations) is carried like a dump's. On error d is in an
// undefined state and must be replaced by a full read.
func (d *Dump) Apply(updates []Update) error {
	ix, err := d.index()
	if err != nil {
		return err
	}
	return (&applier{d: d, rules: dumpRules{d, ix}}).run(updates)
}

// ruleList is the rules of a state in dump order, as Apply edits them: a Dump's
// messages, or a State's rendered rules.
type ruleList interface {
	len() int
	key(i int) ruleKey
	// insert puts the rule of notification u, whose key is k, at position i.
	insert(i int, k ruleKey, u Update)
	// drop removes the rules drop accepts and reports whether any went.
	drop(drop func(ruleKey) bool) bool
}

// applier applies one generation's updates to a dump (without its rules) and a rule list.
type applier struct {
	d     *Dump
	rules ruleList
	// deleted marks the chains that lost a rule in the generation being applied.
	deleted map[chainKey]bool
}

func (ap *applier) run(updates []Update) error {
	ap.deleted = map[chainKey]bool{}
	var pending []Update
	for _, u := range updates {
		err := ap.apply(u)
		if errors.Is(err, errNoNeighbour) {
			pending = append(pending, u)
			continue
		}
		if err != nil {
			return err
		}
	}
	// A rule's notification names the rule before it at commit time, which may be a
	// rule whose own notification comes later in the generation.
	for pass := 0; len(pending) > 0; pass++ {
		if pass >= maxUnresolved {
			return fmt.Errorf("%w: %d rules without a known neighbour", ErrNotIncremental,
				len(pending))
		}
		var again []Update
		for _, u := range pending {
			err := ap.apply(u)
			if errors.Is(err, errNoNeighbour) {
				again = append(again, u)
				continue
			}
			if err != nil {
				return err
			}
		}
		if len(again) == len(pending) {
			return fmt.Errorf("%w: %d rules without a known neighbour", ErrNotIncremental,
				len(again))
		}
		pending = again
	}
	return nil
}

var errNoNeighbour = errors.New("neighbour rule not known yet")

// ruleKey locates a rule of the dump.
type ruleKey struct {
	fam          byte
	table, chain string
	handle       uint64
}

// dumpIndex is what Apply needs to find objects in a dump quickly; it is built on the
// first Apply and kept in step with the dump's lists.
type dumpIndex struct {
	rules []ruleKey // parallel to Dump.Rules
}

// dumpRules is the ruleList of a Dump.
type dumpRules struct {
	d  *Dump
	ix *dumpIndex
}

func (r dumpRules) len() int          { return len(r.ix.rules) }
func (r dumpRules) key(i int) ruleKey { return r.ix.rules[i] }

func (r dumpRules) insert(i int, k ruleKey, u Update) {
	r.d.Rules = insertAt(r.d.Rules, i, u.Msg)
	r.ix.rules = insertAt(r.ix.rules, i, k)
}

func (r dumpRules) drop(drop func(ruleKey) bool) bool {
	d, ix := r.d, r.ix
	n := 0
	for i, k := range ix.rules {
		if drop(k) {
			continue
		}
		d.Rules[n], ix.rules[n] = d.Rules[i], k
		n++
	}
	removed := n != len(ix.rules)
	clear(d.Rules[n:])
	d.Rules, ix.rules = d.Rules[:n], ix.rules[:n]
	return removed
}

func (d *Dump) index() (*dumpIndex, error) {
	if d.idx != nil && len(d.idx.rules) == len(d.Rules) {
		return d.idx, nil
	}
	ix := &dumpIndex{rules: make([]ruleKey, len(d.Rules))}
	for i, m := range d.Rules {
		k, err := ruleKeyOf(m)
		if err != nil {
			return nil, err
		}
		ix.rules[i] = k
	}
	d.idx = ix
	return ix, nil
}

func ruleKeyOf(m Msg) (ruleKey, error) {
	a, err := msgAttrs(m)
	if err != nil {
		return ruleKey{}, err
	}
	return ruleKey{fam: m.Family(), table: a.str(nftaRuleTable), chain: a.str(nftaRuleChain),
		handle: a.u64(nftaRuleHandle)}, nil
}

func msgAttrs(m Msg) (attrMap, error) {
	if len(m) < 4 {
		return nil, fmt.Errorf("%w: short message", ErrMalformed)
	}
	a, err := parseAttrs(m[4:])
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrMalformed, err)
	}
	return a, nil
}

func (ap *applier) apply(u Update) error {
	d := ap.d
	a, err := msgAttrs(u.Msg)
	if err != nil {
		return err
	}
	fam := u.Msg.Family()
	switch u.Type {
	case MsgNewTable:
		name := a.str(nftaTableName)
		i := findMsg(d.Tables, fam, func(b attrMap) bool { return b.str(nftaTableName) == name })
		d.Tables = upsert(d.Tables, i, u.Msg)
	case MsgDelTable:
		ap.dropTable(fam, a.str(nftaTableName))
	case MsgNewChain:
		return newChain(d, fam, a, u.Msg)
	case MsgDelChain:
		table, name := a.str(nftaChainTable), a.str(nftaChainName)
		d.Chains = removeMsgs(d.Chains, fam, func(b attrMap) bool {
			return b.str(nftaChainTable) == table && b.str(nftaChainName) == name
		})
		ap.rules.drop(func(k ruleKey) bool {
			return k.fam == fam && k.table == table && k.chain == name
		})
	case MsgNewRule:
		return ap.newRule(a, u)
	case MsgDelRule:
		k := ruleKey{fam: fam, table: a.str(nftaRuleTable), chain: a.str(nftaRuleChain),
			handle: a.u64(nftaRuleHandle)}
		if !ap.rules.drop(func(x ruleKey) bool { return x == k }) {
			return fmt.Errorf("%w: deleted rule %d not known", ErrNotIncremental, k.handle)
		}
		ap.deleted[chainKey{k.fam, k.table, k.chain}] = true
	case MsgNewSet:
		table, name := a.str(nftaSetTable), a.str(nftaSetName)
		i := findMsg(d.Sets, fam, func(b attrMap) bool {
			return b.str(nftaSetTable) == table && b.str(nftaSetName) == name
		})
		d.Sets = upsert(d.Sets, i, u.Msg)
		if d.elems(fam, table, name) == nil {
			d.Elements = append(d.Elements, SetElems{Family: fam, Table: table, Set: name})
		}
	case MsgDelSet:
		table, name := a.str(nftaSetTable), a.str(nftaSetName)
		d.Sets = removeMsgs(d.Sets, fam, func(b attrMap) bool {
			return b.str(nftaSetTable) == table && b.str(nftaSetName) == name
		})
		d.dropElems(func(s *SetElems) bool {
			return s.Family == fam && s.Table == table && s.Set == name
		})
	case MsgNewSetElem, MsgDelSetElem:
		return d.applyElems(fam, a, u.Type == MsgNewSetElem)
	case MsgNewObj, MsgDelObj:
		table, name, typ := a.str(nftaObjTable), a.str(nftaObjName), a.u32(nftaObjType)
		match := func(b attrMap) bool {
			return b.str(nftaObjTable) == table && b.str(nftaObjName) == name &&
				b.u32(nftaObjType) == typ
		}
		if u.Type == MsgDelObj {
			d.Objects = removeMsgs(d.Objects, fam, match)
			break
		}
		d.Objects = upsert(d.Objects, findMsg(d.Objects, fam, match), u.Msg)
	case MsgNewFlowtable, MsgDelFlowtable:
		table, name := a.str(nftaFlowtableTable), a.str(nftaFlowtableName)
		match := func(b attrMap) bool {
			return b.str(nftaFlowtableTable) == table && b.str(nftaFlowtableName) == name
		}
		i := findMsg(d.Flowtables, fam, match)
		if u.Type == MsgDelFlowtable {
			d.Flowtables = removeMsgs(d.Flowtables, fam, match)
			break
		}
		if i >= 0 {
			// An update names only the devices it adds.
			return fmt.Errorf("%w: flowtable %s updated", ErrNotIncremental, name)
		}
		d.Flowtables = append(d.Flowtables, u.Msg)
	default:
		return fmt.Errorf("%w: message type %d", ErrNotIncremental, u.Type)
	}
	return nil
}

func newChain(d *Dump, fam byte, a attrMap, m Msg) error {
	table, name, handle := a.str(nftaChainTable), a.str(nftaChainName), a.u64(nftaChainHandle)
	i := findMsg(d.Chains, fam, func(b attrMap) bool {
		return b.str(nftaChainTable) == table && b.u64(nftaChainHandle) == handle
	})
	if i < 0 {
		d.Chains = append(d.Chains, m)
		return nil
	}
	old, err := msgAttrs(d.Chains[i])
	if err != nil {
		return err
	}
	if old.str(nftaChainName) != name {
		// Rules name their chain; a rename would leave them behind.
		return fmt.Errorf("%w: chain %s renamed", ErrNotIncremental, name)
	}
	if h := old.nested(nftaChainHook); h != nil && (h.has(nftaHookDev) || h.has(nftaHookDevs)) {
		// The update's message lists only the devices it changes.
		return fmt.Errorf("%w: chain %s with devices updated", ErrNotIncremental, name)
	}
	d.Chains[i] = m
	return nil
}

// newRule places a notified rule. The kernel names the rule before it
// (NFTA_RULE_POSITION) only for a rule in the middle of its chain; the first and the last
// rule come without, told apart by NLM_F_APPEND (set for appended and for replacing
// rules). A replacing rule without position may be first or last: when its chain lost a
// rule in the same generation and still holds others, the place is not certain.
func (ap *applier) newRule(a attrMap, u Update) error {
	m, rules := u.Msg, ap.rules
	k := ruleKey{fam: m.Family(), table: a.str(nftaRuleTable), chain: a.str(nftaRuleChain),
		handle: a.u64(nftaRuleHandle)}
	n := rules.len()
	for i := range n {
		if rules.key(i) == k {
			return fmt.Errorf("%w: rule %d added twice", ErrNotIncremental, k.handle)
		}
	}
	at := -1
	if a.has(nftaRulePosition) {
		prev := ruleKey{fam: k.fam, table: k.table, chain: k.chain, handle: a.u64(nftaRulePosition)}
		for i := range n {
			if rules.key(i) == prev {
				at = i + 1
				break
			}
		}
		if at < 0 {
			return errNoNeighbour
		}
	} else {
		first, last := -1, -1
		for i := range n {
			if x := rules.key(i); x.fam == k.fam && x.table == k.table && x.chain == k.chain {
				if first < 0 {
					first = i
				}
				last = i
			}
		}
		switch {
		case first < 0:
			at = n
		case u.Flags&nlmFAppend == 0:
			at = first
		case ap.deleted[chainKey{k.fam, k.table, k.chain}]:
			return fmt.Errorf("%w: place of rule %d in %s", ErrNotIncremental, k.handle, k.chain)
		default:
			at = last + 1
		}
	}
	rules.insert(at, k, u)
	return nil
}

func (ap *applier) dropTable(fam byte, table string) {
	d := ap.d
	in := func(attr uint16) func(attrMap) bool {
		return func(b attrMap) bool { return b.str(attr) == table }
	}
	d.Tables = removeMsgs(d.Tables, fam, in(nftaTableName))
	d.Chains = removeMsgs(d.Chains, fam, in(nftaChainTable))
	d.Sets = removeMsgs(d.Sets, fam, in(nftaSetTable))
	d.Objects = removeMsgs(d.Objects, fam, in(nftaObjTable))
	d.Flowtables = removeMsgs(d.Flowtables, fam, in(nftaFlowtableTable))
	d.dropElems(func(s *SetElems) bool { return s.Family == fam && s.Table == table })
	ap.rules.drop(func(k ruleKey) bool { return k.fam == fam && k.table == table })
}

// findMsg returns the index of the first message of family fam that match accepts, or
// -1. Messages that do not parse never match.
func findMsg(msgs []Msg, fam byte, match func(attrMap) bool) int {
	for i, m := range msgs {
		if m.Family() != fam {
			continue
		}
		if a, err := msgAttrs(m); err == nil && match(a) {
			return i
		}
	}
	return -1
}

func removeMsgs(msgs []Msg, fam byte, match func(attrMap) bool) []Msg {
	out := msgs[:0]
	for _, m := range msgs {
		if m.Family() == fam {
			if a, err := msgAttrs(m); err == nil && match(a) {
				continue
			}
		}
		out = append(out, m)
	}
	clear(msgs[len(out):])
	return out
}

func upsert(msgs []Msg, i int, m Msg) []Msg {
	if i >= 0 {
		msgs[i] = m
		return msgs
	}
	return append(msgs, m)
}

func insertAt[T any](s []T, i int, v T) []T {
	var zero T
	s = append(s, zero)
	copy(s[i+1:], s[i:])
	s[i] = v
	return s
}

func (d *Dump) elems(fam byte, table, set string) *SetElems {
	for i := range d.Elements {
		if s := &d.Elements[i]; s.Family == fam && s.Table == table && s.Set == set {
			return s
		}
	}
	return nil
}

func (d *Dump) dropElems(drop func(*SetElems) bool) {
	out := d.Elements[:0]
	for i := range d.Elements {
		if !drop(&d.Elements[i]) {
			out = append(out, d.Elements[i])
		}
	}
	clear(d.Elements[len(out):])
	d.Elements = out
}

// elemID identifies an element within its set: its key, the end of its range and
// whether it closes an interval or is the catch-all element.
type elemID struct {
	key, keyEnd string
	flags       uint32
}

func elemIDOf(b []byte) (elemID, error) {
	a, err := parseAttrs(b)
	if err != nil {
		return elemID{}, err
	}
	id := elemID{flags: a.u32(nftaSetElemFlags) & (elemFlagIntervalEnd | elemFlagCatchall)}
	if k := a.nested(nftaSetElemKey); k != nil {
		id.key = string(k.get(nftaDataValue))
	}
	if k := a.nested(nftaSetElemKeyEnd); k != nil {
		id.keyEnd = string(k.get(nftaDataValue))
	}
	return id, nil
}

// applyElems adds or removes the elements of one NEWSETELEM or DELSETELEM message. The
// set's element messages are kept one element each from then on, so that single
// elements can be removed; an element added again replaces the one it equals.
func (d *Dump) applyElems(fam byte, a attrMap, add bool) error {
	table, set := a.str(nftaSetElemListTable), a.str(nftaSetElemListSet)
	s := d.elems(fam, table, set)
	if s == nil {
		if !add {
			return fmt.Errorf("%w: elements of unknown set %s", ErrNotIncremental, set)
		}
		d.Elements = append(d.Elements, SetElems{Family: fam, Table: table, Set: set})
		s = &d.Elements[len(d.Elements)-1]
	}
	list, err := attrs(a.get(nftaSetElemListElements))
	if err != nil {
		return fmt.Errorf("%w: elements: %v", ErrMalformed, err)
	}
	change := map[elemID][]byte{}
	for _, el := range list {
		id, err := elemIDOf(el.data)
		if err != nil {
			return fmt.Errorf("%w: element: %v", ErrMalformed, err)
		}
		change[id] = el.data
	}
	var kept []Msg
	for _, m := range s.Msgs {
		ma, err := msgAttrs(m)
		if err != nil {
			return err
		}
		els, err := attrs(ma.get(nftaSetElemListElements))
		if err != nil {
			return fmt.Errorf("%w: elements: %v", ErrMalformed, err)
		}
		for _, el := range els {
			id, err := elemIDOf(el.data)
			if err != nil {
				return fmt.Errorf("%w: element: %v", ErrMalformed, err)
			}
			if _, ok := change[id]; ok {
				continue
			}
			if len(els) == 1 {
				kept = append(kept, m)
			} else {
				kept = append(kept, elemMsg(fam, table, set, el.data))
			}
		}
	}
	if add {
		for _, el := range list {
			kept = append(kept, elemMsg(fam, table, set, el.data))
		}
	}
	s.Msgs = kept
	return nil
}

// elemMsg builds a NEWSETELEM payload holding one element.
func elemMsg(fam byte, table, set string, elem []byte) Msg {
	m := Msg{fam, 0, 0, 0}
	m = appendAttr(m, nftaSetElemListTable, append([]byte(table), 0))
	m = appendAttr(m, nftaSetElemListSet, append([]byte(set), 0))
	inner := appendAttr(nil, 1|nlaFNested, elem) // NFTA_LIST_ELEM
	return appendAttr(m, nftaSetElemListElements|nlaFNested, inner)
}

const nlaFNested = 0x8000

func appendAttr(b []byte, typ uint16, data []byte) []byte {
	var hdr [4]byte
	binary.LittleEndian.PutUint16(hdr[:], uint16(4+len(data)))
	binary.LittleEndian.PutUint16(hdr[2:], typ)
	b = append(b, hdr[:]...)
	b = append(b, data...)
	for len(b)%4 != 0 {
		b = append(b, 0)
	}
	return b
}
