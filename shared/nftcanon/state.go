package nftcanon

import (
	"hash/maphash"
	"maps"

	"github.com/fenceline/fenceline/shared/ruleset"
)

// State is a ruleset as the agent follows it from generation to generation, in memory
// bounded by what the model needs: the messages of tables, chains, sets with their
// elements, objects and flowtables as the kernel sent them, and of each rule only its
// place and its rendered form, not its message. A full read makes one (StateRead), Apply
// moves it by one committed generation, Build makes its model.
//
// A State is not safe for concurrent use.
type State struct {
	d     Dump          // everything but the rules
	rules []*cachedRule // in dump order
	// pending holds the messages of rules that Apply placed and Build has not rendered
	// yet (rendering needs the generation's sets, which may come after the rule).
	pending map[*cachedRule]Msg
}

// stateSeed seeds the rule sums of every State, so that a read can take rules rendered
// for an earlier State.
var stateSeed = maphash.MakeSeed()

// StateRead builds a State from a read in progress: everything but the rules first
// (NewStateRead), then each rule message as the dump delivers it (Rule), in dump order,
// then Finish. Rule messages are not kept, so the memory a read needs is that of the
// State and the model, not of the dump.
type StateRead struct {
	st *State
	b  *builder
}

// NewStateRead starts a read whose dump, without rules, is d (the State takes d's
// messages). Rules of prev, a State of the same ruleset read before, are not rendered
// again when they are still there (see BuildCached); prev may be nil.
func NewStateRead(d *Dump, prev *State) (*StateRead, error) {
	c := newKeyCache()
	if prev != nil && maps.Equal(prev.d.Ifnames, d.Ifnames) {
		c.ifnames = maps.Clone(d.Ifnames)
		for _, r := range prev.rules {
			if r.rule != nil && r.key.table != 0 && r.key.rule != 0 {
				c.rules[r.key] = r
			}
		}
	}
	st := &State{d: *d}
	st.d.Rules, st.d.idx = nil, nil
	b, err := newBuilder(&st.d, c)
	if err != nil {
		return nil, err
	}
	return &StateRead{st: st, b: b}, nil
}

// Rule renders the next rule of the dump. m is not kept: the caller may reuse it.
func (r *StateRead) Rule(m Msg) error {
	cr, err := r.b.render(m)
	if err != nil {
		return err
	}
	if err := r.b.add(cr); err != nil {
		return err
	}
	r.st.rules = append(r.st.rules, cr)
	return nil
}

// Finish ends the read and returns the State and its model.
func (r *StateRead) Finish() (*State, *ruleset.Ruleset, error) {
	rs, err := r.b.finish()
	if err != nil {
		return nil, nil, err
	}
	st := r.st
	r.st, r.b = nil, nil
	return st, rs, nil
}

// RuleCount reports how many rules the State holds.
func (st *State) RuleCount() int { return len(st.rules) }

// Apply applies the messages of one committed generation, as Dump.Apply does. On error
// st is in an undefined state and must be replaced by a full read.
func (st *State) Apply(updates []Update) error {
	return (&applier{d: &st.d, rules: (*stateRules)(st)}).run(updates)
}

// Build makes the model of the State, rendering the rules Apply placed since the last
// Build. On error st is in an undefined state and must be replaced by a full read.
func (st *State) Build() (*ruleset.Ruleset, error) {
	b, err := newBuilder(&st.d, newKeyCache())
	if err != nil {
		return nil, err
	}
	for i, cr := range st.rules {
		if m, ok := st.pending[cr]; ok {
			if cr, err = b.render(m); err != nil {
				return nil, err
			}
			st.rules[i] = cr
		}
		if err := b.add(cr); err != nil {
			return nil, err
		}
	}
	st.pending = nil
	return b.finish()
}

// stateRules is the ruleList of a State.
type stateRules State

func (s *stateRules) len() int { return len(s.rules) }

func (s *stateRules) key(i int) ruleKey {
	r := s.rules[i]
	return ruleKey{fam: r.fam, table: r.table, chain: r.chain, handle: r.key.rule}
}

func (s *stateRules) insert(i int, k ruleKey, u Update) {
	r := &cachedRule{fam: k.fam, table: k.table, chain: k.chain, key: cacheKey{rule: k.handle}}
	if s.pending == nil {
		s.pending = map[*cachedRule]Msg{}
	}
	s.pending[r] = u.Msg
	s.rules = insertAt(s.rules, i, r)
}

func (s *stateRules) drop(drop func(ruleKey) bool) bool {
	n := 0
	for i, r := range s.rules {
		if drop(s.key(i)) {
			delete(s.pending, r)
			continue
		}
		s.rules[n] = r
		n++
	}
	removed := n != len(s.rules)
	clear(s.rules[n:])
	s.rules = s.rules[:n]
	return removed
}
