package ruleset

import (
	"strings"
)

// Text renders the ruleset in the layout of `nft -s list ruleset`: per table its objects,
// sets and maps, flowtables and chains. Rule lines are the canonical rule texts. Set
// elements are listed one per line in canonical order (nft prints them in hash order,
// which is volatile); dynamic sets list no elements.
func (rs *Ruleset) Text() string {
	var b strings.Builder
	for _, t := range rs.Tables {
		t.writeText(&b)
	}
	return b.String()
}

func (t *Table) writeText(b *strings.Builder) {
	b.WriteString("table " + t.Family + " " + t.Name + " {\n")
	if len(t.Flags) > 0 {
		b.WriteString("\tflags " + strings.Join(t.Flags, ",") + "\n")
	}
	if t.Comment != "" {
		b.WriteString("\tcomment " + Quote(t.Comment) + "\n")
	}
	// nft separates the first item from the flags line by a blank line, not from the comment.
	first := len(t.Flags) == 0
	sep := func() {
		if !first {
			b.WriteByte('\n')
		}
		first = false
	}
	for _, o := range t.Objects {
		sep()
		b.WriteString("\t" + o.Type + " " + o.Name + " {\n")
		for _, l := range o.Spec {
			b.WriteString("\t\t" + l + "\n")
		}
		b.WriteString("\t}\n")
	}
	for _, s := range t.Sets {
		sep()
		s.writeText(b)
	}
	for _, f := range t.Flowtables {
		sep()
		b.WriteString("\tflowtable " + f.Name + " {\n")
		b.WriteString("\t\thook " + f.Hook + " priority " + f.Prio + "\n")
		if len(f.Devices) > 0 {
			b.WriteString("\t\tdevices = { " + strings.Join(f.Devices, ", ") + " }\n")
		}
		if len(f.Flags) > 0 {
			b.WriteString("\t\tflags " + strings.Join(f.Flags, ",") + "\n")
		}
		b.WriteString("\t}\n")
	}
	for _, c := range t.Chains {
		sep()
		c.writeText(b)
	}
	b.WriteString("}\n")
}

func (s *Set) writeText(b *strings.Builder) {
	kind := "set"
	if s.Map {
		kind = "map"
	}
	b.WriteString("\t" + kind + " " + s.Name + " {\n")
	for _, l := range s.Spec {
		b.WriteString("\t\t" + l + "\n")
	}
	if len(s.Elements) > 0 && !s.Dynamic {
		b.WriteString("\t\telements = { ")
		for i, e := range s.Elements {
			if i > 0 {
				b.WriteString(",\n\t\t\t     ")
			}
			b.WriteString(e)
		}
		b.WriteString(" }\n")
	}
	b.WriteString("\t}\n")
}

// Header is the base-chain declaration line as nft prints it, without indentation:
// `type filter hook input priority filter; policy accept;`. It is empty for regular chains.
func (c *Chain) Header() string {
	if !c.IsBase() {
		return ""
	}
	h := "type " + c.Type + " hook " + c.Hook
	switch len(c.Devices) {
	case 0:
	case 1:
		h += " device " + Quote(c.Devices[0])
	default:
		// nft quotes a single device but not the devices of a list.
		h += " devices = { " + strings.Join(c.Devices, ", ") + " }"
	}
	h += " priority " + c.Priority + ";"
	if c.Policy != "" {
		h += " policy " + c.Policy + ";"
	}
	return h
}

func (c *Chain) writeText(b *strings.Builder) {
	b.WriteString("\tchain " + c.Name + " {\n")
	if c.Comment != "" {
		b.WriteString("\t\tcomment " + Quote(c.Comment) + "\n")
	}
	if h := c.Header(); h != "" {
		b.WriteString("\t\t" + h + "\n")
	}
	for _, r := range c.Rules {
		b.WriteString("\t\t" + r.Text + "\n")
	}
	b.WriteString("\t}\n")
}

// Quote returns s in double quotes as nft prints strings (nft does not escape).
func Quote(s string) string { return `"` + s + `"` }
