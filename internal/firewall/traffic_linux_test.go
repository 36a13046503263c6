package firewall

import (
	"context"
	"fmt"
	"net/netip"
	"testing"
	"time"

	"github.com/google/nftables"
	"github.com/google/nftables/expr"

	"portolan/internal/portspec"
	"portolan/internal/registry"
)

// check is one connection attempt and what it must give.
type check struct {
	proto portspec.Proto
	v6    bool
	port  int
	want  outcome
}

func (c check) String() string {
	fam := "v4"
	if c.v6 {
		fam = "v6"
	}
	return fmt.Sprintf("%d/%v %s", c.port, c.proto, fam)
}

// runChecks probes every check from cli to srv, in parallel since the
// dropped ones each wait dropWait.
func (l *lab) runChecks(t *testing.T, checks []check) {
	t.Helper()
	got := probeAll(len(checks), func(i int) outcome {
		c := checks[i]
		addr := l.link.A4
		if c.v6 {
			addr = l.link.A6
		}
		return probe(t, l.cli, c.proto, addr, c.port)
	})
	for i, c := range checks {
		if got[i] != c.want {
			t.Errorf("connect %s: %s; want %s", c, got[i], c.want)
		}
	}
}

// probeAll runs n probes at once and returns their outcomes in order.
func probeAll(n int, probe func(i int) outcome) []outcome {
	got := make([]outcome, n)
	done := make(chan struct{})
	for i := range n {
		go func() {
			got[i] = probe(i)
			done <- struct{}{}
		}()
	}
	for range n {
		<-done
	}
	return got
}

func TestTrafficFollowsRules(t *testing.T) {
	l := newLab(t)
	ctx := context.Background()
	for _, p := range []int{22, 23, 80, 111, 443, 8080} {
		serveTCP(t, l.srv, p)
		serveUDP(t, l.srv, p)
	}
	r := func(s RuleSpec) Rule {
		t.Helper()
		rule, err := s.Rule(registry.Default(), time.Now())
		if err != nil {
			t.Fatal(err)
		}
		return rule
	}
	tests := []struct {
		name   string
		rs     Ruleset
		checks []check
	}{
		{"no table", Ruleset{}, []check{
			{portspec.TCP, false, 22, open}, {portspec.UDP, false, 22, open}, {portspec.TCP, true, 23, open},
		}},
		{"deny and reject", Ruleset{Rules: []Rule{
			r(RuleSpec{Action: "deny", Ports: "23/tcp"}),
			r(RuleSpec{Action: "reject", Ports: "111"}),
			r(RuleSpec{Action: "reject", Ports: "80/tcp"}),
		}}, []check{
			{portspec.TCP, false, 22, open},
			{portspec.TCP, false, 23, dropped}, {portspec.TCP, true, 23, dropped},
			{portspec.UDP, false, 23, open},
			{portspec.TCP, false, 111, refused}, {portspec.UDP, false, 111, refused}, {portspec.UDP, true, 111, refused},
			{portspec.TCP, false, 80, refused}, {portspec.TCP, true, 80, refused},
		}},
		{"policy drop with allows", Ruleset{Policy: PolicyDrop, Rules: []Rule{
			r(RuleSpec{Action: "allow", Ports: "22/tcp"}),
			r(RuleSpec{Action: "allow", Ports: "https", From: "198.18.0.0/15"}),
			r(RuleSpec{Action: "allow", Ports: "80/udp", From: "fd00::/8"}),
		}}, []check{
			{portspec.TCP, false, 22, open}, {portspec.TCP, true, 22, open},
			{portspec.UDP, false, 22, dropped},
			{portspec.TCP, false, 443, open}, {portspec.UDP, false, 443, dropped}, // https: TCP only
			{portspec.TCP, true, 443, dropped},
			{portspec.UDP, true, 80, open}, {portspec.UDP, false, 80, dropped},
			{portspec.TCP, false, 8080, dropped},
		}},
		{"policy reject", Ruleset{Policy: PolicyReject, Rules: []Rule{
			r(RuleSpec{Action: "allow", Ports: "22/tcp"}),
		}}, []check{
			{portspec.TCP, false, 22, open}, {portspec.TCP, false, 8080, refused}, {portspec.UDP, true, 8080, refused},
		}},
		{"first match wins", Ruleset{Policy: PolicyDrop, Rules: []Rule{
			r(RuleSpec{Action: "deny", Ports: "8080/tcp", From: "198.18.0.2"}),
			r(RuleSpec{Action: "allow", Ports: "8080/tcp"}),
		}}, []check{
			{portspec.TCP, false, 8080, dropped}, {portspec.TCP, true, 8080, open},
		}},
		{"interface", Ruleset{Policy: PolicyDrop, Rules: []Rule{
			r(RuleSpec{Action: "allow", Ports: "22/tcp", Iface: l.link.ADev}),
			r(RuleSpec{Action: "allow", Ports: "23/tcp", Iface: "nosuch*"}),
			r(RuleSpec{Action: "allow", Ports: "80/tcp", Iface: "eth*"}),
		}}, []check{
			{portspec.TCP, false, 22, open}, {portspec.TCP, false, 23, dropped}, {portspec.TCP, false, 80, open},
		}},
		{"to", Ruleset{Policy: PolicyDrop, Rules: []Rule{
			r(RuleSpec{Action: "allow", Ports: "22/tcp", To: l.link.A6.String()}),
		}}, []check{
			{portspec.TCP, false, 22, dropped}, {portspec.TCP, true, 22, open},
		}},
		{"log goes on", Ruleset{Policy: PolicyDrop, Rules: []Rule{
			r(RuleSpec{Action: "log", Ports: "22/tcp", Group: "7"}),
			r(RuleSpec{Action: "allow", Ports: "22/tcp"}),
		}}, []check{
			{portspec.TCP, false, 22, open}, {portspec.TCP, false, 23, dropped},
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if tt.name == "no table" {
				if err := l.fw.Reset(ctx); err != nil {
					t.Fatal(err)
				}
			} else if err := l.fw.Apply(ctx, &tt.rs); err != nil {
				t.Fatalf("Apply: %v", err)
			}
			l.runChecks(t, tt.checks)
		})
	}
}

