// Package ruleset is Fenceline's canonical model of an nftables ruleset: tables, chains
// in kernel order with their rules in order, named sets and maps with their elements,
// stateful objects and flowtables.
//
// Every rule carries its canonical text, which aims to be exactly what the stateless
// listing `nft -s list ruleset` prints for it. Volatile state (counter values, handles,
// generation numbers, elements of sets filled by traffic, expiry countdowns) is either
// absent from the model or kept in fields that the digest and the diff ignore; what is
// volatile is listed where each field is declared.
//
// The model is plain data: it is built by the agent from netlink, parsed from CR specs on
// the aggregator, carried in events as JSON, hashed (digest.go) and diffed (diff.go).
package ruleset

import (
	"cmp"
	"slices"
	"strings"
)

// Ruleset is the whole nftables configuration of one network namespace.
type Ruleset struct {
	// Tables are ordered by family, then name (see Sort).
	Tables []*Table `json:"tables,omitempty"`
}

// Table is one nftables table.
type Table struct {
	Family string   `json:"family"` // ip, ip6, inet, arp, bridge, netdev
	Name   string   `json:"name"`
	Flags  []string `json:"flags,omitempty"` // dormant, owner, persist
	// Comment is the table's comment as nft prints it (unquoted).
	Comment string `json:"comment,omitempty"`
	// Chains are in the kernel's order, which is the order nft lists them in.
	Chains     []*Chain     `json:"chains,omitempty"`
	Sets       []*Set       `json:"sets,omitempty"`       // named sets and maps, kernel order
	Objects    []*Object    `json:"objects,omitempty"`    // named stateful objects, kernel order
	Flowtables []*Flowtable `json:"flowtables,omitempty"` // kernel order
}

// Chain is a regular or base chain with its rules in evaluation order.
type Chain struct {
	Name string `json:"name"`
	// Type, Hook, Priority and Policy are set for base chains only. Priority is the text nft
	// prints, with its standard names ("filter", "srcnat + 5", "-150").
	Type     string   `json:"type,omitempty"`
	Hook     string   `json:"hook,omitempty"`
	Priority string   `json:"priority,omitempty"`
	Policy   string   `json:"policy,omitempty"`
	Devices  []string `json:"devices,omitempty"`
	Comment  string   `json:"comment,omitempty"`
	Rules    []*Rule  `json:"rules,omitempty"`
}

// IsBase reports whether the chain is attached to a hook.
func (c *Chain) IsBase() bool { return c.Hook != "" }

// Rule is one rule. Only Text is configuration; Handle is volatile bookkeeping.
type Rule struct {
	// Text is the canonical text of the rule, as `nft -s list ruleset` prints it (without
	// the handle comment), including a trailing `comment "…"` when the rule has one.
	Text string `json:"text"`
	// Handle is the kernel's handle for this rule. Volatile: never hashed or diffed.
	Handle uint64 `json:"handle,string,omitempty"`
	// Undecoded counts the expressions of this rule that were kept in the lossless
	// fallback form because the model cannot render them as nft does.
	Undecoded int `json:"undecoded,omitempty"`
}

// Set is a named set or map. Anonymous sets are rendered inline in their rule's text.
type Set struct {
	Name string `json:"name"`
	// Map is true for maps and verdict maps (the set carries data).
	Map bool `json:"map,omitempty"`
	// Spec holds the declaration lines nft prints inside the set block before the elements,
	// in nft's order, e.g. "type ipv4_addr", "flags interval", "timeout 1h".
	Spec []string `json:"spec,omitempty"`
	// Elements are the canonical element texts ("10.0.0.0/8", "80 : accept"), sorted
	// (see SortElements). When Dynamic is true they are volatile.
	Elements []string `json:"elements,omitempty"`
	// Dynamic marks a set that the packet path fills (flag dynamic, or the target of an
	// `add @set` / `update @set` statement): its elements are state, not configuration,
	// and are neither hashed nor diffed.
	Dynamic bool `json:"dynamic,omitempty"`
}

// Object is a named stateful object (counter, quota, limit, ct helper, ct timeout,
// ct expectation, synproxy, secmark). Text is its declaration body without volatile
// values (counter packets/bytes and quota usage are left out).
type Object struct {
	Type string   `json:"type"`
	Name string   `json:"name"`
	Spec []string `json:"spec,omitempty"`
}

// IndicatorType is the Type of an object that only indicates configuration changes (a
// device's time of last change, read over SNMP): it moves with every change, so it is
// decided together with the other changes of its event, and alone it stands for a change
// nothing else shows.
const IndicatorType = "indicator"

// IsIndicator reports whether a change is to an indicator object.
func (c Change) IsIndicator() bool {
	return c.Object != "" && strings.HasPrefix(c.Object, IndicatorType+" ")
}

// Flowtable is a named flowtable.
type Flowtable struct {
	Name    string   `json:"name"`
	Hook    string   `json:"hook"`
	Prio    string   `json:"priority"`
	Devices []string `json:"devices,omitempty"`
	Flags   []string `json:"flags,omitempty"`
}

// familyOrder is the model's order of table families. (nft lists tables in creation
// order; a stable order independent of how the ruleset was loaded is what the model
// needs.)
var familyOrder = map[string]int{"ip": 0, "arp": 1, "ip6": 2, "bridge": 3, "inet": 4, "netdev": 5}

// Sort puts tables into the model's order (family as nft orders them, then name) and set
// elements into canonical order. Chains, rules, sets and objects keep kernel order.
func (rs *Ruleset) Sort() {
	slices.SortStableFunc(rs.Tables, func(a, b *Table) int {
		fa, oka := familyOrder[a.Family]
		fb, okb := familyOrder[b.Family]
		if !oka {
			fa = len(familyOrder)
		}
		if !okb {
			fb = len(familyOrder)
		}
		if c := cmp.Compare(fa, fb); c != 0 {
			return c
		}
		if c := cmp.Compare(a.Family, b.Family); c != 0 {
			return c
		}
		return cmp.Compare(a.Name, b.Name)
	})
	for _, t := range rs.Tables {
		for _, s := range t.Sets {
			SortElements(s.Elements)
		}
	}
}

// SortElements orders element texts canonically: plain byte order. The digest does not
// depend on this order (it sorts again); sorting keeps listings and diffs stable.
func SortElements(elems []string) { slices.Sort(elems) }

// Table returns the table with the given family and name, or nil.
func (rs *Ruleset) Table(family, name string) *Table {
	for _, t := range rs.Tables {
		if t.Family == family && t.Name == name {
			return t
		}
	}
	return nil
}

// Chain returns the named chain, or nil.
func (t *Table) Chain(name string) *Chain {
	for _, c := range t.Chains {
		if c.Name == name {
			return c
		}
	}
	return nil
}

// Set returns the named set or map, or nil.
func (t *Table) Set(name string) *Set {
	for _, s := range t.Sets {
		if s.Name == name {
			return s
		}
	}
	return nil
}

// RuleCount is the number of rules in the ruleset.
func (rs *Ruleset) RuleCount() int {
	n := 0
	for _, t := range rs.Tables {
		for _, c := range t.Chains {
			n += len(c.Rules)
		}
	}
	return n
}

// ChainRef names a chain across the ruleset: "inet filter input".
type ChainRef struct {
	Family string `json:"family"`
	Table  string `json:"table"`
	Chain  string `json:"chain"`
}

func (r ChainRef) String() string { return r.Family + " " + r.Table + " " + r.Chain }
