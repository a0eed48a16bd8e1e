package nft

import (
	"encoding/binary"
	"errors"
	"fmt"

	"github.com/mdlayher/netlink"
	"golang.org/x/sys/unix"
)

// Generation returns the ruleset generation: the kernel bumps it on every committed
// transaction, so two equal readings bracket a read that saw one consistent ruleset.
func (r *Reader) Generation() (uint32, error) {
	var gen uint32
	err := r.withConn(func(c *netlink.Conn) error {
		var err error
		gen, err = getGen(c)
		return err
	})
	return gen, err
}

// getGen sends NFT_MSG_GETGEN, which google/nftables v0.3.0 has no call for.
func getGen(c *netlink.Conn) (uint32, error) {
	msgs, err := request(c, unix.NFT_MSG_GETGEN, unix.AF_UNSPEC, 0, nil)
	if err != nil {
		return 0, fmt.Errorf("getgen: %w", err)
	}
	if len(msgs) != 1 || len(msgs[0]) < 4 {
		return 0, errors.New("getgen: no reply")
	}
	ad, err := netlink.NewAttributeDecoder(msgs[0][4:])
	if err != nil {
		return 0, fmt.Errorf("getgen: %w", err)
	}
	ad.ByteOrder = binary.BigEndian
	for ad.Next() {
		if ad.Type() == unix.NFTA_GEN_ID {
			return ad.Uint32(), nil
		}
	}
	if err := ad.Err(); err != nil {
		return 0, fmt.Errorf("getgen: %w", err)
	}
	return 0, errors.New("getgen: reply without generation id")
}
