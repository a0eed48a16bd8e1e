package nftcanon

import (
	"fmt"
	"hash/maphash"
	"maps"
	"slices"
	"strings"

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
	memo    buildMemo // of the last Build
	// last is the model of the last Build (or of the read), dirty the chains whose
	// rules Apply changed since, and structural whether it changed anything else: when
	// not, Build patches last (see quickBuild).
	last       *ruleset.Ruleset
	dirty      map[chainKey]bool
	structural bool
	quick      int // builds quickBuild made, for tests
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
		c.seq = prev.rules
	}
	st := &State{d: *d}
	st.d.Rules, st.d.idx = nil, nil
	// The memo learns the chains and named sets of the read, for the first Build.
	b, err := newBuilder(&st.d, c, &st.memo)
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
	r.b.dropSets()
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
	st.dropAnonymous()
	st.last = rs
	return st, rs, nil
}

// dropAnonymous forgets the anonymous constant sets and their elements once their rules
// are rendered: they are printed inside their rule, and the kernel binds each to the one
// rule it was made with, so no later rule can refer to one (a new rule comes with its
// own, in the same generation). Deleting one (with its rule) finds nothing to delete.
func (st *State) dropAnonymous() {
	const anonConst = setFlagAnonymous | setFlagConstant
	type name struct {
		fam        byte
		table, set string
	}
	gone := map[name]bool{}
	st.d.Sets = slices.DeleteFunc(st.d.Sets, func(m Msg) bool {
		a, err := msgAttrs(m)
		if err != nil || a.u32(nftaSetFlags)&anonConst != anonConst {
			return false
		}
		gone[name{m.Family(), a.str(nftaSetTable), a.str(nftaSetName)}] = true
		return true
	})
	if len(gone) == 0 {
		return
	}
	st.d.Elements = slices.DeleteFunc(st.d.Elements, func(se SetElems) bool {
		return gone[name{se.Family, se.Table, se.Set}]
	})
	st.d.Sets = slices.Clip(st.d.Sets)
	st.d.Elements = slices.Clip(st.d.Elements)
}

// Ifnames are the interface names by index the State's rules were rendered with.
func (st *State) Ifnames() map[uint32]string { return st.d.Ifnames }

// RuleCount reports how many rules the State holds.
func (st *State) RuleCount() int { return len(st.rules) }

// Apply applies the messages of one committed generation, as Dump.Apply does. On error
// st is in an undefined state and must be replaced by a full read.
func (st *State) Apply(updates []Update) error {
	if st.dirty == nil {
		st.dirty = map[chainKey]bool{}
	}
	for _, u := range updates {
		if u.Type != MsgNewRule && u.Type != MsgDelRule {
			st.structural = true
			continue
		}
		a, err := msgAttrs(u.Msg)
		if err != nil {
			return err
		}
		st.dirty[chainKey{u.Msg.Family(), a.str(nftaRuleTable), a.str(nftaRuleChain)}] = true
	}
	return (&applier{d: &st.d, rules: (*stateRules)(st)}).run(updates)
}

// Build makes the model of the State, rendering the rules Apply placed since the last
// Build. What the last Build made of the chains and sets a generation did not touch is
// used as it is: those chains and sets are the very objects of the last model. On error
// st is in an undefined state and must be replaced by a full read.
func (st *State) Build() (*ruleset.Ruleset, error) {
	rs, ok, err := st.quickBuild()
	if err != nil {
		return nil, err
	}
	if ok {
		st.quick++
	} else if rs, err = st.fullBuild(); err != nil {
		return nil, err
	}
	st.last, st.dirty, st.structural = rs, nil, false
	return rs, nil
}

