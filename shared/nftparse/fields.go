package nftparse

import (
	"strconv"
	"strings"
)

// Field is one statement of a rule: what it matches or does (Name) and with what (Value),
// both as written. A match's Value starts with its operator when it has one.
type Field struct {
	Name  string `json:"name"`
	Value string `json:"value"`
}

// Fields splits a rule into its statements, for showing two rules side by side:
// `iifname "br0" tcp dport 443 accept` is iifname "br0", tcp dport 443, verdict accept.
// A name that occurs again gets " #2", " #3" appended.
func Fields(text string) ([]Field, error) {
	p, err := newRuleParser(text)
	if err != nil {
		return nil, err
	}
	stmts, comment, hasComment, err := p.rule()
	if err != nil {
		return nil, err
	}
	src := func(a at) string { return strings.Join(strings.Fields(text[a.pos:a.end]), " ") }
	var out []Field
	seen := map[string]int{}
	add := func(name, value string) {
		seen[name]++
		if n := seen[name]; n > 1 {
			name += " #" + strconv.Itoa(n)
		}
		out = append(out, Field{Name: name, Value: value})
	}
	for _, s := range stmts {
		whole := src(s.span())
		switch s := s.(type) {
		case *sMatch:
			name := src(s.left.span())
			add(name, strings.TrimSpace(strings.TrimPrefix(whole, name)))
		case *sVerdict:
			add("verdict", whole)
		case *sVmap:
			name := src(s.key.span())
			add(name+" vmap", strings.TrimSpace(strings.TrimPrefix(strings.TrimPrefix(whole, name),
				" vmap")))
		case *sSet:
			name := src(s.target.span())
			add(name+" set", src(s.value.span()))
		default:
			kw, rest, _ := strings.Cut(whole, " ")
			add(kw, rest)
		}
	}
	if hasComment {
		add("comment", strconv.Quote(comment))
	}
	return out, nil
}
