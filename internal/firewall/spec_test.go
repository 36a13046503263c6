package firewall

import (
	"errors"
	"net/netip"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"portolan/internal/portspec"
)

var t0 = time.Date(2030, 1, 2, 15, 4, 5, 0, time.UTC)

// names is a tiny registry for tests: ssh is TCP and UDP 22, http-alt is
// TCP 8080 only.
type names struct{}

func (names) PortsByName(pattern string, proto portspec.Proto) ([]portspec.Port, error) {
	switch {
	case pattern == "ssh":
		return []portspec.Port{22}, nil
	case pattern == "http-alt" && proto == portspec.TCP:
		return []portspec.Port{8080}, nil
	}
	return nil, errors.New("unknown service")
}

func set(spec string) *portspec.Set {
	s, err := portspec.Parse(spec)
	if err != nil {
		panic(err)
	}
	return s
}

func prefixes(ss ...string) []netip.Prefix {
	var out []netip.Prefix
	for _, s := range ss {
		out = append(out, netip.MustParsePrefix(s))
	}
	return out
}

// specCases are RuleSpecs and what they parse to; the fuzz seeds too.
var specCases = []struct {
	name string
	spec RuleSpec
	want Rule
	err  string // a substring of the error; "" for success
}{
	{"tcp port", RuleSpec{Action: "allow", Ports: "22/tcp"}, Rule{Action: Allow, Ports: set("T:22")}, ""},
	{"no protocol is tcp and udp", RuleSpec{Action: "reject", Ports: "111"}, Rule{Action: Reject, Ports: set("T:111,U:111")}, ""},
	{"prefixes stay", RuleSpec{Action: "deny", Ports: "T:22,80,U:53"}, Rule{Action: Deny, Ports: set("T:22,80,U:53")}, ""},
	{"name: the protocols it is used over", RuleSpec{Action: "allow", Ports: "ssh"}, Rule{Action: Allow, Ports: set("T:22")}, ""},
	{"name: the registry's protocols", RuleSpec{Action: "allow", Ports: "http-alt"}, Rule{Action: Allow, Ports: set("T:8080")}, ""},
	{"name tcp only", RuleSpec{Action: "allow", Ports: "http-alt"}, Rule{Action: Allow, Ports: set("T:8080")}, ""},
	{"any", RuleSpec{Action: "deny", Ports: "any", From: "198.18.0.7"}, Rule{Action: Deny, From: prefixes("198.18.0.7/32")}, ""},
	{"prefixes canonical", RuleSpec{Action: "allow", Ports: "80", From: "198.18.1.0/24, 198.18.0.0/24,fd00::1, 198.18.0.9"},
		Rule{Action: Allow, Ports: set("T:80,U:80"), From: prefixes("198.18.0.0/23", "fd00::1/128")}, ""},
	{"limit default rate", RuleSpec{Action: "limit", Ports: "22/tcp"}, Rule{Action: Limit, Ports: set("T:22"), Rate: DefaultRate}, ""},
	{"limit rate", RuleSpec{Action: "limit", Ports: "22/tcp", Rate: "10/minute"}, Rule{Action: Limit, Ports: set("T:22"), Rate: Rate{10, time.Minute}}, ""},
	{"log group", RuleSpec{Action: "log", Ports: "23/tcp", Group: "5"}, Rule{Action: Log, Ports: set("T:23"), Group: 5}, ""},
	{"for", RuleSpec{Action: "allow", Ports: "8080/tcp", For: "2h"}, Rule{Action: Allow, Ports: set("T:8080"), Expires: t0.Add(2 * time.Hour)}, ""},
	{"for days", RuleSpec{Action: "allow", Ports: "8080/tcp", For: "3d"}, Rule{Action: Allow, Ports: set("T:8080"), Expires: t0.Add(72 * time.Hour)}, ""},
	{"expires", RuleSpec{Action: "allow", Ports: "8080/tcp", Expires: "2030-02-01T00:00:00Z"}, Rule{Action: Allow, Ports: set("T:8080"), Expires: time.Date(2030, 2, 1, 0, 0, 0, 0, time.UTC)}, ""},
	{"iface wildcard", RuleSpec{Action: "allow", Ports: "22/tcp", Iface: "eth*", Comment: "lan ssh"}, Rule{Action: Allow, Ports: set("T:22"), Iface: "eth*", Comment: "lan ssh"}, ""},

	{"no action", RuleSpec{Ports: "22"}, Rule{}, `action: unknown action ""`},
	{"bad action", RuleSpec{Action: "permit", Ports: "22"}, Rule{}, `unknown action "permit"`},
	{"bad port", RuleSpec{Action: "allow", Ports: "22,99999"}, Rule{}, `ports: `},
	{"unknown name", RuleSpec{Action: "allow", Ports: "nosuch"}, Rule{}, "ports: "},
	{"bad prefix", RuleSpec{Action: "allow", Ports: "22", From: "198.18.0.0/15,198.18.0.0/33"}, Rule{}, `from: "198.18.0.0/33" is not an address or prefix at column 15`},
	{"hostname", RuleSpec{Action: "allow", Ports: "22", From: "example.com"}, Rule{}, `names are not resolved`},
	{"empty entry", RuleSpec{Action: "allow", Ports: "22", From: "198.18.0.1,,198.18.0.2"}, Rule{}, `from: empty entry at column 12`},
	{"mapped", RuleSpec{Action: "allow", Ports: "22", From: "::ffff:198.18.0.1"}, Rule{}, `write 198.18.0.1`},
	{"host bits", RuleSpec{Action: "allow", Ports: "80/tcp", To: "198.18.0.77/24"}, Rule{}, `to: "198.18.0.77/24" has host bits set: write 198.18.0.0/24 for the network or 198.18.0.77 for the host at column 1`},
	{"host bits v6", RuleSpec{Action: "allow", Ports: "80/tcp", From: "fd00::1,fd00::5/64"}, Rule{}, `from: "fd00::5/64" has host bits set: write fd00::/64 for the network or fd00::5 for the host at column 9`},
	{"port 0", RuleSpec{Action: "allow", Ports: "22, 0/udp"}, Rule{}, `ports: port 0 at column 5 in "22, 0/udp"`},
	{"port 0 range", RuleSpec{Action: "deny", Ports: "T:0-10"}, Rule{}, `ports: port 0 at column 1`},
	{"expires in the past", RuleSpec{Action: "allow", Ports: "22", Expires: "2001-02-03T04:05:06Z"}, Rule{}, `expires: 2001-02-03T04:05:06Z is not in the future`},
	{"families clash", RuleSpec{Action: "allow", Ports: "22", From: "198.18.0.1", To: "fd00::1"}, Rule{}, `no address family in common`},
	{"limit prefix6", RuleSpec{Action: "limit", Ports: "22/tcp", Prefix6: "/56"}, Rule{Action: Limit, Ports: set("T:22"), Rate: DefaultRate, Prefix6: 56}, ""},
	{"limit prefix6 default", RuleSpec{Action: "limit", Ports: "22/tcp", Prefix6: "64"}, Rule{Action: Limit, Ports: set("T:22"), Rate: DefaultRate}, ""},
	{"prefix6 on allow", RuleSpec{Action: "allow", Ports: "22", Prefix6: "56"}, Rule{}, `prefix6: only limit rules`},
	{"prefix6 too long", RuleSpec{Action: "limit", Ports: "22", Prefix6: "129"}, Rule{}, `not an IPv6 prefix length from 1 to 128`},
	{"prefix6 zero", RuleSpec{Action: "limit", Ports: "22", Prefix6: "0"}, Rule{}, `not an IPv6 prefix length`},
	{"rate on allow", RuleSpec{Action: "allow", Ports: "22", Rate: "6/30s"}, Rule{}, `rate: only limit rules take a rate`},
	{"bad rate", RuleSpec{Action: "limit", Ports: "22", Rate: "6"}, Rule{}, `want COUNT/PERIOD`},
	{"inexact rate", RuleSpec{Action: "limit", Ports: "22", Rate: "5/11s"}, Rule{}, `no whole number`},
	{"limit any", RuleSpec{Action: "limit", Ports: "any", From: "198.18.0.1"}, Rule{}, `limit needs ports`},
	{"group on deny", RuleSpec{Action: "deny", Ports: "22", Group: "1"}, Rule{}, `group: only log rules`},
	{"group zero", RuleSpec{Action: "log", Ports: "22", Group: "0"}, Rule{}, `not an NFLOG group`},
	{"for and expires", RuleSpec{Action: "allow", Ports: "22", For: "1h", Expires: "2030-01-01T00:00:00Z"}, Rule{}, `for: give for or expires, not both`},
	{"bad for", RuleSpec{Action: "allow", Ports: "22", For: "soon"}, Rule{}, `for: "soon" is not a duration`},
	{"for too short", RuleSpec{Action: "allow", Ports: "22", For: "10ms"}, Rule{}, `want from 1s`},
	{"bad expires", RuleSpec{Action: "allow", Ports: "22", Expires: "tomorrow"}, Rule{}, `expires: "tomorrow" is not an RFC 3339 time`},
	{"long iface", RuleSpec{Action: "allow", Ports: "22", Iface: "averyveryverylongname"}, Rule{}, `longer than 15 bytes`},
	{"iface slash", RuleSpec{Action: "allow", Ports: "22", Iface: "a/b"}, Rule{}, `character '/' at column 2`},
	{"iface star only", RuleSpec{Action: "allow", Ports: "22", Iface: "*"}, Rule{}, `matches every interface`},
	{"comment quote", RuleSpec{Action: "allow", Ports: "22", Comment: `say "hi"`}, Rule{}, `comment: character '"' at byte 5`},
	{"comment long", RuleSpec{Action: "allow", Ports: "22", Comment: strings.Repeat("x", 129)}, Rule{}, `longer than 128`},
}

