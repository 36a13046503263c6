package firewall

import (
	"bytes"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

// TestCompileDecode checks, without a kernel, that the kernel rules of
// every rule read back to the same rule.
func TestCompileDecode(t *testing.T) {
	for name, rs := range roundTripCases(t) {
		rs := rs.Clone()
		assignIDs(rs)
		comp, err := compile(rs)
		if err != nil {
			t.Fatalf("%s: compile: %v", name, err)
		}
		d := decodeRules(comp.rules, comp.drop)
		if len(d.unmanaged) != 0 {
			t.Errorf("%s: decodeRules left %d unmanaged rules", name, len(d.unmanaged))
		}
		if diff := cmp.Diff(*rs, d.rs, ruleCmp); diff != "" {
			t.Errorf("%s: decodeRules(compile(rs)) (-want +got):\n%s", name, diff)
		}
	}
}

// TestDecodeChangedRule: kernel rules that do not compile back to
// themselves are unmanaged, not misread.
func TestDecodeChangedRule(t *testing.T) {
	rs := &Ruleset{Rules: []Rule{
		mustRule(t, RuleSpec{Action: "allow", Ports: "22/tcp"}),
		mustRule(t, RuleSpec{Action: "deny", Ports: "23/tcp"}),
	}}
	assignIDs(rs)
	comp, err := compile(rs)
	if err != nil {
		t.Fatal(err)
	}
	first := slices.IndexFunc(comp.rules, func(k krule) bool { return k.kind == kindRule }) // after the base rules
	comp.rules[first].verdict = vDrop                                                       // allow 22 now drops: someone edited it
	d := decodeRules(comp.rules, false)
	if len(d.rs.Rules) != 2 || len(d.unmanaged) != 0 {
		// A lone changed rule still decodes, as deny 22/tcp: that is what
		// it now does, and it compiles back to itself.
		t.Fatalf("decodeRules: %d rules, %d unmanaged", len(d.rs.Rules), len(d.unmanaged))
	}
	if got := d.rs.Rules[0].String(); got != "deny 22/tcp" {
		t.Errorf("edited rule reads as %q; want deny 22/tcp", got)
	}
	// A rule split into kernel rules that no longer agree is unmanaged.
	rs = &Ruleset{Rules: []Rule{mustRule(t, RuleSpec{Action: "limit", Ports: "22/tcp"})}}
	assignIDs(rs)
	comp, _ = compile(rs)
	comp.rules[first].meter.burst = 99
	d = decodeRules(comp.rules, false)
	if len(d.rs.Rules) != 0 || len(d.unmanaged) != 5 { // two meter rules per family, one accept
		t.Errorf("limit with one odd meter: %d rules, %d unmanaged; want 0, 5", len(d.rs.Rules), len(d.unmanaged))
	}
}

func TestUserdata(t *testing.T) {
	for _, k := range []krule{
		{kind: kindRule, id: 7},
		{kind: kindRule, id: 1 << 31, expires: time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC).UnixMilli(), comment: "ssh from the lan"},
		{kind: kindBase, id: baseICMP},
		{kind: kindRule, id: 3, comment: strings.Repeat("x", MaxComment)},
	} {
		b := encodeUserdata(&k)
		if len(b) > 256 {
			t.Errorf("encodeUserdata(%+v): %d bytes, over the kernel's 256", k, len(b))
		}
		var got krule
		if !decodeUserdata(b, &got) || !reflect.DeepEqual(got, krule{kind: k.kind, id: k.id, expires: k.expires, comment: k.comment}) {
			t.Errorf("decodeUserdata(encodeUserdata(%+v)) = %+v", k, got)
		}
	}
	// nft's own comment alone is not ours.
	if decodeUserdata([]byte{0, 4, 'a', 'b', 'c', 0}, &krule{}) {
		t.Error("a comment without a tag decoded as portolan's")
	}
}

func FuzzDecodeUserdata(f *testing.F) {
	f.Add(encodeUserdata(&krule{kind: kindRule, id: 7, comment: "x"}))
	f.Add([]byte{0, 4, 'a', 'b', 'c', 0})
	f.Add([]byte{0xb7, 16, 'p', 'l', 1})
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, b []byte) {
		var k krule
		if !decodeUserdata(b, &k) {
			return
		}
		// What it accepts it writes back the same (comment first).
		again := encodeUserdata(&k)
		var k2 krule
		if !decodeUserdata(again, &k2) || !reflect.DeepEqual(k, k2) {
			t.Fatalf("decode %x -> %+v -> %x -> %+v", b, k, again, k2)
		}
		if bytes.Count(b, []byte{udataTag}) == 0 {
			t.Fatalf("decoded %x without a tag", b)
		}
	})
}

func TestNFTRendering(t *testing.T) {
	r := func(s RuleSpec) Rule { return mustRule(t, s) }
	tests := []struct {
		rule Rule
		want []string
	}{
		{r(RuleSpec{Action: "allow", Ports: "22/tcp", Comment: "ssh"}), []string{`tcp dport 22 accept comment "ssh"`}},
		{r(RuleSpec{Action: "reject", Ports: "111"}), []string{`meta l4proto { tcp, udp } th dport 111 reject`}},
		{r(RuleSpec{Action: "reject", Ports: "25/tcp"}), []string{`tcp dport 25 reject with tcp reset`}},
		{r(RuleSpec{Action: "deny", Ports: "T:22,80,U:53"}), []string{`tcp dport { 22, 80 } drop`, `udp dport 53 drop`}},
		{r(RuleSpec{Action: "allow", Ports: "8000-8100/udp", From: "198.18.0.0/15,fd00::/8", Iface: "eth0"}), []string{
			`iifname "eth0" ip saddr 198.18.0.0/15 udp dport 8000-8100 accept`,
			`iifname "eth0" ip6 saddr fd00::/8 udp dport 8000-8100 accept`}},
		{r(RuleSpec{Action: "limit", Ports: "22/tcp", From: "fd00::/8", Rate: "5/s"}), []string{
			`ip6 saddr fd00::/8 tcp dport 22 ct state new update @limit_1_v6 { ip6 saddr & ffff:ffff:ffff:ffff:: limit rate over 5/second } drop`,
			`ip6 saddr fd00::/8 tcp dport 22 ct state new ip6 saddr & ffff:ffff:ffff:ffff:: != @limit_1_v6 drop`,
			`ip6 saddr fd00::/8 tcp dport 22 accept`}},
		{r(RuleSpec{Action: "log", Ports: "23/tcp", Group: "3"}), []string{`tcp dport 23 limit rate 3/minute burst 10 packets log prefix "portolan: " group 3`}},
		{r(RuleSpec{Action: "deny", Ports: "any", To: "198.18.0.1", For: "1h"}), []string{`meta nfproto @expire_1 ip daddr 198.18.0.1 drop`}},
	}
	for _, tt := range tests {
		got, err := RuleNFT(&tt.rule)
		if err != nil {
			t.Fatalf("RuleNFT(%s): %v", &tt.rule, err)
		}
		if diff := cmp.Diff(tt.want, got); diff != "" {
			t.Errorf("RuleNFT(%s) (-want +got):\n%s", &tt.rule, diff)
		}
	}
}
