package ruleset

import (
	"strings"
	"testing"
)

// listedRuleset is the model of a ruleset that was loaded with nft 1.0.6 into a fresh
// network namespace; textGolden is what `nft -s list ruleset` printed for it, except where
// Text documents that it differs (marked below).
func listedRuleset() *Ruleset {
	return &Ruleset{Tables: []*Table{
		{
			Family: "inet", Name: "filter", Comment: "edge filter",
			Objects: []*Object{
				{Type: "counter", Name: "http"},
				{Type: "quota", Name: "q1", Spec: []string{"over 100 mbytes"}},
			},
			Sets: []*Set{
				{
					Name: "allowed", Spec: []string{"type ipv4_addr", "flags interval"},
					Elements: []string{"10.0.0.0/8", "172.16.0.1", "192.168.1.0/24"},
				},
				{Name: "small", Spec: []string{"type inet_service"}, Elements: []string{"22"}},
				{
					Name: "portmap", Map: true, Spec: []string{"type inet_service : verdict"},
					Elements: []string{"22 : accept", "80 : drop"},
				},
				{
					Name: "seen", Dynamic: true,
					Spec: []string{
						"type ipv4_addr", "size 65535", "flags dynamic,timeout", "timeout 1m",
					},
					Elements: []string{"192.0.2.1"},
				},
			},
			Chains: []*Chain{
				{
					Name: "input", Type: "filter", Hook: "input", Priority: "filter",
					Policy: "drop", Comment: "main input",
					Rules: []*Rule{
						{Text: "ct state established,related accept", Handle: 4},
						{Text: `iifname "lo" accept`, Handle: 5},
						{Text: `tcp dport 22 counter accept comment "ssh"`, Handle: 6},
						{Text: "ip saddr @allowed jump svc", Handle: 7},
						{Text: "update @seen { ip saddr }", Handle: 8},
					},
				},
				{Name: "svc", Rules: []*Rule{{Text: "tcp dport @small accept"}}},
			},
		},
		{
			Family: "ip", Name: "nat", Flags: []string{"dormant"},
			Chains: []*Chain{{
				Name: "post", Type: "nat", Hook: "postrouting", Priority: "srcnat + 5",
				Policy: "accept", Rules: []*Rule{{Text: `oifname "eth0" masquerade`}},
			}},
		},
		{
			Family: "ip6", Name: "zz", Flags: []string{"dormant"}, Comment: "both",
			Chains: []*Chain{{Name: "c", Comment: "regular"}},
		},
		{
			Family: "netdev", Name: "ing",
			Chains: []*Chain{
				{
					Name: "in0", Type: "filter", Hook: "ingress", Devices: []string{"d0"},
					Priority: "-150", Policy: "accept",
				},
				{
					Name: "in1", Type: "filter", Hook: "ingress", Devices: []string{"d0", "d1"},
					Priority: "filter + 10", Policy: "drop", Rules: []*Rule{{Text: "counter"}},
				},
			},
		},
		{Family: "ip6", Name: "empty"},
	}}
}

// Differences from nft, as Text documents them: the elements of a set are listed one per
// line (nft fills lines in an order of its own), and a dynamic set lists no elements.
// Quirks of nft kept here: no blank line between tables, and none after a table's comment
// unless the table also has flags.
const textGolden = `table inet filter {
	comment "edge filter"
	counter http {
	}

	quota q1 {
		over 100 mbytes
	}

	set allowed {
		type ipv4_addr
		flags interval
		elements = { 10.0.0.0/8,
			     172.16.0.1,
			     192.168.1.0/24 }
	}

	set small {
		type inet_service
		elements = { 22 }
	}

	map portmap {
		type inet_service : verdict
		elements = { 22 : accept,
			     80 : drop }
	}

	set seen {
		type ipv4_addr
		size 65535
		flags dynamic,timeout
		timeout 1m
	}

	chain input {
		comment "main input"
		type filter hook input priority filter; policy drop;
		ct state established,related accept
		iifname "lo" accept
		tcp dport 22 counter accept comment "ssh"
		ip saddr @allowed jump svc
		update @seen { ip saddr }
	}

	chain svc {
		tcp dport @small accept
	}
}
table ip nat {
	flags dormant

	chain post {
		type nat hook postrouting priority srcnat + 5; policy accept;
		oifname "eth0" masquerade
	}
}
table ip6 zz {
	flags dormant
	comment "both"

	chain c {
		comment "regular"
	}
}
table netdev ing {
	chain in0 {
		type filter hook ingress device "d0" priority -150; policy accept;
	}

	chain in1 {
		type filter hook ingress devices = { d0, d1 } priority filter + 10; policy drop;
		counter
	}
}
table ip6 empty {
}
`

func TestText(t *testing.T) {
	got := listedRuleset().Text()
	if got != textGolden {
		gl, wl := strings.Split(got, "\n"), strings.Split(textGolden, "\n")
		for i := range max(len(gl), len(wl)) {
			var g, w string
			if i < len(gl) {
				g = gl[i]
			}
			if i < len(wl) {
				w = wl[i]
			}
			if g != w {
				t.Fatalf("listing differs at line %d:\ngot  %q\nwant %q\nwhole listing:\n%s",
					i+1, g, w, got)
			}
		}
	}
}

func TestTextEmpty(t *testing.T) {
	if got := (&Ruleset{}).Text(); got != "" {
		t.Errorf("empty ruleset lists as %q", got)
	}
}

func TestTextFlowtable(t *testing.T) {
	rs := &Ruleset{Tables: []*Table{{
		Family: "inet", Name: "f",
		Flowtables: []*Flowtable{{Name: "ft", Hook: "ingress", Prio: "filter",
			Devices: []string{"eth0", "eth1"}}},
	}}}
	want := "table inet f {\n\tflowtable ft {\n\t\thook ingress priority filter\n" +
		"\t\tdevices = { eth0, eth1 }\n\t}\n}\n"
	if got := rs.Text(); got != want {
		t.Errorf("Text =\n%s\nwant\n%s", got, want)
	}
}

// TestHeader checks base-chain declarations against what nft 1.0.6 prints.
func TestHeader(t *testing.T) {
	for _, tt := range []struct {
		c    Chain
		want string
	}{
		{Chain{Name: "svc"}, ""},
		{Chain{Name: "svc", Comment: "x", Type: "filter"}, ""},
		{Chain{Type: "filter", Hook: "input", Priority: "filter", Policy: "accept"},
			"type filter hook input priority filter; policy accept;"},
		{Chain{Type: "nat", Hook: "postrouting", Priority: "srcnat + 5"},
			"type nat hook postrouting priority srcnat + 5;"},
		{Chain{Type: "filter", Hook: "ingress", Priority: "-150", Policy: "accept",
			Devices: []string{"d0"}},
			`type filter hook ingress device "d0" priority -150; policy accept;`},
		{Chain{Type: "filter", Hook: "ingress", Priority: "filter + 10", Policy: "drop",
			Devices: []string{"d0", "d1"}},
			"type filter hook ingress devices = { d0, d1 } priority filter + 10; policy drop;"},
	} {
		if got := tt.c.Header(); got != tt.want {
			t.Errorf("Header(%+v) = %q, want %q", tt.c, got, tt.want)
		}
	}
}
