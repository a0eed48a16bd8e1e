package ruleset

import (
	"slices"
)

// ChangeKind names one kind of difference between two rulesets.
type ChangeKind string

// The kinds of change Diff reports. Adding or removing a table or chain also reports
// every rule, set and element that came or went with it, so a consumer that looks only
// at rules sees every rule that changed.
const (
	TableAdded   ChangeKind = "table_added"
	TableRemoved ChangeKind = "table_removed"
	TableChanged ChangeKind = "table_changed" // flags or comment
	ChainAdded   ChangeKind = "chain_added"
	ChainRemoved ChangeKind = "chain_removed"
	ChainPolicy  ChangeKind = "chain_policy"  // only the base-chain policy changed
	ChainChanged ChangeKind = "chain_changed" // type, hook, priority, devices or comment
	RuleAdded    ChangeKind = "rule_added"
	RuleRemoved  ChangeKind = "rule_removed"
	// RuleMoved is a rule whose text is unchanged at a new place in its chain: Position is
	// the new one, FromPosition the old one.
	RuleMoved        ChangeKind = "rule_moved"
	SetAdded         ChangeKind = "set_added"
	SetRemoved       ChangeKind = "set_removed"
	SetChanged       ChangeKind = "set_changed" // declaration (type, flags, timeout …)
	ElementAdded     ChangeKind = "element_added"
	ElementRemoved   ChangeKind = "element_removed"
	ObjectAdded      ChangeKind = "object_added"
	ObjectRemoved    ChangeKind = "object_removed"
	ObjectChanged    ChangeKind = "object_changed"
	FlowtableAdded   ChangeKind = "flowtable_added"
	FlowtableRemoved ChangeKind = "flowtable_removed"
	FlowtableChanged ChangeKind = "flowtable_changed"
)

// Change is one difference. Which fields are set depends on Kind: Chain for chain and
// rule changes, Position and Rule for rule changes (and FromPosition for a move), Set and
// Element for set changes, Object for object changes, Before and After for declarations
// that changed.
type Change struct {
	Kind   ChangeKind `json:"kind"`
	Family string     `json:"family"`
	Table  string     `json:"table"`
	Chain  string     `json:"chain,omitempty"`
	// Position is the rule's 1-based position in its chain: in the new ruleset for an
	// added or moved rule, in the old one for a removed rule.
	Position int `json:"position,omitempty"`
	// FromPosition is a moved rule's 1-based position in the old ruleset.
	FromPosition int    `json:"from_position,omitempty"`
	Rule         string `json:"rule,omitempty"`
	Set          string `json:"set,omitempty"`
	Element      string `json:"element,omitempty"`
	Object       string `json:"object,omitempty"` // "type name", e.g. "counter http"
	Before       string `json:"before,omitempty"`
	After        string `json:"after,omitempty"`
}

// Diff returns the changes that turn old into new, in a deterministic order: tables by
// family and name; inside a table objects, sets, flowtables, then chains; rule changes of
// a chain in position order. A nil ruleset is empty.
func Diff(old, new *Ruleset) []Change {
	if old == nil {
		old = &Ruleset{}
	}
	if new == nil {
		new = &Ruleset{}
	}
	var out []Change
	oldT := map[[2]string]*Table{}
	for _, t := range old.Tables {
		oldT[[2]string{t.Family, t.Name}] = t
	}
	newT := map[[2]string]*Table{}
	for _, t := range new.Tables {
		newT[[2]string{t.Family, t.Name}] = t
	}
	keys := make([][2]string, 0, len(oldT)+len(newT))
	for k := range oldT {
		keys = append(keys, k)
	}
	for k := range newT {
		if _, ok := oldT[k]; !ok {
			keys = append(keys, k)
		}
	}
	slices.SortFunc(keys, func(a, b [2]string) int {
		if c := compareFamily(a[0], b[0]); c != 0 {
			return c
		}
		if a[1] < b[1] {
			return -1
		} else if a[1] > b[1] {
			return 1
		}
		return 0
	})
	for _, k := range keys {
		out = diffTable(out, oldT[k], newT[k])
	}
	return out
}

