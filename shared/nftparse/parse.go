package nftparse

import (
	"fmt"
	"strconv"
	"strings"
)

// parser reads one rule's tokens into statements.
type parser struct {
	in   string
	toks []token
	i    int
}

// newRuleParser lexes a rule; line breaks inside a rule are plain white space.
func newRuleParser(in string) (*parser, error) {
	toks, err := lex(in)
	if err != nil {
		return nil, err
	}
	kept := toks[:0]
	for _, t := range toks {
		if t.kind != tNewline {
			kept = append(kept, t)
		}
	}
	return &parser{in: in, toks: kept}, nil
}

func (p *parser) peek() token { return p.toks[p.i] }

func (p *parser) peekAt(n int) token {
	if p.i+n < len(p.toks) {
		return p.toks[p.i+n]
	}
	return p.toks[len(p.toks)-1]
}

func (p *parser) next() token {
	t := p.toks[p.i]
	if t.kind != tEOF {
		p.i++
	}
	return t
}

func (p *parser) accept(s string) bool {
	if p.peek().is(s) {
		p.i++
		return true
	}
	return false
}

func (p *parser) errAt(t token, err error, format string, args ...any) *Error {
	n := t.end - t.pos
	return errAt(p.in, t.pos, max(n, 1), err, fmt.Sprintf(format, args...))
}

func (p *parser) expect(s string) (token, error) {
	t := p.next()
	if !t.is(s) {
		return t, p.errAt(t, ErrSyntax, "expected %q, found %s", s, describe(t))
	}
	return t, nil
}

func describe(t token) string {
	switch t.kind {
	case tEOF:
		return "end of input"
	case tString:
		return strconv.Quote(t.text)
	}
	return fmt.Sprintf("%q", t.text)
}

// word returns the next token's text if it is a word or a string.
func (p *parser) word(what string) (token, error) {
	t := p.next()
	if t.kind != tWord && t.kind != tString {
		return t, p.errAt(t, ErrSyntax, "expected %s, found %s", what, describe(t))
	}
	return t, nil
}

func (p *parser) uint(what string, bits int) (uint64, token, error) {
	t := p.next()
	if t.kind != tWord {
		return 0, t, p.errAt(t, ErrSyntax, "expected %s, found %s", what, describe(t))
	}
	n, err := strconv.ParseUint(t.text, 0, bits)
	if err != nil {
		return 0, t, p.errAt(t, ErrSyntax, "%s %q: want a number below 2^%d", what, t.text, bits)
	}
	return n, t, nil
}

func span(from, to token) at { return at{from.pos, to.end} }

func (p *parser) last() token { return p.toks[max(p.i-1, 0)] }

// rule parses a whole rule: statements, and a trailing comment.
func (p *parser) rule() ([]stmt, string, bool, error) {
	var out []stmt
	comment, hasComment := "", false
	for p.peek().kind != tEOF {
		if p.peek().is(";") {
			return nil, "", false, p.errAt(p.peek(), ErrSyntax, "one rule per planned change; "+
				"found %q", ";")
		}
		if p.accept("comment") {
			t := p.next()
			if t.kind != tString && t.kind != tWord {
				return nil, "", false, p.errAt(t, ErrSyntax, "comment needs a quoted text")
			}
			comment, hasComment = t.text, true
			continue
		}
		start := p.peek()
		s, err := p.stmt()
		if err != nil {
			return nil, "", false, err
		}
		if n := len(out); n > 0 && terminal(out[n-1]) {
			// nft refuses this too: "Statement after terminal statement has no effect".
			return nil, "", false, p.errAt(start, ErrSyntax,
				"statement after a terminal statement (a verdict or reject) has no effect")
		}
		out = append(out, s)
	}
	return out, comment, hasComment, nil
}

// terminal reports whether s ends the rule's evaluation: a verdict other than continue,
// or reject.
func terminal(s stmt) bool {
	switch v := s.(type) {
	case *sVerdict:
		return v.v.code != verdictContinue
	case *sReject:
		return true
	}
	return false
}

var verdictCodes = map[string]int32{"accept": verdictAccept, "drop": verdictDrop,
	"continue": verdictContinue, "return": verdictReturn}

