package nftcanon

import (
	"errors"
	"fmt"
	"slices"
	"strings"

	"github.com/fenceline/fenceline/shared/ruleset"
)

// ErrMalformed is wrapped by Build's errors for messages it cannot make sense of.
var ErrMalformed = errors.New("malformed nf_tables message")

type tableKey struct {
	fam  byte
	name string
}

type chainKey struct {
	fam          byte
	table, chain string
}

// Build turns a dump into the canonical model. Tables are sorted (ruleset.Sort); chains,
// rules, sets and objects keep the kernel's order. A rule or element the package cannot
// render as nft does is kept in a lossless fallback form and counted in Rule.Undecoded.
func Build(d *Dump) (*ruleset.Ruleset, error) { return build(d, nil) }

// BuildCached is Build for successive states of one ruleset: rules that c has rendered
// before are not rendered again. A committed rule never changes (replacing it gives it a
// new handle, and handles are not reused within a table), so a rule is known by its
// table's and its own handle, checked against a hash of its message.
func BuildCached(d *Dump, c *Cache) (*ruleset.Ruleset, error) { return build(d, c) }

func build(d *Dump, cache *Cache) (*ruleset.Ruleset, error) {
	b, err := newBuilder(d, cache, nil)
	if err != nil {
		return nil, err
	}
	for _, m := range d.Rules {
		r, err := b.render(m)
		if err != nil {
			return nil, err
		}
		b.dropSets()
		if err := b.add(r); err != nil {
			return nil, err
		}
	}
	cache.end()
	return b.finish()
}

// builder makes the model of one state: newBuilder takes everything but the rules, then
// each rule is rendered (render) and placed (add) in dump order, and finish completes the
// model. Rules can so be rendered as their dump arrives (see StateRead).
type builder struct {
	e            *env
	cache        *Cache
	rs           *ruleset.Ruleset
	tables       map[tableKey]*ruleset.Table
	tableHandles map[tableKey]uint64
	chains       map[chainKey]*ruleset.Chain
	bindings     map[chainKey]bool
	sets         map[tableKey]map[string]*setSrc
	setOrder     []*setSrc
	// With a memo (State.Build): what the build knows of each chain, besides chains.
	memo  *buildMemo
	infos map[chainKey]*chainInfo
	ids   map[chainKey]*chainKey // see chainID
	// err is the first error of parsing a set or its elements on use (set); loaded are
	// the anonymous sets parsed since the last dropSets.
	err    error
	loaded []*setSrc
	// strict makes a rule that refers to an unknown set an error (State.Build: the
	// State does not keep the anonymous sets of rendered rules).
	strict bool
}

// chainInfo is what State.Build knows of a chain: the message it was made from, where
// it is in its table's list (-1 for a binding chain), whether it is the chain of the
// last model (which must not be changed), and whether its rules were placed.
type chainInfo struct {
	msg    *byte
	at     int
	shared bool
	done   bool
}

// setSrc is a set of the dump, parsed when first needed (set): a ruleset with tens of
// thousands of anonymous sets has each parsed only while its rule is rendered.
type setSrc struct {
	msg      Msg
	elems    []Msg
	hasElems bool
	fam      byte
	table    string
	anon     bool
	s        *setInfo // once parsed
}

// set returns the set name of table (fam, table), parsed, or nil when there is none.
func (b *builder) set(fam byte, table, name string) *setInfo {
	src := b.sets[tableKey{fam, table}][name]
	if src == nil {
		if b.strict && b.err == nil {
			b.err = fmt.Errorf("%w: a rule refers to set %s %s %s, which is not known",
				ErrNotIncremental, FamilyName(fam), table, name)
		}
		return nil
	}
	return b.parsed(src)
}

func (b *builder) parsed(src *setSrc) *setInfo {
	if src.s != nil {
		return src.s
	}
	s, err := b.memo.set(src.msg)
	if err != nil {
		if b.err == nil {
			b.err = err
		}
		return nil
	}
	if src.hasElems {
		msgs := src.elems
		s.load = func() []elem {
			els, err := b.memo.elements(msgs, src.anon)
			if err != nil && b.err == nil {
				b.err = fmt.Errorf("set %s %s: %w", s.table, s.name, err)
			}
			return els
		}
	}
	src.s = s
	if src.anon {
		b.loaded = append(b.loaded, src)
	}
	return s
}

