package watch

import (
	"context"
	"net/netip"
	"os/exec"
	"strings"
	"testing"
	"time"

	"portolan/internal/firewall"
	"portolan/internal/netlab"
)

// dialOK reports whether cli can connect to addr within a short wait.
func dialOK(t *testing.T, cli *netlab.Host, addr string) bool {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	c, err := cli.DialContext(ctx, "tcp", addr)
	if err != nil {
		return false
	}
	c.Close()
	return true
}

// serve accepts and closes connections on srv's addr until the test ends.
func serve(t *testing.T, srv *netlab.Host, addr string) {
	t.Helper()
	ln, err := srv.Listen("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			c.Close()
		}
	}()
}

// TestCaptureBanTimesOut: a banned client cannot connect, the kernel
// counts its dropped packets, and the kernel lifts the ban when it times
// out. The chains sit beside the firewall's in portolan's table; Remove
// takes them out.
func TestCaptureBanTimesOut(t *testing.T) {
	cli, srv, _ := netlab.NewPair(t)
	serve(t, srv, "198.18.0.2:8080")
	c := &Capture{NetNS: srv.FD()}
	ctx := context.Background()
	if err := c.Install(ctx); err != nil {
		t.Fatal(err)
	}
	if err := c.Install(ctx); err != nil { // again: replaces its rules
		t.Fatalf("second Install: %v", err)
	}
	if !dialOK(t, cli, "198.18.0.2:8080") {
		t.Fatal("no connection before any ban")
	}
	if err := c.Ban(ctx, netip.MustParsePrefix("198.18.0.1/32"), 1500*time.Millisecond); err != nil {
		t.Fatal(err)
	}
	if dialOK(t, cli, "198.18.0.2:8080") {
		t.Fatal("banned client connected")
	}
	bans, err := c.Banned(ctx)
	if err != nil || bans[netip.MustParsePrefix("198.18.0.1/32")] <= 0 {
		t.Errorf("Banned() = %v, %v; want 198.18.0.1/32 with time left", bans, err)
	}
	cs, err := c.Counters(ctx)
	if err != nil || cs.BannedPackets == 0 {
		t.Errorf("Counters() = %+v, %v; want banned packets counted", cs, err)
	}
	if p, err := exec.LookPath("nft"); err == nil {
		out, _ := srv.Command(ctx, p, "list", "chain", "inet", "portolan", "watch").CombinedOutput()
		if !strings.Contains(string(out), "@watch_ban4") {
			t.Errorf("nft list chain inet portolan watch:\n%s\nwant the ban rule", out)
		}
	}
	deadline := time.Now().Add(5 * time.Second)
	for !dialOK(t, cli, "198.18.0.2:8080") {
		if time.Now().After(deadline) {
			t.Fatal("still banned 5 s after a 1.5 s ban")
		}
		time.Sleep(100 * time.Millisecond)
	}
	// A ban again, then Remove lifts it.
	if err := c.Ban(ctx, netip.MustParsePrefix("198.18.0.1/32"), time.Hour); err != nil {
		t.Fatal(err)
	}
	if err := c.Remove(ctx); err != nil {
		t.Fatal(err)
	}
	if !dialOK(t, cli, "198.18.0.2:8080") {
		t.Fatal("no connection after Remove")
	}
	if err := c.Remove(ctx); err != nil {
		t.Fatalf("second Remove: %v", err)
	}
}

// TestCaptureBanIPv6Prefix: a ban of a /64 holds every address in it.
func TestCaptureBanIPv6Prefix(t *testing.T) {
	cli, srv, _ := netlab.NewPair(t) // cli is fd00::1
	serve(t, srv, "[fd00::2]:8080")
	c := &Capture{NetNS: srv.FD()}
	ctx := context.Background()
	if err := c.Install(ctx); err != nil {
		t.Fatal(err)
	}
	if err := c.Ban(ctx, Thresholds{}.SourcePrefix(netip.MustParseAddr("fd00::1")), time.Minute); err != nil {
		t.Fatal(err)
	}
	if dialOK(t, cli, "[fd00::2]:8080") {
		t.Fatal("client in the banned /64 connected")
	}
	if err := c.Ban(ctx, netip.MustParsePrefix("fd00::1/128"), time.Minute); err == nil {
		t.Error("Ban of a /128 with 64-bit bans: no error")
	}
}

// TestCaptureBesideFirewall: the firewall's apply and the watcher's
// install leave each other's chains and sets alone, in either order.
func TestCaptureBesideFirewall(t *testing.T) {
	cli, srv, _ := netlab.NewPair(t)
	serve(t, srv, "198.18.0.2:8080")
	serve(t, srv, "198.18.0.2:8081")
	ctx := context.Background()
	c := &Capture{NetNS: srv.FD()}
	fw := &firewall.Firewall{NetNS: srv.FD()}
	allow, err := firewall.RuleSpec{Action: "allow", Ports: "8080/tcp"}.Rule(nil, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	rs := &firewall.Ruleset{Policy: firewall.PolicyDrop, Rules: []firewall.Rule{allow}}
	if err := c.Install(ctx); err != nil {
		t.Fatal(err)
	}
	if err := fw.Apply(ctx, rs); err != nil {
		t.Fatal(err)
	}
	if err := c.Ban(ctx, netip.MustParsePrefix("198.18.0.1/32"), time.Minute); err != nil {
		t.Fatal(err)
	}
	if dialOK(t, cli, "198.18.0.2:8080") {
		t.Fatal("banned client connected through the firewall's allow")
	}
	if err := c.Remove(ctx); err != nil {
		t.Fatal(err)
	}
	if !dialOK(t, cli, "198.18.0.2:8080") || dialOK(t, cli, "198.18.0.2:8081") {
		t.Fatal("after Remove the firewall's rules do not hold: want 8080 open, 8081 dropped")
	}
	tab, err := fw.Read(ctx)
	if err != nil || tab.Unmanaged != 0 || len(tab.Ruleset.Rules) != 1 {
		t.Fatalf("firewall Read = %+v, %v; want its one rule, nothing unmanaged", tab, err)
	}
	// Install again after the firewall wrote the table; apply again.
	if err := c.Install(ctx); err != nil {
		t.Fatal(err)
	}
	if err := fw.Apply(ctx, rs); err != nil {
		t.Fatal(err)
	}
	if err := c.Ban(ctx, netip.MustParsePrefix("198.18.0.1/32"), time.Minute); err != nil {
		t.Fatal(err)
	}
	if dialOK(t, cli, "198.18.0.2:8080") {
		t.Fatal("ban lost after the firewall applied again")
	}
}