func (p *parser) stmt() (stmt, error) {
	t := p.peek()
	if t.kind == tWord {
		switch t.text {
		case "accept", "drop", "continue", "return":
			p.next()
			return &sVerdict{at: span(t, t), v: eVerdict{at: span(t, t), code: verdictCodes[t.text]}}, nil
		case "jump", "goto":
			v, err := p.verdict()
			if err != nil {
				return nil, err
			}
			return &sVerdict{at: v.at, v: *v}, nil
		case "counter":
			return p.counter()
		case "log":
			return p.log()
		case "limit":
			return p.limit()
		case "quota":
			return p.quota()
		case "reject":
			return p.reject()
		case "snat", "dnat", "masquerade", "redirect":
			return p.nat()
		case "notrack":
			p.next()
			return &sNotrack{at: span(t, t)}, nil
		case "add", "update", "delete":
			if strings.HasPrefix(p.peekAt(1).text, "@") {
				return p.dynset()
			}
		case "flow":
			return p.flow()
		case "fwd":
			return p.fwd()
		case "dup":
			return p.dup()
		case "tproxy":
			return p.tproxy()
		case "queue":
			return p.queue()
		case "synproxy":
			return p.synproxy()
		case "ct":
			switch p.peekAt(1).text {
			case "helper", "timeout", "expectation":
				if p.peekAt(2).is("set") {
					return p.ctObject()
				}
			case "count":
				return p.connlimit()
			}
		case "meta":
			if p.peekAt(1).is("secmark") && p.peekAt(2).is("set") {
				p.next()
				p.next()
				p.next()
				return p.objrefValue(t, 8)
			}
		}
	}
	left, err := p.expr()
	if err != nil {
		return nil, err
	}
	switch {
	case p.accept("set"):
		v, err := p.value()
		if err != nil {
			return nil, err
		}
		return &sSet{at: at{t.pos, v.span().end}, target: left, value: v}, nil
	case p.accept("vmap"):
		s, err := p.setOrRef()
		if err != nil {
			return nil, err
		}
		return &sVmap{at: at{t.pos, s.span().end}, key: left, set: s}, nil
	}
	m := &sMatch{left: left}
	op := p.peek()
	switch op.text {
	case "==", "eq":
		m.op = relEq
	case "!=", "ne":
		m.op = relNeq
	case "<", "lt":
		m.op = relLt
	case "<=", "le":
		m.op = relLte
	case ">", "gt":
		m.op = relGt
	case ">=", "ge":
		m.op = relGte
	case "!":
		m.op = relNeg
	}
	if m.op != relImplicit {
		p.next()
	}
	if r := p.peek(); r.kind == tEOF {
		return nil, p.errAt(r, ErrSyntax, "expected a value to match %s against, found %s",
			p.in[t.pos:left.span().end], describe(r))
	}
	right, err := p.rhs()
	if err != nil {
		return nil, err
	}
	m.right = right
	if p.peek().is("/") {
		p.next()
		mask, err := p.rhs()
		if err != nil {
			return nil, err
		}
		m.mask = mask
	}
	m.at = at{t.pos, p.last().end}
	return m, nil
}

// isStmtStart reports whether a word can only start a statement, so a match that is
// followed by it lacks its value.
func isStmtStart(s string) bool {
	switch s {
	case "accept", "drop", "continue", "return", "jump", "goto", "counter", "log", "limit",
		"quota", "reject", "snat", "dnat", "masquerade", "redirect", "notrack", "comment":
		return true
	}
	return false
}

func (p *parser) verdict() (*eVerdict, error) {
	t := p.next()
	switch t.text {
	case "accept", "drop", "continue", "return":
		return &eVerdict{at: span(t, t), code: verdictCodes[t.text]}, nil
	case "jump", "goto":
		c, err := p.word("a chain name")
		if err != nil {
			return nil, err
		}
		code := int32(verdictJump)
		if t.text == "goto" {
			code = verdictGoto
		}
		return &eVerdict{at: span(t, c), code: code, chain: c.text}, nil
	}
	return nil, p.errAt(t, ErrSyntax, "expected a verdict, found %s", describe(t))
}

func (p *parser) counter() (stmt, error) {
	t := p.next()
	if p.accept("name") {
		return p.objrefValue(t, 1)
	}
	// Counter values are state: `counter packets 3 bytes 180` is the same rule.
	for _, kw := range []string{"packets", "bytes"} {
		if p.peek().is(kw) {
			p.next()
			if _, _, err := p.uint(kw, 64); err != nil {
				return nil, err
			}
		}
	}
	if p.peek().is("packets") {
		p.next()
		if _, _, err := p.uint("packets", 64); err != nil {
			return nil, err
		}
	}
	return &sCounter{at: at{t.pos, p.last().end}}, nil
}

// objrefValue reads the object name (or map) of `counter name X`, `ct helper set X`.
func (p *parser) objrefValue(start token, typ uint32) (stmt, error) {
	t := p.peek()
	if t.kind == tWord && isExprStart(t.text) {
		e, err := p.expr()
		if err != nil {
			return nil, err
		}
		m, ok := e.(*eMap)
		if !ok {
			return nil, p.errAt(t, ErrSyntax, "expected an object name or a map")
		}
		return &sObjref{at: at{start.pos, p.last().end}, typ: typ, m: m}, nil
	}
	n, err := p.word("an object name")
	if err != nil {
		return nil, err
	}
	return &sObjref{at: span(start, n), typ: typ, name: n.text}, nil
}

func (p *parser) ctObject() (stmt, error) {
	start := p.next()
	kw := p.next()
	p.next() // set
	typ := map[string]uint32{"helper": 3, "timeout": 7, "expectation": 9}[kw.text]
	return p.objrefValue(start, typ)
}

func (p *parser) connlimit() (stmt, error) {
	start := p.next()
	p.next() // count
	s := &sConnlimit{}
	s.over = p.accept("over")
	n, t, err := p.uint("a connection count", 32)
	if err != nil {
		return nil, err
	}
	s.count = uint32(n)
	s.at = span(start, t)
	return s, nil
}

var logLevels = map[string]uint32{"emerg": 0, "alert": 1, "crit": 2, "err": 3, "warn": 4,
	"notice": 5, "info": 6, "debug": 7, "audit": 8}