func compareFamily(a, b string) int {
	fa, oka := familyOrder[a]
	fb, okb := familyOrder[b]
	if !oka {
		fa = len(familyOrder)
	}
	if !okb {
		fb = len(familyOrder)
	}
	switch {
	case fa != fb:
		return fa - fb
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}

func diffTable(out []Change, o, n *Table) []Change {
	empty := func(t *Table) *Table { return &Table{Family: t.Family, Name: t.Name} }
	base := Change{}
	removed := n == nil
	switch {
	case o == nil:
		base.Family, base.Table = n.Family, n.Name
		c := base
		c.Kind = TableAdded
		out = append(out, c)
		o = empty(n)
	case n == nil:
		base.Family, base.Table = o.Family, o.Name
		n = empty(o)
	default:
		base.Family, base.Table = n.Family, n.Name
		if !slices.Equal(o.Flags, n.Flags) || o.Comment != n.Comment {
			c := base
			c.Kind = TableChanged
			c.Before, c.After = tableDecl(o), tableDecl(n)
			out = append(out, c)
		}
	}

	out = diffNamed(out, base, o.Objects, n.Objects,
		func(x *Object) string { return x.Type + " " + x.Name },
		func(c *Change, x *Object) { c.Object = x.Type + " " + x.Name },
		func(x *Object) string { return join(x.Spec) },
		ObjectAdded, ObjectRemoved, ObjectChanged)

	out = diffSets(out, base, o.Sets, n.Sets)

	out = diffNamed(out, base, o.Flowtables, n.Flowtables,
		func(x *Flowtable) string { return x.Name },
		func(c *Change, x *Flowtable) { c.Object = "flowtable " + x.Name },
		func(x *Flowtable) string {
			return x.Hook + " " + x.Prio + " " + join(x.Devices) + " " + join(x.Flags)
		},
		FlowtableAdded, FlowtableRemoved, FlowtableChanged)

	oc := map[string]*Chain{}
	for _, c := range o.Chains {
		oc[c.Name] = c
	}
	seen := map[string]bool{}
	for _, nc := range n.Chains {
		seen[nc.Name] = true
		out = diffChain(out, base, oc[nc.Name], nc)
	}
	for _, c := range o.Chains {
		if !seen[c.Name] {
			out = diffChain(out, base, c, nil)
		}
	}
	if removed {
		c := base
		c.Kind = TableRemoved
		out = append(out, c)
	}
	return out
}

func tableDecl(t *Table) string {
	s := "flags " + join(t.Flags)
	if t.Comment != "" {
		s += " comment " + Quote(t.Comment)
	}
	return s
}

func join(ss []string) string {
	out := ""
	for i, s := range ss {
		if i > 0 {
			out += "; "
		}
		out += s
	}
	return out
}

// diffNamed reports additions, removals and declaration changes of named items. An item
// changed when its digest did: decl is for display, and joined lines can be ambiguous.
func diffNamed[T interface{ Digest() Sum }](out []Change, base Change, o, n []T,
	key func(T) string, name func(*Change, T), decl func(T) string,
	added, removed, changed ChangeKind) []Change {
	om := map[string]T{}
	for _, x := range o {
		om[key(x)] = x
	}
	nm := map[string]bool{}
	for _, x := range n {
		nm[key(x)] = true
		c := base
		name(&c, x)
		if ox, ok := om[key(x)]; !ok {
			c.Kind = added
			c.After = decl(x)
			out = append(out, c)
		} else if any(ox) != any(x) && ox.Digest() != x.Digest() {
			c.Kind = changed
			c.Before, c.After = decl(ox), decl(x)
			out = append(out, c)
		}
	}
	for _, x := range o {
		if !nm[key(x)] {
			c := base
			name(&c, x)
			c.Kind = removed
			c.Before = decl(x)
			out = append(out, c)
		}
	}
	return out
}

func diffSets(out []Change, base Change, o, n []*Set) []Change {
	om := map[string]*Set{}
	for _, s := range o {
		om[s.Name] = s
	}
	nm := map[string]bool{}
	elems := func(s *Set) []string {
		if s == nil || s.Dynamic {
			return nil
		}
		return s.Elements
	}
	for _, s := range n {
		nm[s.Name] = true
		c := base
		c.Set = s.Name
		os := om[s.Name]
		if os == s {
			continue // the same node in both models (see nftcanon.State.Build)
		}
		switch {
		case os == nil:
			c.Kind = SetAdded
			c.After = join(s.Spec)
			out = append(out, c)
		case !slices.Equal(os.Spec, s.Spec) || os.Map != s.Map || os.Dynamic != s.Dynamic:
			c.Kind = SetChanged
			c.Before, c.After = join(os.Spec), join(s.Spec)
			out = append(out, c)
		}
		out = diffElements(out, c, elems(os), elems(s))
	}
	for _, s := range o {
		if !nm[s.Name] {
			c := base
			c.Set = s.Name
			out = diffElements(out, c, elems(s), nil)
			c.Kind = SetRemoved
			c.Before = join(s.Spec)
			out = append(out, c)
		}
	}
	return out
}

func diffElements(out []Change, base Change, o, n []string) []Change {
	base.Before, base.After = "", ""
	om := make(map[string]int, len(o))
	for _, e := range o {
		om[e]++
	}
	nm := make(map[string]int, len(n))
	for _, e := range n {
		nm[e]++
	}
	var added, removed []string
	for e, k := range nm {
		for range k - om[e] {
			added = append(added, e)
		}
	}
	for e, k := range om {
		for range k - nm[e] {
			removed = append(removed, e)
		}
	}
	slices.Sort(added)
	slices.Sort(removed)
	for _, e := range added {
		c := base
		c.Kind, c.Element = ElementAdded, e
		out = append(out, c)
	}
	for _, e := range removed {
		c := base
		c.Kind, c.Element = ElementRemoved, e
		out = append(out, c)
	}
	return out
}

func diffChain(out []Change, base Change, o, n *Chain) []Change {
	if o == n {
		return out // the same node in both models (see nftcanon.State.Build)
	}
	var oldRules, newRules []string
	switch {
	case o == nil:
		c := base
		c.Kind, c.Chain, c.After = ChainAdded, n.Name, n.Header()
		out = append(out, c)
		base.Chain = n.Name
	case n == nil:
		base.Chain = o.Name
	default:
		base.Chain = n.Name
		oh, nh := o.Header(), n.Header()
		if oh != nh || o.Comment != n.Comment {
			c := base
			c.Kind = ChainChanged
			if o.Type == n.Type && o.Hook == n.Hook && o.Priority == n.Priority &&
				slices.Equal(o.Devices, n.Devices) && o.Comment == n.Comment {
				c.Kind = ChainPolicy
			}
			c.Before, c.After = oh, nh
			out = append(out, c)
		}
	}
	if o != nil {
		oldRules = ruleTexts(o.Rules)
	}
	if n != nil {
		newRules = ruleTexts(n.Rules)
	}
	edits := DiffSequence(oldRules, newRules)
	moves := pairMoves(edits, oldRules, newRules)
	for i, e := range edits {
		c := base
		switch {
		case moves[i] == movedAway:
			continue // reported where the rule landed
		case e.Added && moves[i] >= 0:
			c.Kind = RuleMoved
			c.Position = e.NewIndex + 1
			c.FromPosition = moves[i] + 1
			c.Rule = newRules[e.NewIndex]
		case e.Added:
			c.Kind = RuleAdded
			c.Position = e.NewIndex + 1
			c.Rule = newRules[e.NewIndex]
		default:
			c.Kind = RuleRemoved
			c.Position = e.OldIndex + 1
			c.Rule = oldRules[e.OldIndex]
		}
		out = append(out, c)
	}
	if n == nil {
		c := base
		c.Kind, c.Before = ChainRemoved, o.Header()
		out = append(out, c)
	}
	return out
}

// movedAway marks a removal that pairMoves matched with an addition.
const movedAway = -2

// pairMoves matches removed and added rules of equal text, in order of position: such a
// pair is one rule that moved. For each edit it returns the old index of the rule an
// addition moved from, movedAway for a removal that is part of a move, or -1.
func pairMoves(edits []Edit, oldRules, newRules []string) []int {
	out := make([]int, len(edits))
	removed := map[string][]int{} // text -> edit indexes of its removals, in order
	for i, e := range edits {
		out[i] = -1
		if !e.Added {
			removed[oldRules[e.OldIndex]] = append(removed[oldRules[e.OldIndex]], i)
		}
	}
	if len(removed) == 0 {
		return out
	}
	for i, e := range edits {
		if !e.Added {
			continue
		}
		text := newRules[e.NewIndex]
		if r := removed[text]; len(r) > 0 {
			out[i] = edits[r[0]].OldIndex
			out[r[0]] = movedAway
			removed[text] = r[1:]
		}
	}
	return out
}

func ruleTexts(rs []*Rule) []string {
	out := make([]string, len(rs))
	for i, r := range rs {
		out[i] = r.Text
	}
	return out
}
