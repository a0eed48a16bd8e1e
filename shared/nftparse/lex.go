package nftparse

import "strings"

// tokKind is what a token is.
type tokKind uint8

const (
	tEOF     tokKind = iota
	tWord            // a run of word characters: names, numbers, addresses, 10.0.0.0/8, 1-1024
	tString          // a double-quoted string (text without the quotes)
	tPunct           // one of { } ( ) , ; = ! < > & | ^ and == != <= >= << >>
	tNewline         // a line break (significant in scripts only)
)

type token struct {
	kind tokKind
	text string
	pos  int // byte offset in the input
	end  int
}

// is reports whether t is the punctuation or word s.
func (t token) is(s string) bool { return (t.kind == tPunct || t.kind == tWord) && t.text == s }

// structural characters end a word and form tokens of their own.
func structural(c byte) bool {
	switch c {
	case '{', '}', '(', ')', ',', ';', '"', '#', '=', '!', '<', '>', '&', '|', '^', '\\':
		return true
	}
	return c == ' ' || c == '\t' || c == '\n' || c == '\r'
}

// lex splits s into tokens. Comments (# to the end of the line) are dropped, a backslash
// before a line break joins the lines, and line breaks are kept as tNewline tokens.
func lex(s string) ([]token, error) {
	var out []token
	i := 0
	for i < len(s) {
		c := s[i]
		switch {
		case c == ' ' || c == '\t' || c == '\r':
			i++
		case c == '\\':
			// A line continuation; anything else after a backslash is an error.
			j := i + 1
			for j < len(s) && (s[j] == ' ' || s[j] == '\t' || s[j] == '\r') {
				j++
			}
			if j < len(s) && s[j] != '\n' {
				return nil, errAt(s, i, 1, ErrSyntax, "stray backslash")
			}
			i = j + 1
		case c == '\n':
			out = append(out, token{kind: tNewline, text: "\n", pos: i, end: i + 1})
			i++
		case c == '#':
			for i < len(s) && s[i] != '\n' {
				i++
			}
		case c == '"':
			j := i + 1
			var sb strings.Builder
			for j < len(s) && s[j] != '"' {
				if s[j] == '\\' && j+1 < len(s) && s[j+1] == '"' {
					j++
				}
				if s[j] == '\n' {
					return nil, errAt(s, i, j-i, ErrSyntax, "unterminated string")
				}
				sb.WriteByte(s[j])
				j++
			}
			if j >= len(s) {
				return nil, errAt(s, i, j-i, ErrSyntax, "unterminated string")
			}
			out = append(out, token{kind: tString, text: sb.String(), pos: i, end: j + 1})
			i = j + 1
		case structural(c):
			n := 1
			if i+1 < len(s) {
				switch s[i : i+2] {
				case "==", "!=", "<=", ">=", "<<", ">>":
					n = 2
				}
			}
			out = append(out, token{kind: tPunct, text: s[i : i+n], pos: i, end: i + n})
			i += n
		default:
			j := i
			for j < len(s) && !structural(s[j]) {
				j++
			}
			out = append(out, token{kind: tWord, text: s[i:j], pos: i, end: j})
			i = j
		}
	}
	out = append(out, token{kind: tEOF, pos: len(s), end: len(s)})
	return out, nil
}

func errAt(input string, pos, n int, err error, msg string) *Error {
	return &Error{Input: input, Pos: pos, Len: n, Msg: msg, Err: err}
}