func (p *parser) log() (stmt, error) {
	start := p.next()
	s := &sLog{}
	for {
		switch p.peek().text {
		case "prefix":
			p.next()
			t, err := p.word("a log prefix")
			if err != nil {
				return nil, err
			}
			s.prefix, s.hasPrefix = t.text, true
		case "level":
			p.next()
			t, err := p.word("a log level")
			if err != nil {
				return nil, err
			}
			l, ok := logLevels[t.text]
			if !ok {
				return nil, p.errAt(t, ErrSyntax, "log level %q: want emerg, alert, crit, err, "+
					"warn, notice, info, debug or audit", t.text)
			}
			s.level, s.hasLevel = l, true
		case "group":
			p.next()
			n, _, err := p.uint("a log group", 16)
			if err != nil {
				return nil, err
			}
			s.group, s.hasGroup = uint16(n), true
		case "snaplen":
			p.next()
			n, _, err := p.uint("a snap length", 32)
			if err != nil {
				return nil, err
			}
			s.snaplen, s.hasSnap = uint32(n), true
		case "queue-threshold":
			p.next()
			n, _, err := p.uint("a queue threshold", 16)
			if err != nil {
				return nil, err
			}
			s.qthreshold, s.hasQ = uint16(n), true
		case "flags":
			p.next()
			if err := p.logFlags(s); err != nil {
				return nil, err
			}
		default:
			s.at = at{start.pos, p.last().end}
			return s, nil
		}
	}
}

func (p *parser) logFlags(s *sLog) error {
	for {
		t, err := p.word("log flags")
		if err != nil {
			return err
		}
		switch t.text {
		case "all":
			s.flags |= 0x2f
		case "skuid":
			s.flags |= 0x8
		case "ether":
			s.flags |= 0x20
		case "ip":
			if _, err := p.expect("options"); err != nil {
				return err
			}
			s.flags |= 0x4
		case "tcp":
			for {
				f, err := p.word("tcp log flags")
				if err != nil {
					return err
				}
				switch f.text {
				case "sequence":
					s.flags |= 0x1
				case "options":
					s.flags |= 0x2
				default:
					return p.errAt(f, ErrSyntax, "tcp log flag %q: want sequence or options", f.text)
				}
				if !p.peek().is(",") || !(p.peekAt(1).is("sequence") || p.peekAt(1).is("options")) {
					break
				}
				p.next()
			}
		default:
			return p.errAt(t, ErrSyntax, "log flag %q: want tcp sequence,options, ip options, "+
				"skuid, ether or all", t.text)
		}
		if !p.peek().is(",") {
			return nil
		}
		p.next()
	}
}

var timeUnits = map[string]uint64{"second": 1, "minute": 60, "hour": 3600, "day": 86400,
	"week": 604800}

var byteUnits = map[string]uint64{"bytes": 1, "kbytes": 1024, "mbytes": 1024 * 1024}

func (p *parser) limit() (stmt, error) {
	start := p.next()
	if p.accept("name") {
		return p.objrefValue(start, 4)
	}
	if _, err := p.expect("rate"); err != nil {
		return nil, err
	}
	s := &sLimit{}
	s.over = p.accept("over")
	t, err := p.word("a rate")
	if err != nil {
		return nil, err
	}
	if n, unit, ok := strings.Cut(t.text, "/"); ok {
		v, err := strconv.ParseUint(n, 10, 64)
		u, uok := timeUnits[unit]
		if err != nil || !uok {
			return nil, p.errAt(t, ErrSyntax, "rate %q: want N/second, N/minute, N/hour, N/day "+
				"or N/week", t.text)
		}
		s.rate, s.unit = v, u
	} else {
		v, err := strconv.ParseUint(t.text, 10, 64)
		if err != nil {
			return nil, p.errAt(t, ErrSyntax, "rate %q: want a number", t.text)
		}
		bu, err := p.word("a byte rate unit")
		if err != nil {
			return nil, err
		}
		b, unit, _ := strings.Cut(bu.text, "/")
		mul, ok1 := byteUnits[b]
		u, ok2 := timeUnits[unit]
		if !ok1 || !ok2 {
			return nil, p.errAt(bu, ErrSyntax, "rate unit %q: want bytes, kbytes or mbytes per "+
				"second, minute, hour, day or week", bu.text)
		}
		s.rate, s.unit, s.bytes = v*mul, u, true
	}
	if p.accept("burst") {
		n, _, err := p.uint("a burst", 32)
		if err != nil {
			return nil, err
		}
		u, err := p.word("packets or a byte unit")
		if err != nil {
			return nil, err
		}
		switch {
		case u.text == "packets" && !s.bytes:
			s.burst = uint32(n)
		case s.bytes && byteUnits[u.text] != 0:
			s.burst = uint32(n * byteUnits[u.text])
		default:
			return nil, p.errAt(u, ErrSyntax, "burst unit %q does not fit the rate", u.text)
		}
	} else if !s.bytes {
		s.burst = 5
	}
	s.at = at{start.pos, p.last().end}
	return s, nil
}

