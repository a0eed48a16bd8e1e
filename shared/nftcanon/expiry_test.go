package nftcanon

import (
	"encoding/binary"
	"testing"
	"time"

	"github.com/fenceline/fenceline/shared/ruleset"
)

// TestExpiry: the soonest timeout among the elements of configuration sets; elements of
// sets filled by traffic, of unknown sets, and without a timeout do not count.
func TestExpiry(t *testing.T) {
	rs := &ruleset.Ruleset{Tables: []*ruleset.Table{{Family: "inet", Name: "t", Sets: []*ruleset.Set{
		{Name: "conf"}, {Name: "dyn", Dynamic: true}}}}}
	elems := func(set string, expirations ...uint64) Update {
		var list []byte
		for _, ms := range expirations {
			var inner []attrRec
			if ms > 0 {
				b := make([]byte, 8)
				binary.BigEndian.PutUint64(b, ms)
				inner = append(inner, attrRec{nftaSetElemExpiration, b})
			}
			inner = append(inner, attrRec{nftaSetElemFlags, u32be(0)})
			list = append(list, attrBytes(attrRec{nftaListElem, attrBytes(inner...)})...)
		}
		return Update{Type: MsgNewSetElem, Msg: append([]byte{famInet, 0, 0, 0}, attrBytes(
			attrRec{nftaSetElemListTable, []byte("t\x00")}, attrRec{nftaSetElemListSet, []byte(set + "\x00")},
			attrRec{nftaSetElemListElements, list})...)}
	}
	for _, c := range []struct {
		name string
		ups  []Update
		want time.Duration
		ok   bool
	}{
		{"soonest of a configuration set", []Update{elems("conf", 9000, 0, 3000), elems("conf", 5000)}, 3 * time.Second, true},
		{"dynamic set", []Update{elems("dyn", 1000)}, 0, false},
		{"unknown set", []Update{elems("gone", 1000)}, 0, false},
		{"no timeouts", []Update{elems("conf", 0, 0)}, 0, false},
		{"dynamic beside configuration", []Update{elems("dyn", 1000), elems("conf", 4000)}, 4 * time.Second, true},
	} {
		if got, ok := Expiry(rs, c.ups); got != c.want || ok != c.ok {
			t.Errorf("%s: %v %v, want %v %v", c.name, got, ok, c.want, c.ok)
		}
	}
}
