package watch

import (
	"errors"
	"net/netip"
	"strings"
	"testing"
)

func TestNeverBlock(t *testing.T) {
	var n NeverBlock
	n.AddAddr(netip.MustParseAddr("198.18.0.254"), "gateway")
	n.AddAddr(netip.MustParseAddr("fd00::53"), "resolver")
	n.Add(netip.MustParsePrefix("198.18.5.0/24"), "allow-list")
	cases := []struct {
		p    string
		want string // reason prefix; "" allowed to ban
	}{
		{"198.18.0.254/32", "gateway"},
		{"198.18.0.0/24", "gateway"},
		{"fd00::/64", "resolver"}, // the /64 ban would hold the resolver
		{"198.18.5.7/32", "allow-list"},
		{"198.18.0.9/32", ""},
		{"fd00:1::/64", ""},
	}
	for _, c := range cases {
		reason, refused := n.Check(netip.MustParsePrefix(c.p))
		if refused != (c.want != "") || !strings.HasPrefix(reason, c.want) {
			t.Errorf("Check(%s) = %q, %v; want %q", c.p, reason, refused, c.want)
		}
	}
}

var resolvCases = []struct {
	name, in string
	want     []string
	err      string
}{
	{"usual", "# comment\nsearch example\nnameserver 198.18.0.53\nnameserver fd00::53\noptions edns0\n", []string{"198.18.0.53", "fd00::53"}, ""},
	{"zone", "nameserver fe80::1%eth0\n", []string{"fe80::1"}, ""},
	{"none", "search example\n", nil, ""},
	{"bad", "nameserver 198.18.0.53\nnameserver resolver.example\n", nil, "at 2"},
	{"empty", "nameserver\n", nil, "without an address"},
}

func TestParseResolvConf(t *testing.T) {
	for _, c := range resolvCases {
		got, err := ParseResolvConf("resolv.conf", []byte(c.in))
		if c.err != "" {
			var pe *ParseError
			if err == nil || !strings.Contains(err.Error(), c.err) || !errors.As(err, &pe) {
				t.Errorf("%s: ParseResolvConf = %v, %v; want error with %q", c.name, got, err, c.err)
			}
			continue
		}
		var s []string
		for _, a := range got {
			s = append(s, a.String())
		}
		if err != nil || strings.Join(s, ",") != strings.Join(c.want, ",") {
			t.Errorf("%s: ParseResolvConf = %v, %v; want %v", c.name, s, err, c.want)
		}
	}
}

func FuzzParseResolvConf(f *testing.F) {
	for _, c := range resolvCases {
		f.Add(c.in)
	}
	f.Fuzz(func(t *testing.T, in string) {
		as, err := ParseResolvConf("f", []byte(in))
		if err != nil {
			var pe *ParseError
			if !errors.As(err, &pe) {
				t.Fatalf("error %v is not a *ParseError", err)
			}
			return
		}
		for _, a := range as {
			if !a.IsValid() || a.Zone() != "" {
				t.Fatalf("ParseResolvConf(%q) gave %v", in, a)
			}
		}
	})
}
