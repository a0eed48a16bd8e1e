package nftparse

import (
	"fmt"
	"strings"
)

// ScriptRule is one rule of an nft script (a file for `nft -f`): where it goes and its
// text as written, on one line, with variables expanded.
type ScriptRule struct {
	Family, Table, Chain string
	Text                 string
	Line                 int
}

// ScriptElements is an `add element` command or an `elements = { … }` block.
type ScriptElements struct {
	Family, Table, Set string
	Text               string // the elements, without braces
	Line               int
}

// Script is what ParseScript found.
type Script struct {
	Rules    []ScriptRule
	Elements []ScriptElements
}

var families = map[string]bool{"ip": true, "ip6": true, "inet": true, "arp": true,
	"bridge": true, "netdev": true}

// ParseScript reads the rules of an nft script: `table … { chain … { rules } }` blocks and
// `add rule` / `insert rule` commands, with `define` variables expanded. Declarations
// (chain types, sets, objects) are skipped; `include` is refused.
func ParseScript(src string) (*Script, error) {
	toks, err := lex(src)
	if err != nil {
		return nil, err
	}
	toks, err = expandDefines(src, toks)
	if err != nil {
		return nil, err
	}
	s := &scriptParser{src: src, toks: toks, out: &Script{}}
	if err := s.top(); err != nil {
		return nil, err
	}
	return s.out, nil
}

// expandDefines removes `define NAME = VALUE` statements and replaces $NAME by VALUE.
func expandDefines(src string, toks []token) ([]token, error) {
	defs := map[string][]token{}
	var out []token
	stmtStart := true
	for i := 0; i < len(toks); i++ {
		t := toks[i]
		if stmtStart && t.is("define") || stmtStart && t.is("redefine") {
			if i+2 >= len(toks) || toks[i+1].kind != tWord || !toks[i+2].is("=") {
				return nil, errAt(src, t.pos, t.end-t.pos, ErrSyntax, "expected define NAME = VALUE")
			}
			name := toks[i+1].text
			j := i + 3
			depth := 0
			var val []token
			for ; j < len(toks); j++ {
				v := toks[j]
				if v.kind == tEOF || depth == 0 && (v.kind == tNewline || v.is(";")) {
					break
				}
				if v.is("{") {
					depth++
				} else if v.is("}") {
					depth--
				}
				if v.kind == tNewline {
					continue
				}
				if strings.HasPrefix(v.text, "$") && v.kind == tWord {
					d, ok := defs[v.text[1:]]
					if !ok {
						return nil, errAt(src, v.pos, v.end-v.pos, ErrSyntax, "undefined "+v.text)
					}
					val = append(val, d...)
					continue
				}
				val = append(val, v)
			}
			defs[name] = val
			i = j - 1
			continue
		}
		if t.kind == tWord && strings.HasPrefix(t.text, "$") {
			d, ok := defs[t.text[1:]]
			if !ok {
				return nil, errAt(src, t.pos, t.end-t.pos, ErrSyntax, "undefined variable "+t.text)
			}
			for _, v := range d {
				v.end = -1 // expanded: not adjacent to anything in the source
				out = append(out, v)
			}
			stmtStart = false
			continue
		}
		out = append(out, t)
		stmtStart = t.kind == tNewline || t.is(";") || t.is("{") || t.is("}")
	}
	return out, nil
}

type scriptParser struct {
	src  string
	toks []token
	i    int
	out  *Script
}

func (s *scriptParser) peek() token { return s.toks[s.i] }

func (s *scriptParser) next() token {
	t := s.toks[s.i]
	if t.kind != tEOF {
		s.i++
	}
	return t
}

func (s *scriptParser) skipBreaks() {
	for s.peek().kind == tNewline || s.peek().is(";") {
		s.i++
	}
}

func (s *scriptParser) line(t token) int { return strings.Count(s.src[:t.pos], "\n") + 1 }

func (s *scriptParser) errf(t token, format string, args ...any) error {
	return errAt(s.src, t.pos, max(t.end-t.pos, 1), ErrSyntax, fmt.Sprintf(format, args...))
}

// stmtTokens takes the tokens up to the end of the statement: a line break or ';' outside
// braces, or an unmatched '}'.
func (s *scriptParser) stmtTokens() []token {
	var out []token
	depth := 0
	for {
		t := s.peek()
		if t.kind == tEOF {
			return out
		}
		if depth == 0 && (t.kind == tNewline || t.is(";") || t.is("}")) {
			return out
		}
		s.next()
		switch {
		case t.is("{"):
			depth++
		case t.is("}"):
			depth--
		}
		if t.kind != tNewline {
			out = append(out, t)
		}
	}
}

// text joins tokens as they were written, with one space where the source had any.
func (s *scriptParser) text(toks []token) string {
	var sb strings.Builder
	for i, t := range toks {
		if i > 0 && (t.end < 0 || toks[i-1].end < 0 || toks[i-1].end != t.pos) &&
			!(t.end < 0 && t.is(",")) {
			sb.WriteByte(' ')
		}
		if t.end < 0 || t.kind == tString {
			if t.kind == tString {
				sb.WriteString(`"` + t.text + `"`)
			} else {
				sb.WriteString(t.text)
			}
			continue
		}
		sb.WriteString(s.src[t.pos:t.end])
	}
	return sb.String()
}

// skipBlock skips a balanced { … } block.
func (s *scriptParser) skipBlock() error {
	open := s.next()
	if !open.is("{") {
		return s.errf(open, "expected {")
	}
	depth := 1
	for depth > 0 {
		t := s.next()
		switch {
		case t.kind == tEOF:
			return s.errf(open, "unclosed {")
		case t.is("{"):
			depth++
		case t.is("}"):
			depth--
		}
	}
	return nil
}

