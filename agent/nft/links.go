package nft

import (
	"encoding/binary"
	"fmt"

	"github.com/mdlayher/netlink"
	"golang.org/x/sys/unix"
)

// ifnames lists the namespace's interfaces by index: nft prints `iif` and `oif` matches
// with the name the index has when the ruleset is listed, and so must we.
func ifnames(nsfd int) (map[uint32]string, error) {
	c, err := dial(nsfd, unix.NETLINK_ROUTE, 1<<20)
	if err != nil {
		return nil, fmt.Errorf("links: %w", err)
	}
	defer c.Close()
	req := netlink.Message{
		Header: netlink.Header{
			Type:  unix.RTM_GETLINK,
			Flags: netlink.Request | netlink.Dump,
		},
		Data: make([]byte, unix.SizeofIfInfomsg),
	}
	msgs, err := c.Execute(req)
	if err != nil {
		return nil, fmt.Errorf("links: %w", err)
	}
	names := make(map[uint32]string, len(msgs))
	for _, m := range msgs {
		if len(m.Data) < unix.SizeofIfInfomsg {
			continue
		}
		idx := binary.NativeEndian.Uint32(m.Data[4:8])
		ad, err := netlink.NewAttributeDecoder(m.Data[unix.SizeofIfInfomsg:])
		if err != nil {
			continue
		}
		for ad.Next() {
			if ad.Type() == unix.IFLA_IFNAME {
				names[idx] = ad.String()
			}
		}
	}
	return names, nil
}
