package firewall

import (
	"context"
	"slices"
	"testing"
)

func TestShadowed(t *testing.T) {
	r := func(action, ports, from, iface string) Rule {
		return mustRuleNoT(RuleSpec{Action: action, Ports: ports, From: from, Iface: iface})
	}
	tests := []struct {
		name  string
		rules []Rule
		want  []Shadow
	}{
		{"allow then limit", []Rule{r("allow", "22/tcp", "", ""), r("limit", "22/tcp", "", "")}, []Shadow{{2, 1}}},
		{"limit then allow", []Rule{r("limit", "22/tcp", "", ""), r("allow", "22/tcp", "", "")}, []Shadow{{2, 1}}},
		{"log does not shadow", []Rule{r("log", "22/tcp", "", ""), r("allow", "22/tcp", "", "")}, nil},
		{"narrower first", []Rule{r("deny", "22/tcp", "198.18.0.2", ""), r("allow", "22/tcp", "", "")}, nil},
		{"wider prefix", []Rule{r("allow", "22/tcp", "198.18.0.0/15", ""), r("deny", "22/tcp", "198.18.0.2", "")}, []Shadow{{2, 1}}},
		{"other family", []Rule{r("allow", "22/tcp", "198.18.0.0/15", ""), r("deny", "22/tcp", "fd00::2", "")}, nil},
		{"some ports", []Rule{r("allow", "22/tcp", "", ""), r("deny", "T:22,23", "", "")}, nil},
		{"all ports", []Rule{r("allow", "T:20-30", "", ""), r("deny", "T:22,23", "", "")}, []Shadow{{2, 1}}},
		{"any covers ports", []Rule{r("deny", "any", "198.18.0.0/15", ""), r("allow", "80", "198.18.0.0/16", "")}, []Shadow{{2, 1}}},
		{"ports do not cover any", []Rule{r("deny", "1-65535/tcp", "", ""), r("allow", "any", "198.18.0.1", "")}, nil},
		{"iface wildcard", []Rule{r("deny", "any", "", "eth*"), r("allow", "22/tcp", "", "eth0")}, []Shadow{{2, 1}}},
		{"iface other", []Rule{r("deny", "any", "", "eth0"), r("allow", "22/tcp", "", "eth1")}, nil},
		{"iface any not covered", []Rule{r("deny", "any", "", "eth0"), r("allow", "22/tcp", "", "")}, nil},
		{"other direction", []Rule{r("deny", "22/tcp", "", ""), mustRuleNoT(RuleSpec{Action: "allow", Ports: "22/tcp", Dir: "routed"}), mustRuleNoT(RuleSpec{Action: "allow", Ports: "22/tcp", Dir: "out"})}, nil},
		{"routed", []Rule{mustRuleNoT(RuleSpec{Action: "deny", Ports: "8080/tcp", Dir: "routed"}), mustRuleNoT(RuleSpec{Action: "allow", Ports: "8080/tcp", Dir: "routed", From: "198.18.0.2"})}, []Shadow{{2, 1}}},
		{"before and after DNAT", []Rule{mustRuleNoT(RuleSpec{Action: "deny", Ports: "80/tcp", Dir: "routed"}), mustRuleNoT(RuleSpec{Action: "allow", Ports: "80/tcp", Dir: "routed", Translated: "true"})}, nil},
		{"first shadower", []Rule{r("allow", "22/tcp", "", ""), r("deny", "T:22,80", "", ""), r("reject", "22/tcp", "", "")}, []Shadow{{3, 1}}},
	}
	for _, tt := range tests {
		rs := Ruleset{Rules: tt.rules}
		got, err := rs.Shadowed(context.Background())
		if err != nil || !slices.Equal(got, tt.want) {
			t.Errorf("%s: Shadowed = %v, %v; want %v", tt.name, got, err, tt.want)
		}
	}
}
