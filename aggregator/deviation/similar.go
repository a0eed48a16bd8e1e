package deviation

import (
	"github.com/fenceline/fenceline/aggregator/model"
	"github.com/fenceline/fenceline/shared/nftparse"
	"github.com/fenceline/fenceline/shared/ruleset"
)

// Similar reports whether the observed change ch is a look-alike of planned change p: the
// same action in the same chain or set, not the same, but close. Rules are close when at
// least half of their statements (the larger rule's count) are equal; an element of the
// same set, or a policy of the same chain, always is. The fields are the differences,
// planned against actual.
func Similar(p model.PlannedChange, ch ruleset.Change) ([]model.FieldDiff, bool) {
	if actionOf(ch.Kind) != p.Action || p.Where() != where(ch) || Covers(p, ch) {
		return nil, false
	}
	switch p.Action {
	case model.ActionAddElement, model.ActionDeleteElement:
		return []model.FieldDiff{{Field: "element", Planned: p.Text(), Actual: ch.Element}}, true
	case model.ActionPolicy:
		return []model.FieldDiff{{Field: "policy", Planned: p.Policy,
			Actual: PolicyOf(ch.After)}}, true
	}
	planned, err1 := nftparse.Fields(p.Text())
	actual, err2 := nftparse.Fields(ch.Rule)
	if err1 != nil || err2 != nil {
		return nil, false
	}
	if p.Action == model.ActionAdd && p.Text() == ch.Rule {
		// The same rule at another position than planned.
		return []model.FieldDiff{{Field: "position", Planned: itoa(p.Position),
			Actual: itoa(ch.Position)}}, true
	}
	equal := 0
	for _, f := range planned {
		for _, g := range actual {
			if f == g {
				equal++
				break
			}
		}
	}
	if 2*equal < max(len(planned), len(actual)) {
		return nil, false
	}
	return FieldDiffs(planned, actual), true
}

// FieldDiffs lists the fields that differ between two rules, in the planned rule's order
// and then the actual rule's extra fields.
func FieldDiffs(planned, actual []nftparse.Field) []model.FieldDiff {
	find := func(fs []nftparse.Field, name string) (string, bool) {
		for _, f := range fs {
			if f.Name == name {
				return f.Value, true
			}
		}
		return "", false
	}
	var out []model.FieldDiff
	for _, f := range planned {
		a, ok := find(actual, f.Name)
		switch {
		case !ok:
			out = append(out, model.FieldDiff{Field: f.Name, Planned: f.Value, Actual: ""})
		case a != f.Value:
			out = append(out, model.FieldDiff{Field: f.Name, Planned: f.Value, Actual: a})
		}
	}
	for _, g := range actual {
		if _, ok := find(planned, g.Name); !ok {
			out = append(out, model.FieldDiff{Field: g.Name, Planned: "", Actual: g.Value})
		}
	}
	return out
}

func itoa(n int) string {
	if n == 0 {
		return "any"
	}
	b := []byte{}
	for n > 0 {
		b = append([]byte{byte('0' + n%10)}, b...)
		n /= 10
	}
	return string(b)
}