func (p *parser) quota() (stmt, error) {
	start := p.next()
	if p.accept("name") {
		return p.objrefValue(start, 2)
	}
	s := &sQuota{}
	s.over = p.accept("over") || p.accept("until")
	n, _, err := p.uint("a quota", 64)
	if err != nil {
		return nil, err
	}
	u, err := p.word("a byte unit")
	if err != nil {
		return nil, err
	}
	mul, ok := byteUnits[u.text]
	if !ok {
		return nil, p.errAt(u, ErrSyntax, "quota unit %q: want bytes, kbytes or mbytes", u.text)
	}
	s.bytes = n * mul
	if p.accept("used") {
		if _, _, err := p.uint("used bytes", 64); err != nil {
			return nil, err
		}
		if _, err := p.word("a byte unit"); err != nil {
			return nil, err
		}
	}
	s.at = at{start.pos, p.last().end}
	return s, nil
}

func (p *parser) reject() (stmt, error) {
	start := p.next()
	s := &sReject{}
	if p.accept("with") {
		t, err := p.word("tcp reset, icmp, icmpv6 or icmpx")
		if err != nil {
			return nil, err
		}
		switch t.text {
		case "tcp":
			if _, err := p.expect("reset"); err != nil {
				return nil, err
			}
			s.with = "tcp reset"
		case "icmp", "icmpv6", "icmpx":
			s.with = t.text
			p.accept("type")
			c, err := p.word("a reject code")
			if err != nil {
				return nil, err
			}
			s.code = &eConst{at: span(c, c), text: c.text}
		default:
			return nil, p.errAt(t, ErrSyntax, "reject with %q: want tcp reset, icmp, icmpv6 or "+
				"icmpx", t.text)
		}
	}
	s.at = at{start.pos, p.last().end}
	return s, nil
}

var natFlags = map[string]uint32{"random": 4, "persistent": 8, "fully-random": 16}

func (p *parser) nat() (stmt, error) {
	start := p.next()
	s := &sNat{kind: start.text}
	if s.kind == "snat" || s.kind == "dnat" {
		if (p.peek().is("ip") || p.peek().is("ip6")) && protoByName[p.peek().text].
			field(p.peekAt(1).text) == nil {
			s.family = p.next().text
		}
		if p.accept("prefix") {
			s.prefix = true
		}
	}
	if p.accept("to") {
		if err := p.natTarget(s); err != nil {
			return nil, err
		}
	} else if s.kind == "snat" || s.kind == "dnat" {
		if t := p.peek(); t.kind == tWord && !natFlagWord(t.text) && !isStmtStart(t.text) {
			if err := p.natTarget(s); err != nil {
				return nil, err
			}
		}
	}
	for natFlagWord(p.peek().text) {
		s.flags |= natFlags[p.next().text]
		if !p.accept(",") {
			break
		}
	}
	s.at = at{start.pos, p.last().end}
	return s, nil
}

func natFlagWord(s string) bool { _, ok := natFlags[s]; return ok }

// natTarget reads `ADDR[:PORT]`, `ADDR-ADDR`, `:PORT-PORT`, `EXPR map {…}` and
// `ADDR : EXPR`.
func (p *parser) natTarget(s *sNat) error {
	t := p.peek()
	switch {
	case t.kind == tWord && isExprStart(t.text):
		e, err := p.expr()
		if err != nil {
			return err
		}
		s.addr, s.hasAddr = e, true
	case t.kind == tWord && t.text == ":":
		// `to : 80`: a port only.
	case t.kind == tWord || t.kind == tString:
		p.next()
		s.addr, s.hasAddr = &eConst{at: span(t, t), text: t.text}, true
	default:
		return p.errAt(t, ErrSyntax, "expected a NAT address or port, found %s", describe(t))
	}
	if p.accept(":") {
		v, err := p.value()
		if err != nil {
			return err
		}
		s.port = v
	}
	return nil
}

func (p *parser) dynset() (stmt, error) {
	start := p.next()
	s := &sDynset{op: map[string]uint32{"add": 0, "update": 1, "delete": 2}[start.text]}
	name := p.next()
	s.set = strings.TrimPrefix(name.text, "@")
	if _, err := p.expect("{"); err != nil {
		return nil, err
	}
	k, err := p.expr()
	if err != nil {
		return nil, err
	}
	s.key = k
	for !p.peek().is("}") && !p.peek().is(":") {
		t := p.peek()
		switch t.text {
		case "timeout":
			p.next()
			w, err := p.word("a timeout")
			if err != nil {
				return nil, err
			}
			ms, err := parseDuration(w.text)
			if err != nil {
				return nil, p.errAt(w, ErrSyntax, "timeout %q: %v", w.text, err)
			}
			s.timeout, s.hasTO = ms, true
		case "counter", "limit", "quota", "ct":
			st, err := p.stmt()
			if err != nil {
				return nil, err
			}
			s.stmts = append(s.stmts, st)
		default:
			return nil, p.errAt(t, ErrSyntax, "unexpected %s in set statement", describe(t))
		}
	}
	if p.accept(":") {
		v, err := p.value()
		if err != nil {
			return nil, err
		}
		s.data = v
	}
	end, err := p.expect("}")
	if err != nil {
		return nil, err
	}
	s.at = span(start, end)
	return s, nil
}

func (p *parser) flow() (stmt, error) {
	start := p.next()
	if !p.accept("add") && !p.accept("offload") {
		return nil, p.errAt(p.peek(), ErrSyntax, "expected flow add @FLOWTABLE")
	}
	n := p.next()
	if !strings.HasPrefix(n.text, "@") {
		return nil, p.errAt(n, ErrSyntax, "expected @FLOWTABLE")
	}
	return &sFlow{at: span(start, n), table: n.text[1:]}, nil
}

