package firewall

import (
	"net/netip"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"

	"portolan/internal/portspec"
)

// ruleCmp compares rules by their meaning: port sets by content, ids
// ignored.
var ruleCmp = cmp.Options{
	cmp.Comparer(func(a, b *portspec.Set) bool {
		if a == nil || b == nil {
			return a == b
		}
		return a.Equal(b)
	}),
	cmpopts.IgnoreUnexported(Rule{}),
	cmpopts.EquateComparable(netip.Prefix{}),
	cmpopts.EquateApproxTime(time.Second),
	cmpopts.EquateEmpty(),
}

// mustRule parses a rule from a spec or fails the test.
func mustRule(t testing.TB, s RuleSpec) Rule {
	t.Helper()
	r, err := s.Rule(nil, time.Now())
	if err != nil {
		t.Fatalf("RuleSpec%+v.Rule: %v", s, err)
	}
	return r
}

// roundTripCases are rulesets that cover every shape of kernel rule.
func roundTripCases(t testing.TB) map[string]Ruleset {
	r := func(s RuleSpec) Rule { return mustRule(t, s) }
	return map[string]Ruleset{
		"empty":  {},
		"drop":   {Policy: PolicyDrop},
		"reject": {Policy: PolicyReject, Rules: []Rule{r(RuleSpec{Action: "allow", Ports: "22/tcp"})}},
		"ports": {Rules: []Rule{
			r(RuleSpec{Action: "allow", Ports: "22/tcp", Comment: "ssh"}),
			r(RuleSpec{Action: "allow", Ports: "53"}),
			r(RuleSpec{Action: "deny", Ports: "8000-8100/udp"}),
			r(RuleSpec{Action: "reject", Ports: "T:22,80,443,8000-8100"}),
			r(RuleSpec{Action: "reject", Ports: "111"}),
			r(RuleSpec{Action: "allow", Ports: "T:22,U:53,S:9"}),
			r(RuleSpec{Action: "allow", Ports: "60000-"}),
		}},
		"addresses": {Rules: []Rule{
			r(RuleSpec{Action: "allow", Ports: "443/tcp", From: "198.18.0.0/15"}),
			r(RuleSpec{Action: "allow", Ports: "443/tcp", From: "198.18.0.7", To: "198.18.0.1"}),
			r(RuleSpec{Action: "deny", From: "198.18.0.0/24,198.18.5.0/24,fd00::/8"}),
			r(RuleSpec{Action: "allow", Ports: "80", From: "198.18.0.0/23,198.18.2.0/24"}),
			r(RuleSpec{Action: "allow", To: "fd00::1"}),
			r(RuleSpec{Action: "deny", From: "fd00:1::/64,fd00:2::7", Ports: "T:1-1024"}),
		}},
		"iface": {Rules: []Rule{
			r(RuleSpec{Action: "allow", Ports: "22/tcp", Iface: "eth0"}),
			r(RuleSpec{Action: "deny", Iface: "veth*"}),
		}},
		"limit and log": {Rules: []Rule{
			r(RuleSpec{Action: "limit", Ports: "22/tcp"}),
			r(RuleSpec{Action: "limit", Ports: "80", From: "198.18.0.0/15", Rate: "10/minute"}),
			r(RuleSpec{Action: "limit", Ports: "443/tcp", Prefix6: "56"}),
			r(RuleSpec{Action: "limit", Ports: "444/tcp", Prefix6: "/128"}),
			r(RuleSpec{Action: "log", Ports: "23/tcp"}),
			r(RuleSpec{Action: "log", Ports: "24/tcp", Group: "5", Comment: "telnet-ish"}),
		}},
		"directions": {Policy: PolicyDrop, Rules: []Rule{
			r(RuleSpec{Action: "allow", Ports: "22/tcp"}),
			r(RuleSpec{Action: "deny", Ports: "8080/tcp", Dir: "routed"}),
			r(RuleSpec{Action: "allow", Ports: "T:80,443,8000-8100,U:53", Dir: "routed", From: "fd00::/16"}),
			r(RuleSpec{Action: "reject", Ports: "T:80,443", Dir: "routed", Translated: "true", From: "198.18.0.0/15"}),
			r(RuleSpec{Action: "limit", Ports: "8443", Dir: "routed", Iface: "eth0", Prefix6: "56"}),
			r(RuleSpec{Action: "log", Ports: "23/tcp", Dir: "routed", Group: "3"}),
			r(RuleSpec{Action: "deny", Dir: "routed", To: "198.18.9.0/24", For: "1h"}),
			r(RuleSpec{Action: "reject", Ports: "25/tcp", Dir: "out", Iface: "eth*"}),
			r(RuleSpec{Action: "allow", Dir: "out", To: "fd00::1", Comment: "out"}),
			r(RuleSpec{Action: "deny", Ports: "53", Dir: "out"}),
		}},
		"expiry": {Rules: []Rule{
			r(RuleSpec{Action: "allow", Ports: "8080/tcp", For: "2h"}),
			r(RuleSpec{Action: "deny", From: "198.18.0.9", For: "1h", Comment: "ban"}),
		}},
	}
}
