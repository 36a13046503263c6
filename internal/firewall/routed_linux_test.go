package firewall

import (
	"context"
	"fmt"
	"net/netip"
	"strings"
	"testing"

	"portolan/internal/netlab"
	"portolan/internal/portspec"
)

// routedLab is a host publishing a container's port, as Docker does:
// cli connects to gw's port 8080, which gw's nat table forwards by DNAT to
// port 80 of ctr, a namespace behind gw. The firewall is gw's.
type routedLab struct {
	cli, gw, ctr *netlab.Host
	front, back  *netlab.Link // cli-gw (gw is A), gw-ctr (gw is A)
	fw           *Firewall
}

func newRoutedLab(t *testing.T) *routedLab {
	t.Helper()
	lab := netlab.NewT(t)
	var hosts [3]*netlab.Host
	for i, name := range []string{"cli", "gw", "ctr"} {
		h, err := lab.AddHost(name)
		if err != nil {
			t.Fatal(err)
		}
		hosts[i] = h
	}
	l := &routedLab{cli: hosts[0], gw: hosts[1], ctr: hosts[2]}
	var err error
	if l.front, err = lab.Link(l.gw, l.cli); err != nil {
		t.Fatal(err)
	}
	if l.back, err = lab.Link(l.gw, l.ctr); err != nil {
		t.Fatal(err)
	}
	for _, kv := range [][2]string{{"net.ipv4.ip_forward", "1"}, {"net.ipv6.conf.all.forwarding", "1"}} {
		if err := l.gw.SetSysctl(kv[0], kv[1]); err != nil {
			t.Fatal(err)
		}
	}
	// ctr answers cli through gw, and cli reaches ctr's network through gw.
	for _, r := range []struct {
		h   *netlab.Host
		dst netip.Prefix
		via netip.Addr
	}{{l.ctr, l.front.Net4, l.back.A4}, {l.ctr, l.front.Net6, l.back.A6}, {l.cli, l.back.Net4, l.front.A4}, {l.cli, l.back.Net6, l.front.A6}} {
		if err := r.h.AddRoute(r.dst, r.via); err != nil {
			t.Fatal(err)
		}
	}
	nat := fmt.Sprintf(`
table ip nat {
	chain prerouting {
		type nat hook prerouting priority dstnat; policy accept;
		tcp dport 8080 dnat to %s:80
	}
}
table ip6 nat {
	chain prerouting {
		type nat hook prerouting priority dstnat; policy accept;
		tcp dport 8080 dnat to [%s]:80
	}
}
`, l.back.B4, l.back.B6)
	cmd := l.gw.Command(context.Background(), "nft", "-f", "-")
	cmd.Stdin = strings.NewReader(nat)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("nft -f (the DNAT rules): %v: %s", err, out)
	}
	serveTCP(t, l.ctr, 80)
	l.fw = &Firewall{NetNS: l.gw.FD()}
	return l
}

// routedCheck is a connection from cli to gw's address (published: DNAT
// to ctr) or straight to ctr's (routed), and what it must give.
type routedCheck struct {
	v6, direct bool
	port       int
	want       outcome
}

func (c routedCheck) String() string {
	fam, to := "v4", "gw (published)"
	if c.v6 {
		fam = "v6"
	}
	if c.direct {
		to = "ctr (routed)"
	}
	return fmt.Sprintf("%d/tcp %s to %s", c.port, fam, to)
}

func (l *routedLab) run(t *testing.T, checks []routedCheck) {
	t.Helper()
	addrs := map[[2]bool]netip.Addr{{false, false}: l.front.A4, {true, false}: l.front.A6, {false, true}: l.back.B4, {true, true}: l.back.B6}
	got := probeAll(len(checks), func(i int) outcome {
		c := checks[i]
		return probe(t, l.cli, portspec.TCP, addrs[[2]bool{c.v6, c.direct}], c.port)
	})
	for i, c := range checks {
		if got[i] != c.want {
			t.Errorf("connect %s: %s; want %s", c, got[i], c.want)
		}
	}
}

