package nftcanon

import "github.com/fenceline/fenceline/shared/ruleset"

// buildMemo remembers, from one build of a State to the next, what the build made of
// the messages a generation did not change: parsed chains with the chain of the last
// model, parsed sets and elements, rendered named sets. A generation then costs what it
// touched, and the chains and sets it did not touch are the same objects in both models
// (ruleset.ChainDigests and ruleset.Diff make use of that). Messages are known by their
// memory: the State holds them and never modifies one in place (Apply replaces them),
// and the memo holds the pointers, so the memory cannot carry another message while an
// entry exists. Entries a build did not use are dropped at its end.
type buildMemo struct {
	chains, nextChains map[*byte]*chainMemo
	sets, nextSets     map[*byte]*setInfo // parsed, without elements or dynTarget
	elems, nextElems   map[elemsKey][]elem
	named, nextNamed   map[namedKey]*ruleset.Set
}

type chainMemo struct {
	table   string
	binding bool
	chain   *ruleset.Chain // as the last model has it, rules included
}

// elemsKey identifies the element messages of a set: the slice's backing array (Apply
// makes a new one whenever it changes the elements) and its length.
type elemsKey struct {
	p *Msg
	n int
}

// namedKey identifies a rendered named set: its message, its elements, and whether rules
// fill it.
type namedKey struct {
	set   *byte
	elems elemsKey
	dyn   bool
}

func (m *buildMemo) begin() {
	if m == nil {
		return
	}
	m.nextChains = make(map[*byte]*chainMemo, len(m.chains))
	m.nextSets = make(map[*byte]*setInfo, len(m.sets))
	m.nextElems = make(map[elemsKey][]elem, len(m.elems))
	m.nextNamed = make(map[namedKey]*ruleset.Set, len(m.named))
}

func (m *buildMemo) end() {
	if m == nil {
		return
	}
	m.chains, m.nextChains = m.nextChains, nil
	m.sets, m.nextSets = m.nextSets, nil
	m.elems, m.nextElems = m.nextElems, nil
	m.named, m.nextNamed = m.nextNamed, nil
}

func msgKey(m Msg) *byte {
	if len(m) == 0 {
		return nil
	}
	return &m[0]
}

func keyOfElems(msgs []Msg) elemsKey {
	if len(msgs) == 0 {
		return elemsKey{}
	}
	return elemsKey{&msgs[0], len(msgs)}
}

// chain returns the parsed chain message m: the chain of the last model when m is the
// message it was made from (shared reports that), else a new chain without rules.
func (m *buildMemo) chain(msg Msg) (table string, c *ruleset.Chain, binding, shared bool,
	err error) {
	if m != nil {
		if cm, ok := m.chains[msgKey(msg)]; ok {
			return cm.table, cm.chain, cm.binding, true, nil
		}
	}
	table, c, binding, err = parseChain(msg)
	return table, c, binding, false, err
}

// set returns a new parse of set message msg.
func (m *buildMemo) set(msg Msg) (*setInfo, error) {
	if m != nil {
		if s, ok := m.sets[msgKey(msg)]; ok {
			m.nextSets[msgKey(msg)] = s
			c := *s
			return &c, nil
		}
	}
	s, err := parseSet(msg)
	// Anonymous sets are not kept (State.dropAnonymous).
	if err != nil || m == nil || msgKey(msg) == nil || s.isAnonymous() {
		return s, err
	}
	c := *s
	m.nextSets[msgKey(msg)] = &c
	return s, nil
}

// elements returns the parsed elements of msgs; they are shared and never modified. The
// elements of anonymous sets (anon) are not kept.
func (m *buildMemo) elements(msgs []Msg, anon bool) ([]elem, error) {
	k := keyOfElems(msgs)
	if anon {
		return parseElems(msgs)
	}
	if m != nil && k.p != nil {
		if els, ok := m.elems[k]; ok {
			m.nextElems[k] = els
			return els, nil
		}
	}
	els, err := parseElems(msgs)
	if err == nil && m != nil && k.p != nil {
		m.nextElems[k] = els
	}
	return els, err
}
