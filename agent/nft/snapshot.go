package nft

import (
	"errors"
	"fmt"
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
			d, err = readAll(c)
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
// TODO: a 100k-rule read is bound by the kernel, not by this code: each part of a rule
// dump walks the chains from the start (quadratic in the rules ahead of it) and each set
// element dump finds its set by a linear search of the table's sets (quadratic in the
// number of sets, and every anonymous set is one). nft pays the same. Remembering the
// elements of anonymous sets (constant once committed) by table and set handle would
// spare the backstop re-read most element dumps; parallel sockets did not help on the
// shared 2-core test machine and were left out (scripts/bench/README.md).
//
// TODO: the whole raw dump is held while the model is built, and the agent keeps it to
// apply notifications to: a 100k-rule read peaks at ~170 MB RSS (goal 64 MB). Rendering
// rules as their dump parts arrive and keeping only what Apply needs per rule would
// bound it.
func readAll(c *netlink.Conn) (*nftcanon.Dump, error) {
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
		{"rules", unix.NFT_MSG_GETRULE, &d.Rules, false},
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
	for _, s := range nftcanon.SetRefs(d.Sets) {
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
		d.Elements = append(d.Elements, nftcanon.SetElems{
			Family: s.Family, Table: s.Table, Set: s.Name, Msgs: toMsgs(msgs),
		})
	}
	return d, nil
}

func toMsgs(b [][]byte) []nftcanon.Msg {
	out := make([]nftcanon.Msg, len(b))
	for i := range b {
		out[i] = b[i]
	}
	return out
}
