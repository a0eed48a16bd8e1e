package nftcanon

import (
	"encoding/binary"
	"time"

	"github.com/fenceline/fenceline/shared/ruleset"
)

// Expiry is the soonest an element of a set that is configuration (not dynamic in rs)
// times out, as updates (set element messages) carry it: their remaining time when the
// kernel sent them. It reports false when none of them will. The kernel sends nothing
// when an element times out, so a reader that wants to see it goes and looks then.
func Expiry(rs *ruleset.Ruleset, updates []Update) (time.Duration, bool) {
	soonest, found := time.Duration(0), false
	for _, u := range updates {
		if u.Type != MsgNewSetElem || len(u.Msg) < 4 {
			continue
		}
		a, err := parseAttrs(u.Msg[4:])
		if err != nil || !configSet(rs, u.Msg.Family(), a.str(nftaSetElemListTable),
			a.str(nftaSetElemListSet)) {
			continue
		}
		if d, ok := msgExpiry(a); ok && (!found || d < soonest) {
			soonest, found = d, true
		}
	}
	return soonest, found
}

// Expiry is the soonest an element of the State's configuration sets times out, counted
// from when the State was read (see the function Expiry).
func (st *State) Expiry() (time.Duration, bool) {
	var ups []Update
	for _, se := range st.d.Elements {
		for _, m := range se.Msgs {
			ups = append(ups, Update{Type: MsgNewSetElem, Msg: m})
		}
	}
	return Expiry(st.last, ups)
}

// configSet reports whether rs has the named set and it is not filled by traffic.
func configSet(rs *ruleset.Ruleset, fam byte, table, set string) bool {
	if rs == nil {
		return false
	}
	t := rs.Table(FamilyName(fam), table)
	if t == nil {
		return false
	}
	s := t.Set(set)
	return s != nil && !s.Dynamic
}

// msgExpiry is the soonest NFTA_SET_ELEM_EXPIRATION (milliseconds) of a message's
// elements.
func msgExpiry(a attrMap) (time.Duration, bool) {
	list, err := attrs(a.get(nftaSetElemListElements))
	if err != nil {
		return 0, false
	}
	soonest, found := time.Duration(0), false
	for _, la := range list {
		els, err := attrs(la.data)
		if err != nil {
			continue
		}
		for _, e := range els {
			if e.typ == nftaSetElemExpiration && len(e.data) >= 8 {
				d := time.Duration(binary.BigEndian.Uint64(e.data)) * time.Millisecond
				if !found || d < soonest {
					soonest, found = d, true
				}
			}
		}
	}
	return soonest, found
}
