package forward

import (
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

var configCases = []struct {
	name string
	in   string
	want []Rule
	err  string
}{
	{name: "full", in: `
defaults:
  connect-timeout: 3s
rules:
  - name: web
    listen: ":8080"
    targets: [198.18.0.2:80, "[fd00::2]:80"]
    balance: first-healthy
    health: 5s
    allow: [198.18.0.0/15, "fd00::1"]
    deny: 198.18.0.66
    max-conns: 1000
    max-conns-per-source: 10
    idle-timeout: 1h
    keepalive: "off"
    proxy-protocol: v2
    trusted-proxies: [127.0.0.1/8]
  - proto: udp
    listen: ":53"
    targets: 198.18.0.3:53,198.18.0.4:53
`, want: []Rule{
		{Name: "web", Listen: ":8080", Targets: []string{"198.18.0.2:80", "[fd00::2]:80"}, Balance: FirstHealthy,
			HealthInterval: 5 * time.Second, ConnectTimeout: 3 * time.Second, IdleTimeout: time.Hour, KeepAlive: -1,
			MaxConns: 1000, MaxConnsPerSource: 10, ProxyProtocol: 2,
			Allow:          []netip.Prefix{netip.MustParsePrefix("198.18.0.0/15"), netip.MustParsePrefix("fd00::1/128")},
			Deny:           []netip.Prefix{netip.MustParsePrefix("198.18.0.66/32")},
			TrustedProxies: []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8")}},
		{Proto: UDP, Listen: ":53", Targets: []string{"198.18.0.3:53", "198.18.0.4:53"}, ConnectTimeout: 3 * time.Second},
	}},
	{name: "empty", in: "", err: "f.yaml:1: empty file"},
	{name: "not a mapping", in: "- a\n", err: "f.yaml:1:1: want a mapping, not a list"},
	{name: "unknown top", in: "rule: []\n", err: `f.yaml:1:1: unknown key "rule" (did you mean "rules"?)`},
	{name: "no rules", in: "rules: []\n", err: "f.yaml:1:1: rules: no rules"},
	{name: "unknown field", in: "rules:\n  - name: a\n    listen: \":1\"\n    colour: red\n", err: `f.yaml:4:5: rule a: unknown key "colour" (want one of name, listen,`},
	{name: "key spelled with _", in: "rules:\n  - name: a\n    connect_timeout: 1s\n", err: `f.yaml:3:5: rule a: unknown key "connect_timeout" (did you mean "connect-timeout"?)`},
	{name: "bad duration", in: "rules:\n  - name: a\n    health: soon\n", err: `f.yaml:3:13: rule a: health: "soon" is not a duration`},
	{name: "huge duration", in: "rules:\n  - name: a\n    idle-timeout: 9999h\n", err: "is over the maximum of 720h0m0s"},
	{name: "huge count", in: "rules:\n  - name: a\n    max-conns: 99999999999\n", err: "f.yaml:3:16: rule a: max-conns: 99999999999 is over the maximum"},
	{name: "negative count", in: "rules:\n  - name: a\n    max-conns: -1\n", err: `"-1" is not a whole number`},
	{name: "bad prefix", in: "rules:\n  - listen: \":1\"\n    deny: [10.0.0.0/40]\n", err: `f.yaml:3:12: rule #1: deny: #1: "10.0.0.0/40" is not an address prefix`},
	{name: "bad proto", in: "rules:\n  - name: a\n    proto: sctp\n", err: `rule a: proto: protocol "sctp": want tcp or udp`},
	{name: "bad port", in: "rules:\n  - name: a\n    listen: \":99999\"\n    targets: [a:1]\n", err: `f.yaml:2:5: rule a: listen: ":99999": port "99999" is not a number`},
	{name: "missing listen", in: "rules:\n  - name: a\n    targets: [a:1]\n", err: "f.yaml:2:5: rule a: listen: missing"},
	{name: "list as value", in: "rules:\n  - name: [a]\n", err: "f.yaml:2:11: rule #1: name: want a single value"},
	{name: "duplicate", in: "rules:\n  - {name: a, listen: \":1\", targets: [a:1]}\n  - {name: a, listen: \":2\", targets: [a:1]}\n", err: "f.yaml:3:5: rule a: name: also used on line 2"},
	{name: "yaml syntax", in: "rules: [\n", err: "f.yaml:1: did not find expected node content"},
	// What --check let through and start refused (issue 12).
	{name: "same listen twice", in: "rules:\n  - {name: a, listen: \":8080\", targets: [a:1]}\n  - {name: b, listen: \":8080\", targets: [a:1]}\n",
		err: `f.yaml:3:5: rule b: listen: tcp :8080 overlaps :8080 of rule a (line 2): both cannot bind`},
	{name: "wildcard beside 0.0.0.0", in: "rules:\n  - {name: a, listen: \":8080\", targets: [a:1]}\n  - {name: b, listen: \"0.0.0.0:8080\", targets: [a:1]}\n",
		err: `f.yaml:3:5: rule b: listen: tcp 0.0.0.0:8080 overlaps :8080 of rule a`},
	{name: "address beside wildcard", in: "rules:\n  - {name: a, listen: \"[::]:8080\", targets: [a:1]}\n  - {name: b, listen: \"127.0.0.1:8080\", targets: [a:1]}\n",
		err: `rule b: listen: tcp 127.0.0.1:8080 overlaps [::]:8080 of rule a`},
	{name: "bad listen address", in: "rules:\n  - {name: a, listen: \"999.1.1.1:8080\", targets: [a:1]}\n",
		err: `f.yaml:2:5: rule a: listen: "999.1.1.1:8080": "999.1.1.1" is not an IP address`},
	{name: "key twice", in: "rules:\n  - name: a\n    listen: \":1\"\n    targets: [a:1]\n    listen: \":2\"\n",
		err: `f.yaml:5:5: rule a: listen: given twice (first on line 3)`},
	{name: "top key twice", in: "rules: []\nrules: []\n", err: `f.yaml:2:1: rules: given twice (first on line 1)`},
	{name: "bad udp", in: "rules:\n  - {name: a, listen: \":1\", targets: [a:1], udp: maybe}\n", err: `f.yaml:2:50: rule a: udp: "maybe": want true or false`},
	{name: "space in a host", in: "rules:\n  - {name: a, listen: \":1\", targets: [\"a b:1\"]}\n", err: `targets: "a b:1": unknown option "b:1": want weight=N`},
	{name: "bad weight", in: "rules:\n  - {name: a, listen: \":1\", targets: [\"a:1 weight=0\"]}\n", err: `targets: "a:1 weight=0": weight "0": want 1 to 256`},
	{name: "bad balance", in: "rules:\n  - {name: a, listen: \":1\", targets: [a:1], balance: random}\n", err: `balance "random": want round-robin, first-healthy, least-conn or source-hash`},
}

// TestParseConfigFlagNames: keys are named like the flags (accept-proxy,
// udp, max-fails), and a target list written with spaces after its
// commas gives the targets without them (the second became the host name
// " 198.18.0.3").
func TestParseConfigFlagNames(t *testing.T) {
	got, err := ParseConfig("f.yaml", []byte(`rules:
  - name: a
    listen: ":8443"
    targets: "198.18.0.2:443, 198.18.0.3:443"
    accept-proxy: 198.18.0.0/15
    max-fails: 3
    fail-timeout: 30s
  - name: u
    udp: true
    listen: "127.0.0.1:8443"
    targets: [198.18.0.2:53]
    max-fails: 0
`))
	if err != nil {
		t.Fatal(err)
	}
	want := []Rule{
		{Name: "a", Listen: ":8443", Targets: []string{"198.18.0.2:443", "198.18.0.3:443"},
			TrustedProxies: []netip.Prefix{netip.MustParsePrefix("198.18.0.0/15")}, MaxFails: 3, FailTimeout: 30 * time.Second},
		{Name: "u", Proto: UDP, Listen: "127.0.0.1:8443", Targets: []string{"198.18.0.2:53"}, MaxFails: -1},
	}
	if d := cmp.Diff(want, got, cmp.Comparer(func(a, b netip.Prefix) bool { return a == b })); d != "" {
		t.Errorf("ParseConfig (-want +got):\n%s", d)
	}
}

func TestParseConfig(t *testing.T) {
	for _, tc := range configCases {
		t.Run(tc.name, func(t *testing.T) {
			got, err := ParseConfig("f.yaml", []byte(tc.in))
			if tc.err != "" {
				if err == nil || !strings.Contains(err.Error(), tc.err) {
					t.Fatalf("ParseConfig(%q) = %v; want error with %q", tc.in, err, tc.err)
				}
				return
			}
			if err != nil {
				t.Fatalf("ParseConfig(%q) = %v", tc.in, err)
			}
			if d := cmp.Diff(tc.want, got, cmp.Comparer(func(a, b netip.Prefix) bool { return a == b })); d != "" {
				t.Errorf("ParseConfig(%q) (-want +got):\n%s", tc.in, d)
			}
		})
	}
}

func FuzzParseConfig(f *testing.F) {
	for _, tc := range configCases {
		f.Add(tc.in)
	}
	f.Fuzz(func(t *testing.T, in string) {
		rules, err := ParseConfig("f.yaml", []byte(in))
		if err != nil {
			if !strings.HasPrefix(err.Error(), "f.yaml:") {
				t.Fatalf("ParseConfig(%q) error %q does not name the file", in, err)
			}
			return
		}
		for i := range rules {
			if err := rules[i].Validate(); err != nil {
				t.Fatalf("ParseConfig(%q) accepted an invalid rule: %v", in, err)
			}
		}
	})
}
