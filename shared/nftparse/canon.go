package nftparse

import (
	"encoding/binary"
	"fmt"
	"strings"

	"github.com/fenceline/fenceline/shared/nftcanon"
	"github.com/fenceline/fenceline/shared/ruleset"
)

// Context is where a rule or element goes: the table's family, and the table's named sets
// and maps as the agent reported them (a rule that refers to @name needs its declaration).
type Context struct {
	Family string // ip, ip6, inet, arp, bridge, netdev
	Table  string
	Sets   []*ruleset.Set
}

// ContextFor returns the context of a table of a ruleset; a missing table gives a context
// without sets.
func ContextFor(rs *ruleset.Ruleset, family, table string) Context {
	ctx := Context{Family: family, Table: table}
	if rs != nil {
		if t := rs.Table(family, table); t != nil {
			ctx.Sets = t.Sets
		}
	}
	return ctx
}

// setDecl is a named set or map of the context, typed.
type setDecl struct {
	name    string
	key     typ
	data    *typ
	flags   uint32
	objType uint32
}

const verdictTypeID = 0xffffff00

// Rule parses one rule written in nft syntax and returns the canonical text the agent
// reads back once the rule is in the kernel. Errors are *Error values.
func Rule(ctx Context, text string) (out string, err error) {
	defer recoverInto(text, &err)
	fam, ok := familyNumbers[ctx.Family]
	if !ok {
		return "", &Error{Input: text, Msg: fmt.Sprintf("unknown family %q", ctx.Family),
			Err: ErrContext}
	}
	p, err := newRuleParser(text)
	if err != nil {
		return "", err
	}
	stmts, comment, hasComment, err := p.rule()
	if err != nil {
		return "", err
	}
	if len(stmts) == 0 {
		return "", errAt(text, 0, len(text), ErrSyntax, "empty rule")
	}
	c := newCompiler(text, fam, ctx)
	for _, s := range stmts {
		if err := c.stmt(s); err != nil {
			return "", err
		}
	}
	d := c.dump(comment, hasComment)
	rs, err := nftcanon.Build(d)
	if err != nil {
		return "", errAt(text, 0, len(text), ErrUnsupported, err.Error())
	}
	r := rs.Tables[0].Chains[0].Rules[0]
	if r.Undecoded > 0 {
		return "", errAt(text, 0, len(text), ErrUnsupported,
			"the rule has parts the canonical form cannot print: "+r.Text)
	}
	return r.Text, nil
}

func newCompiler(text string, fam byte, ctx Context) *compiler {
	c := &compiler{in: text, fam: fam, family: ctx.Family, named: map[string]*setDecl{},
		ifnames: map[string]uint32{}}
	switch ctx.Family {
	case "ip":
		c.ctx[baseNH] = protoIP
	case "ip6":
		c.ctx[baseNH] = protoIP6
	case "arp":
		c.ctx[baseNH] = protoARP
	case "bridge", "netdev":
		c.ctx[baseLL] = protoEther
	}
	for _, s := range ctx.Sets {
		if d, err := declare(ctx.Family, s); err == nil {
			c.named[s.Name] = d
		}
	}
	return c
}

// declare types a named set from its declaration lines.
func declare(family string, s *ruleset.Set) (*setDecl, error) {
	d := &setDecl{name: s.Name}
	found := false
	for _, line := range s.Spec {
		kw, rest, _ := strings.Cut(line, " ")
		switch kw {
		case "type", "typeof":
			key, data, hasData := strings.Cut(rest, " : ")
			var err error
			if kw == "type" {
				d.key, err = typeNames(key)
			} else {
				d.key, err = typeofTyp(family, key)
			}
			if err != nil {
				return nil, fmt.Errorf("set %s: %w", s.Name, err)
			}
			if hasData {
				data = strings.TrimSpace(strings.TrimPrefix(data, "interval "))
				switch {
				case data == "verdict":
					d.flags |= setMap
					d.data = &typ{dt: dtVerdict}
				case objTypes[data] != 0:
					d.flags |= setObject
					d.objType = objTypes[data]
				default:
					var dt typ
					if kw == "type" {
						dt, err = typeNames(data)
					} else {
						dt, err = typeofTyp(family, data)
					}
					if err != nil {
						return nil, fmt.Errorf("set %s: %w", s.Name, err)
					}
					d.flags |= setMap
					d.data = &dt
				}
			}
			found = true
		case "flags":
			for _, f := range strings.Split(rest, ",") {
				switch strings.TrimSpace(f) {
				case "constant":
					d.flags |= setConstant
				case "interval":
					d.flags |= setInterval
				case "timeout":
					d.flags |= setTimeout
				case "dynamic":
					d.flags |= setEval
				}
			}
		}
	}
	if !found {
		return nil, fmt.Errorf("set %s: no type", s.Name)
	}
	if s.Map && d.data == nil && d.objType == 0 {
		return nil, fmt.Errorf("map %s: no data type", s.Name)
	}
	if d.key.isConcat() && d.flags&setInterval != 0 {
		d.flags |= setConcat
	}
	return d, nil
}

