package nftcanon

import (
	"encoding/binary"
	"hash/maphash"
	"maps"
	"strings"

	"github.com/fenceline/fenceline/shared/ruleset"
)

// Cache holds rendered rules between builds of successive states of one ruleset (see
// BuildCached). Rules no longer present are dropped at the end of each build. A Cache is
// not safe for concurrent use; the zero value is not usable, use NewCache.
type Cache struct {
	seed maphash.Seed
	// builds is set for BuildCached's caches, which keep the rules a build saw for the
	// next one (next) and find them by message identity (byMsg), holding on to the
	// messages. A State's cache is only looked up: it is filled from the State read
	// before, sees each message once and keeps none.
	builds bool
	// seq, in a State's cache, are the rules of the State read before, in dump order. A
	// rule is looked for at the cursor first, where it is when the ruleset did not
	// change in between, and by key (seqAt, made on the first miss) only then: a
	// re-read of an unchanged ruleset needs no index of its rules.
	seq     []*cachedRule
	cur     int
	seqAt   map[cacheKey]int
	rules   map[cacheKey]*cachedRule
	next    map[cacheKey]*cachedRule
	byMsg   map[msgID]*cachedRule
	nextMsg map[msgID]*cachedRule
	ifnames map[uint32]string
	hits    int
	idHits  int // of hits, those found by message identity
}

type cacheKey struct{ table, rule uint64 }

// msgID identifies a message by its memory: the same bytes as a message seen in the last
// build. Dump.Apply keeps the messages of rules a generation did not touch, so between
// two builds of an applied dump almost every rule is found this way, without parsing it.
// The cache holds the pointer, so the memory cannot be reused for another message while
// the entry exists; messages are never modified in place.
type msgID struct {
	p *byte
	n int
}

// cachedRule is one rendered rule: what the model and a State need of it, without its
// message. It is held by pointer: a hit moves a pointer from one build's maps to the
// next's, which for a big ruleset was most of a cached build's time. Its fields never
// change once made; rule is shared by every model built with it.
type cachedRule struct {
	sum uint64 // of the rule's message, guarding against a reused handle
	// key and fam let a message found by identity be checked against the table it was
	// rendered in: a table deleted and added again has a new handle.
	key cacheKey
	// at is the rule's chain, shared by the rules of the chain (a read of 100k rules
	// holds one of these per rule).
	at   *chainKey
	rule *ruleset.Rule
	// dynTargets are the sets the rule's add/update statements fill (nil for most rules).
	dynTargets *[]string
	// namesChains is set when the text names a chain that the rule's message does not:
	// an anonymous verdict map's elements ("{ 22 : jump a }") are messages of their own.
	// A renamed chain leaves the rule's message as it was, so such a rule is rendered
	// again at every build rather than taken from the cache.
	namesChains bool
}

func newCachedRule(at *chainKey, out ruleOut) *cachedRule {
	r := &cachedRule{at: at, key: cacheKey{rule: out.handle},
		rule:        &ruleset.Rule{Text: out.text, Handle: out.handle, Undecoded: out.undecoded},
		namesChains: strings.Contains(out.text, ": jump ") || strings.Contains(out.text, ": goto ")}
	if len(out.dynTargets) > 0 {
		r.dynTargets = &out.dynTargets
	}
	return r
}

// NewCache returns an empty cache.
func NewCache() *Cache {
	return &Cache{seed: maphash.MakeSeed(), rules: map[cacheKey]*cachedRule{}, builds: true}
}

// newKeyCache returns an empty cache for a State: it finds rules by table and rule
// handle only, and its sums are those of every State.
func newKeyCache() *Cache {
	return &Cache{seed: stateSeed, rules: map[cacheKey]*cachedRule{}}
}

// Hits reports how many rules the last build took from the cache.
func (c *Cache) Hits() int {
	if c == nil {
		return 0
	}
	return c.hits
}

