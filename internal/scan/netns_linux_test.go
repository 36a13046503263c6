package scan

import (
	"context"
	"fmt"
	"net/netip"
	"testing"

	"portolan/internal/netlab"
	"portolan/internal/portspec"
)

// TestNetnsStates scans from one namespace into another over a veth link:
// a live host with open, closed and dropped ports, a host that does not
// exist (its frames go to a MAC nobody has), and destinations the
// scanner's own routing table refuses. Every state and reason comes from
// the real kernel.
func TestNetnsStates(t *testing.T) {
	scanner, target, lk := netlab.NewPair(t)
	for _, fam := range []string{"ip4", "ip6"} {
		t.Run(fam, func(t *testing.T) {
			live, silent := lk.B4, netip.MustParseAddr("198.18.0.99")
			unreach, prohibit, blackhole := "198.18.50.0/24", "198.18.51.0/24", "198.18.52.0/24"
			if fam == "ip6" {
				live, silent = lk.B6, netip.MustParseAddr("fd00::99")
				unreach, prohibit, blackhole = "fd00:50::/64", "fd00:51::/64", "fd00:52::/64"
			}
			ip(t, "-n", scanner.Netns(), "neigh", "replace", silent.String(), "lladdr", "02:00:00:00:00:99",
				"dev", lk.ADev, "nud", "permanent")
			for _, r := range [][2]string{{"unreachable", unreach}, {"prohibit", prohibit}, {"blackhole", blackhole}} {
				ip(t, "-n", scanner.Netns(), "route", "replace", r[0], r[1])
			}
			var open, closed, dropped portspec.Port
			if err := target.Do(func() error {
				open, closed, dropped = openPort(t, live), closedPort(t, live), droppedQueue(t, live)
				return nil
			}); err != nil {
				t.Fatal(err)
			}
			// Fill the dropped port's accept queue from the scanner's side.
			c, err := scanner.DialContext(context.Background(), "tcp", netip.AddrPortFrom(live, uint16(dropped)).String())
			if err != nil {
				t.Fatalf("fill accept queue: %v", err)
			}
			defer c.Close()

			first := func(p netip.Prefix) netip.Addr { return p.Addr().Next() }
			ep := func(a netip.Addr, p portspec.Port) netip.AddrPort { return netip.AddrPortFrom(a, uint16(p)) }
			sp := listSpace{ep(live, open), ep(live, closed), ep(live, dropped),
				ep(first(netip.MustParsePrefix(unreach)), 80),
				ep(first(netip.MustParsePrefix(prohibit)), 80),
				ep(first(netip.MustParsePrefix(blackhole)), 80)}
			const silentPorts = 60
			for p := range silentPorts {
				sp = append(sp, ep(silent, portspec.Port(1000+p)))
			}
			var got map[portKey]Result
			var sum Summary
			if err := scanner.Do(func() error {
				got, sum = collect(t, Scanner{}, sp)
				return nil
			}); err != nil {
				t.Fatal(err)
			}

			want := map[netip.AddrPort]wantState{
				sp[0]: {Open, ReasonSynAck},
				sp[1]: {Closed, ReasonConnRefused},
				sp[2]: {Filtered, ReasonNoResponse},
				sp[3]: {Filtered, ReasonHostUnreach},
				sp[4]: {Filtered, ReasonAdminProhibited},
				sp[5]: {Filtered, ReasonNetUnreach},
			}
			for e, w := range want {
				r := got[portKey{e.Addr(), portspec.Port(e.Port())}]
				if stateOf(r) != w {
					t.Errorf("%s = %v (%s); want %v (%s)", e, r.State, r.Reason, w.state, w.reason)
				}
			}
			// The silent host is given up on early: every port filtered, most
			// without a probe.
			reasons := map[string]int{}
			for _, e := range sp[6:] {
				r := got[portKey{e.Addr(), portspec.Port(e.Port())}]
				if r.State != Filtered {
					t.Errorf("%s = %v; want filtered", e, r.State)
				}
				reasons[r.Reason]++
			}
			if sum.HostsDown != 1 || reasons[ReasonHostTimeout] < silentPorts/2 {
				t.Errorf("silent host: %d hosts down, reasons %v; want 1 down and most ports %s", sum.HostsDown, reasons, ReasonHostTimeout)
			}
			if max := uint64(len(sp)) * (1 + DefaultRetries); sum.Sent >= max/2 {
				t.Errorf("sent %d probes for %d ports; want far fewer than the %d a wait-it-out would take", sum.Sent, len(sp), max)
			}
			if len(got) != len(sp) {
				t.Errorf("%d results for %d ports", len(got), len(sp))
			}
			if t.Failed() {
				t.Logf("summary %+v", sum)
				for e, r := range got {
					t.Log(e, fmt.Sprint(r.State), r.Reason)
				}
			}
		})
	}
}

// droppedQueue is droppedPort without the filling connection, for a
// listener in a namespace the test fills from another.
func droppedQueue(t testing.TB, a netip.Addr) portspec.Port {
	t.Helper()
	fd, p := boundSocket(t, a)
	if err := listen0(fd); err != nil {
		t.Fatalf("listen: %v", err)
	}
	return p
}
