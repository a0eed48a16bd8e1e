package ruleset

import (
	"encoding/json"
	"strconv"
)

// JSONCache remembers the JSON encodings of chains and sets, by node, from one
// AppendJSON to the next, for successive models that share the nodes that did not change
// (as DigestCache does for digests). Nodes encoded through a JSONCache must not be
// modified afterwards. Encodings of nodes the last call did not see are dropped. The zero
// value is ready to use; a JSONCache is not safe for concurrent use.
type JSONCache struct {
	chains map[*Chain][]byte
	sets   map[*Set][]byte
}

// AppendJSON appends the JSON encoding of rs, byte for byte what json.Marshal gives, to
// b, with the encodings of chains and sets c remembers.
func (rs *Ruleset) AppendJSON(b []byte, c *JSONCache) ([]byte, error) {
	if rs == nil {
		return append(b, "null"...), nil
	}
	chains := make(map[*Chain][]byte, len(c.chains))
	sets := make(map[*Set][]byte, len(c.sets))
	b = append(b, '{')
	if len(rs.Tables) > 0 {
		b = append(b, `"tables":[`...)
		for i, t := range rs.Tables {
			if i > 0 {
				b = append(b, ',')
			}
			var err error
			if b, err = t.appendJSON(b, c, chains, sets); err != nil {
				return nil, err
			}
		}
		b = append(b, ']')
	}
	c.chains, c.sets = chains, sets
	return append(b, '}'), nil
}

// appendJSON encodes the table as json.Marshal does, field by field in the struct's
// order, honouring omitempty (TestAppendJSONFields keeps the two in step).
func (t *Table) appendJSON(b []byte, c *JSONCache, chains map[*Chain][]byte,
	sets map[*Set][]byte) ([]byte, error) {
	if t == nil {
		return append(b, "null"...), nil
	}
	var err error
	field := func(name string, v any) {
		if err != nil {
			return
		}
		var enc []byte
		if enc, err = json.Marshal(v); err == nil {
			b = append(b, ',')
			b = strconv.AppendQuote(b, name)
			b = append(b, ':')
			b = append(b, enc...)
		}
	}
	b = append(b, '{')
	fam, err := json.Marshal(t.Family)
	if err != nil {
		return nil, err
	}
	b = append(b, `"family":`...)
	b = append(b, fam...)
	field("name", t.Name)
	if len(t.Flags) > 0 {
		field("flags", t.Flags)
	}
	if t.Comment != "" {
		field("comment", t.Comment)
	}
	if err != nil {
		return nil, err
	}
	if b, err = appendNodes(b, "chains", t.Chains, c.chains, chains); err != nil {
		return nil, err
	}
	if b, err = appendNodes(b, "sets", t.Sets, c.sets, sets); err != nil {
		return nil, err
	}
	if len(t.Objects) > 0 {
		field("objects", t.Objects)
	}
	if len(t.Flowtables) > 0 {
		field("flowtables", t.Flowtables)
	}
	if err != nil {
		return nil, err
	}
	return append(b, '}'), nil
}

// appendNodes appends `,"name":[…]` with the encoding of each node, taken from known when
// it has the node and recorded in seen; nothing when there are no nodes (omitempty).
func appendNodes[T comparable](b []byte, name string, nodes []T, known, seen map[T][]byte) ([]byte, error) {
	if len(nodes) == 0 {
		return b, nil
	}
	b = append(b, ',')
	b = strconv.AppendQuote(b, name)
	b = append(b, ":["...)
	for i, n := range nodes {
		if i > 0 {
			b = append(b, ',')
		}
		enc, ok := known[n]
		if !ok {
			var err error
			if enc, err = json.Marshal(n); err != nil {
				return nil, err
			}
		}
		seen[n] = enc
		b = append(b, enc...)
	}
	return append(b, ']'), nil
}
