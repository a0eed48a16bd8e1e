package nftcanon

import (
	"encoding/binary"
	"hash/maphash"
	"maps"
)

// Cache holds rendered rules between builds of successive states of one ruleset (see
// BuildCached). Rules no longer present are dropped at the end of each build. A Cache is
// not safe for concurrent use; the zero value is not usable, use NewCache.
type Cache struct {
	seed    maphash.Seed
	rules   map[cacheKey]cachedRule
	next    map[cacheKey]cachedRule
	ifnames map[uint32]string
	hits    int
}

type cacheKey struct{ table, rule uint64 }

type cachedRule struct {
	sum uint64 // of the rule's message, guarding against a reused handle
	out ruleOut
}

// NewCache returns an empty cache.
func NewCache() *Cache {
	return &Cache{seed: maphash.MakeSeed(), rules: map[cacheKey]cachedRule{}}
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
		c.rules = map[cacheKey]cachedRule{}
		c.ifnames = maps.Clone(ifnames)
	}
	c.next = make(map[cacheKey]cachedRule, len(c.rules))
	c.hits = 0
}

// end keeps the rules the build saw.
func (c *Cache) end() {
	if c == nil {
		return
	}
	c.rules, c.next = c.next, nil
}

// rule returns the rendered rule m from the cache, or renders it.
func (c *Cache) rule(m Msg, tables map[tableKey]uint64,
	render func() (ruleOut, error)) (ruleOut, error) {
	if c == nil {
		return render()
	}
	a, err := msgAttrs(m)
	if err != nil {
		return render()
	}
	th, ok := tables[tableKey{m.Family(), a.str(nftaRuleTable)}]
	h := a.u64(nftaRuleHandle)
	if !ok || th == 0 || h == 0 {
		return render()
	}
	// The position attribute of a notification is not part of the rule.
	sum := c.ruleSum(a)
	k := cacheKey{th, h}
	if r, ok := c.rules[k]; ok && r.sum == sum {
		c.next[k] = r
		c.hits++
		return r.out, nil
	}
	out, err := render()
	if err == nil {
		c.next[k] = cachedRule{sum: sum, out: out}
	}
	return out, err
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
