package event

// maxSubsetDepth bounds the nesting inSubset follows (encoding/json refuses past 10,000).
const maxSubsetDepth = 1000

// inSubset reports, in one pass and without allocating, that b is one JSON value in
// the safe subset followed by nothing but white space: no null, integers only and below
// 2^53 in magnitude, keys of printable ASCII written without escapes. False means only
// "not shown": CheckSubset then decodes b to name what is wrong. Every document it
// accepts, CheckSubset's decoding accepts too (FuzzSubset checks it).
func inSubset(b []byte) bool {
	s := subsetScan{b: b}
	s.space()
	if !s.value(0) {
		return false
	}
	s.space()
	return s.i == len(b)
}

type subsetScan struct {
	b []byte
	i int
}

func (s *subsetScan) space() {
	for s.i < len(s.b) {
		switch s.b[s.i] {
		case ' ', '\t', '\n', '\r':
			s.i++
		default:
			return
		}
	}
}

// next is the byte at the position, or 0 at the end.
func (s *subsetScan) next() byte {
	if s.i < len(s.b) {
		return s.b[s.i]
	}
	return 0
}

func (s *subsetScan) value(depth int) bool {
	if depth > maxSubsetDepth {
		return false
	}
	switch c := s.next(); {
	case c == '{':
		return s.object(depth)
	case c == '[':
		return s.array(depth)
	case c == '"':
		return s.str(false)
	case c == 't':
		return s.literal("true")
	case c == 'f':
		return s.literal("false")
	case c == '-' || c >= '0' && c <= '9':
		return s.integer()
	default: // null, or not JSON
		return false
	}
}

func (s *subsetScan) object(depth int) bool {
	return s.members('}', func() bool {
		if s.next() != '"' || !s.str(true) {
			return false
		}
		s.space()
		if s.next() != ':' {
			return false
		}
		s.i++
		s.space()
		return s.value(depth + 1)
	})
}

func (s *subsetScan) array(depth int) bool {
	return s.members(']', func() bool { return s.value(depth + 1) })
}

// members scans an object's or array's members, from its opening byte to close; member
// scans one.
func (s *subsetScan) members(close byte, member func() bool) bool {
	s.i++ // { or [
	s.space()
	if s.next() == close {
		s.i++
		return true
	}
	for {
		if !member() {
			return false
		}
		s.space()
		switch s.next() {
		case ',':
			s.i++
			s.space()
		case close:
			s.i++
			return true
		default:
			return false
		}
	}
}

// str scans a string from its opening quote. A key must be printable ASCII without
// escapes; a value may hold any escape JSON allows.
func (s *subsetScan) str(key bool) bool {
	s.i++ // "
	for s.i < len(s.b) {
		c := s.b[s.i]
		switch {
		case c == '"':
			s.i++
			return true
		case c < 0x20:
			return false // not JSON
		case key && (c == '\\' || c > 0x7e):
			return false
		case c == '\\':
			if s.i+1 >= len(s.b) {
				return false
			}
			switch s.b[s.i+1] {
			case '"', '\\', '/', 'b', 'f', 'n', 'r', 't':
				s.i += 2
			case 'u':
				if s.i+6 > len(s.b) {
					return false
				}
				for _, h := range s.b[s.i+2 : s.i+6] {
					if !(h >= '0' && h <= '9' || h >= 'a' && h <= 'f' || h >= 'A' && h <= 'F') {
						return false
					}
				}
				s.i += 6
			default:
				return false
			}
		default:
			s.i++
		}
	}
	return false // unterminated
}

func (s *subsetScan) literal(word string) bool {
	if len(s.b)-s.i < len(word) || string(s.b[s.i:s.i+len(word)]) != word {
		return false
	}
	s.i += len(word)
	return true
}

// integer scans -?(0|[1-9][0-9]*) and refuses a fraction, an exponent, or a magnitude
// of 2^53 or more.
func (s *subsetScan) integer() bool {
	if s.next() == '-' {
		s.i++
	}
	start := s.i
	var n int64
	for s.i < len(s.b) && s.b[s.i] >= '0' && s.b[s.i] <= '9' {
		n = n*10 + int64(s.b[s.i]-'0')
		if n >= maxSafeInt {
			return false
		}
		s.i++
	}
	switch digits := s.i - start; {
	case digits == 0:
		return false
	case digits > 1 && s.b[start] == '0':
		return false // leading zero: not JSON
	}
	switch s.next() {
	case '.', 'e', 'E':
		return false
	}
	return true
}