func TestRuleSpec(t *testing.T) {
	for _, tt := range specCases {
		t.Run(tt.name, func(t *testing.T) {
			got, err := tt.spec.Rule(names{}, t0)
			if tt.err != "" {
				if err == nil || !strings.Contains(err.Error(), tt.err) {
					t.Fatalf("RuleSpec%+v.Rule() error = %v; want one containing %q", tt.spec, err, tt.err)
				}
				return
			}
			if err != nil {
				t.Fatalf("RuleSpec%+v.Rule() error = %v", tt.spec, err)
			}
			if diff := cmp.Diff(tt.want, got, ruleCmp); diff != "" {
				t.Errorf("RuleSpec%+v.Rule() (-want +got):\n%s", tt.spec, diff)
			}
			if err := got.Validate(); err != nil {
				t.Errorf("Validate(%s) = %v", &got, err)
			}
		})
	}
}

func FuzzRuleSpec(f *testing.F) {
	for _, tt := range specCases {
		s := tt.spec
		f.Add(s.Action, s.Ports, s.From, s.To, s.Iface, s.Rate, s.Group, s.For, s.Comment)
	}
	f.Fuzz(func(t *testing.T, action, ports, from, to, iface, rate, group, dur, comment string) {
		spec := RuleSpec{Action: action, Ports: ports, From: from, To: to, Iface: iface, Rate: rate, Group: group, For: dur, Comment: comment}
		r, err := spec.Rule(names{}, t0)
		if err != nil {
			var fe *FieldError
			if !errors.As(err, &fe) {
				t.Fatalf("Rule() error %v is not a *FieldError", err)
			}
			return
		}
		if err := r.Validate(); err != nil {
			t.Fatalf("Rule() = %s, which does not validate: %v", &r, err)
		}
		// What a rule prints, the parsers read back to the same rule.
		back := RuleSpec{Action: r.Action.String(), Ports: FormatPorts(r.Ports), From: strings.Join(prefixStrings(r.From), ","), To: strings.Join(prefixStrings(r.To), ","),
			Iface: r.Iface, Comment: r.Comment}
		if r.Action == Limit {
			back.Rate = r.Rate.String()
		}
		if r.Group != 0 {
			back.Group = group
		}
		r2, err := back.Rule(nil, t0)
		if err != nil {
			t.Fatalf("re-reading %+v: %v", back, err)
		}
		r2.Expires = r.Expires
		if !r.Equal(&r2) {
			t.Fatalf("round trip: %s became %s", &r, &r2)
		}
		// Every accepted rule compiles.
		r.id = 1
		if _, _, err := compileRule(&r); err != nil {
			t.Fatalf("compileRule(%s): %v", &r, err)
		}
	})
}