func (p *parser) fwd() (stmt, error) {
	start := p.next()
	s := &sFwd{}
	if p.peek().is("ip") || p.peek().is("ip6") {
		s.family = p.next().text
	}
	if _, err := p.expect("to"); err != nil {
		return nil, err
	}
	v, err := p.value()
	if err != nil {
		return nil, err
	}
	if s.family != "" {
		s.addr = v
		if _, err := p.expect("device"); err != nil {
			return nil, err
		}
		if s.dev, err = p.value(); err != nil {
			return nil, err
		}
	} else {
		s.dev = v
	}
	s.at = at{start.pos, p.last().end}
	return s, nil
}

func (p *parser) dup() (stmt, error) {
	start := p.next()
	s := &sDup{}
	if _, err := p.expect("to"); err != nil {
		return nil, err
	}
	v, err := p.value()
	if err != nil {
		return nil, err
	}
	if p.accept("device") {
		s.addr = v
		if s.dev, err = p.value(); err != nil {
			return nil, err
		}
	} else {
		s.dev = v
	}
	s.at = at{start.pos, p.last().end}
	return s, nil
}

func (p *parser) tproxy() (stmt, error) {
	start := p.next()
	s := &sTproxy{}
	if p.peek().is("ip") || p.peek().is("ip6") {
		s.family = p.next().text
	}
	if _, err := p.expect("to"); err != nil {
		return nil, err
	}
	if p.accept(":") {
		v, err := p.value()
		if err != nil {
			return nil, err
		}
		s.port = v
	} else {
		t, err := p.word("an address")
		if err != nil {
			return nil, err
		}
		s.addr = &eConst{at: span(t, t), text: t.text}
		if p.accept(":") {
			v, err := p.value()
			if err != nil {
				return nil, err
			}
			s.port = v
		}
	}
	s.at = at{start.pos, p.last().end}
	return s, nil
}

func (p *parser) queue() (stmt, error) {
	start := p.next()
	s := &sQueue{total: 1}
	for {
		switch {
		case p.accept("flags"), p.accept("bypass"), p.accept("fanout"):
			prev := p.last()
			words := []token{prev}
			if prev.text == "flags" {
				words = nil
				for {
					w, err := p.word("queue flags")
					if err != nil {
						return nil, err
					}
					words = append(words, w)
					if !p.accept(",") {
						break
					}
				}
			}
			for _, w := range words {
				switch w.text {
				case "bypass":
					s.flags |= 1
				case "fanout":
					s.flags |= 2
				default:
					return nil, p.errAt(w, ErrSyntax, "queue flag %q: want bypass or fanout", w.text)
				}
			}
		case p.accept("num"), p.accept("to"):
			t, err := p.word("a queue number")
			if err != nil {
				return nil, err
			}
			lo, hi, isRange := strings.Cut(t.text, "-")
			a, err1 := strconv.ParseUint(lo, 10, 16)
			b := a
			var err2 error
			if isRange {
				b, err2 = strconv.ParseUint(hi, 10, 16)
			}
			if err1 != nil || err2 != nil || b < a {
				return nil, p.errAt(t, ErrSyntax, "queue number %q: want N or N-M", t.text)
			}
			s.num, s.total = uint16(a), uint16(b-a+1)
		default:
			s.at = at{start.pos, p.last().end}
			return s, nil
		}
	}
}

func (p *parser) synproxy() (stmt, error) {
	start := p.next()
	s := &sSynproxy{}
	for {
		switch {
		case p.accept("mss"):
			n, _, err := p.uint("an MSS", 16)
			if err != nil {
				return nil, err
			}
			s.mss, s.flags = uint16(n), s.flags|1
		case p.accept("wscale"):
			n, _, err := p.uint("a window scale", 8)
			if err != nil {
				return nil, err
			}
			s.wscale, s.flags = uint8(n), s.flags|2
		case p.accept("timestamp"):
			s.flags |= 8
		case p.accept("sack-perm"):
			s.flags |= 4
		default:
			s.at = at{start.pos, p.last().end}
			return s, nil
		}
	}
}

// exprStarts are the words that begin an expression (rather than a constant).
var exprStarts = map[string]bool{
	"ip": true, "ip6": true, "tcp": true, "udp": true, "udplite": true, "sctp": true,
	"dccp": true, "icmp": true, "icmpv6": true, "igmp": true, "ah": true, "esp": true,
	"comp": true, "th": true, "ether": true, "vlan": true, "arp": true, "meta": true,
	"ct": true, "rt": true, "fib": true, "numgen": true, "jhash": true, "symhash": true,
	"socket": true, "hbh": true, "frag": true, "dst": true, "mh": true, "exthdr": true,
}

func isExprStart(s string) bool {
	if b, ok := strings.CutPrefix(s, "@"); ok {
		_, raw := rawBases[b]
		return raw
	}
	return exprStarts[s] || bareMetaKeys[s]
}

