package nftparse

import (
	"errors"
	"strings"
	"testing"

	"github.com/fenceline/fenceline/shared/ruleset"
)

// Expected texts were taken from `nft -s list ruleset` (nft 1.0.6) after adding each rule.
func TestRuleCanonical(t *testing.T) {
	sets := []*ruleset.Set{
		{Name: "blocklist", Spec: []string{"type ipv4_addr", "flags interval"}},
		{Name: "svc", Map: true, Spec: []string{"type ipv4_addr . inet_proto . inet_service : verdict"}},
		{Name: "marks", Map: true, Spec: []string{"typeof ip saddr : meta mark"}},
	}
	cases := []struct{ fam, in, want string }{
		{"ip", "tcp dport 22 accept", "tcp dport 22 accept"},
		{"ip", "tcp dport ssh accept", "tcp dport 22 accept"},
		{"ip", "ip protocol tcp tcp dport 22", "tcp dport 22"},
		{"inet", "meta l4proto tcp tcp dport 22", "tcp dport 22"},
		{"ip", "tcp dport { 1-5, 6-10 } accept", "tcp dport { 1-10 } accept"},
		{"ip", "tcp dport {22} accept", "tcp dport 22 accept"},
		{"ip", "tcp dport { 443, 80, 22 } counter accept", "tcp dport { 22, 80, 443 } counter accept"},
		{"ip", "ip saddr 10.0.0.0/12 meta mark 1-10", "ip saddr 10.0.0.0/12 meta mark 0x00000001-0x0000000a"},
		{"ip", "ip daddr 255.255.255.255/32 return", "ip daddr 255.255.255.255 return"},
		{"inet", "ip saddr 10.0.0.0/8 tcp dport 1-1024 ct state established,related counter",
			"ip saddr 10.0.0.0/8 tcp dport 1-1024 ct state established,related counter"},
		{"inet", `tcp dport != 1-1024 meta mark 0x10 tcp flags syn / syn,ack iifname "eth*" oifname lo`,
			`tcp dport != 1-1024 meta mark 0x00000010 tcp flags syn / syn,ack iifname "eth*" oifname "lo"`},
		{"ip", "tcp flags & (fin|syn|rst|ack) == syn", "tcp flags syn / fin,syn,rst,ack"},
		{"ip", "ct state != established ct state ! established meta mark > 10",
			"ct state != established ct state ! established meta mark > 0x0000000a"},
		{"ip", "ip daddr { 172.30.0.0/16 } drop", "ip daddr 172.30.0.0/16 drop"},
		{"ip", "ether saddr 00:11:22:33:44:55", "ether saddr 00:11:22:33:44:55"},
		{"ip", "reject", "reject"},
		{"ip", "reject with tcp reset", "reject with tcp reset"},
		{"inet", "reject", "reject"},
		{"inet", "reject with icmp type host-unreachable", "reject with icmp host-unreachable"},
		{"inet", "reject with icmpx type admin-prohibited", "reject with icmpx admin-prohibited"},
		{"inet", "icmp type echo-request", "icmp type echo-request"},
		{"ip6", "icmpv6 type { nd-neighbor-solicit, nd-router-advert } accept",
			"icmpv6 type { nd-router-advert, nd-neighbor-solicit } accept"},
		{"bridge", "tcp dport 22 ip saddr 1.2.3.4", "tcp dport 22 ip saddr 1.2.3.4"},
		{"ip", "mark set mark or 0x4000", "meta mark set meta mark | 0x00004000"},
		{"ip", "meta mark set mark and 0xffff0054 xor 0xab", "meta mark set meta mark & 0xffff00ff | 0x000000ab"},
		{"ip", "ct mark set meta mark", "ct mark set meta mark"},
		{"ip", "ip dscp set cs1", "ip dscp set cs1"},
		{"ip", "ip dscp cs1", "ip dscp cs1"},
		{"ip", "tcp option maxseg size set rt mtu", "tcp option maxseg size set rt mtu"},
		{"ip", `log prefix "x" level info flags all`, `log prefix "x" level info flags all`},
		{"ip", "limit rate 10/second burst 20 packets", "limit rate 10/second burst 20 packets"},
		{"ip", "limit rate 5/second accept", "limit rate 5/second accept"},
		{"ip", "limit rate over 1 mbytes/second", "limit rate over 1 mbytes/second"},
		{"ip", "tcp dport { 22, 80 } counter packets 5 bytes 7", "tcp dport { 22, 80 } counter"},
		{"ip", "meta l4proto tcp masquerade to :1024-65535", "meta l4proto tcp masquerade to :1024-65535"},
		{"ip", "masquerade random,persistent", "masquerade random,persistent"},
		{"ip", "snat to 1.2.3.0/24", "snat to 1.2.3.0/24"},
		{"ip", "tcp dport 80 dnat to 1.2.3.4:80", "tcp dport 80 dnat to 1.2.3.4:80"},
		{"ip", "tcp dport 1 redirect to 8080", "tcp dport 1 redirect to :8080"},
		{"ip", `iif lo accept comment "hi there"`, `iif "lo" accept comment "hi there"`},
		{"inet", "ip saddr . tcp dport { 1.2.3.4 . 22, 5.6.7.8 . 80 } accept",
			"ip saddr . tcp dport { 1.2.3.4 . 22, 5.6.7.8 . 80 } accept"},
		{"ip", "numgen random mod 2 vmap { 0 : jump a, 1 : goto b }",
			"numgen random mod 2 vmap { 0 : jump a, 1 : goto b }"},
		{"ip", "ip saddr @blocklist drop", "ip saddr @blocklist drop"},
		{"ip", "ip saddr != @blocklist drop", "ip saddr != @blocklist drop"},
		{"ip", "ip daddr . meta l4proto . th dport vmap @svc", "ip daddr . meta l4proto . th dport vmap @svc"},
		{"ip", "meta mark set ip saddr map @marks", "meta mark set ip saddr map @marks"},
		{"ip", "tcp dport vmap { 22 : accept, 23 : drop }", "tcp dport vmap { 22 : accept, 23 : drop }"},
		{"inet", "fib saddr . iif oif missing drop", "fib saddr . iif oif missing drop"},
		{"ip", `ct helper set "ftp-standard"`, `ct helper set "ftp-standard"`},
		{"ip", `meta hour "08:00"-"17:00" accept`, `meta hour "08:00"-"17:00" accept`},
		{"ip", `meta day { "Monday", "Friday" }`, `meta day { "Monday", "Friday" }`},
		{"ip", "jump other", "jump other"},
	}
	for _, c := range cases {
		got, err := Rule(Context{Family: c.fam, Table: "t", Sets: sets}, c.in)
		if err != nil {
			t.Errorf("%s %q: %v", c.fam, c.in, err)
			continue
		}
		if got != c.want {
			t.Errorf("%s %q:\n got  %s\n want %s", c.fam, c.in, got, c.want)
		}
	}
}