// TestRoutedRulesClosePublishedPorts: input rules never see a port
// published by DNAT; a routed rule closes it, by the port the client
// connected to or, translated, by the container's own port.
func TestRoutedRulesClosePublishedPorts(t *testing.T) {
	l := newRoutedLab(t)
	ctx := context.Background()
	both := func(pub, direct outcome) []routedCheck {
		return []routedCheck{{false, false, 8080, pub}, {true, false, 8080, pub}, {false, true, 80, direct}, {true, true, 80, direct}}
	}
	tests := []struct {
		name   string
		rules  []RuleSpec
		checks []routedCheck
	}{
		{"no rules", nil, both(open, open)},
		{"an input rule does not see it", []RuleSpec{{Action: "deny", Ports: "8080/tcp"}}, both(open, open)},
		{"deny routed by the published port", []RuleSpec{{Action: "deny", Ports: "8080/tcp", Dir: "routed"}}, both(dropped, open)},
		{"reject routed", []RuleSpec{{Action: "reject", Ports: "8080/tcp", Dir: "routed"}}, both(refused, open)},
		{"the container's port is not the published one", []RuleSpec{{Action: "deny", Ports: "80/tcp", Dir: "routed"}}, both(open, dropped)},
		{"translated: the container's port", []RuleSpec{{Action: "deny", Ports: "80/tcp", Dir: "routed", Translated: "true"}}, both(dropped, dropped)},
		{"allow from a source, deny the rest", []RuleSpec{
			{Action: "allow", Ports: "8080/tcp", Dir: "routed", From: "198.18.0.0/15,fd00::/8"},
			{Action: "deny", Ports: "8080/tcp", Dir: "routed"},
		}, both(open, open)},
		{"deny any routed, with input and output rules around", []RuleSpec{
			{Action: "allow", Ports: "22/tcp"},
			{Action: "deny", Dir: "routed"},
			{Action: "deny", Ports: "25/tcp", Dir: "out"},
		}, both(dropped, dropped)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rs := &Ruleset{}
			for _, s := range tt.rules {
				rs.Rules = append(rs.Rules, mustRule(t, s))
			}
			if err := l.fw.Apply(ctx, rs); err != nil {
				t.Fatal(err)
			}
			tab, err := l.fw.Read(ctx)
			if err != nil {
				t.Fatal(err)
			}
			want := rs.Clone()
			want.Grouped()
			if !tab.Ruleset.Equal(want) || tab.Unmanaged != 0 {
				t.Fatalf("read back %v (%d unmanaged); want %v", tab.Ruleset.Rules, tab.Unmanaged, want.Rules)
			}
			sameAsNFT(t, l.gw, &tab.Ruleset)
			l.run(t, tt.checks)
		})
	}

	t.Run("limit routed", func(t *testing.T) {
		rs := &Ruleset{Rules: []Rule{mustRule(t, RuleSpec{Action: "limit", Ports: "8080/tcp", Dir: "routed", Rate: "3/minute"})}}
		if err := l.fw.Apply(ctx, rs); err != nil {
			t.Fatal(err)
		}
		for i := range 3 {
			if got := probe(t, l.cli, portspec.TCP, l.front.A4, 8080); got != open {
				t.Fatalf("connection %d: %s; want open", i+1, got)
			}
		}
		if got := probe(t, l.cli, portspec.TCP, l.front.A4, 8080); got != dropped {
			t.Errorf("4th connection in a minute: %s; want dropped", got)
		}
		if got := probe(t, l.cli, portspec.TCP, l.front.A6, 8080); got != open {
			t.Errorf("first IPv6 connection: %s; want open (a bucket of its own)", got)
		}
	})

	t.Run("chains come and go with their rules", func(t *testing.T) {
		if err := l.fw.Apply(ctx, &Ruleset{Rules: []Rule{mustRule(t, RuleSpec{Action: "allow", Ports: "22/tcp"})}}); err != nil {
			t.Fatal(err)
		}
		out := nft(t, l.gw, "list", "table", "inet", TableName)
		if strings.Contains(out, "chain forward") || strings.Contains(out, "chain output") {
			t.Errorf("without routed or outgoing rules the table still has their chains:\n%s", out)
		}
		l.run(t, both(open, open))
	})
}

