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
	_, rs, gen, err := r.ReadState(nil)
	if err != nil {
		return nil, 0, err
	}
	return rs, gen, nil
}

// ReadDump reads the raw kernel state that Snapshot canonicalizes: generation, then every
// table, chain, set with its elements, object, flowtable and rule, then the generation
// again; it starts over when the two generations differ or the kernel flags a dump as
// interrupted.
func (r *Reader) ReadDump() (*nftcanon.Dump, uint32, error) {
	var d *nftcanon.Dump
	gen, err := r.readStable(func(c *netlink.Conn) error {
		var err error
		if d, err = readObjects(c, r.consts); err != nil {
			return err
		}
		return readRules(c, d.Chains, func(m nftcanon.Msg) error {
			d.Rules = append(d.Rules, slices.Clone(m))
			return nil
		})
	}, func() error {
		var err error
		d.Ifnames, err = ifnames(r.nsfd())
		return err
	})
	if err != nil {
		return nil, 0, err
	}
	return d, gen, nil
}

// Interfaces returns the namespace's interface names by index, as a read records them
// (nftcanon.State.Ifnames): rules print `iif` and `oif` with them.
func (r *Reader) Interfaces() (map[uint32]string, error) {
	var names map[uint32]string
	err := r.withConn(func(*netlink.Conn) error {
		var err error
		names, err = ifnames(r.nsfd())
		return err
	})
	return names, err
}

// ReadState reads what ReadDump does into a State: rules are rendered as each part of
// their dump arrives and only their rendered form is kept, so that a read of a big
// ruleset never holds its raw rule messages. Rules of prev (a State read before, or nil)
// that are still there are not rendered again. It returns the State with its model.
func (r *Reader) ReadState(prev *nftcanon.State) (*nftcanon.State, *ruleset.Ruleset, uint32,
	error) {
	var sr *nftcanon.StateRead
	gen, err := r.readStable(func(c *netlink.Conn) error {
		d, err := readObjects(c, r.consts)
		if err != nil {
			return err
		}
		// Rules print interface names: they are needed before the rules. The generation
		// brackets only nftables' state, which they are not part of.
		if d.Ifnames, err = ifnames(r.nsfd()); err != nil {
			return err
		}
		if sr, err = nftcanon.NewStateRead(d, prev); err != nil {
			return fmt.Errorf("canonicalize: %w", err)
		}
		return readRules(c, d.Chains, func(m nftcanon.Msg) error {
			if err := sr.Rule(m); err != nil {
				return fmt.Errorf("canonicalize: %w", err)
			}
			return nil
		})
	}, nil)
	if err != nil {
		return nil, nil, 0, err
	}
	st, rs, err := sr.Finish()
	if err != nil {
		return nil, nil, 0, fmt.Errorf("canonicalize: %w", err)
	}
	return st, rs, gen, nil
}

// readStable runs read between two GETGEN requests until a run sees no commit (the same
// generation before and after, no dump interrupted), then runs stable, if set, and
// returns the generation.
func (r *Reader) readStable(read func(c *netlink.Conn) error, stable func() error) (uint32,
	error) {
	for attempt := range maxAttempts {
		if attempt > 0 {
			// Let a burst of commits settle before reading again.
			time.Sleep(time.Duration(attempt) * 5 * time.Millisecond)
		}
		var gen uint32
		ok := false
		err := r.withConn(func(c *netlink.Conn) error {
			g1, err := getGen(c)
			if err != nil {
				return err
			}
			r.consts.abandon() // whatever an earlier read left unfinished
			err = read(c)
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
			if g1 != g2 {
				return nil
			}
			r.consts.done()
			gen, ok = g2, true
			if stable != nil {
				return stable()
			}
			return nil
		})
		if err != nil {
			return 0, err
		}
		if ok {
			return gen, nil
		}
	}
	return 0, ErrUnstable
}

// readObjects dumps every kind of object but rules over all families on c, and the
// elements of every set.
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
// TODO: memory. A read no longer holds the raw rules (ReadState renders them as they
// arrive, and the State keeps ~100 bytes per rule besides its text), but it holds every
// set message until the rules are read, the elements of every constant set stay in
// constSets between reads, and a re-read holds the old State while it builds the new:
// 100k rules with 16,667 anonymous sets peak at 55 to 58 MB RSS, 59 to 64 MB with a
// re-read (goal 64 MB), and only with the collector target the agent reads with
// (agent.ReadGCPercent); both grow linearly with the ruleset.
func readObjects(c *netlink.Conn, consts *constSets) (*nftcanon.Dump, error) {
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
	return d, nil
}

// perChainMax is the number of chains up to which rules are dumped chain by chain.
// Each part of a rule dump walks the rules from the start of what it covers: a dump of
// the whole ruleset walks every chain ahead of the part, one of a chain only that chain.
// With many short chains (kube-proxy makes thousands) one dump needs fewer requests.
const perChainMax = 256

// readRules dumps the rules of every chain in chains (the chain dump's messages) and
// hands each rule message to f as it arrives, in the order a dump of all rules gives:
// chains in the chain dump's order, rules in chain order. The message lies in the
// receive buffer: f must copy what it keeps.
func readRules(c *netlink.Conn, chains []nftcanon.Msg, f func(nftcanon.Msg) error) error {
	each := func(p []byte) error { return f(p) }
	if len(chains) > perChainMax {
		if err := requestEach(c, unix.NFT_MSG_GETRULE, unix.AF_UNSPEC, netlink.Dump, nil,
			each); err != nil {
			return fmt.Errorf("dump rules: %w", err)
		}
		return nil
	}
	for _, m := range chains {
		if len(m) < 4 {
			return fmt.Errorf("dump rules: short chain message")
		}
		ad, err := netlink.NewAttributeDecoder(m[4:])
		if err != nil {
			return fmt.Errorf("dump rules: chain message: %w", err)
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
			return fmt.Errorf("dump rules: chain message: %w", err)
		}
		data, err := netlink.MarshalAttributes([]netlink.Attribute{
			{Type: unix.NFTA_RULE_TABLE, Data: table},
			{Type: unix.NFTA_RULE_CHAIN, Data: name},
		})
		if err != nil {
			return err
		}
		err = requestEach(c, unix.NFT_MSG_GETRULE, m.Family(), netlink.Dump, data, each)
		if errors.Is(err, unix.ENOENT) {
			return errDumpInterrupted // the chain went away since the chain dump
		}
		if err != nil {
			return fmt.Errorf("dump rules of %s %s: %w", table, name, err)
		}
	}
	return nil
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