// TestRuleSpellings checks that differently written rules meet in one canonical text.
func TestRuleSpellings(t *testing.T) {
	groups := [][]string{
		{"tcp dport 443 accept", "tcp dport https accept", "  tcp   dport\t443   accept ",
			"meta l4proto tcp tcp dport 443 accept", "ip protocol tcp tcp dport { 443 } accept"},
		{"ct state established,related accept", "ct state related,established accept",
			"ct state established,related  accept"},
		{`iifname "br0" accept`, "iifname br0 accept", "meta iifname br0 accept"},
		{"ip saddr 10.1.0.0/16 drop", "ip saddr 10.1.2.3/16 drop"},
	}
	for _, g := range groups {
		var first string
		for i, in := range g {
			got, err := Rule(Context{Family: "ip"}, in)
			if err != nil {
				t.Fatalf("%q: %v", in, err)
			}
			if i == 0 {
				first = got
			} else if got != first {
				t.Errorf("%q gives %q, %q gives %q", g[0], first, in, got)
			}
		}
	}
}

func TestRuleErrors(t *testing.T) {
	cases := []struct {
		in       string
		err      error
		col      int
		contains string
	}{
		{"tcp dport 99999 accept", ErrType, 11, "exceeds 16 bits"},
		{"tcp dprot 22", ErrSyntax, 5, `no field "dprot"`},
		{"ip saddr 10.0.0.300", ErrType, 10, "not an IPv4 address"},
		{"tcp dport { 22, 80 accept", ErrSyntax, 20, `expected "}"`},
		{"frobnicate 12", ErrSyntax, 1, "expected an expression"},
		{"ip saddr @nosuchset drop", ErrContext, 10, "nosuchset"},
		{`iifname "eth0`, ErrSyntax, 9, "unterminated string"},
		{"tcp dport", ErrSyntax, 10, "expected a value"},
		{"ip saddr 1.2.3.4 udp dport 53 tcp dport 22", ErrType, 31, "conflicting protocols"},
		{"tcp dport 22 accept; udp dport 53 accept", ErrSyntax, 20, "one rule"},
		{"log level loud", ErrSyntax, 11, "log level"},
		{"tcp dport 443 accept\ntcp dport 80 drop", ErrSyntax, 1, "terminal statement"},
		{"tcp dport 443 drop counter", ErrSyntax, 20, "terminal statement"},
	}
	for _, c := range cases {
		_, err := Rule(Context{Family: "ip"}, c.in)
		var pe *Error
		if !errors.As(err, &pe) {
			t.Errorf("%q: want *Error, got %v", c.in, err)
			continue
		}
		if !errors.Is(err, c.err) || pe.Col() != c.col || !strings.Contains(pe.Msg, c.contains) {
			t.Errorf("%q: got %v (col %d), want %v at col %d containing %q", c.in, err, pe.Col(),
				c.err, c.col, c.contains)
		}
		if !strings.Contains(pe.Caret(), "^") {
			t.Errorf("%q: caret %q", c.in, pe.Caret())
		}
	}
}