// expr reads an expression: primaries joined by binary operators, concatenations with
// ".", and a trailing `map`.
func (p *parser) expr() (expr, error) {
	start := p.peek()
	e, err := p.binopExpr()
	if err != nil {
		return nil, err
	}
	if p.peek().is(".") {
		c := &eConcat{items: []expr{e}}
		for p.accept(".") {
			it, err := p.binopExpr()
			if err != nil {
				return nil, err
			}
			c.items = append(c.items, it)
		}
		c.at = at{start.pos, p.last().end}
		e = c
	}
	if p.accept("map") {
		s, err := p.setOrRef()
		if err != nil {
			return nil, err
		}
		e = &eMap{at: at{start.pos, p.last().end}, key: e, set: s}
	}
	return e, nil
}

var binopWords = map[string]binop{"&": opAnd, "and": opAnd, "|": opOr, "or": opOr,
	"^": opXor, "xor": opXor, "<<": opLshift, "lshift": opLshift, ">>": opRshift,
	"rshift": opRshift}

func (p *parser) binopExpr() (expr, error) {
	start := p.peek()
	e, err := p.primary()
	if err != nil {
		return nil, err
	}
	for {
		op, ok := binopWords[p.peek().text]
		if !ok || (p.peek().kind != tPunct && p.peek().kind != tWord) {
			return e, nil
		}
		p.next()
		var r expr
		if p.peek().is("(") {
			r, err = p.parenList()
		} else {
			r, err = p.constant()
		}
		if err != nil {
			return nil, err
		}
		e = &eBinop{at: at{start.pos, p.last().end}, op: op, left: e, right: r}
	}
}

func (p *parser) primary() (expr, error) {
	if p.peek().is("(") {
		open := p.next()
		e, err := p.expr()
		if err != nil {
			return nil, err
		}
		end, err := p.expect(")")
		if err != nil {
			return nil, err
		}
		switch x := e.(type) {
		case *eBinop:
			x.at = span(open, end)
		}
		return e, nil
	}
	t := p.next()
	if t.kind != tWord {
		return nil, p.errAt(t, ErrSyntax, "expected an expression, found %s", describe(t))
	}
	switch w := t.text; {
	case w == "tcp" && p.peek().is("option"):
		return p.tcpOption(t)
	case protoByName[w] != nil:
		return p.payload(t, protoByName[w])
	case w == "meta":
		k, err := p.word("a meta key")
		if err != nil {
			return nil, err
		}
		ki, ok := metaKeys[k.text]
		if !ok {
			return nil, p.errAt(k, ErrSyntax, "unknown meta key %q", k.text)
		}
		return &eMeta{at: span(t, k), ki: ki}, nil
	case bareMetaKeys[w]:
		return &eMeta{at: span(t, t), ki: metaKeys[w]}, nil
	case w == "ct":
		return p.ct(t)
	case w == "rt":
		return p.rt(t)
	case w == "hbh" || w == "frag" || w == "dst" || w == "mh":
		return p.ip6Exthdr(t, w)
	case w == "exthdr":
		n, err := p.word("an extension header name")
		if err != nil {
			return nil, err
		}
		d, ok := ip6Exthdrs[n.text]
		if !ok {
			return nil, p.errAt(n, ErrSyntax, "unknown extension header %q", n.text)
		}
		return &eExthdr{at: span(t, n), op: 0, typ: d.typ}, nil
	case w == "fib":
		return p.fib(t)
	case w == "numgen":
		return p.numgen(t)
	case w == "jhash", w == "symhash":
		return p.hash(t)
	case w == "socket":
		k, err := p.word("a socket key")
		if err != nil {
			return nil, err
		}
		ki, ok := socketKeys[k.text]
		if !ok {
			return nil, p.errAt(k, ErrUnsupported, "socket key %q", k.text)
		}
		return &eSocket{at: span(t, k), ki: ki}, nil
	case strings.HasPrefix(w, "@"):
		return p.rawPayload(t)
	}
	return nil, p.errAt(t, ErrSyntax, "unexpected %s; expected an expression such as ip saddr, "+
		"tcp dport, meta mark or ct state", describe(t))
}

func (p *parser) payload(t token, pr *proto) (expr, error) {
	f, err := p.word("a " + pr.name + " header field")
	if err != nil {
		return nil, err
	}
	name := f.text
	if pr == protoARP && (name == "saddr" || name == "daddr") {
		sub, err := p.word("ether or ip")
		if err != nil {
			return nil, err
		}
		name += " " + sub.text
		f = sub
	}
	fl := pr.field(name)
	if fl == nil {
		return nil, p.errAt(f, ErrSyntax, "%s has no field %q", pr.name, name)
	}
	return &ePayload{at: span(t, f), p: pr, f: fl}, nil
}

func (p *parser) tcpOption(t token) (expr, error) {
	p.next() // option
	n, err := p.word("a TCP option name")
	if err != nil {
		return nil, err
	}
	d, ok := tcpOptions[n.text]
	if !ok {
		return nil, p.errAt(n, ErrUnsupported, "TCP option %q", n.text)
	}
	e := &eExthdr{at: span(t, n), op: 1, typ: d.typ}
	for i := range d.fields {
		if p.peek().is(d.fields[i].name) {
			f := p.next()
			e.f = &d.fields[i]
			e.at = span(t, f)
			break
		}
	}
	return e, nil
}

func (p *parser) ip6Exthdr(t token, name string) (expr, error) {
	d := ip6Exthdrs[name]
	f, err := p.word("a " + name + " header field")
	if err != nil {
		return nil, err
	}
	for i := range d.fields {
		if d.fields[i].name == f.text {
			return &eExthdr{at: span(t, f), op: 0, typ: d.typ, f: &d.fields[i]}, nil
		}
	}
	return nil, p.errAt(f, ErrSyntax, "%s has no field %q", name, f.text)
}

