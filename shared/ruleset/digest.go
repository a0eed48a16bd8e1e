package ruleset

import (
	"cmp"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"hash"
	"io"
	"slices"
	"strings"
	"sync"
)

// Digest specification, version 1.
//
// Every node of the model is hashed with SHA-256 over a domain tag and its fields:
//
//	node   = SHA-256( tag || 0x00 || field... )
//	string = uint32-be(len) || bytes
//	list   = uint32-be(count) || item...
//	child  = its 32-byte digest
//
// with these tags and fields, in this order:
//
//	"fenceline/v1/rule"      text
//	"fenceline/v1/chain"     name, header (Chain.Header), comment, list of rule digests in order
//	"fenceline/v1/set"       name, map flag (string "map" or "set"), list of spec lines,
//	                         dynamic flag ("dynamic" or "static"), list of element texts in
//	                         byte order (empty when dynamic)
//	"fenceline/v1/object"    type, name, list of spec lines
//	"fenceline/v1/flowtable" name, hook, priority, list of devices, list of flags
//	"fenceline/v1/table"     family, name, list of flags, comment,
//	                         list of chain digests ordered by chain name,
//	                         list of set digests ordered by set name,
//	                         list of object digests ordered by (type, name),
//	                         list of flowtable digests ordered by name
//	"fenceline/v1/ruleset"   list of table digests ordered by (family, name)
//
// Every "ordered by" is plain byte order of the names (for tables: family first, then
// name); names are unique within their table (the kernel enforces it). Rule order inside
// a chain is configuration and is hashed; the order of chains, sets,
// objects and tables is not (it depends on how the ruleset was loaded, not on what it
// does). Handles, counters and the elements of dynamic sets never enter a digest.
// The known-answer tests in digest_test.go pin this specification.

// Sum is a SHA-256 digest of a model node.
type Sum [sha256.Size]byte

// String returns the digest as "sha256:" and lower-case hex.
func (s Sum) String() string { return "sha256:" + hex.EncodeToString(s[:]) }

// IsZero reports whether s is the zero value (no digest).
func (s Sum) IsZero() bool { return s == Sum{} }

// ParseSum parses the form produced by Sum.String. Upper-case hex is rejected, so that a
// digest has exactly one spelling and digests compare equal as strings.
func ParseSum(s string) (Sum, bool) {
	var out Sum
	h, ok := strings.CutPrefix(s, "sha256:")
	if !ok || len(h) != 2*len(out) {
		return out, false
	}
	if _, err := hex.Decode(out[:], []byte(h)); err != nil || out.String() != s {
		return Sum{}, false
	}
	return out, true
}

type hasher struct{ h hash.Hash }

func newHasher(tag string) *hasher {
	h := &hasher{h: sha256.New()}
	h.h.Write([]byte(tag))
	h.h.Write([]byte{0})
	return h
}

func (h *hasher) u32(n int) {
	var b [4]byte
	binary.BigEndian.PutUint32(b[:], uint32(n))
	h.h.Write(b[:])
}

func (h *hasher) str(s string) {
	h.u32(len(s))
	io.WriteString(h.h, s)
}

func (h *hasher) strs(ss []string) {
	h.u32(len(ss))
	for _, s := range ss {
		h.str(s)
	}
}

func (h *hasher) sums(ss []Sum) {
	h.u32(len(ss))
	for i := range ss {
		h.h.Write(ss[i][:])
	}
}

func (h *hasher) sum() Sum {
	var s Sum
	h.h.Sum(s[:0])
	return s
}

// ruleTag starts the bytes a rule digest is taken over: the tag and its terminator.
const ruleTag = "fenceline/v1/rule\x00"

// ruleBufs holds buffers for RuleDigest, which runs for every rule of every state the
// agent reads: one buffer and one SHA-256 call instead of a hasher per rule.
var ruleBufs = sync.Pool{New: func() any { return new([]byte) }}

// RuleDigest hashes one canonical rule text. The bytes are those a hasher tagged
// "fenceline/v1/rule" writes for the text (tag, 0, length, text), in one call.
func RuleDigest(text string) Sum {
	bp := ruleBufs.Get().(*[]byte)
	b := append((*bp)[:0], ruleTag...)
	b = binary.BigEndian.AppendUint32(b, uint32(len(text)))
	b = append(b, text...)
	s := Sum(sha256.Sum256(b))
	*bp = b
	ruleBufs.Put(bp)
	return s
}

// Digest hashes the chain: its declaration and its rules in order.
func (c *Chain) Digest() Sum {
	rules := make([]Sum, len(c.Rules))
	for i, r := range c.Rules {
		rules[i] = RuleDigest(r.Text)
	}
	h := newHasher("fenceline/v1/chain")
	h.str(c.Name)
	h.str(c.Header())
	h.str(c.Comment)
	h.sums(rules)
	return h.sum()
}