var objTypes = map[string]uint32{"counter": 1, "quota": 2, "ct helper": 3, "limit": 4,
	"ct timeout": 7, "secmark": 8, "ct expectation": 9, "synproxy": 10}

// typeNames types `ipv4_addr . inet_service`.
func typeNames(s string) (typ, error) {
	var parts []typ
	for _, n := range strings.Split(s, " . ") {
		dt, ok := dtypeByName[strings.TrimSpace(n)]
		if !ok || dt.bits == 0 {
			return typ{}, fmt.Errorf("%w: set type %q", ErrUnsupported, n)
		}
		parts = append(parts, typ{dt: dt, order: dt.order, bytes: (dt.bits + 7) / 8})
	}
	if len(parts) == 1 {
		return parts[0], nil
	}
	t := typ{dt: dtInteger, parts: parts}
	t.bytes = t.width()
	return t, nil
}

// typeofTyp types `typeof ip saddr . tcp dport` by compiling the expression.
func typeofTyp(family, s string) (typ, error) {
	p, err := newRuleParser(s)
	if err != nil {
		return typ{}, err
	}
	e, err := p.expr()
	if err != nil {
		return typ{}, err
	}
	c := newCompiler(s, familyNumbers[family], Context{Family: family})
	t, err := c.load(e, reg1)
	if err != nil {
		return typ{}, err
	}
	return t, nil
}

// dump lays the compiled rule out as the kernel would list it: a table, a chain, the
// sets, the rule.
func (c *compiler) dump(comment string, hasComment bool) *nftcanon.Dump {
	const table, chain = "t", "c"
	d := &nftcanon.Dump{Ifnames: map[uint32]string{}}
	for name, i := range c.ifnames {
		d.Ifnames[i] = name
	}
	var ta nlAttrs
	ta.str(1, table)
	d.Tables = append(d.Tables, msg(c.fam, ta))
	var ca nlAttrs
	ca.str(1, table)
	ca.str(3, chain)
	d.Chains = append(d.Chains, msg(c.fam, ca))
	for _, s := range c.used {
		d.Sets = append(d.Sets, msg(c.fam, setAttrs(table, s.name, 0, s.flags, s.key, s.data,
			s.objType)))
	}
	for _, s := range c.sets {
		d.Sets = append(d.Sets, msg(c.fam, setAttrs(table, s.name, s.id, s.flags, s.key, s.data,
			s.objType)))
		d.Elements = append(d.Elements, nftcanon.SetElems{Family: c.fam, Table: table,
			Set: s.name, Msgs: elemsMsgs(c.fam, table, s.name, s.elems)})
	}
	var ra nlAttrs
	ra.str(1, table)
	ra.str(2, chain)
	ra.u64(3, 1)
	var list nlAttrs
	for _, x := range c.out {
		list.nested(1, x.encode())
	}
	ra.nested(4, list)
	if hasComment {
		ud := []byte{0, byte(len(comment) + 1)}
		ud = append(append(ud, comment...), 0)
		ra.put(7, ud)
	}
	d.Rules = append(d.Rules, msg(c.fam, ra))
	return d
}

func setAttrs(table, name string, id, flags uint32, key typ, data *typ, objType uint32) nlAttrs {
	var a nlAttrs
	a.str(1, table)
	a.str(2, name)
	a.u32(3, flags)
	a.u32(4, key.typeID())
	a.u32(5, uint32(key.width()))
	if data != nil {
		if data.dt == dtVerdict {
			a.u32(6, verdictTypeID)
			a.u32(7, 0)
		} else {
			a.u32(6, data.typeID())
			a.u32(7, uint32(data.width()))
		}
	}
	if key.isConcat() {
		var concat nlAttrs
		for _, p := range key.parts {
			var f nlAttrs
			f.u32(1, uint32(p.bytes))
			concat.nested(1, f)
		}
		var desc nlAttrs
		desc.nested(2, concat)
		a.nested(9, desc)
	}
	if id != 0 {
		a.u32(10, id)
	}
	var ud []byte
	if !key.isConcat() {
		ord := uint32(2)
		if key.order == hostOrder {
			ord = 1
		}
		ud = append(ud, 0, 4)
		ud = binary.NativeEndian.AppendUint32(ud, ord)
	}
	if data != nil && data.dt != dtVerdict && !data.isConcat() {
		ord := uint32(2)
		if data.order == hostOrder {
			ord = 1
		}
		ud = append(ud, 1, 4)
		ud = binary.NativeEndian.AppendUint32(ud, ord)
	}
	if len(ud) > 0 {
		a.put(13, ud)
	}
	if objType != 0 {
		a.u32(15, objType)
	}
	return a
}