func TestEstablishedConnectionsSurvive(t *testing.T) {
	l := newLab(t)
	ctx := context.Background()
	// Conntrack starts tracking in a namespace when the first rule needs
	// it; a connection opened before that counts as new when first seen.
	// Here portolan's table exists before the connection, as it does on a
	// machine it already guards.
	if err := l.fw.Apply(ctx, &Ruleset{}); err != nil {
		t.Fatal(err)
	}
	ln, err := l.srv.Listen("tcp4", ":22")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	c, err := l.cli.DialContext(ctx, "tcp", netip.AddrPortFrom(l.link.A4, 22).String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	sc, err := ln.Accept()
	if err != nil {
		t.Fatal(err)
	}
	defer sc.Close()
	rs := Ruleset{Policy: PolicyDrop, Rules: []Rule{mustRule(t, RuleSpec{Action: "deny", Ports: "22/tcp"})}}
	if err := l.fw.Apply(ctx, &rs); err != nil {
		t.Fatal(err)
	}
	// The open connection still carries data both ways.
	if _, err := c.Write([]byte("x")); err != nil {
		t.Fatal(err)
	}
	sc.SetReadDeadline(time.Now().Add(10 * time.Second))
	buf := make([]byte, 1)
	if _, err := sc.Read(buf); err != nil {
		t.Fatalf("read on the open connection after deny: %v", err)
	}
	// A new one is dropped.
	if got := probe(t, l.cli, portspec.TCP, l.link.A4, 22); got != dropped {
		t.Errorf("new connection after deny: %s; want dropped", got)
	}
}

func TestExpiryHappens(t *testing.T) {
	l := newLab(t)
	ctx := context.Background()
	serveTCP(t, l.srv, 8080)
	rs := Ruleset{Policy: PolicyDrop, Rules: []Rule{mustRule(t, RuleSpec{Action: "allow", Ports: "8080/tcp", For: "2s"})}}
	if err := l.fw.Apply(ctx, &rs); err != nil {
		t.Fatal(err)
	}
	if got := probe(t, l.cli, portspec.TCP, l.link.A4, 8080); got != open {
		t.Fatalf("before expiry: %s; want open", got)
	}
	// Wait for the kernel, not for a clock: until the set is empty.
	deadline := time.Now().Add(60 * time.Second)
	for {
		tab, err := l.fw.Read(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if len(tab.Ruleset.Rules) != 1 {
			t.Fatalf("Read: %d rules; want the expired one still listed", len(tab.Ruleset.Rules))
		}
		if tab.Ruleset.Rules[0].Expired(time.Now()) && setEmpty(t, l, expireSetName(tab.Ruleset.Rules[0].id)) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the expiry set still has elements after 60s")
		}
		time.Sleep(100 * time.Millisecond)
	}
	if got := probe(t, l.cli, portspec.TCP, l.link.A4, 8080); got != dropped {
		t.Errorf("after expiry: %s; want dropped", got)
	}
	// The next change removes the expired rule.
	tab, _ := l.fw.Read(ctx)
	if err := l.fw.Apply(ctx, &tab.Ruleset); err != nil {
		t.Fatal(err)
	}
	if tab, _ = l.fw.Read(ctx); len(tab.Ruleset.Rules) != 0 {
		t.Errorf("after the next Apply: %v; want no rules", tab.Ruleset.Rules)
	}
}

func setEmpty(t *testing.T, l *lab, name string) bool {
	t.Helper()
	c, err := nftables.New(nftables.WithNetNSFd(l.srv.FD()))
	if err != nil {
		t.Fatal(err)
	}
	s, err := c.GetSetByName(&nftables.Table{Name: TableName, Family: nftables.TableFamilyINet}, name)
	if err != nil {
		t.Fatal(err)
	}
	es, err := c.GetSetElements(s)
	if err != nil {
		t.Fatal(err)
	}
	return len(es) == 0
}

func TestLimitDropsFastSource(t *testing.T) {
	l := newLab(t)
	ctx := context.Background()
	serveTCP(t, l.srv, 22)
	// 3 new connections per minute: the fourth in a row is dropped.
	rs := Ruleset{Policy: PolicyDrop, Rules: []Rule{mustRule(t, RuleSpec{Action: "limit", Ports: "22/tcp", Rate: "3/minute"})}}
	if err := l.fw.Apply(ctx, &rs); err != nil {
		t.Fatal(err)
	}
	for i := range 3 {
		if got := probe(t, l.cli, portspec.TCP, l.link.A4, 22); got != open {
			t.Fatalf("connection %d: %s; want open", i+1, got)
		}
	}
	if got := probe(t, l.cli, portspec.TCP, l.link.A4, 22); got != dropped {
		t.Errorf("connection 4 within the minute: %s; want dropped", got)
	}
	// The other family has its own meter, and so its own bucket.
	if got := probe(t, l.cli, portspec.TCP, l.link.A6, 22); got != open {
		t.Errorf("first IPv6 connection: %s; want open", got)
	}
	// Applying the same ruleset again keeps the meter: still limited.
	if err := l.fw.Apply(ctx, &rs); err != nil {
		t.Fatal(err)
	}
	if got := probe(t, l.cli, portspec.TCP, l.link.A4, 22); got != dropped {
		t.Errorf("after re-applying: %s; want still dropped", got)
	}
}

// TestBadRuleChangesNothing sends a batch with one rule the kernel refuses
// (a lookup in a set that does not exist): nothing of the batch stays, not
// even a table that did not exist before.
func TestBadRuleChangesNothing(t *testing.T) {
	l := newLab(t)
	ctx := context.Background()
	bad := func(c *nftables.Conn, tab *nftables.Table, ch *nftables.Chain) {
		c.AddRule(&nftables.Rule{Table: tab, Chain: ch, Exprs: []expr.Any{
			&expr.Meta{Key: expr.MetaKeyNFPROTO, Register: 1},
			&expr.Lookup{SourceRegister: 1, SetName: "no_such_set"},
			&expr.Verdict{Kind: expr.VerdictAccept},
		}})
	}
	good := Ruleset{Rules: []Rule{mustRule(t, RuleSpec{Action: "allow", Ports: "22/tcp"})}}
	other := Ruleset{Policy: PolicyDrop, Rules: []Rule{mustRule(t, RuleSpec{Action: "deny", Ports: "23/tcp"})}}

	before := rulesetJSON(t, l.srv)
	l.fw.beforeFlush = bad
	if err := l.fw.Apply(ctx, &other); err == nil {
		t.Fatal("Apply with a bad rule into an empty namespace: no error")
	}
	if after := rulesetJSON(t, l.srv); after != before {
		t.Errorf("a refused batch left something behind:\n%s", after)
	}

	l.fw.beforeFlush = nil
	if err := l.fw.Apply(ctx, &good); err != nil {
		t.Fatal(err)
	}
	before = rulesetJSON(t, l.srv)
	l.fw.beforeFlush = bad
	if err := l.fw.Apply(ctx, &other); err == nil {
		t.Fatal("Apply with a bad rule: no error")
	}
	if after := rulesetJSON(t, l.srv); after != before {
		t.Errorf("a refused batch changed the table:\nbefore %s\nafter %s", before, after)
	}
}