// Digest hashes the set's declaration and, unless it is dynamic, its elements.
func (s *Set) Digest() Sum {
	h := newHasher("fenceline/v1/set")
	h.str(s.Name)
	if s.Map {
		h.str("map")
	} else {
		h.str("set")
	}
	h.strs(s.Spec)
	if s.Dynamic {
		h.str("dynamic")
		h.strs(nil)
	} else {
		h.str("static")
		elems := slices.Clone(s.Elements)
		slices.Sort(elems)
		h.strs(elems)
	}
	return h.sum()
}

// Digest hashes the object's type, name and declaration.
func (o *Object) Digest() Sum {
	h := newHasher("fenceline/v1/object")
	h.str(o.Type)
	h.str(o.Name)
	h.strs(o.Spec)
	return h.sum()
}

// Digest hashes the flowtable's declaration.
func (f *Flowtable) Digest() Sum {
	h := newHasher("fenceline/v1/flowtable")
	h.str(f.Name)
	h.str(f.Hook)
	h.str(f.Prio)
	h.strs(f.Devices)
	h.strs(f.Flags)
	return h.sum()
}

// Digest hashes the table and everything in it.
func (t *Table) Digest() Sum { return t.digest((*Chain).Digest, (*Set).Digest) }

func (t *Table) digest(chainSum func(*Chain) Sum, setSum func(*Set) Sum) Sum {
	chains := slices.Clone(t.Chains)
	slices.SortFunc(chains, func(a, b *Chain) int { return cmp.Compare(a.Name, b.Name) })
	sets := slices.Clone(t.Sets)
	slices.SortFunc(sets, func(a, b *Set) int { return cmp.Compare(a.Name, b.Name) })
	objs := slices.Clone(t.Objects)
	slices.SortFunc(objs, func(a, b *Object) int {
		return cmp.Or(cmp.Compare(a.Type, b.Type), cmp.Compare(a.Name, b.Name))
	})
	fts := slices.Clone(t.Flowtables)
	slices.SortFunc(fts, func(a, b *Flowtable) int { return cmp.Compare(a.Name, b.Name) })

	h := newHasher("fenceline/v1/table")
	h.str(t.Family)
	h.str(t.Name)
	h.strs(t.Flags)
	h.str(t.Comment)
	h.sums(digests(chains, chainSum))
	h.sums(digests(sets, setSum))
	h.sums(digests(objs, (*Object).Digest))
	h.sums(digests(fts, (*Flowtable).Digest))
	return h.sum()
}

// Digest hashes the whole ruleset. An empty ruleset has a well-defined digest too.
func (rs *Ruleset) Digest() Sum { return rs.digest((*Table).Digest) }

func (rs *Ruleset) digest(tableSum func(*Table) Sum) Sum {
	tables := slices.Clone(rs.Tables)
	slices.SortFunc(tables, func(a, b *Table) int {
		return cmp.Or(cmp.Compare(a.Family, b.Family), cmp.Compare(a.Name, b.Name))
	})
	h := newHasher("fenceline/v1/ruleset")
	h.sums(digests(tables, tableSum))
	return h.sum()
}

// DigestCache remembers the digests of chains and sets, by node, from one Digest of a
// model to the next, for successive models that share the nodes that did not change (the
// agent's do: see nftcanon.State.Build). A generation then costs the hashing of what it
// changed. Nodes hashed through a DigestCache must not be modified afterwards. Digests
// of nodes the last call did not see are dropped. The zero value is ready to use; a
// DigestCache is not safe for concurrent use.
type DigestCache struct {
	chains map[*Chain]Sum
	sets   map[*Set]Sum
	// Hashed counts the chains and sets the last call hashed (the others were known).
	Hashed int
}

// DigestCached is Digest with the chain and set digests c remembers.
func (rs *Ruleset) DigestCached(c *DigestCache) Sum {
	chains := make(map[*Chain]Sum, len(c.chains))
	sets := make(map[*Set]Sum, len(c.sets))
	c.Hashed = 0
	chainSum := remembered(c.chains, chains, (*Chain).Digest, &c.Hashed)
	setSum := remembered(c.sets, sets, (*Set).Digest, &c.Hashed)
	sum := rs.digest(func(t *Table) Sum { return t.digest(chainSum, setSum) })
	c.chains, c.sets = chains, sets
	return sum
}

// remembered returns f, answered from known where it has the node, counting the nodes it
// had to compute in computed, and recording every answer in seen (the next call's known).
func remembered[K comparable, V any](known, seen map[K]V, f func(K) V, computed *int) func(K) V {
	return func(k K) V {
		v, ok := known[k]
		if !ok {
			v = f(k)
			*computed++
		}
		seen[k] = v
		return v
	}
}

func digests[T any](items []T, f func(T) Sum) []Sum {
	out := make([]Sum, len(items))
	for i, it := range items {
		out[i] = f(it)
	}
	return out
}
