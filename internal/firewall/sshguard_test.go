package firewall

import (
	"context"
	"errors"
	"net/netip"
	"strings"
	"testing"
	"time"

	"portolan/internal/portspec"
)

func TestEvaluate(t *testing.T) {
	r := func(s RuleSpec) Rule { return mustRule(t, s) }
	pkt := func(src string, proto portspec.Proto, port int, iface string) Packet {
		return Packet{Src: netip.MustParseAddr(src), Dst: netip.MustParseAddr("198.18.0.1"), Proto: proto, Port: portspec.Port(port), Iface: iface}
	}
	expired := r(RuleSpec{Action: "allow", Ports: "22/tcp"})
	expired.Expires = time.Now().Add(-time.Minute)
	rs := &Ruleset{Policy: PolicyDrop, Rules: []Rule{
		r(RuleSpec{Action: "log", Ports: "22/tcp"}),
		r(RuleSpec{Action: "deny", Ports: "any", From: "198.18.0.66"}),
		expired,
		r(RuleSpec{Action: "allow", Ports: "22/tcp", From: "198.18.0.0/24"}),
		r(RuleSpec{Action: "reject", Ports: "111"}),
		r(RuleSpec{Action: "limit", Ports: "2222/tcp"}),
		r(RuleSpec{Action: "allow", Ports: "80/tcp", Iface: "eth*"}),
		r(RuleSpec{Action: "deny", Ports: "81/tcp", Iface: "eth1"}),
		r(RuleSpec{Action: "allow", Ports: "81/tcp"}),
	}}
	tests := []struct {
		p    Packet
		want Decision
	}{
		{pkt("198.18.0.2", portspec.TCP, 22, ""), Decision{"accept", 4}},
		{pkt("198.18.0.66", portspec.TCP, 22, ""), Decision{"drop", 2}},
		{pkt("198.18.1.2", portspec.TCP, 22, ""), Decision{"drop", 0}},
		{pkt("198.18.1.2", portspec.UDP, 111, ""), Decision{"reject", 5}},
		{pkt("fd00::2", portspec.TCP, 2222, ""), Decision{"accept", 6}},
		{pkt("127.0.0.1", portspec.TCP, 9, ""), Decision{"accept", 0}},
		{pkt("198.18.1.2", portspec.TCP, 80, "eth0"), Decision{"accept", 7}},
		{pkt("198.18.1.2", portspec.TCP, 80, "wlan0"), Decision{"drop", 0}},
		{pkt("198.18.1.2", portspec.TCP, 80, ""), Decision{"drop", 0}}, // unknown: an allowing iface rule is not trusted
		{pkt("198.18.1.2", portspec.TCP, 81, ""), Decision{"drop", 8}}, // unknown: a blocking one is assumed
		{pkt("198.18.1.2", portspec.TCP, 81, "eth0"), Decision{"accept", 9}},
	}
	for _, tt := range tests {
		if got := rs.Evaluate(tt.p, time.Now()); got != tt.want {
			t.Errorf("Evaluate(%v) = %+v; want %+v", tt.p, got, tt.want)
		}
	}
}

var sshCases = []struct {
	env  string
	want Packet
	err  string
}{
	{"198.18.0.2 51234 198.18.0.1 22", Packet{Src: netip.MustParseAddr("198.18.0.2"), Dst: netip.MustParseAddr("198.18.0.1"), Proto: portspec.TCP, Port: 22}, ""},
	{"fd00::2 40000 fd00::1 2222", Packet{Src: netip.MustParseAddr("fd00::2"), Dst: netip.MustParseAddr("fd00::1"), Proto: portspec.TCP, Port: 2222}, ""},
	{"::ffff:198.18.0.2 1 ::ffff:198.18.0.1 22", Packet{Src: netip.MustParseAddr("198.18.0.2"), Dst: netip.MustParseAddr("198.18.0.1"), Proto: portspec.TCP, Port: 22}, ""},
	{"198.18.0.2 51234 198.18.0.1", Packet{}, "want 4 fields"},
	{"host 1 198.18.0.1 22", Packet{}, `field 1 "host" is not an IP address`},
	{"198.18.0.2 1 198.18.0.1 99999", Packet{}, `field 4 "99999" is not a port`},
}

// TestEvaluateInputOnly: routed and outgoing rules are in other chains
// and never decide on an incoming SSH connection.
func TestEvaluateInputOnly(t *testing.T) {
	rs := &Ruleset{Rules: []Rule{
		mustRule(t, RuleSpec{Action: "deny", Ports: "22/tcp", Dir: "out"}),
		mustRule(t, RuleSpec{Action: "reject", Ports: "22/tcp", Dir: "routed"}),
	}}
	p := Packet{Src: netip.MustParseAddr("198.18.0.2"), Dst: netip.MustParseAddr("198.18.0.1"), Proto: portspec.TCP, Port: 22}
	if got := rs.Evaluate(p, time.Now()); got != (Decision{Verdict: "accept"}) {
		t.Errorf("Evaluate(%v) = %+v; want accept by the policy", p, got)
	}
}