func (s *scriptParser) top() error {
	for {
		s.skipBreaks()
		t := s.peek()
		if t.kind == tEOF {
			return nil
		}
		switch {
		case t.is("table"):
			s.next()
			fam, name, err := s.famName()
			if err != nil {
				return err
			}
			if !s.peek().is("{") {
				s.stmtTokens() // `table inet x` declares the table
				continue
			}
			if err := s.table(fam, name); err != nil {
				return err
			}
		case t.is("include"):
			return errAt(s.src, t.pos, t.end-t.pos, ErrUnsupported, "include")
		case t.is("add") || t.is("create") || t.is("insert"):
			if err := s.command(); err != nil {
				return err
			}
		default:
			// flush, delete, list and the like change nothing a planned change names.
			s.stmtTokens()
			if s.peek().is("}") {
				return s.errf(s.peek(), "unexpected }")
			}
		}
	}
}

// famName reads `[family] name`.
func (s *scriptParser) famName() (string, string, error) {
	a := s.next()
	if a.kind != tWord && a.kind != tString {
		return "", "", s.errf(a, "expected a table name")
	}
	if families[a.text] && (s.peek().kind == tWord || s.peek().kind == tString) {
		b := s.next()
		return a.text, b.text, nil
	}
	return "ip", a.text, nil
}

func (s *scriptParser) table(fam, name string) error {
	open := s.next()
	if !open.is("{") {
		return s.errf(open, "expected { after table %s", name)
	}
	for {
		s.skipBreaks()
		t := s.peek()
		switch {
		case t.kind == tEOF:
			return s.errf(open, "unclosed table %s", name)
		case t.is("}"):
			s.next()
			return nil
		case t.is("chain"):
			s.next()
			c := s.next()
			if err := s.chain(fam, name, c.text); err != nil {
				return err
			}
		case t.is("set") || t.is("map"):
			s.next()
			set := s.next()
			if err := s.setBlock(fam, name, set.text); err != nil {
				return err
			}
		default:
			// Objects, flowtables, flags and comments of the table.
			toks := s.stmtTokens()
			if len(toks) > 0 && toks[len(toks)-1].is("{") {
				return s.errf(t, "unbalanced block")
			}
			if s.peek().is("{") {
				if err := s.skipBlock(); err != nil {
					return err
				}
			}
		}
	}
}

// setBlock reads a set or map block for its elements.
func (s *scriptParser) setBlock(fam, table, set string) error {
	open := s.next()
	if !open.is("{") {
		return s.errf(open, "expected { after set %s", set)
	}
	for {
		s.skipBreaks()
		t := s.peek()
		switch {
		case t.kind == tEOF:
			return s.errf(open, "unclosed set %s", set)
		case t.is("}"):
			s.next()
			return nil
		case t.is("elements"):
			s.next()
			s.next() // =
			toks := s.stmtTokens()
			if len(toks) >= 2 && toks[0].is("{") && toks[len(toks)-1].is("}") {
				s.out.Elements = append(s.out.Elements, ScriptElements{Family: fam, Table: table,
					Set: set, Text: s.text(toks[1 : len(toks)-1]), Line: s.line(t)})
			}
		default:
			s.stmtTokens()
		}
	}
}

func (s *scriptParser) chain(fam, table, chain string) error {
	open := s.next()
	if !open.is("{") {
		return s.errf(open, "expected { after chain %s", chain)
	}
	for {
		s.skipBreaks()
		t := s.peek()
		switch {
		case t.kind == tEOF:
			return s.errf(open, "unclosed chain %s", chain)
		case t.is("}"):
			s.next()
			return nil
		}
		toks := s.stmtTokens()
		if len(toks) == 0 {
			continue
		}
		switch toks[0].text {
		case "type", "policy", "devices", "device":
			continue
		case "comment":
			if len(toks) == 2 {
				continue // the chain's comment
			}
		}
		s.out.Rules = append(s.out.Rules, ScriptRule{Family: fam, Table: table, Chain: chain,
			Text: s.text(toks), Line: s.line(toks[0])})
	}
}

// command reads `add|insert rule …`, `add element …`, and skips other commands.
func (s *scriptParser) command() error {
	s.next()
	what := s.next()
	switch what.text {
	case "rule":
		toks := s.stmtTokens()
		fam := "ip"
		if len(toks) > 0 && families[toks[0].text] && len(toks) > 3 {
			fam, toks = toks[0].text, toks[1:]
		}
		if len(toks) < 3 {
			return s.errf(what, "expected rule [family] table chain RULE")
		}
		table, chain, rest := toks[0].text, toks[1].text, toks[2:]
		for len(rest) >= 2 && (rest[0].is("position") || rest[0].is("index") ||
			rest[0].is("handle")) {
			rest = rest[2:]
		}
		if len(rest) == 0 {
			return s.errf(what, "empty rule")
		}
		s.out.Rules = append(s.out.Rules, ScriptRule{Family: fam, Table: table, Chain: chain,
			Text: s.text(rest), Line: s.line(what)})
	case "element":
		toks := s.stmtTokens()
		fam := "ip"
		if len(toks) > 0 && families[toks[0].text] && len(toks) > 3 {
			fam, toks = toks[0].text, toks[1:]
		}
		if len(toks) < 4 || !toks[2].is("{") || !toks[len(toks)-1].is("}") {
			return s.errf(what, "expected element [family] table set { ELEMENTS }")
		}
		s.out.Elements = append(s.out.Elements, ScriptElements{Family: fam, Table: toks[0].text,
			Set: toks[1].text, Text: s.text(toks[3 : len(toks)-1]), Line: s.line(what)})
	default:
		s.stmtTokens()
	}
	return nil
}
