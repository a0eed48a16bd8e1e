// Package nftlist parses what `nft -a -s list ruleset` prints, for conformance tests that
// compare the canonical model with nft itself. The product never parses nft output.
package nftlist

import (
	"bufio"
	"fmt"
	"strconv"
	"strings"
)

// Rule is one rule line of a listing.
type Rule struct {
	Text   string // the line without indentation and handle comment
	Handle uint64
}

// Chain is one chain of a listing with its rules in order.
type Chain struct {
	Family, Table, Name string
	Header              []string // lines before the rules without handles (comment, type …)
	Rules               []Rule
}

// Set is one set or map block of a listing.
type Set struct {
	Family, Table, Name string
	Map                 bool
	Spec                []string // declaration lines before `elements = {`
	Elements            []string // element texts, split at top-level commas
}

// Object is a stateful object block (`counter NAME { … }`, `ct helper NAME { … }`) or
// a flowtable block (Type "flowtable").
type Object struct {
	Family, Table, Type, Name string
	Spec                      []string
}

// Key returns "family table type name".
func (o *Object) Key() string { return o.Family + " " + o.Table + " " + o.Type + " " + o.Name }

// Table is a table of a listing with the declaration lines outside its blocks
// (`flags dormant`, `comment "…"`).
type Table struct {
	Family, Name string
	Lines        []string
}

// Listing is a parsed listing.
type Listing struct {
	Tables  []*Table
	Chains  []*Chain
	Sets    []*Set
	Objects []*Object
}

// Key returns "family table chain".
func (c *Chain) Key() string { return c.Family + " " + c.Table + " " + c.Name }

// Key returns "family table set".
func (s *Set) Key() string { return s.Family + " " + s.Table + " " + s.Name }

// Parse reads a listing printed with handles (-a). Rules are the lines inside a chain
// block that carry a handle comment; other lines in a chain block are its header.
func Parse(text string) (*Listing, error) {
	l := &Listing{}
	var fam, table string
	var ch *Chain
	var set *Set
	var obj *Object
	var tab *Table
	inElems := false
	var elemBuf strings.Builder
	// binding collects a rule that jumps to an anonymous chain, which nft prints over
	// several lines; it is folded into one line in nft's input syntax.
	var binding *Rule
	var bindingBody []string
	sc := bufio.NewScanner(strings.NewReader(text))
	sc.Buffer(make([]byte, 1<<20), 64<<20)
	n := 0
	for sc.Scan() {
		n++
		raw := sc.Text()
		depth := len(raw) - len(strings.TrimLeft(raw, "\t"))
		line := strings.TrimSpace(raw)
		body, handle, hasHandle := cutHandle(line)
		switch {
		case binding != nil && depth > 2:
			bindingBody = append(bindingBody, body)
		case binding != nil && strings.HasPrefix(body, "}"):
			binding.Text += "{ " + strings.Join(bindingBody, "; ") + " }" + strings.TrimPrefix(body, "}")
			binding.Handle = handle
			ch.Rules = append(ch.Rules, *binding)
			binding, bindingBody = nil, nil
		case depth == 2 && ch != nil && !hasHandle && (strings.HasSuffix(" "+body, " jump {") ||
			strings.HasSuffix(" "+body, " goto {")):
			binding = &Rule{Text: strings.TrimSuffix(body, "{")}
		case inElems:
			elemBuf.WriteString(" " + line)
			if strings.HasSuffix(line, "}") {
				inElems = false
				set.Elements = splitElems(elemBuf.String())
			}
		case depth == 0 && strings.HasPrefix(body, "table "):
			f := strings.Fields(body)
			if len(f) < 3 {
				return nil, fmt.Errorf("line %d: bad table line", n)
			}
			fam, table = f[1], f[2]
			tab = &Table{Family: fam, Name: table}
			l.Tables = append(l.Tables, tab)
		case depth == 1 && strings.HasPrefix(body, "chain "):
			ch = &Chain{Family: fam, Table: table, Name: blockName(body, "chain ")}
			l.Chains = append(l.Chains, ch)
		case depth == 1 && (strings.HasPrefix(body, "set ") || strings.HasPrefix(body, "map ")):
			set = &Set{Family: fam, Table: table, Map: strings.HasPrefix(body, "map ")}
			set.Name = blockName(body, body[:4])
			l.Sets = append(l.Sets, set)
		case depth == 1 && strings.HasSuffix(body, "{"):
			f := strings.Fields(strings.TrimSuffix(body, "{"))
			if len(f) >= 2 {
				obj = &Object{Family: fam, Table: table, Type: strings.Join(f[:len(f)-1], " "),
					Name: f[len(f)-1]}
				l.Objects = append(l.Objects, obj)
			}
		case depth == 1 && body == "}":
			ch, set, obj = nil, nil, nil
		case depth == 1 && tab != nil && body != "":
			tab.Lines = append(tab.Lines, body)
		case depth == 2 && obj != nil:
			obj.Spec = append(obj.Spec, body)
		case depth == 2 && ch != nil:
			if hasHandle {
				ch.Rules = append(ch.Rules, Rule{Text: body, Handle: handle})
			} else {
				ch.Header = append(ch.Header, body)
			}
		case depth == 2 && set != nil:
			if strings.HasPrefix(body, "elements = {") {
				elemBuf.Reset()
				elemBuf.WriteString(strings.TrimPrefix(body, "elements = "))
				if strings.HasSuffix(body, "}") {
					set.Elements = splitElems(elemBuf.String())
				} else {
					inElems = true
				}
			} else {
				set.Spec = append(set.Spec, body)
			}
		}
	}
	return l, sc.Err()
}

func blockName(body, prefix string) string {
	s := strings.TrimPrefix(body, prefix)
	s = strings.TrimSuffix(s, "{")
	return strings.TrimSpace(s)
}

// cutHandle removes a trailing "# handle N" comment.
func cutHandle(line string) (string, uint64, bool) {
	i := strings.LastIndex(line, " # handle ")
	if i < 0 {
		return line, 0, false
	}
	h, err := strconv.ParseUint(line[i+len(" # handle "):], 10, 64)
	if err != nil {
		return line, 0, false
	}
	return line[:i], h, true
}

// splitElems splits "{ a, b : c, d }" at commas outside braces and quotes.
func splitElems(s string) []string {
	s = strings.TrimSpace(s)
	s = strings.TrimPrefix(s, "{")
	s = strings.TrimSuffix(s, "}")
	var out []string
	depth, quoted, start := 0, false, 0
	for i := 0; i < len(s); i++ {
		switch c := s[i]; {
		case c == '"':
			quoted = !quoted
		case quoted:
		case c == '{' || c == '(' || c == '[':
			depth++
		case c == '}' || c == ')' || c == ']':
			depth--
		case c == ',' && depth == 0:
			out = append(out, strings.TrimSpace(s[start:i]))
			start = i + 1
		}
	}
	if last := strings.TrimSpace(s[start:]); last != "" {
		out = append(out, last)
	}
	return out
}