// quickBuild makes the model when the generations since the last Build changed only the
// rules of some chains: the last model with those chains, and their tables, replaced by
// new ones; everything else is shared. It reports false when it cannot (anything but
// rules changed, a rule fills a set or jumps to an anonymous chain, a chain's rules are
// not one run); fullBuild then makes the model.
func (st *State) quickBuild() (*ruleset.Ruleset, bool, error) {
	if st.last == nil || st.structural {
		return nil, false, nil
	}
	var b *builder
	for i, cr := range st.rules {
		m, ok := st.pending[cr]
		if !ok {
			continue
		}
		if b == nil {
			var err error
			if b, err = newRenderer(&st.d); err != nil {
				return nil, false, err
			}
		}
		r, err := b.render(m)
		if err != nil {
			return nil, false, err
		}
		b.dropSets()
		st.rules[i] = r
		delete(st.pending, cr)
	}
	runs := map[chainKey][]*ruleset.Rule{}
	for i := 0; i < len(st.rules); {
		r := st.rules[i]
		k := *r.at
		j := i
		for j < len(st.rules) && (st.rules[j].at == r.at || *st.rules[j].at == k) {
			j++
		}
		if st.dirty[k] {
			if _, seen := runs[k]; seen {
				return nil, false, nil
			}
			list := make([]*ruleset.Rule, 0, j-i)
			for _, x := range st.rules[i:j] {
				if x.dynTargets != nil || strings.Contains(x.rule.Text, "__chain") {
					return nil, false, nil
				}
				list = append(list, x.rule)
			}
			runs[k] = list
		}
		i = j
	}
	rs := &ruleset.Ruleset{Tables: slices.Clone(st.last.Tables)}
	for k := range st.dirty {
		ti := slices.IndexFunc(rs.Tables, func(t *ruleset.Table) bool {
			return t.Family == FamilyName(k.fam) && t.Name == k.table
		})
		if ti < 0 {
			return nil, false, nil
		}
		t := rs.Tables[ti]
		ci := slices.IndexFunc(t.Chains, func(c *ruleset.Chain) bool { return c.Name == k.chain })
		if ci < 0 {
			return nil, false, nil // a binding chain, or not known
		}
		if t == st.last.Tables[ti] {
			nt := *t
			nt.Chains = slices.Clone(t.Chains)
			t = &nt
			rs.Tables[ti] = t
		}
		nc := *t.Chains[ci]
		nc.Rules = runs[k]
		t.Chains[ci] = &nc
	}
	return rs, true, nil
}

// fullBuild makes the model from the State's messages and rules, with what the memo
// knows of those that did not change.
func (st *State) fullBuild() (*ruleset.Ruleset, error) {
	b, err := newBuilder(&st.d, newKeyCache(), &st.memo)
	if err != nil {
		return nil, err
	}
	b.strict = true
	for i, cr := range st.rules {
		if m, ok := st.pending[cr]; ok {
			r, err := b.render(m)
			if err != nil {
				return nil, err
			}
			b.dropSets()
			st.rules[i] = r
		}
	}
	st.pending = nil
	st.dropAnonymous()
	// A chain's rules are one run of st.rules (Apply inserts next to a neighbour or at
	// the end); a chain of the last model stays when its run holds the same rules.
	for i := 0; i < len(st.rules); {
		r := st.rules[i]
		k := *r.at
		j := i
		for j < len(st.rules) && (st.rules[j].at == r.at || *st.rules[j].at == k) {
			b.dynTargets(st.rules[j])
			j++
		}
		run := st.rules[i:j]
		i = j
		c, ok := b.chains[k]
		if !ok {
			return nil, fmt.Errorf("%w: rule in unknown chain %s %s %s", ErrMalformed,
				FamilyName(k.fam), k.table, k.chain)
		}
		info := b.infos[k]
		if info.shared {
			if !info.done && sameRules(c.Rules, run) {
				info.done = true
				continue
			}
			nc := *c
			nc.Rules = nil
			if info.done {
				nc.Rules = slices.Clone(c.Rules)
			}
			c = &nc
			b.replaceChain(k, c)
		}
		info.done = true
		for _, r := range run {
			c.Rules = append(c.Rules, r.rule)
		}
	}
	// Chains of the last model that lost all their rules.
	for k, info := range b.infos {
		if info.shared && !info.done && len(b.chains[k].Rules) > 0 {
			nc := *b.chains[k]
			nc.Rules = nil
			b.replaceChain(k, &nc)
		}
	}
	return b.finish()
}

func sameRules(rules []*ruleset.Rule, run []*cachedRule) bool {
	if len(rules) != len(run) {
		return false
	}
	for i, r := range run {
		if rules[i] != r.rule {
			return false
		}
	}
	return true
}

// stateRules is the ruleList of a State.
type stateRules State

func (s *stateRules) len() int { return len(s.rules) }

func (s *stateRules) key(i int) ruleKey {
	r := s.rules[i]
	return ruleKey{fam: r.at.fam, table: r.at.table, chain: r.at.chain, handle: r.key.rule}
}

func (s *stateRules) insert(i int, k ruleKey, u Update) {
	r := &cachedRule{at: &chainKey{k.fam, k.table, k.chain}, key: cacheKey{rule: k.handle}}
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
			if r.dynTargets != nil {
				s.structural = true // a set may no longer be filled by any rule
			}
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
