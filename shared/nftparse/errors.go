package nftparse

import (
	"errors"
	"fmt"
	"strings"
)

// Errors, tested with errors.Is.
var (
	// ErrSyntax: the text is not nft syntax this package reads.
	ErrSyntax = errors.New("syntax error")
	// ErrType: a value does not fit what it is compared with or assigned to.
	ErrType = errors.New("type error")
	// ErrUnsupported: valid nft syntax that this package does not translate.
	ErrUnsupported = errors.New("not supported")
	// ErrContext: the rule refers to something the context does not have (a named set).
	ErrContext = errors.New("unknown reference")
)

// Error is a parse failure at a position of the input.
type Error struct {
	Input string // the text parsed
	Pos   int    // byte offset of the offending token
	Len   int    // its length, at least 1
	Msg   string
	Err   error // one of the package's sentinel errors
}

func (e *Error) Error() string {
	return fmt.Sprintf("%d:%d: %s: %s", e.Line(), e.Col(), e.Err, e.Msg)
}

// Unwrap returns the sentinel error.
func (e *Error) Unwrap() error { return e.Err }

// Line is the 1-based line of the position.
func (e *Error) Line() int { return strings.Count(e.Input[:min(e.Pos, len(e.Input))], "\n") + 1 }

// Col is the 1-based column (in bytes) of the position.
func (e *Error) Col() int {
	p := min(e.Pos, len(e.Input))
	return p - strings.LastIndexByte(e.Input[:p], '\n')
}

// Caret returns the input line with a marker under the offending token, as nft shows
// errors.
func (e *Error) Caret() string {
	p := min(e.Pos, len(e.Input))
	start := strings.LastIndexByte(e.Input[:p], '\n') + 1
	end := strings.IndexByte(e.Input[p:], '\n')
	if end < 0 {
		end = len(e.Input)
	} else {
		end += p
	}
	n := max(e.Len, 1)
	if p+n > end {
		n = max(end-p, 1)
	}
	return e.Input[start:end] + "\n" + strings.Repeat(" ", p-start) + strings.Repeat("^", n)
}
