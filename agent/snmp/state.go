package snmp

import (
	"fmt"
	"slices"
	"strconv"
	"strings"

	"github.com/gosnmp/gosnmp"

	"github.com/fenceline/fenceline/shared/ruleset"
)

// Family is the ruleset.Table family of every table of an SNMP device's state.
const Family = "snmp"

// ScalarType is the object type of one scalar of a scalars group; IndicatorType that of
// a scalar the profile marks as a change indicator (Column.Indicator).
const (
	ScalarType    = "scalar"
	IndicatorType = ruleset.IndicatorType
)

// Build turns the walks of a profile's tables into the device's canonical state: one
// table per TableSpec (present even when the device returned nothing for it), one
// object per row or scalar, volatile columns dropped. walks maps a table name to the
// varbinds its walk returned, in any order. Varbinds outside the table's subtree, or
// whose instance is not an index, are an ErrMalformed error; a repeated OID is one too.
// Build is pure: the same varbinds always give the same state.
func Build(p *Profile, walks map[string][]gosnmp.SnmpPDU) (*ruleset.Ruleset, error) {
	rs := &ruleset.Ruleset{}
	for _, spec := range p.Tables {
		t, err := buildTable(spec, walks[spec.Name])
		if err != nil {
			return nil, err
		}
		rs.Tables = append(rs.Tables, t)
	}
	rs.Sort()
	return rs, nil
}

func buildTable(spec *TableSpec, pdus []gosnmp.SnmpPDU) (*ruleset.Table, error) {
	base, err := parseOID(spec.OID)
	if err != nil {
		return nil, fmt.Errorf("%w: table %s: %v", ErrProfile, spec.Name, err)
	}
	type raw struct {
		index []uint32
		vals  map[uint32]gosnmp.SnmpPDU
	}
	raws := map[string]*raw{}
	seen := make(map[string]bool, len(pdus))
	for _, pdu := range pdus {
		name := strings.TrimPrefix(pdu.Name, ".")
		if seen[name] {
			return nil, fmt.Errorf("%w: table %s: OID %s returned twice", ErrMalformed, spec.Name, name)
		}
		seen[name] = true
		if absent(pdu.Type) {
			continue
		}
		oid, err := parseOID(name)
		if err != nil {
			return nil, fmt.Errorf("%w: table %s: OID %q: %v", ErrMalformed, spec.Name, pdu.Name, err)
		}
		if len(oid) < len(base)+2 || compareOID(oid[:len(base)], base) != 0 {
			return nil, fmt.Errorf("%w: table %s: OID %s is not an instance under %s", ErrMalformed,
				spec.Name, name, spec.OID)
		}
		colID, index := oid[len(base)], oid[len(base)+1:]
		if spec.Kind == KindScalars {
			if len(index) != 1 || index[0] != 0 {
				// A table nested in a scalar group (sysORTable under system): not a scalar.
				continue
			}
			index = []uint32{colID}
		}
		key := joinOID(index)
		r := raws[key]
		if r == nil {
			r = &raw{index: index, vals: map[uint32]gosnmp.SnmpPDU{}}
			raws[key] = r
		}
		r.vals[colID] = pdu
	}

	ordered := make([]*raw, 0, len(raws))
	for _, r := range raws {
		if sel := spec.Select; sel != nil && spec.Kind == KindTable {
			n, ok := r.vals[sel.Column].Value.(int)
			if !ok || !slices.Contains(sel.Values, n) {
				continue // a row the profile says is not configuration (a learned route)
			}
		}
		ordered = append(ordered, r)
	}
	slices.SortFunc(ordered, func(a, b *raw) int { return compareOID(a.index, b.index) })

	t := &ruleset.Table{Family: Family, Name: spec.Name}
	for _, r := range ordered {
		cols := make([]uint32, 0, len(r.vals))
		for id := range r.vals {
			cols = append(cols, id)
		}
		slices.Sort(cols)
		var lines []string
		colName, typ := "", ScalarType
		for _, id := range cols {
			pdu := r.vals[id]
			col := spec.byID[id]
			if col != nil && col.Volatile ||
				col == nil && (spec.Unlisted == "drop" || volatileType(pdu.Type)) {
				continue
			}
			syntax, enum := "", map[int]string(nil)
			colName = "col" + strconv.FormatUint(uint64(id), 10)
			if col != nil {
				colName, syntax, enum = col.Name, col.Syntax, col.Enum
				if col.Indicator {
					typ = IndicatorType
				}
			}
			if spec.Kind == KindScalars {
				lines = append(lines, Render(pdu, syntax, enum))
			} else {
				lines = append(lines, colName+" = "+Render(pdu, syntax, enum))
			}
		}
		if spec.Kind == KindScalars {
			if len(lines) == 0 {
				continue // a volatile scalar
			}
			t.Objects = append(t.Objects, &ruleset.Object{Type: typ, Name: colName, Spec: lines})
			continue
		}
		// A row exists when any of its columns answered, even if every column it has is
		// volatile: which rows exist (policies, interfaces) is configuration.
		t.Objects = append(t.Objects, &ruleset.Object{Type: spec.Entry, Name: joinOID(r.index),
			Spec: lines})
	}
	return t, nil
}

func joinOID(o []uint32) string {
	var b strings.Builder
	for i, n := range o {
		if i > 0 {
			b.WriteByte('.')
		}
		b.WriteString(strconv.FormatUint(uint64(n), 10))
	}
	return b.String()
}