func TestFormatPorts(t *testing.T) {
	for _, spec := range []string{"22/tcp", "53/udp", "111", "22,80", "T:22,80", "T:22,U:53", "8000-8100/tcp", "22,S:9", "1-65535/tcp", "any", "T:1-3,U:5,S:7", "22,80-90,S:9-10", "T:22,S:1-2", "U:53,S:5", "T:1,3,5-6"} {
		s, err := ParsePorts(spec, nil)
		if err != nil {
			t.Fatalf("ParsePorts(%q): %v", spec, err)
		}
		got := FormatPorts(s)
		if got != spec {
			t.Errorf("FormatPorts(ParsePorts(%q)) = %q; want it back", spec, got)
		}
	}
}

func TestCanonPrefixes(t *testing.T) {
	tests := []struct {
		in, want []string
	}{
		{[]string{"198.18.0.0/24", "198.18.1.0/24"}, []string{"198.18.0.0/23"}},
		{[]string{"198.18.0.0/23", "198.18.2.0/24"}, []string{"198.18.0.0/23", "198.18.2.0/24"}},
		{[]string{"198.18.0.5/32", "198.18.0.0/24"}, []string{"198.18.0.0/24"}},
		{[]string{"fd00::/8", "198.18.0.1/32"}, []string{"198.18.0.1/32", "fd00::/8"}},
		{[]string{"0.0.0.0/1", "128.0.0.0/1"}, []string{"0.0.0.0/0"}},
		{[]string{"198.18.0.1/32", "198.18.0.2/32"}, []string{"198.18.0.1/32", "198.18.0.2/32"}},
		{[]string{"198.18.0.2/32", "198.18.0.3/32"}, []string{"198.18.0.2/31"}},
		{[]string{"255.255.255.255/32", "255.255.255.254/32"}, []string{"255.255.255.254/31"}},
	}
	for _, tt := range tests {
		got := CanonPrefixes(prefixes(tt.in...))
		if diff := cmp.Diff(prefixes(tt.want...), got, cmp.Comparer(func(a, b netip.Prefix) bool { return a == b })); diff != "" {
			t.Errorf("CanonPrefixes(%v) (-want +got):\n%s", tt.in, diff)
		}
	}
}