func TestElements(t *testing.T) {
	ctx := Context{Family: "inet", Table: "filter", Sets: []*ruleset.Set{
		{Name: "blocklist", Spec: []string{"type ipv4_addr", "flags interval"}},
		{Name: "ports", Spec: []string{"type inet_service"}},
		{Name: "v", Map: true, Spec: []string{"type inet_service : verdict"}},
	}}
	cases := []struct {
		set, in string
		want    []string
	}{
		{"blocklist", "192.0.2.1", []string{"192.0.2.1"}},
		{"blocklist", "{ 10.0.0.0/8, 192.0.2.7-192.0.2.9 }", []string{"10.0.0.0/8", "192.0.2.7-192.0.2.9"}},
		{"ports", "https, 22", []string{"22", "443"}},
		{"v", "22 : accept", []string{"22 : accept"}},
	}
	for _, c := range cases {
		got, err := Elements(ctx, c.set, c.in)
		if err != nil {
			t.Errorf("%s %q: %v", c.set, c.in, err)
			continue
		}
		if strings.Join(got, "|") != strings.Join(c.want, "|") {
			t.Errorf("%s %q: got %q, want %q", c.set, c.in, got, c.want)
		}
	}
	if _, err := Elements(ctx, "nosuch", "1.2.3.4"); !errors.Is(err, ErrContext) {
		t.Errorf("unknown set: %v", err)
	}
	if _, err := Elements(ctx, "blocklist", "1.2.3"); !errors.Is(err, ErrType) {
		t.Errorf("bad element: %v", err)
	}
}