// begin starts a build. Interface names are printed into rule texts: when they changed,
// every rule is rendered again.
func (c *Cache) begin(ifnames map[uint32]string) {
	if c == nil {
		return
	}
	if !maps.Equal(c.ifnames, ifnames) {
		c.rules = map[cacheKey]*cachedRule{}
		c.byMsg = nil
		c.ifnames = maps.Clone(ifnames)
	}
	if c.builds {
		c.next = make(map[cacheKey]*cachedRule, len(c.rules))
		c.nextMsg = make(map[msgID]*cachedRule, len(c.rules))
	}
	c.hits, c.idHits = 0, 0
}

// end keeps the rules the build saw.
func (c *Cache) end() {
	if c == nil {
		return
	}
	c.rules, c.next = c.next, nil
	c.byMsg, c.nextMsg = c.nextMsg, nil
}

// rule returns the rendered rule m from the cache, or renders it.
func (c *Cache) rule(m Msg, tables map[tableKey]uint64,
	render func() (*cachedRule, error)) (*cachedRule, error) {
	fresh := render
	if c == nil {
		return fresh()
	}
	var id msgID
	if c.builds && len(m) > 0 {
		id = msgID{&m[0], len(m)}
		if r, ok := c.byMsg[id]; ok && !r.namesChains &&
			tables[tableKey{r.at.fam, r.at.table}] == r.key.table {
			c.next[r.key] = r
			c.nextMsg[id] = r
			c.hits++
			c.idHits++
			return r, nil
		}
	}
	a, err := msgAttrs(m)
	if err != nil {
		return fresh()
	}
	th, ok := tables[tableKey{m.Family(), a.str(nftaRuleTable)}]
	h := a.u64(nftaRuleHandle)
	if !ok || th == 0 || h == 0 {
		return fresh()
	}
	// The position attribute of a notification is not part of the rule.
	sum := c.ruleSum(a)
	k := cacheKey{th, h}
	if r := c.find(k); r != nil && r.sum == sum && !r.namesChains {
		if c.builds {
			c.next[k] = r
		}
		if id.p != nil {
			c.nextMsg[id] = r
		}
		c.hits++
		return r, nil
	}
	r, err := fresh()
	if err != nil {
		return nil, err
	}
	r.sum, r.key = sum, k
	if c.builds {
		c.next[k] = r
	}
	if id.p != nil {
		c.nextMsg[id] = r
	}
	return r, nil
}

// find returns the rule cached under k, or nil.
func (c *Cache) find(k cacheKey) *cachedRule {
	if c.seq == nil {
		return c.rules[k]
	}
	if c.cur < len(c.seq) && c.seq[c.cur].key == k {
		c.cur++
		return c.seq[c.cur-1]
	}
	if c.seqAt == nil {
		c.seqAt = make(map[cacheKey]int, len(c.seq))
		for i, r := range c.seq {
			if r.rule != nil && r.key.table != 0 && r.key.rule != 0 {
				c.seqAt[r.key] = i
			}
		}
	}
	i, ok := c.seqAt[k]
	if !ok {
		return nil
	}
	c.cur = i + 1
	return c.seq[i]
}

// ruleSum hashes the rule's chain, expressions, compat and user data: what its text
// depends on besides table and handle. (A notification adds the rule's position, which is
// not part of the rule.)
func (c *Cache) ruleSum(a attrMap) uint64 {
	var h maphash.Hash
	h.SetSeed(c.seed)
	for _, t := range []uint16{nftaRuleChain, nftaRuleExpressions, nftaRuleCompat,
		nftaRuleUserdata} {
		if v, ok := a.lookup(t); ok {
			var hdr [4]byte
			binary.LittleEndian.PutUint16(hdr[:], uint16(len(v)))
			binary.LittleEndian.PutUint16(hdr[2:], t)
			h.Write(hdr[:])
			h.Write(v)
		}
	}
	return h.Sum64()
}