// dropSets forgets the parsed anonymous sets: a read renders each anonymous set with its
// one rule (the kernel binds an anonymous set to one rule) and need not hold them all;
// should another rule refer to one, it is parsed again.
func (b *builder) dropSets() {
	for _, src := range b.loaded {
		src.s = nil
	}
	clear(b.loaded)
	b.loaded = b.loaded[:0]
}

// newBuilder starts a build of d; memo, when set, lends what the last build of the same
// State made of messages that did not change.
func newBuilder(d *Dump, cache *Cache, memo *buildMemo) (*builder, error) {
	b := &builder{
		e: &env{ifnames: d.Ifnames}, cache: cache, rs: &ruleset.Ruleset{},
		tables: map[tableKey]*ruleset.Table{}, tableHandles: map[tableKey]uint64{},
		chains: map[chainKey]*ruleset.Chain{}, bindings: map[chainKey]bool{},
		sets: map[tableKey]map[string]*setSrc{}, memo: memo,
	}
	if memo != nil {
		memo.begin()
		b.infos = make(map[chainKey]*chainInfo, len(d.Chains))
		b.chains = make(map[chainKey]*ruleset.Chain, len(d.Chains))
	}
	if err := b.addTables(d, true); err != nil {
		return nil, err
	}
	cache.begin(d.Ifnames)
	for _, m := range d.Chains {
		tname, c, binding, shared, err := memo.chain(m)
		if err != nil {
			return nil, err
		}
		t, err := b.table(m.Family(), tname)
		if err != nil {
			return nil, err
		}
		k := chainKey{m.Family(), tname, c.Name}
		b.chains[k] = c
		if memo != nil {
			info := &chainInfo{msg: msgKey(m), at: -1, shared: shared}
			if !binding {
				info.at = len(t.Chains)
			}
			b.infos[k] = info
		}
		if binding {
			b.bindings[k] = true
			continue
		}
		t.Chains = append(t.Chains, c)
	}
	if err := b.addSets(d); err != nil {
		return nil, err
	}
	for _, m := range d.Objects {
		tname, o, err := parseObject(m, b.e)
		if err != nil {
			return nil, err
		}
		t, err := b.table(m.Family(), tname)
		if err != nil {
			return nil, err
		}
		t.Objects = append(t.Objects, o)
	}
	for _, m := range d.Flowtables {
		tname, f, err := parseFlowtable(m)
		if err != nil {
			return nil, err
		}
		t, err := b.table(m.Family(), tname)
		if err != nil {
			return nil, err
		}
		t.Flowtables = append(t.Flowtables, f)
	}
	return b, nil
}

// addSets takes note of d's sets and their elements, to be parsed when needed (set).
func (b *builder) addSets(d *Dump) error {
	for _, m := range d.Sets {
		if len(m) < 4 {
			return fmt.Errorf("set: %w", errShort)
		}
		a, err := parseAttrs(m[4:])
		if err != nil {
			return fmt.Errorf("set: %w", err)
		}
		src := &setSrc{msg: m, fam: m.Family(), table: a.str(nftaSetTable),
			anon: a.u32(nftaSetFlags)&setFlagAnonymous != 0}
		k := tableKey{src.fam, src.table}
		if b.sets[k] == nil {
			b.sets[k] = map[string]*setSrc{}
		}
		b.sets[k][a.str(nftaSetName)] = src
		b.setOrder = append(b.setOrder, src)
	}
	for _, se := range d.Elements {
		if src := b.sets[tableKey{se.Family, se.Table}][se.Set]; src != nil {
			src.elems, src.hasElems = se.Msgs, true
		}
	}
	return nil
}

// newRenderer starts a builder that only renders rules (State.quickBuild): tables and
// sets, nothing else; unknown sets are errors, as in State.Build.
// addTables parses d's tables into b, and into its model when inModel.
func (b *builder) addTables(d *Dump, inModel bool) error {
	for _, m := range d.Tables {
		t, h, err := parseTable(m)
		if err != nil {
			return err
		}
		b.tables[tableKey{m.Family(), t.Name}] = t
		b.tableHandles[tableKey{m.Family(), t.Name}] = h
		if inModel {
			b.rs.Tables = append(b.rs.Tables, t)
		}
	}
	return nil
}

