package firewall_test

import (
	"context"
	"fmt"
	"os"
	"time"

	"portolan/internal/firewall"
)

// A rule from what a person types, and the kernel rules it becomes.
func ExampleRuleSpec() {
	r, err := firewall.RuleSpec{Action: "allow", Ports: "53", From: "198.18.0.0/15,fd00::/8", Comment: "dns"}.Rule(nil, time.Now())
	if err != nil {
		fmt.Println(err)
		return
	}
	fmt.Println(r.String())
	lines, _ := firewall.RuleNFT(&r)
	for _, l := range lines {
		fmt.Println(l)
	}
	// Output:
	// allow 53 from 198.18.0.0/15,fd00::/8
	// ip saddr 198.18.0.0/15 meta l4proto { tcp, udp } th dport 53 accept comment "dns"
	// ip6 saddr fd00::/8 meta l4proto { tcp, udp } th dport 53 accept comment "dns"
}

// A profile, and the chain it makes, as nft lists it.
func ExampleParseProfile() {
	rs, err := firewall.ParseProfile("rules.yaml", []byte(`
policy: drop
rules:
  - allow: 22/tcp
  - limit: T:80,443
    rate: 10/second
`), nil, time.Now())
	if err != nil {
		fmt.Println(err)
		return
	}
	lines, _ := rs.NFT()
	for _, l := range lines {
		fmt.Println(l)
	}
	// Output:
	// type filter hook input priority filter; policy drop;
	// ct state established,related accept
	// iif "lo" accept
	// ip6 hoplimit 255 icmpv6 type { nd-router-solicit, nd-router-advert, nd-neighbor-solicit, nd-neighbor-advert } accept
	// ip6 saddr fe80::/10 icmpv6 type { mld-listener-query, mld-listener-report, mld-listener-done, mld2-listener-report } accept
	// tcp dport 22 accept
	// tcp dport { 80, 443 } ct state new update @limit_2_v4 { ip saddr limit rate over 10/second burst 10 packets } drop
	// tcp dport { 80, 443 } ct state new ip saddr != @limit_2_v4 drop
	// tcp dport { 80, 443 } ct state new update @limit_2_v6 { ip6 saddr & ffff:ffff:ffff:ffff:: limit rate over 10/second burst 10 packets } drop
	// tcp dport { 80, 443 } ct state new ip6 saddr & ffff:ffff:ffff:ffff:: != @limit_2_v6 drop
	// tcp dport { 80, 443 } accept
	// meta l4proto { icmp, ipv6-icmp } accept
}

// Errors in a profile name the line and column.
func ExampleProfileError() {
	_, err := firewall.ParseProfile("rules.yaml", []byte("rules:\n  - allow: 22/tcp\n    from: 198.18.0.0/33\n"), nil, time.Now())
	fmt.Println(err)
	// Output:
	// rules.yaml:3:11: rule 1 (allow): from: "198.18.0.0/33" is not an address or prefix at column 1 in "198.18.0.0/33"
}

// The plan from the live table to a new ruleset, in nft syntax.
func ExampleDiff() {
	live := &firewall.Table{Exists: true}
	live.Ruleset.Rules = append(live.Ruleset.Rules, mustRule("deny", "23/tcp"), mustRule("allow", "22/tcp"))
	want := &firewall.Ruleset{Policy: firewall.PolicyDrop, Rules: []firewall.Rule{mustRule("allow", "22/tcp"), mustRule("allow", "443/tcp")}}
	plan, _ := firewall.Diff(context.Background(), live, want, time.Now())
	plan.Render(os.Stdout)
	// Output:
	// ~ policy drop (was accept)
	// - tcp dport 23 drop
	//   tcp dport 22 accept
	// + tcp dport 443 accept
}

func mustRule(action, ports string) firewall.Rule {
	r, err := firewall.RuleSpec{Action: action, Ports: ports}.Rule(nil, time.Now())
	if err != nil {
		panic(err)
	}
	return r
}