// TestOutRules: outgoing rules filter what the host itself opens, leave
// incoming connections and their replies alone, and never stop IPv6
// neighbour discovery.
func TestOutRules(t *testing.T) {
	l := newLab(t)
	ctx := context.Background()
	for _, p := range []int{25, 80} {
		serveTCP(t, l.cli, p)
		serveTCP(t, l.srv, p)
	}
	rs := &Ruleset{Rules: []Rule{
		mustRule(t, RuleSpec{Action: "reject", Ports: "25/tcp", Dir: "out"}),
		mustRule(t, RuleSpec{Action: "deny", Ports: "80/tcp", Dir: "out", To: l.link.B6.String()}),
	}}
	if err := l.fw.Apply(ctx, rs); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		from, to *netlab.Host
		addr     netip.Addr
		port     int
		want     outcome
	}{
		{l.srv, l.cli, l.link.B4, 25, refused},
		{l.srv, l.cli, l.link.B6, 25, refused},
		{l.srv, l.cli, l.link.B4, 80, open},
		{l.srv, l.cli, l.link.B6, 80, dropped},
		{l.cli, l.srv, l.link.A4, 25, open}, // incoming: the replies are not new connections
		{l.cli, l.srv, l.link.A6, 80, open},
	} {
		if got := probe(t, c.from, portspec.TCP, c.addr, c.port); got != c.want {
			t.Errorf("%s to %s port %d: %s; want %s", c.from.Name(), c.addr, c.port, got, c.want)
		}
	}
	for _, h := range []*netlab.Host{l.srv, l.cli} {
		if out, err := h.Command(ctx, "ip", "neigh", "flush", "all").CombinedOutput(); err != nil {
			t.Fatalf("ip neigh flush: %v: %s", err, out)
		}
	}

	t.Run("deny all outgoing on the interface keeps IPv6 up", func(t *testing.T) {
		rs := &Ruleset{Rules: []Rule{mustRule(t, RuleSpec{Action: "deny", Dir: "out", Iface: l.link.ADev})}}
		if err := l.fw.Apply(ctx, rs); err != nil {
			t.Fatal(err)
		}
		for _, h := range []*netlab.Host{l.srv, l.cli} {
			if out, err := h.Command(ctx, "ip", "neigh", "flush", "all").CombinedOutput(); err != nil {
				t.Fatalf("ip neigh flush: %v: %s", err, out)
			}
		}
		for _, a := range []netip.Addr{l.link.A4, l.link.A6} {
			if got := probe(t, l.cli, portspec.TCP, a, 80); got != open {
				t.Errorf("incoming to %s port 80 with all outgoing denied: %s; want open", a, got)
			}
		}
		if got := probe(t, l.srv, portspec.TCP, l.link.B6, 80); got != dropped {
			t.Errorf("outgoing to %s port 80: %s; want dropped", l.link.B6, got)
		}
		tab, err := l.fw.Read(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if !tab.Ruleset.Equal(rs) {
			t.Errorf("read back %v; want %v", tab.Ruleset.Rules, rs.Rules)
		}
		lines := nft(t, l.srv, "list", "chain", "inet", TableName, "output")
		if !strings.Contains(lines, `oifname "`+l.link.ADev+`" drop`) || !strings.Contains(lines, `oif "lo" accept`) {
			t.Errorf("output chain:\n%s", lines)
		}
	})
}