func newRenderer(d *Dump) (*builder, error) {
	b := &builder{
		e: &env{ifnames: d.Ifnames}, cache: newKeyCache(), rs: &ruleset.Ruleset{},
		tables: map[tableKey]*ruleset.Table{}, tableHandles: map[tableKey]uint64{},
		sets: map[tableKey]map[string]*setSrc{}, strict: true,
	}
	if err := b.addTables(d, false); err != nil {
		return nil, err
	}
	b.cache.begin(d.Ifnames)
	if err := b.addSets(d); err != nil {
		return nil, err
	}
	return b, nil
}

func (b *builder) table(fam byte, name string) (*ruleset.Table, error) {
	t, ok := b.tables[tableKey{fam, name}]
	if !ok {
		return nil, fmt.Errorf("%w: no table %s %s", ErrMalformed, FamilyName(fam), name)
	}
	return t, nil
}

// render renders rule message m, or takes it from the cache.
func (b *builder) render(m Msg) (*cachedRule, error) {
	return b.cache.rule(m, b.tableHandles, func() (*cachedRule, error) {
		out, err := b.e.rule(m, func(table, name string) *setInfo {
			return b.set(m.Family(), table, name)
		})
		if err == nil {
			err = b.err
		}
		if err != nil {
			return nil, err
		}
		return newCachedRule(b.chainID(chainKey{m.Family(), out.table, out.chain}), out), nil
	})
}

// chainID returns the chain key every rule of chain k shares.
func (b *builder) chainID(k chainKey) *chainKey {
	if id, ok := b.ids[k]; ok {
		return id
	}
	if b.ids == nil {
		b.ids = map[chainKey]*chainKey{}
	}
	id := &k
	b.ids[k] = id
	return id
}

// add places a rendered rule at the end of its chain.
func (b *builder) add(r *cachedRule) error {
	b.dynTargets(r)
	c, ok := b.chains[*r.at]
	if !ok {
		return fmt.Errorf("%w: rule in unknown chain %s %s %s", ErrMalformed,
			FamilyName(r.at.fam), r.at.table, r.at.chain)
	}
	c.Rules = append(c.Rules, r.rule)
	return nil
}

// dynTargets marks the sets rule r fills as dynamic.
func (b *builder) dynTargets(r *cachedRule) {
	if r.dynTargets == nil {
		return
	}
	for _, name := range *r.dynTargets {
		if s := b.set(r.at.fam, r.at.table, name); s != nil {
			s.dynTarget = true
		}
	}
}

// finish completes the model once every rule was added.
func (b *builder) finish() (*ruleset.Ruleset, error) {
	inlineBindings(b.rs, b.chains, b.bindings)
	// Named sets come last: whether a set is dynamic depends on the rules that update it.
	for _, src := range b.setOrder {
		if src.anon {
			continue
		}
		t, err := b.table(src.fam, src.table)
		if err != nil {
			return nil, err
		}
		s := b.parsed(src)
		if b.err != nil {
			return nil, b.err
		}
		t.Sets = append(t.Sets, b.namedSet(src, s))
	}
	b.rs.Sort()
	if m := b.memo; m != nil {
		for k, info := range b.infos {
			m.nextChains[info.msg] = &chainMemo{table: k.table, binding: info.at < 0,
				chain: b.chains[k]}
		}
		m.end()
	}
	return b.rs, nil
}

// namedSet renders a named set, or takes it from the memo.
func (b *builder) namedSet(src *setSrc, s *setInfo) *ruleset.Set {
	if b.memo == nil || msgKey(src.msg) == nil {
		return b.e.safeNamedSet(s)
	}
	k := namedKey{set: msgKey(src.msg), elems: keyOfElems(src.elems), dyn: s.dynTarget}
	if out, ok := b.memo.named[k]; ok {
		b.memo.nextNamed[k] = out
		return out
	}
	out := b.e.safeNamedSet(s)
	b.memo.nextNamed[k] = out
	return out
}

// replaceChain puts c in the place of the chain k names (State.Build, for a chain taken
// from the last model whose rules changed).
func (b *builder) replaceChain(k chainKey, c *ruleset.Chain) {
	b.chains[k] = c
	info := b.infos[k]
	info.shared = false
	if info.at >= 0 {
		b.tables[tableKey{k.fam, k.table}].Chains[info.at] = c
	}
}

