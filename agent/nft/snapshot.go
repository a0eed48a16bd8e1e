package nft

import (
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/mdlayher/netlink"
	"golang.org/x/sys/unix"

	"github.com/fenceline/fenceline/shared/nftcanon"
	"github.com/fenceline/fenceline/shared/ruleset"
)

// maxAttempts bounds how often a read restarts because the ruleset changed under it.
const maxAttempts = 8

// Snapshot reads the whole ruleset consistently and returns its canonical model and the
// generation it belongs to.
func (r *Reader) Snapshot() (*ruleset.Ruleset, uint32, error) {
	d, gen, err := r.ReadDump()
	if err != nil {
		return nil, 0, err
	}
	rs, err := nftcanon.Build(d)
	if err != nil {
		return nil, 0, fmt.Errorf("canonicalize: %w", err)
	}
	return rs, gen, nil
}

// ReadDump reads the raw kernel state that Snapshot canonicalizes: generation, then every
// table, chain, set with its elements, object, flowtable and rule, then the generation
// again; it starts over when the two generations differ or the kernel flags a dump as
// interrupted.
func (r *Reader) ReadDump() (*nftcanon.Dump, uint32, error) {
	for attempt := range maxAttempts {
		if attempt > 0 {
			// Let a burst of commits settle before reading again.
			time.Sleep(time.Duration(attempt) * 5 * time.Millisecond)
		}
		var d *nftcanon.Dump
		var gen uint32
		stable := false
		err := r.withConn(func(c *netlink.Conn) error {
			g1, err := getGen(c)
			if err != nil {
				return err
			}
			d, err = readAll(c, r.consts)
			if errors.Is(err, errDumpInterrupted) {
				return nil
			}
			if err != nil {
				return err
			}
			g2, err := getGen(c)
			if err != nil {
				return err
			}
			gen, stable = g2, g1 == g2
			if stable {
				d.Ifnames, err = ifnames(r.nsfd())
			}
			return err
		})
		if err != nil {
			return nil, 0, err
		}
		if !stable {
			continue
		}
		return d, gen, nil
	}
	return nil, 0, ErrUnstable
}

// readAll dumps every kind of object over all families on c.
//
// TODO: a first read of 100k rules is bound by the kernel, not by this code: each part of
// a rule dump walks the chains from the start (quadratic in the rules ahead of it) and
// each set element dump finds its set by a linear search of the table's sets (quadratic
// in the number of sets, and every anonymous set is one). nft pays the same, so the first
// read costs about what `nft -s list ruleset` does. Re-reads skip the element dumps of
// constant sets (constSets); rules are dumped chain by chain (readRules), which leaves
// the walk within one long chain. Parallel sockets did not help on the shared 2-core
// test machine and were left out.
//
// TODO: the whole raw dump is held while the model is built, and the agent keeps it to
// apply notifications to: a 100k-rule read peaks at ~170 MB RSS (goal 64 MB). Rendering
// rules as their dump parts arrive and keeping only what Apply needs per rule would
// bound it.
func readAll(c *netlink.Conn, consts *constSets) (*nftcanon.Dump, error) {
	consts.abandon() // whatever an earlier read left unfinished
	d := &nftcanon.Dump{}
	dumps := []struct {
		name     string
		typ      uint16
		into     *[]nftcanon.Msg
		optional bool
	}{
		{"tables", unix.NFT_MSG_GETTABLE, &d.Tables, false},
		{"chains", unix.NFT_MSG_GETCHAIN, &d.Chains, false},
		{"sets", unix.NFT_MSG_GETSET, &d.Sets, false},
		{"objects", unix.NFT_MSG_GETOBJ, &d.Objects, false},
		// Kernels built without flowtable support answer EOPNOTSUPP.
		{"flowtables", unix.NFT_MSG_GETFLOWTABLE, &d.Flowtables, true},
	}
	for _, x := range dumps {
		msgs, err := request(c, x.typ, unix.AF_UNSPEC, netlink.Dump, nil)
		if err != nil {
			if x.optional && (errors.Is(err, unix.EOPNOTSUPP) || errors.Is(err, unix.ENOENT)) {
				continue
			}
			return nil, fmt.Errorf("dump %s: %w", x.name, err)
		}
		*x.into = toMsgs(msgs)
	}
	rules, err := readRules(c, d.Chains)
	if err != nil {
		return nil, err
	}
	d.Rules = rules
	for _, s := range nftcanon.SetRefs(d.Tables, d.Sets) {
		if msgs, ok := consts.get(s); ok {
			d.Elements = append(d.Elements, nftcanon.SetElems{
				Family: s.Family, Table: s.Table, Set: s.Name, Msgs: msgs,
			})
			continue
		}
		data, err := netlink.MarshalAttributes([]netlink.Attribute{
			{Type: 1, Data: append([]byte(s.Table), 0)}, // NFTA_SET_ELEM_LIST_TABLE
			{Type: 2, Data: append([]byte(s.Name), 0)},  // NFTA_SET_ELEM_LIST_SET
		})
		if err != nil {
			return nil, err
		}
		msgs, err := request(c, unix.NFT_MSG_GETSETELEM, s.Family, netlink.Dump, data)
		if errors.Is(err, unix.ENOENT) {
			return nil, errDumpInterrupted // the set went away since the set dump
		}
		if err != nil {
			return nil, fmt.Errorf("dump elements of %s %s: %w", s.Table, s.Name, err)
		}
		elems := toMsgs(msgs)
		consts.put(s, elems)
		d.Elements = append(d.Elements, nftcanon.SetElems{
			Family: s.Family, Table: s.Table, Set: s.Name, Msgs: elems,
		})
	}
	consts.done()
	return d, nil
}