func TestParseSSHConnection(t *testing.T) {
	for _, tt := range sshCases {
		got, err := ParseSSHConnection(tt.env)
		if tt.err != "" {
			if err == nil || !strings.Contains(err.Error(), tt.err) {
				t.Errorf("ParseSSHConnection(%q) error = %v; want %q", tt.env, err, tt.err)
			}
			continue
		}
		if err != nil || got != tt.want {
			t.Errorf("ParseSSHConnection(%q) = %v, %v; want %v", tt.env, got, err, tt.want)
		}
	}
}

func FuzzParseSSHConnection(f *testing.F) {
	for _, tt := range sshCases {
		f.Add(tt.env)
	}
	f.Fuzz(func(t *testing.T, s string) {
		p, err := ParseSSHConnection(s)
		if err == nil && (!p.Src.IsValid() || !p.Dst.IsValid() || p.Port == 0) {
			t.Fatalf("ParseSSHConnection(%q) = %v with no error", s, p)
		}
	})
}

func TestCheckSSH(t *testing.T) {
	r := func(s RuleSpec) Rule { return mustRule(t, s) }
	env := "198.18.0.2 51234 198.18.0.1 22"
	now := time.Now()
	tests := []struct {
		name  string
		rs    Ruleset
		lock  bool
		later bool
	}{
		{"accept policy", Ruleset{}, false, false},
		{"drop policy, no allow", Ruleset{Policy: PolicyDrop}, true, false},
		{"drop policy, allow", Ruleset{Policy: PolicyDrop, Rules: []Rule{r(RuleSpec{Action: "allow", Ports: "22/tcp"})}}, false, false},
		{"deny ssh", Ruleset{Rules: []Rule{r(RuleSpec{Action: "deny", Ports: "22/tcp"})}}, true, false},
		{"deny other client", Ruleset{Rules: []Rule{r(RuleSpec{Action: "deny", Ports: "22/tcp", From: "198.18.0.9"})}}, false, false},
		{"reject all from client", Ruleset{Rules: []Rule{r(RuleSpec{Action: "reject", Ports: "any", From: "198.18.0.0/24"})}}, true, false},
		{"allow only for a while", Ruleset{Policy: PolicyDrop, Rules: []Rule{r(RuleSpec{Action: "allow", Ports: "22/tcp", For: "1h"})}}, false, true},
	}
	for _, tt := range tests {
		later, err := CheckSSH(env, &tt.rs, now)
		var le *LockoutError
		if got := errors.As(err, &le); got != tt.lock {
			t.Errorf("%s: CheckSSH = %v; want lockout %v", tt.name, err, tt.lock)
		}
		if (later != "") != tt.later {
			t.Errorf("%s: CheckSSH later = %q; want a warning %v", tt.name, later, tt.later)
		}
	}
	if _, err := CheckSSH("", &Ruleset{Policy: PolicyDrop}, now); err != nil {
		t.Errorf("CheckSSH outside SSH = %v; want nil", err)
	}
	if _, err := CheckSSH("garbage", &Ruleset{}, now); err == nil {
		t.Error("CheckSSH with a bad SSH_CONNECTION: no error")
	}
}

func TestDiff(t *testing.T) {
	r := func(s RuleSpec) Rule { return mustRule(t, s) }
	now := time.Now()
	live := &Table{Exists: true, Ruleset: Ruleset{Rules: []Rule{
		r(RuleSpec{Action: "allow", Ports: "22/tcp", Comment: "ssh"}),
		r(RuleSpec{Action: "deny", Ports: "23/tcp"}),
		r(RuleSpec{Action: "allow", Ports: "80/tcp"}),
	}}}
	assignIDs(&live.Ruleset)
	want := &Ruleset{Policy: PolicyDrop, Rules: []Rule{
		r(RuleSpec{Action: "allow", Ports: "22/tcp", Comment: "ssh"}),
		r(RuleSpec{Action: "allow", Ports: "80/tcp", Comment: "web"}),
		r(RuleSpec{Action: "allow", Ports: "443/tcp"}),
	}}
	p, err := Diff(context.Background(), live, want, now)
	if err != nil {
		t.Fatal(err)
	}
	var ops []string
	for _, c := range p.Changes {
		ops = append(ops, c.Op+" "+c.Rule.String())
	}
	wantOps := []string{"  allow 22/tcp", "- deny 23/tcp", "~ allow 80/tcp", "+ allow 443/tcp"}
	if strings.Join(ops, "|") != strings.Join(wantOps, "|") {
		t.Errorf("Diff ops = %q; want %q", ops, wantOps)
	}
	if p.Empty() || p.PolicyFrom != PolicyAccept || p.PolicyTo != PolicyDrop {
		t.Errorf("Diff: empty %v, policy %v -> %v", p.Empty(), p.PolicyFrom, p.PolicyTo)
	}
	var b strings.Builder
	p.Render(&b)
	wantText := `~ policy drop (was accept)
  tcp dport 22 accept comment "ssh"
- tcp dport 23 drop
~ tcp dport 80 accept comment "web"  # comment "web" (was "")
+ tcp dport 443 accept
`
	if b.String() != wantText {
		t.Errorf("Render:\n%s\nwant:\n%s", b.String(), wantText)
	}
	same, _ := Diff(context.Background(), live, &live.Ruleset, now)
	if !same.Empty() {
		t.Errorf("Diff of the live table with itself is not empty: %+v", same)
	}
}