// TestCanonPrefixesOne: one prefix takes a short path; it gives what the
// general one (ranges split into prefixes) gives.
func TestCanonPrefixesOne(t *testing.T) {
	for _, s := range []string{"0.0.0.0/0", "198.18.0.0/15", "198.18.0.1/32", "255.255.255.255/32", "::/0", "fd00::/8",
		"fd00::1/128", "::ffff:198.18.0.1/128", "198.18.0.1/8", "fd00::1/64"} {
		p := netip.MustParsePrefix(s)
		var want []netip.Prefix
		for _, r := range mergeRanges([]addrRange{prefixRange(p)}) {
			want = append(want, rangePrefixes(r)...)
		}
		if got := CanonPrefixes([]netip.Prefix{p}); !slices.Equal(got, want) {
			t.Errorf("CanonPrefixes(%s) = %v; want %v", s, got, want)
		}
	}
}

func TestKernelRate(t *testing.T) {
	tests := []struct {
		rate        Rate
		kRate, unit uint64
		burst       uint32
		ok          bool
	}{
		{Rate{6, 30 * time.Second}, 12, 60, 6, true},
		{Rate{10, time.Second}, 10, 1, 10, true},
		{Rate{3, time.Hour}, 3, 3600, 3, true},
		{Rate{60, time.Minute}, 60, 60, 60, true},
		{Rate{5, 7 * time.Second}, 432000, 604800, 5, true},
		{Rate{5, 11 * time.Second}, 0, 0, 0, false},
		{Rate{0, time.Second}, 0, 0, 0, false},
		{Rate{1, 1500 * time.Millisecond}, 0, 0, 0, false},
	}
	for _, tt := range tests {
		r, u, b, err := tt.rate.kernelRate()
		if (err == nil) != tt.ok || r != tt.kRate || u != tt.unit || b != tt.burst {
			t.Errorf("%v.kernelRate() = %d, %d, %d, %v; want %d, %d, %d, ok %v", tt.rate, r, u, b, err, tt.kRate, tt.unit, tt.burst, tt.ok)
			continue
		}
		if tt.ok {
			if back, ok := rateFromKernel(r, u, b); !ok || back != tt.rate {
				t.Errorf("rateFromKernel(%d, %d, %d) = %v, %v; want %v", r, u, b, back, ok, tt.rate)
			}
		}
	}
}

func FuzzParseRate(f *testing.F) {
	for _, s := range []string{"6/30s", "10/minute", "5/s", "1/w", "100/1h", "5/11s", "0/1s", "1/", "/1s", "3/1.5s"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		r, err := ParseRate(s)
		if err != nil {
			return
		}
		back, err := ParseRate(r.String())
		if err != nil || back != r {
			t.Fatalf("ParseRate(%q) = %v, and ParseRate(%q) = %v, %v", s, r, r.String(), back, err)
		}
	})
}

// FuzzSimplePorts: the fast path for simple port specs gives what the
// parser gives.
func FuzzSimplePorts(f *testing.F) {
	for _, s := range []string{"22/tcp", "53/udp", "9/sctp", "111", "8000-8100", "8000-8100/tcp", "0", "65535", "65536", "2-1", "022", "1-", "22/TCP", "22/icmp"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, spec string) {
		fast, ok := simplePorts(spec)
		if !ok {
			return
		}
		tcp, errT := portspec.Parser{Default: portspec.TCP}.Parse(spec)
		udp, errU := portspec.Parser{Default: portspec.UDP}.Parse(spec)
		if errT != nil || errU != nil {
			t.Fatalf("simplePorts(%q) = %s; the parser: %v, %v", spec, FormatPorts(fast), errT, errU)
		}
		tcp.AddSet(udp)
		if !tcp.Equal(fast) {
			t.Fatalf("simplePorts(%q) = %s; the parser: %s", spec, FormatPorts(fast), FormatPorts(tcp))
		}
	})
}