func (p *parser) ct(t token) (expr, error) {
	dir := -1
	switch p.peek().text {
	case "original":
		dir = 0
		p.next()
	case "reply":
		dir = 1
		p.next()
	}
	k, err := p.word("a ct key")
	if err != nil {
		return nil, err
	}
	if k.text == "ip" || k.text == "ip6" {
		f, err := p.word("saddr or daddr")
		if err != nil {
			return nil, err
		}
		ki, ok := ctAddrKeys[k.text+" "+f.text]
		if !ok {
			return nil, p.errAt(f, ErrSyntax, "unknown ct key %q", k.text+" "+f.text)
		}
		return &eCt{at: span(t, f), ki: ki, dir: dir}, nil
	}
	ki, ok := ctKeys[k.text]
	if !ok {
		return nil, p.errAt(k, ErrSyntax, "unknown ct key %q", k.text)
	}
	return &eCt{at: span(t, k), ki: ki, dir: dir}, nil
}

func (p *parser) rt(t token) (expr, error) {
	k := p.peek()
	if k.is("ip") || k.is("ip6") {
		p.next()
		n, err := p.expect("nexthop")
		if err != nil {
			return nil, err
		}
		return &eRt{at: span(t, n), ki: rtKeys[k.text+" nexthop"]}, nil
	}
	if k.is("nexthop") {
		// The family's next hop; ip in ip tables, ip6 in ip6 tables.
		p.next()
		return &eRt{at: span(t, k), ki: keyInfo{key: 0xffff}}, nil
	}
	if ki, ok := rtKeys[k.text]; ok {
		p.next()
		return &eRt{at: span(t, k), ki: ki}, nil
	}
	return p.ip6Exthdr(t, "rt")
}

func (p *parser) fib(t token) (expr, error) {
	e := &eFib{}
	for {
		f, err := p.word("a fib flag")
		if err != nil {
			return nil, err
		}
		bit, ok := fibFlags[f.text]
		if !ok {
			return nil, p.errAt(f, ErrSyntax, "fib flag %q: want saddr, daddr, mark, iif or oif",
				f.text)
		}
		e.flags |= bit
		if !p.accept(".") {
			break
		}
	}
	r, err := p.word("a fib result")
	if err != nil {
		return nil, err
	}
	ki, ok := fibResults[r.text]
	if !ok {
		return nil, p.errAt(r, ErrSyntax, "fib result %q: want oif, oifname or type", r.text)
	}
	e.result = ki
	e.at = span(t, r)
	return e, nil
}

func (p *parser) numgen(t token) (expr, error) {
	k, err := p.word("inc or random")
	if err != nil {
		return nil, err
	}
	e := &eNumgen{}
	switch k.text {
	case "inc":
	case "random":
		e.typ = 1
	default:
		return nil, p.errAt(k, ErrSyntax, "numgen %q: want inc or random", k.text)
	}
	if _, err := p.expect("mod"); err != nil {
		return nil, err
	}
	n, _, err := p.uint("a modulus", 32)
	if err != nil {
		return nil, err
	}
	e.mod = uint32(n)
	if p.accept("offset") {
		o, _, err := p.uint("an offset", 32)
		if err != nil {
			return nil, err
		}
		e.off = uint32(o)
	}
	e.at = at{t.pos, p.last().end}
	return e, nil
}

func (p *parser) hash(t token) (expr, error) {
	e := &eHash{sym: t.text == "symhash"}
	if !e.sym {
		src, err := p.expr()
		if err != nil {
			return nil, err
		}
		e.src = src
	}
	if _, err := p.expect("mod"); err != nil {
		return nil, err
	}
	n, _, err := p.uint("a modulus", 32)
	if err != nil {
		return nil, err
	}
	e.mod = uint32(n)
	for {
		switch {
		case p.accept("seed"):
			s, _, err := p.uint("a seed", 32)
			if err != nil {
				return nil, err
			}
			e.seed, e.hasSeed = uint32(s), true
		case p.accept("offset"):
			o, _, err := p.uint("an offset", 32)
			if err != nil {
				return nil, err
			}
			e.off, e.hasOff = uint32(o), true
		default:
			e.at = at{t.pos, p.last().end}
			return e, nil
		}
	}
}

var rawBases = map[string]int{"ll": baseLL, "nh": baseNH, "th": baseTH, "ih": 3}

func (p *parser) rawPayload(t token) (expr, error) {
	base, ok := rawBases[t.text[1:]]
	if !ok {
		return nil, p.errAt(t, ErrSyntax, "raw payload base %q: want @ll, @nh, @th or @ih", t.text)
	}
	var nums [2]int
	for i := range nums {
		if _, err := p.expect(","); err != nil {
			return nil, err
		}
		n, _, err := p.uint("an offset or length in bits", 32)
		if err != nil {
			return nil, err
		}
		nums[i] = int(n)
	}
	if nums[1] == 0 || nums[1] > 128 {
		return nil, p.errAt(p.last(), ErrSyntax, "raw payload length %d: want 1 to 128 bits", nums[1])
	}
	return &eRaw{at: at{t.pos, p.last().end}, base: base, off: nums[0], bits: nums[1]}, nil
}