func parseTable(m Msg) (*ruleset.Table, uint64, error) {
	if len(m) < 4 {
		return nil, 0, fmt.Errorf("%w: short table message", ErrMalformed)
	}
	a, err := parseAttrs(m[4:])
	if err != nil {
		return nil, 0, fmt.Errorf("%w: table: %v", ErrMalformed, err)
	}
	t := &ruleset.Table{Family: FamilyName(m.Family()), Name: a.str(nftaTableName)}
	fl := a.u32(nftaTableFlags)
	for _, f := range []struct {
		bit  uint32
		name string
	}{{tableFlagDormant, "dormant"}, {tableFlagOwner, "owner"}, {tableFlagPersist, "persist"}} {
		if fl&f.bit != 0 {
			t.Flags = append(t.Flags, f.name)
		}
	}
	if u, ok := a.lookup(nftaTableUserdata); ok {
		t.Comment, _ = parseUdata(u).str(udataTableComment)
	}
	return t, a.u64(nftaTableHandle), nil
}

// Hook numbers per family.
var hookNames = map[byte][]string{
	famIPv4:   {"prerouting", "input", "forward", "output", "postrouting", "ingress"},
	famIPv6:   {"prerouting", "input", "forward", "output", "postrouting", "ingress"},
	famInet:   {"prerouting", "input", "forward", "output", "postrouting", "ingress"},
	famBridge: {"prerouting", "input", "forward", "output", "postrouting"},
	famARP:    {"input", "output", "forward"},
	famNetdev: {"ingress", "egress"},
}

func hookName(fam byte, n uint32) string {
	if names, ok := hookNames[fam]; ok && int(n) < len(names) {
		return names[n]
	}
	return "hook-" + itoa(uint64(n))
}

type prioName struct {
	name string
	val  int32
	hook string // the only hook the name is valid on, or ""
}

var (
	inetPrios = []prioName{{"raw", -300, ""}, {"mangle", -150, ""}, {"dstnat", -100, "prerouting"},
		{"filter", 0, ""}, {"security", 50, ""}, {"srcnat", 100, "postrouting"}}
	bridgePrios = []prioName{{"dstnat", -300, "prerouting"}, {"filter", -200, ""},
		{"out", 100, "output"}, {"srcnat", 300, "postrouting"}}
	otherPrios = []prioName{{"filter", 0, ""}}
)

// prioText prints a base chain priority with nft's standard names: "filter",
// "srcnat + 5", or the number when no name is within 10.
func prioText(fam byte, hook string, p int32) string {
	names := otherPrios
	switch fam {
	case famIPv4, famIPv6, famInet:
		names = inetPrios
	case famBridge:
		names = bridgePrios
	}
	for _, n := range names {
		if n.hook != "" && n.hook != hook {
			continue
		}
		off := int64(p) - int64(n.val)
		switch {
		case off == 0:
			return n.name
		case off > 0 && off <= 10:
			return fmt.Sprintf("%s + %d", n.name, off)
		case off < 0 && off >= -10:
			return fmt.Sprintf("%s - %d", n.name, -off)
		}
	}
	return fmt.Sprint(p)
}

// parseChain decodes a chain; binding reports an anonymous chain bound to a rule
// (`jump { … }`), which nft lists inside that rule.
func parseChain(m Msg) (table string, c *ruleset.Chain, binding bool, err error) {
	if len(m) < 4 {
		return "", nil, false, fmt.Errorf("%w: short chain message", ErrMalformed)
	}
	a, err := parseAttrs(m[4:])
	if err != nil {
		return "", nil, false, fmt.Errorf("%w: chain: %v", ErrMalformed, err)
	}
	binding = a.u32(nftaChainFlags)&chainFlagBinding != 0
	c = &ruleset.Chain{Name: a.str(nftaChainName)}
	if u, ok := a.lookup(nftaChainUserdata); ok {
		c.Comment, _ = parseUdata(u).str(udataChainComment)
	}
	if h := a.nested(nftaChainHook); h != nil {
		fam := m.Family()
		c.Type = a.str(nftaChainType)
		c.Hook = hookName(fam, h.u32(nftaHookHooknum))
		c.Priority = prioText(fam, c.Hook, int32(h.u32(nftaHookPriority)))
		// Newer kernels send the device list and, for a single device, the device
		// again on its own.
		if devs, ok := h.lookup(nftaHookDevs); ok {
			list, _ := attrs(devs)
			for _, d := range list {
				c.Devices = append(c.Devices, cstr(d.data))
			}
		} else if dev, ok := h.lookup(nftaHookDev); ok {
			c.Devices = append(c.Devices, cstr(dev))
		}
		// The kernel lists devices in hash order; nft prints them sorted.
		slices.Sort(c.Devices)
		if a.has(nftaChainPolicy) {
			c.Policy = "drop"
			if a.u32(nftaChainPolicy) == verdictAccept {
				c.Policy = "accept"
			}
		}
	}
	return a.str(nftaChainTable), c, binding, nil
}