// perChainMax is the number of chains up to which rules are dumped chain by chain.
// Each part of a rule dump walks the rules from the start of what it covers: a dump of
// the whole ruleset walks every chain ahead of the part, one of a chain only that chain.
// With many short chains (kube-proxy makes thousands) one dump needs fewer requests.
const perChainMax = 256

// readRules dumps the rules of every chain in chains (the chain dump's messages), in the
// order a dump of all rules gives: chains in the chain dump's order, rules in chain order.
func readRules(c *netlink.Conn, chains []nftcanon.Msg) ([]nftcanon.Msg, error) {
	if len(chains) > perChainMax {
		msgs, err := request(c, unix.NFT_MSG_GETRULE, unix.AF_UNSPEC, netlink.Dump, nil)
		if err != nil {
			return nil, fmt.Errorf("dump rules: %w", err)
		}
		return toMsgs(msgs), nil
	}
	var out []nftcanon.Msg
	for _, m := range chains {
		if len(m) < 4 {
			return nil, fmt.Errorf("dump rules: short chain message")
		}
		ad, err := netlink.NewAttributeDecoder(m[4:])
		if err != nil {
			return nil, fmt.Errorf("dump rules: chain message: %w", err)
		}
		var table, name []byte
		for ad.Next() {
			switch ad.Type() {
			case unix.NFTA_CHAIN_TABLE:
				table = ad.Bytes()
			case unix.NFTA_CHAIN_NAME:
				name = ad.Bytes()
			}
		}
		if err := ad.Err(); err != nil {
			return nil, fmt.Errorf("dump rules: chain message: %w", err)
		}
		data, err := netlink.MarshalAttributes([]netlink.Attribute{
			{Type: unix.NFTA_RULE_TABLE, Data: table},
			{Type: unix.NFTA_RULE_CHAIN, Data: name},
		})
		if err != nil {
			return nil, err
		}
		msgs, err := request(c, unix.NFT_MSG_GETRULE, m.Family(), netlink.Dump, data)
		if errors.Is(err, unix.ENOENT) {
			return nil, errDumpInterrupted // the chain went away since the chain dump
		}
		if err != nil {
			return nil, fmt.Errorf("dump rules of %s %s: %w", table, name, err)
		}
		out = append(out, toMsgs(msgs)...)
	}
	return out, nil
}

// constSets remembers the elements of constant sets (every anonymous set nft makes)
// between reads: a set that is still there with the same table and set handles holds
// the same elements, so a re-read need not dump them again. A ruleset with one anonymous
// set per few rules has tens of thousands of them, and each element dump costs the kernel
// a linear search of the table's sets. Sets not seen by a read are forgotten. A nil
// *constSets remembers nothing.
type constSets struct {
	sets, next map[constKey][]nftcanon.Msg
	hits       int // of the last read, for tests
}

type constKey struct {
	family              byte
	table, name         string
	tableHandle, handle uint64
}

func keyOf(s nftcanon.SetRef) constKey {
	return constKey{s.Family, s.Table, s.Name, s.TableHandle, s.Handle}
}

func (c *constSets) get(s nftcanon.SetRef) ([]nftcanon.Msg, bool) {
	if c == nil || !s.Constant() {
		return nil, false
	}
	if c.next == nil {
		c.next, c.hits = map[constKey][]nftcanon.Msg{}, 0
	}
	msgs, ok := c.sets[keyOf(s)]
	if !ok {
		return nil, false
	}
	c.next[keyOf(s)] = msgs
	c.hits++
	// A slice of its own: whoever holds the dump may change it (Apply), never the
	// message bytes.
	return slices.Clone(msgs), true
}

func (c *constSets) put(s nftcanon.SetRef, msgs []nftcanon.Msg) {
	if c == nil || !s.Constant() {
		return
	}
	if c.next == nil {
		c.next, c.hits = map[constKey][]nftcanon.Msg{}, 0
	}
	c.next[keyOf(s)] = slices.Clone(msgs)
}

// done ends a read: the sets it saw are the ones remembered.
func (c *constSets) done() {
	if c == nil {
		return
	}
	c.sets, c.next = c.next, nil
}

// abandon ends a read that did not complete: what it saw is dropped.
func (c *constSets) abandon() {
	if c != nil {
		c.next = nil
	}
}

func toMsgs(b [][]byte) []nftcanon.Msg {
	out := make([]nftcanon.Msg, len(b))
	for i := range b {
		out[i] = b[i]
	}
	return out
}