func TestParseScript(t *testing.T) {
	src := `
define lan = br0
define ports = { 22, 443 }
table inet filter {
	set blocked { type ipv4_addr; elements = { 192.0.2.1 } }
	chain input {
		type filter hook input priority 0; policy drop;
		comment "the input chain"
		iifname $lan tcp dport $ports accept
		ct helper set udp dport map {
			69 : "tftp-69", \
			5060 : "sip-5060" }
	}
}
add rule inet filter input counter drop
insert rule ip nat post position 3 masquerade
add element inet filter blocked { 192.0.2.2 }
`
	s, err := ParseScript(src)
	if err != nil {
		t.Fatal(err)
	}
	want := []ScriptRule{
		{"inet", "filter", "input", "iifname br0 tcp dport { 22, 443 } accept", 9},
		{"inet", "filter", "input", `ct helper set udp dport map { 69 : "tftp-69", 5060 : "sip-5060" }`, 10},
		{"inet", "filter", "input", "counter drop", 15},
		{"ip", "nat", "post", "masquerade", 16},
	}
	if len(s.Rules) != len(want) {
		t.Fatalf("got %d rules: %+v", len(s.Rules), s.Rules)
	}
	for i := range want {
		if s.Rules[i] != want[i] {
			t.Errorf("rule %d: got %+v, want %+v", i, s.Rules[i], want[i])
		}
	}
	if len(s.Elements) != 2 || s.Elements[1].Text != "192.0.2.2" {
		t.Errorf("elements: %+v", s.Elements)
	}
}

func FuzzRule(f *testing.F) {
	for _, s := range []string{"tcp dport 22 accept", "ip saddr { 10.0.0.0/8, 1.2.3.4 } drop",
		`log prefix "x" level info`, "ct state established,related counter accept",
		"meta mark set mark and 0xff", "dnat to 1.2.3.4:80-90", "@nh,8,8 0xff",
		"tcp flags & (syn|ack) == syn", `meta hour "08:00"-"09:00"`, "ip saddr . tcp dport @s"} {
		f.Add(s)
	}
	ctx := Context{Family: "inet", Sets: []*ruleset.Set{{Name: "s",
		Spec: []string{"type ipv4_addr . inet_service"}}}}
	f.Fuzz(func(t *testing.T, in string) {
		out, err := Rule(ctx, in)
		if err != nil {
			var pe *Error
			if !errors.As(err, &pe) {
				t.Fatalf("%q: error is not an *Error: %v", in, err)
			}
			_ = pe.Caret()
			return
		}
		// The canonical text parses again without a crash (it need not: nft's listing is
		// not always valid input, and degenerate matches print oddly).
		if _, err := Rule(ctx, out); err != nil {
			var pe *Error
			if !errors.As(err, &pe) {
				t.Fatalf("%q -> %q: reparse error is not an *Error: %v", in, out, err)
			}
		}
	})
}

func TestFields(t *testing.T) {
	got, err := Fields(`iifname "br0" tcp dport { 80, 443 } ct state new,established counter ` +
		`meta mark set 0x1 log prefix "in: " accept comment "x"`)
	if err != nil {
		t.Fatal(err)
	}
	want := []Field{{"iifname", `"br0"`}, {"tcp dport", "{ 80, 443 }"},
		{"ct state", "new,established"}, {"counter", ""}, {"meta mark set", "0x1"},
		{"log", `prefix "in: "`}, {"verdict", "accept"}, {"comment", `"x"`}}
	if len(got) != len(want) {
		t.Fatalf("got %+v", got)
	}
	for i := range want {
		if got[i] != want[i] {
			t.Errorf("field %d: got %+v, want %+v", i, got[i], want[i])
		}
	}
	got, _ = Fields("ip saddr != 10.0.0.0/8 ip saddr 10.1.0.0/16 drop")
	if got[0] != (Field{"ip saddr", "!= 10.0.0.0/8"}) || got[1].Name != "ip saddr #2" {
		t.Errorf("repeated names: %+v", got)
	}
}