// inlineBindings writes the rules of anonymous chains into the rules that jump to them:
// `tcp dport 22 jump { ip saddr 1.2.3.4 accept; counter }`. nft lists such a rule over
// several lines; the canonical text keeps one line, in nft's input syntax, and does not
// depend on the name the anonymous chain got.
// TODO: a binding chain referenced from a verdict map element is not inlined.
func inlineBindings(rs *ruleset.Ruleset, chains map[chainKey]*ruleset.Chain,
	bindings map[chainKey]bool) {
	if len(bindings) == 0 {
		return
	}
	famOf := map[string]byte{}
	for _, f := range []byte{famInet, famIPv4, famIPv6, famARP, famBridge, famNetdev} {
		famOf[FamilyName(f)] = f
	}
	for _, t := range rs.Tables {
		fam := famOf[t.Family]
		for ci, c := range t.Chains {
			copied := false
			for ri, r := range c.Rules {
				for _, verb := range []string{" jump ", " goto "} {
					i := strings.Index(" "+r.Text, verb+"__chain")
					if i < 0 {
						continue
					}
					start := i + len(verb) - 1
					end := start
					for end < len(r.Text) && r.Text[end] != ' ' {
						end++
					}
					k := chainKey{fam, t.Name, r.Text[start:end]}
					b, ok := chains[k]
					if !ok || !bindings[k] {
						continue
					}
					var body []string
					// Rules are shared between the models built from one cache: the
					// inlined rule is a copy.
					nr := *r
					for _, br := range b.Rules {
						body = append(body, br.Text)
						nr.Undecoded += br.Undecoded
					}
					nr.Text = r.Text[:start] + "{ " + strings.Join(body, "; ") + " }" + r.Text[end:]
					if !copied {
						// So is the chain, which may come from an earlier model.
						nc := *c
						nc.Rules = slices.Clone(c.Rules)
						t.Chains[ci], c, copied = &nc, &nc, true
						chains[chainKey{fam, t.Name, c.Name}] = c
					}
					c.Rules[ri] = &nr
					r = &nr
				}
			}
		}
	}
}

// parseFlowtable decodes a flowtable.
// TODO: untested against nft: the test kernel lacks CONFIG_NF_FLOW_TABLE.
func parseFlowtable(m Msg) (string, *ruleset.Flowtable, error) {
	if len(m) < 4 {
		return "", nil, fmt.Errorf("%w: short flowtable message", ErrMalformed)
	}
	a, err := parseAttrs(m[4:])
	if err != nil {
		return "", nil, fmt.Errorf("%w: flowtable: %v", ErrMalformed, err)
	}
	f := &ruleset.Flowtable{Name: a.str(nftaFlowtableName)}
	if h := a.nested(nftaFlowtableHook); h != nil {
		f.Hook = "ingress"
		f.Prio = prioText(famNetdev, f.Hook, int32(h.u32(nftaFlowtableHookPriority)))
		if devs, ok := h.lookup(nftaFlowtableHookDevs); ok {
			list, _ := attrs(devs)
			for _, d := range list {
				f.Devices = append(f.Devices, cstr(d.data))
			}
			slices.Sort(f.Devices)
		}
	}
	fl := a.u32(nftaFlowtableFlags)
	if fl&0x1 != 0 {
		f.Flags = append(f.Flags, "offload")
	}
	if fl&0x2 != 0 {
		f.Flags = append(f.Flags, "counter")
	}
	return a.str(nftaFlowtableTable), f, nil
}

// safeNamedSet renders a set; should rendering trip over an unexpected combination, the
// set keeps its raw elements rather than taking the reader down.
func (e *env) safeNamedSet(s *setInfo) (out *ruleset.Set) {
	defer func() {
		if v := recover(); v != nil {
			renderPanicked(v)
			out = &ruleset.Set{Name: s.name, Map: s.isMap(), Spec: []string{"type " + typeNames(s.keyType)}}
			for _, el := range s.elements() {
				out.Elements = append(out.Elements, "[elem "+hexText(el.key)+" "+hexText(el.keyEnd)+" "+
					hexText(el.data)+"]")
			}
			ruleset.SortElements(out.Elements)
		}
	}()
	return e.namedSet(s)
}