// value reads the source of a statement: an expression, or constants.
func (p *parser) value() (expr, error) {
	t := p.peek()
	if t.kind == tWord && isExprStart(t.text) || t.is("(") {
		return p.expr()
	}
	return p.constConcat()
}

// rhs reads what a match compares with: a constant, a flag list, a range, a set, a set
// reference.
func (p *parser) rhs() (expr, error) {
	t := p.peek()
	switch {
	case t.is("{"):
		return p.set()
	case t.kind == tWord && strings.HasPrefix(t.text, "@"):
		p.next()
		return &eSetRef{at: span(t, t), name: t.text[1:]}, nil
	case t.is("("):
		return p.parenList()
	}
	v, err := p.constConcat()
	if err != nil {
		return nil, err
	}
	if p.peek().is(",") || p.peek().is("|") {
		l := &eList{items: []expr{v}}
		for p.accept(",") || p.accept("|") {
			c, err := p.constant()
			if err != nil {
				return nil, err
			}
			l.items = append(l.items, c)
		}
		l.at = at{t.pos, p.last().end}
		return l, nil
	}
	return v, nil
}

// parenList reads `(a|b|c)` or `(a,b)`.
func (p *parser) parenList() (expr, error) {
	start := p.next()
	l := &eList{}
	for {
		c, err := p.constant()
		if err != nil {
			return nil, err
		}
		l.items = append(l.items, c)
		if p.accept("|") || p.accept(",") {
			continue
		}
		end, err := p.expect(")")
		if err != nil {
			return nil, err
		}
		l.at = span(start, end)
		if len(l.items) == 1 {
			return l.items[0], nil
		}
		return l, nil
	}
}

// constant reads one constant token.
func (p *parser) constant() (expr, error) {
	t := p.next()
	if t.kind != tWord && t.kind != tString {
		return nil, p.errAt(t, ErrSyntax, "expected a value, found %s", describe(t))
	}
	c := &eConst{at: span(t, t), text: t.text, quoted: t.kind == tString}
	// `"08:00"-"17:00"`: a range of quoted values.
	if p.peek().is("-") {
		p.next()
		hi, err := p.constant()
		if err != nil {
			return nil, err
		}
		return &eRange{at: at{t.pos, hi.span().end}, lo: c, hi: hi}, nil
	}
	return c, nil
}

// constConcat reads constants joined by ".".
func (p *parser) constConcat() (expr, error) {
	start := p.peek()
	c, err := p.constant()
	if err != nil {
		return nil, err
	}
	if !p.peek().is(".") {
		return c, nil
	}
	vc := &eValConcat{items: []expr{c}}
	for p.accept(".") {
		it, err := p.constant()
		if err != nil {
			return nil, err
		}
		vc.items = append(vc.items, it)
	}
	vc.at = at{start.pos, p.last().end}
	return vc, nil
}

func (p *parser) setOrRef() (expr, error) {
	t := p.peek()
	if t.kind == tWord && strings.HasPrefix(t.text, "@") {
		p.next()
		return &eSetRef{at: span(t, t), name: t.text[1:]}, nil
	}
	if !t.is("{") {
		return nil, p.errAt(t, ErrSyntax, "expected { elements } or @set, found %s", describe(t))
	}
	return p.set()
}

// set reads a set literal `{ a, b : c, … }`. Nested sets are flattened.
func (p *parser) set() (*eSet, error) {
	start := p.next()
	s := &eSet{}
	for {
		if p.peek().is("}") {
			break
		}
		if p.peek().is("{") {
			inner, err := p.set()
			if err != nil {
				return nil, err
			}
			s.elems = append(s.elems, inner.elems...)
		} else {
			el, err := p.setElem()
			if err != nil {
				return nil, err
			}
			s.elems = append(s.elems, el)
		}
		if !p.accept(",") {
			break
		}
	}
	end, err := p.expect("}")
	if err != nil {
		return nil, err
	}
	s.at = span(start, end)
	if len(s.elems) == 0 {
		return nil, p.errAt(end, ErrSyntax, "empty set")
	}
	return s, nil
}

func (p *parser) setElem() (*setElem, error) {
	k, err := p.constConcat()
	if err != nil {
		return nil, err
	}
	el := &setElem{key: k}
	for {
		switch {
		case p.accept("timeout"), p.accept("expires"):
			kw := p.last().text
			w, err := p.word("a duration")
			if err != nil {
				return nil, err
			}
			if kw == "timeout" {
				el.timeout = w.text
			}
		case p.accept("comment"):
			w, err := p.word("a comment")
			if err != nil {
				return nil, err
			}
			el.comment = w.text
		case p.peek().is("counter"):
			st, err := p.counter()
			if err != nil {
				return nil, err
			}
			el.stmts = append(el.stmts, st)
		case p.accept(":"):
			t := p.peek()
			if t.kind == tWord && (verdictCodes[t.text] != 0 || t.text == "drop" ||
				t.text == "jump" || t.text == "goto") {
				v, err := p.verdict()
				if err != nil {
					return nil, err
				}
				el.data = v
			} else {
				d, err := p.constConcat()
				if err != nil {
					return nil, err
				}
				el.data = d
			}
			return el, nil
		default:
			return el, nil
		}
	}
}
