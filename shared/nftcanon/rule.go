package nftcanon

import (
	"fmt"
	"strings"

	"github.com/fenceline/fenceline/shared/ruleset"
)

// ruleOut is one rendered rule.
type ruleOut struct {
	table, chain string
	handle       uint64
	text         string
	undecoded    int
	dynTargets   []string // sets the rule's add/update statements fill
}

// rule renders one rule message. sets returns a set of a table by name, or nil.
func (e *env) rule(m Msg, sets func(table, name string) *setInfo) (ruleOut, error) {
	if len(m) < 4 {
		return ruleOut{}, fmt.Errorf("%w: short rule message", ErrMalformed)
	}
	a, err := parseAttrs(m[4:])
	if err != nil {
		return ruleOut{}, fmt.Errorf("%w: rule: %v", ErrMalformed, err)
	}
	r := ruleOut{table: a.str(nftaRuleTable), chain: a.str(nftaRuleChain),
		handle: a.u64(nftaRuleHandle)}
	list, err := attrs(a.get(nftaRuleExpressions))
	if err != nil {
		r.text = "[rule " + hexText(a.get(nftaRuleExpressions)) + "]"
		r.undecoded = 1
		return r, nil
	}
	exprs := make([]rawExpr, 0, len(list))
	for _, la := range list {
		x, err := parseExpr(la.data)
		if err != nil {
			r.text = "[rule " + hexText(a.get(nftaRuleExpressions)) + "]"
			r.undecoded = 1
			return r, nil
		}
		exprs = append(exprs, x)
	}
	d := &delin{fam: m.Family(), regs: map[uint32]node{},
		sets: func(name string) *setInfo { return sets(r.table, name) }}
	text := e.render(d, exprs)
	if c, ok := a.lookup(nftaRuleCompat); ok {
		// TODO: rules written by iptables-nft (xt match and target expressions, compat
		// protocol) stay in the raw form; nft prints them as comments it cannot load.
		text += " [compat " + hexText(c) + "]"
		d.undecoded++
	}
	if u, ok := a.lookup(nftaRuleUserdata); ok {
		if c, ok := parseUdata(u).str(udataRuleComment); ok {
			if text != "" {
				text += " "
			}
			text += `comment "` + c + `"`
		}
	}
	r.text, r.undecoded, r.dynTargets = text, d.undecoded, d.dynTargets
	return r, nil
}

// renderPanicked is called with what a recovered rendering panic carried; tests set it
// to fail loudly.
var renderPanicked = func(any) {}

// render delinearizes, post-processes and prints a list of expressions. Should a bug in
// this package trip over an unexpected combination, the rule falls back to its raw
// expressions rather than taking the reader down.
func (e *env) render(d *delin, exprs []rawExpr) (text string) {
	defer func() {
		if v := recover(); v != nil {
			renderPanicked(v)
			parts := make([]string, len(exprs))
			for i, x := range exprs {
				parts[i] = fmt.Sprintf("[expr %s %s]", x.name, hexText(x.data))
			}
			text, d.undecoded = strings.Join(parts, " "), len(exprs)
		}
	}()
	for _, x := range exprs {
		d.expr(x)
	}
	newPost(d).run()
	return (&printer{d: d, e: e}).stmts()
}

// setExprText prints a stateful expression attached to a set element or a dynset
// statement (`counter`, `limit rate 10/second`).
func (e *env) setExprText(x rawExpr) string {
	d := &delin{regs: map[uint32]node{}}
	d.expr(x)
	return (&printer{d: d, e: e}).stmts()
}

// namedSet renders a named set or map.
func (e *env) namedSet(s *setInfo) *ruleset.Set {
	out := &ruleset.Set{Name: s.name, Map: s.isMap(),
		Dynamic: s.flags&setFlagEval != 0 || s.dynTarget}
	out.Spec = e.setSpec(s)
	kp, dp := s.keyParts(), []part(nil)
	if s.isMap() {
		dp = s.dataParts()
	}
	e.flagSep = " | "
	defer func() { e.flagSep = "" }()
	for _, el := range e.renderElems(s, kp, dp) {
		out.Elements = append(out.Elements, el.text)
	}
	ruleset.SortElements(out.Elements)
	return out
}

// setSpec prints the declaration lines of a set in nft's order.
func (e *env) setSpec(s *setInfo) []string {
	var spec []string
	if t := e.typeofText(s); t != "" {
		spec = append(spec, t)
	} else {
		spec = append(spec, "type "+typeNames(s.keyType)+e.dataTypeSuffix(s))
	}
	if s.hasPolicy && s.policy == setPolicyMemory {
		spec = append(spec, "policy memory")
	}
	if s.size != 0 && s.flags&setFlagConstant == 0 {
		spec = append(spec, "size "+itoa(uint64(s.size)))
	}
	// A set with a default timeout needs the timeout flag; nft leaves the flag out
	// unless other flags are printed with it.
	var fl []string
	for _, f := range []struct {
		bit  uint32
		name string
	}{{setFlagConstant, "constant"}, {setFlagEval, "dynamic"}, {setFlagInterval, "interval"},
		{setFlagTimeout, "timeout"}} {
		if s.flags&f.bit != 0 {
			fl = append(fl, f.name)
		}
	}
	if len(fl) == 1 && fl[0] == "timeout" && s.timeout != 0 {
		fl = nil
	}
	if len(fl) > 0 {
		spec = append(spec, "flags "+strings.Join(fl, ","))
	}
	if len(s.exprs) > 0 {
		var xs []string
		for _, x := range s.exprs {
			xs = append(xs, e.setExprText(x))
		}
		spec = append(spec, strings.Join(xs, " "))
	}
	if s.merge {
		spec = append(spec, "auto-merge")
	}
	if s.timeout != 0 {
		spec = append(spec, "timeout "+formatDuration(s.timeout))
	}
	if s.gcInterval != 0 {
		spec = append(spec, "gc-interval "+formatDuration(uint64(s.gcInterval)))
	}
	if s.comment != "" {
		spec = append(spec, `comment "`+s.comment+`"`)
	}
	return spec
}

// typeNames prints a (possibly concatenated) datatype as `type` does.
func typeNames(id uint32) string {
	ts := splitTypes(id)
	names := make([]string, len(ts))
	for i, t := range ts {
		names[i] = t.name
	}
	return strings.Join(names, " . ")
}

func (e *env) dataTypeSuffix(s *setInfo) string {
	switch {
	case s.flags&setFlagObject != 0:
		return " : " + objTypeName(s.objType)
	case s.flags&setFlagMap == 0:
		return ""
	case s.dataType == verdictType:
		return " : verdict"
	}
	if s.dataInterval {
		return " : interval " + typeNames(s.dataType)
	}
	return " : " + typeNames(s.dataType)
}
