package firewall

import (
	"context"
	"net"
	"net/netip"
	"strconv"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"portolan/internal/netlab"
	"portolan/internal/portspec"
	"portolan/internal/testenv"
)

// flushNeighbours empties h's neighbour and ARP caches, so the next packet
// to the peer needs address resolution (neighbour discovery for IPv6).
func flushNeighbours(t *testing.T, h *netlab.Host) {
	t.Helper()
	testenv.RequireCommand(t, "ip")
	for _, fam := range []string{"-4", "-6"} {
		if out, err := h.Command(context.Background(), "ip", fam, "neigh", "flush", "all").CombinedOutput(); err != nil {
			t.Fatalf("ip %s neigh flush all on %s: %v: %s", fam, h.Name(), err, out)
		}
	}
}

// dialOut connects from h to addr:port and reports whether it connected
// within dropWait.
func dialOut(h *netlab.Host, addr netip.Addr, port int) error {
	ctx, cancel := context.WithTimeout(context.Background(), dropWait+2*time.Second)
	defer cancel()
	c, err := h.DialContext(ctx, "tcp", net.JoinHostPort(addr.String(), strconv.Itoa(port)))
	if err != nil {
		return err
	}
	return c.Close()
}

// TestIPv6NeighbourDiscoveryBeforeRules applies rules that match every
// protocol (so ICMPv6 too) and checks, with empty neighbour caches on both
// sides, that IPv6 still works: the host reaches its peer (its neighbour
// solicitations are answered by advertisements the rule would drop) and
// the peer reaches the ports the rules leave open.
func TestIPv6NeighbourDiscoveryBeforeRules(t *testing.T) {
	l := newLab(t)
	ctx := context.Background()
	serveTCP(t, l.srv, 22)
	serveTCP(t, l.cli, 8443)
	tests := []struct {
		name     string
		rs       Ruleset
		cliToSrv outcome // 22/tcp from the peer, both families
	}{
		{"deny any on the interface", Ruleset{Rules: []Rule{
			mustRule(t, RuleSpec{Action: "deny", Iface: l.link.ADev}),
		}}, dropped},
		{"deny any from the peer's prefix", Ruleset{Rules: []Rule{
			mustRule(t, RuleSpec{Action: "deny", From: l.link.Net6.String() + "," + l.link.Net4.String()}),
		}}, dropped},
		{"reject any from the peer's prefix", Ruleset{Rules: []Rule{
			mustRule(t, RuleSpec{Action: "reject", From: l.link.Net6.String() + "," + l.link.Net4.String()}),
		}}, refused},
		{"allow ssh then deny any", Ruleset{Rules: []Rule{
			mustRule(t, RuleSpec{Action: "allow", Ports: "22/tcp"}),
			mustRule(t, RuleSpec{Action: "deny", Iface: l.link.ADev}),
		}}, open},
		{"policy drop, allow ssh from the peer", Ruleset{Policy: PolicyDrop, Rules: []Rule{
			mustRule(t, RuleSpec{Action: "deny", Ports: "23"}),
			mustRule(t, RuleSpec{Action: "limit", Ports: "22/tcp", From: l.link.Net6.String() + "," + l.link.Net4.String()}),
			mustRule(t, RuleSpec{Action: "log", Group: "5"}),
			mustRule(t, RuleSpec{Action: "deny", Iface: l.link.ADev}),
		}}, open},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if err := l.fw.Apply(ctx, &tt.rs); err != nil {
				t.Fatalf("Apply: %v", err)
			}
			flushNeighbours(t, l.srv)
			flushNeighbours(t, l.cli)
			for _, a := range []netip.Addr{l.link.B4, l.link.B6} {
				if err := dialOut(l.srv, a, 8443); err != nil {
					t.Errorf("host's own connection to %s: %v; want connected", a, err)
				}
			}
			l.runChecks(t, []check{{portspec.TCP, false, 22, tt.cliToSrv}, {portspec.TCP, true, 22, tt.cliToSrv}})
		})
	}
}

// sendRA sends one router advertisement from h out of dev to all nodes
// (ff02::1, which never leaves the link), with hop limit 255 as RFC 4861
// requires, announcing prefix as on-link. Router lifetime 0: the sender is
// no default router.
func sendRA(h *netlab.Host, dev string, prefix netip.Prefix) error {
	ra := []byte{134, 0, 0, 0, 64, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0}                          // type, code, checksum (the kernel's), cur hop limit, flags, lifetime, reachable, retrans
	pio := []byte{3, 4, byte(prefix.Bits()), 0x80, 0, 0, 1, 0x2c, 0, 0, 1, 0x2c, 0, 0, 0, 0} // prefix information: on-link, lifetimes 300s
	p := prefix.Addr().As16()
	ra = append(append(ra, pio...), p[:]...)
	return h.Do(func() error {
		ifi, err := net.InterfaceByName(dev)
		if err != nil {
			return err
		}
		fd, err := unix.Socket(unix.AF_INET6, unix.SOCK_RAW|unix.SOCK_CLOEXEC, unix.IPPROTO_ICMPV6)
		if err != nil {
			return err
		}
		defer unix.Close(fd)
		if err := unix.SetsockoptInt(fd, unix.IPPROTO_IPV6, unix.IPV6_MULTICAST_HOPS, 255); err != nil {
			return err
		}
		if err := unix.SetsockoptInt(fd, unix.IPPROTO_IPV6, unix.IPV6_MULTICAST_IF, ifi.Index); err != nil {
			return err
		}
		to := &unix.SockaddrInet6{ZoneId: uint32(ifi.Index), Addr: netip.MustParseAddr("ff02::1").As16()}
		return unix.Sendto(fd, ra, 0, to)
	})
}

// TestIPv6RouterAdvertisementBeforeRules sends real router advertisements
// to a host whose only rule drops everything on the interface: the host
// still learns the announced prefix, as it would from its router.
func TestIPv6RouterAdvertisementBeforeRules(t *testing.T) {
	l := newLab(t)
	ctx := context.Background()
	if err := l.srv.SetSysctl("net.ipv6.conf."+l.link.ADev+".accept_ra", "1"); err != nil {
		t.Fatal(err)
	}
	rs := Ruleset{Rules: []Rule{mustRule(t, RuleSpec{Action: "deny", Iface: l.link.ADev})}}
	if err := l.fw.Apply(ctx, &rs); err != nil {
		t.Fatal(err)
	}
	testenv.RequireCommand(t, "ip")
	prefix := netip.MustParsePrefix("fd00:99::/64")
	// The sender's link-local address may still be tentative (the kernel
	// then sends from another address, and the host must ignore that):
	// send until the prefix shows up, for at most 10 seconds.
	deadline := time.Now().Add(10 * time.Second)
	for {
		if err := sendRA(l.cli, l.link.BDev, prefix); err != nil {
			t.Fatalf("send router advertisement: %v", err)
		}
		time.Sleep(200 * time.Millisecond)
		out, err := l.srv.Command(ctx, "ip", "-6", "route", "show", prefix.String()).CombinedOutput()
		if err != nil {
			t.Fatalf("ip -6 route show: %v: %s", err, out)
		}
		if len(out) > 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("no route to %s from router advertisements after 10s behind %q", prefix, rs.Rules[0].String())
		}
	}
}