// elemsMsgs lays elements out in messages small enough for 16-bit attribute lengths.
func elemsMsgs(fam byte, table, set string, elems []nlAttrs) []nftcanon.Msg {
	const per = 256
	var out []nftcanon.Msg
	for i := 0; i < len(elems) || i == 0; i += per {
		var a nlAttrs
		a.str(1, table)
		a.str(2, set)
		var list nlAttrs
		for _, e := range elems[i:min(i+per, len(elems))] {
			list.nested(1, e)
		}
		a.nested(3, list)
		out = append(out, msg(fam, a))
	}
	return out
}

// Elements parses set or map elements written as nft writes them inside `{ … }` (the
// braces are optional) for the named set of ctx, and returns their canonical texts in
// canonical order, as the agent lists the elements of that set once they are added.
func Elements(ctx Context, set, text string) (out []string, err error) {
	defer recoverInto(text, &err)
	fam, ok := familyNumbers[ctx.Family]
	if !ok {
		return nil, &Error{Input: text, Msg: fmt.Sprintf("unknown family %q", ctx.Family),
			Err: ErrContext}
	}
	c := newCompiler(text, fam, ctx)
	d, ok := c.named[set]
	if !ok {
		return nil, errAt(text, 0, len(text), ErrContext,
			fmt.Sprintf("no set or map named %q in table %s %s", set, ctx.Family, ctx.Table))
	}
	body := strings.TrimSpace(text)
	if !strings.HasPrefix(body, "{") {
		body = "{ " + body + " }"
		c.in = body
	}
	p, err := newRuleParser(body)
	if err != nil {
		return nil, err
	}
	lit, err := p.set()
	if err != nil {
		return nil, err
	}
	if t := p.peek(); t.kind != tEOF {
		return nil, p.errAt(t, ErrSyntax, "unexpected %s after the elements", describe(t))
	}
	as := &anonSet{name: set, flags: d.flags &^ (setMap | setObject), key: d.key}
	var data *elemData
	switch {
	case d.objType != 0:
		data = &elemData{objType: d.objType}
	case d.data != nil && d.data.dt == dtVerdict:
		data = &elemData{verdict: true}
	case d.data != nil:
		data = &elemData{t: d.data}
	}
	merge := false
	for _, s := range ctx.Sets {
		if s.Name == set {
			merge = slicesContains(s.Spec, "auto-merge")
			// A set declared with `counter` gives every element one.
			as.counter = slicesContains(s.Spec, "counter")
		}
	}
	if err := c.fillSet(as, lit, data, merge); err != nil {
		return nil, err
	}
	const table = "t"
	dump := &nftcanon.Dump{Ifnames: map[uint32]string{}}
	for name, i := range c.ifnames {
		dump.Ifnames[i] = name
	}
	var ta nlAttrs
	ta.str(1, table)
	dump.Tables = append(dump.Tables, msg(fam, ta))
	dump.Sets = append(dump.Sets, msg(fam, setAttrs(table, set, 0, as.flags, as.key, as.data,
		as.objType)))
	dump.Elements = append(dump.Elements, nftcanon.SetElems{Family: fam, Table: table, Set: set,
		Msgs: elemsMsgs(fam, table, set, as.elems)})
	rs, err := nftcanon.Build(dump)
	if err != nil {
		return nil, errAt(text, 0, len(text), ErrUnsupported, err.Error())
	}
	return rs.Tables[0].Sets[0].Elements, nil
}

func slicesContains(ss []string, s string) bool {
	for _, x := range ss {
		if x == s {
			return true
		}
	}
	return false
}

// recoverInto turns a bug tripped by unexpected input into an error rather than a crash
// of the caller (the aggregator's API).
func recoverInto(text string, err *error) {
	if v := recover(); v != nil {
		*err = errAt(text, 0, len(text), ErrUnsupported, fmt.Sprintf("internal error: %v", v))
	}
}
