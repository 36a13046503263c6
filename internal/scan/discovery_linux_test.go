package scan

import (
	"bytes"
	"log/slog"
	"net/netip"
	"strconv"
	"strings"
	"testing"
	"time"

	"portolan/internal/netlab"
	"portolan/internal/portspec"
	"portolan/internal/testenv"
)

// firewalled makes target a server behind an ordinary firewall: nftables
// drops every packet but those to TCP 22, 443 and 31337 (and IPv6 neighbour
// discovery), pings included, and those three ports listen.
func firewalled(t *testing.T, target *netlab.Host) []portspec.Port {
	t.Helper()
	testenv.RequireCommand(t, "nft")
	cmd := target.Command(t.Context(), "nft", "-f", "-")
	cmd.Stdin = strings.NewReader(`table inet fw {
 chain input {
  type filter hook input priority 0; policy drop;
  iif lo accept
  ct state established,related accept
  icmpv6 type { nd-neighbor-solicit, nd-neighbor-advert } accept
  tcp dport { 22, 443, 31337 } accept
 }
}
`)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("nft -f - in %s: %v\n%s", target.Name(), err, out)
	}
	open := []portspec.Port{22, 443, 31337}
	for _, p := range open {
		ln, err := target.Listen("tcp", ":"+strconv.Itoa(int(p)))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { ln.Close() })
		go testenv.Serve(ln, testenv.Drain)
	}
	return open
}

// hostPorts is one address x ports, with the port count the scanner uses
// to size its patience with a silent host.
type hostPorts struct {
	addr  netip.Addr
	ports []portspec.Port
}

func (s hostPorts) Size() uint64   { return uint64(len(s.ports)) }
func (s hostPorts) PortCount() int { return len(s.ports) }
func (s hostPorts) At(i uint64) (netip.Addr, portspec.Port, portspec.Proto) {
	return s.addr, s.ports[i], portspec.TCP
}

// TestDiscoveryFirewalledHost scans, with default settings, a host whose
// firewall drops everything but three open ports: the first probes in a
// random order of 1,000 ports all go unanswered, which used to make the
// host "down" and its open ports missed. Host discovery's probe of 443 and
// 22 shows it up, so all three are found, over IPv4 and IPv6, whatever the
// order (several seeds).
func TestDiscoveryFirewalledHost(t *testing.T) {
	scanner, target, lk := netlab.NewPair(t)
	open := firewalled(t, target)
	if err := lk.PinNeighbors(); err != nil {
		t.Fatal(err)
	}
	var ports []portspec.Port
	for p := portspec.Port(1); p <= 999; p++ {
		ports = append(ports, p)
	}
	ports = append(ports, 31337)
	for _, addr := range []netip.Addr{lk.B4, lk.B6} {
		for _, seed := range []uint64{1, 2, 3} {
			t.Run(addr.String()+"/seed"+strconv.FormatUint(seed, 10), func(t *testing.T) {
				var got map[portKey]Result
				var sum Summary
				if err := scanner.Do(func() error {
					got, sum = collect(t, Scanner{Seed: seed, Pinger: EchoProber{}}, hostPorts{addr, ports})
					return nil
				}); err != nil {
					t.Fatal(err)
				}
				states := map[State]int{}
				for _, r := range got {
					states[r.State]++
				}
				for _, p := range open {
					if r := got[portKey{addr, p}]; r.State != Open {
						t.Errorf("%s port %d = %v (%s); want open", addr, p, r.State, r.Reason)
					}
				}
				if sum.HostsDown != 0 || len(got) != len(ports) || states[Open] != len(open) {
					t.Errorf("%d hosts down, %d results, states %v; want the host up, %d results, %d open", sum.HostsDown, len(got), states, len(ports), len(open))
				}
			})
		}
	}
}

// TestDiscoveryPing: a host that drops every TCP packet but answers ping
// is up when discovery pings (its ports all filtered, as nmap reports a
// host behind such a firewall), and down without the ping. A host that
// drops pings too is down either way.
func TestDiscoveryPing(t *testing.T) {
	testenv.RequireCommand(t, "nft")
	scanner, target, lk := netlab.NewPair(t)
	cmd := target.Command(t.Context(), "nft", "-f", "-")
	cmd.Stdin = strings.NewReader(`table inet fw {
 chain input {
  type filter hook input priority 0;
  meta l4proto tcp drop
 }
}
`)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("nft: %v\n%s", err, out)
	}
	ports := []portspec.Port{1, 2, 3, 4, 5, 6, 7, 8}
	for _, tc := range []struct {
		name   string
		pinger Prober
		down   int
	}{
		{"ping", EchoProber{}, 0},
		{"no ping", nil, 1},
	} {
		for _, addr := range []netip.Addr{lk.B4, lk.B6} {
			t.Run(tc.name+"/"+addr.String(), func(t *testing.T) {
				var got map[portKey]Result
				var sum Summary
				s := Scanner{Pinger: tc.pinger, InitialTimeout: 300 * time.Millisecond, Seed: 1}
				if err := scanner.Do(func() error {
					got, sum = collect(t, s, hostPorts{addr, ports})
					return nil
				}); err != nil {
					t.Fatal(err)
				}
				reasons := map[string]int{}
				for _, r := range got {
					reasons[r.Reason]++
				}
				if sum.HostsDown != tc.down || len(got) != len(ports) {
					t.Errorf("%d hosts down, %d results (reasons %v); want %d down, %d results", sum.HostsDown, len(got), reasons, tc.down, len(ports))
				}
				if tc.down == 0 && reasons[ReasonNoResponse] != len(ports) {
					t.Errorf("reasons %v; want all %s", reasons, ReasonNoResponse)
				}
			})
		}
	}
}

// TestDiscoveryOnly is nmap's -sn: hosts, not ports. The firewalled host
// is up (its 443 answers discovery), a host that drops everything is down,
// and so is an address nobody has; each gets one result, port 0.
func TestDiscoveryOnly(t *testing.T) {
	scanner, target, lk := netlab.NewPair(t)
	firewalled(t, target)
	if err := lk.PinNeighbors(); err != nil {
		t.Fatal(err)
	}
	silent := netip.MustParseAddr("198.18.0.99")
	if out, err := scanner.Command(t.Context(), "ip", "neigh", "replace", silent.String(), "lladdr", "02:00:00:00:00:99",
		"dev", lk.ADev, "nud", "permanent").CombinedOutput(); err != nil {
		t.Fatalf("ip neigh: %v\n%s", err, out)
	}
	sp := listSpace{netip.AddrPortFrom(lk.B4, 1), netip.AddrPortFrom(lk.B6, 1), netip.AddrPortFrom(silent, 1)}
	var got map[portKey]Result
	var sum Summary
	if err := scanner.Do(func() error {
		got, sum = collect(t, Scanner{DiscoveryOnly: true, Pinger: EchoProber{}, InitialTimeout: 300 * time.Millisecond}, sp)
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	want := map[netip.Addr]wantState{
		lk.B4:  {Open, ReasonSynAck},
		lk.B6:  {Open, ReasonSynAck},
		silent: {Filtered, ReasonHostTimeout},
	}
	for a, w := range want {
		if r := got[portKey{a, 0}]; stateOf(r) != w {
			t.Errorf("%s = %v (%s); want %v (%s)", a, r.State, r.Reason, w.state, w.reason)
		}
	}
	if len(got) != 3 || sum.HostsDown != 1 {
		t.Errorf("%d results, %d hosts down; want 3 and 1", len(got), sum.HostsDown)
	}
}

// TestDiscoveryRaw: with raw sockets, host discovery sends nmap's default
// probes besides the TCP ports (ICMP echo and timestamp, a TCP ACK to 80,
// ICMPv6 echo), so a host behind a firewall that lets only one of them in
// is found up, by -sn and by a SYN scan of ports it drops: a timestamp
// request alone, an ACK alone (a stateless rule for "established"
// traffic: the host's reset answers it), an ICMPv6 echo alone. A host
// that lets nothing in is down.
func TestDiscoveryRaw(t *testing.T) {
	testenv.RequireRoot(t)
	const head = "table inet fw { chain input { type filter hook input priority 0; policy drop; iif lo accept; " +
		"icmpv6 type { nd-neighbor-solicit, nd-neighbor-advert } accept; "
	for _, tc := range []struct {
		name, rule string
		v4, v6     string // the reason the host is up for; "" means down
	}{
		{"timestamp only", "icmp type timestamp-request accept;", ReasonTimestampReply, ""},
		{"ack to 80 only", "tcp dport 80 tcp flags & (fin|syn|rst|ack) == ack accept;", ReasonReset, ReasonReset},
		{"icmpv6 echo only", "icmpv6 type echo-request accept;", "", ReasonEchoReply},
		{"nothing", "", "", ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			scanner, target, lk := netlab.NewPair(t)
			if err := lk.PinNeighbors(); err != nil {
				t.Fatal(err)
			}
			nft(t, target, head+tc.rule+" } }")
			want := map[netip.Addr]string{lk.B4: tc.v4, lk.B6: tc.v6}
			// -sn: one result per host.
			got, sum := synScan(t, scanner, Scanner{DiscoveryOnly: true, Pinger: EchoProber{}, InitialTimeout: 300 * time.Millisecond},
				listSpace{netip.AddrPortFrom(lk.B4, 80), netip.AddrPortFrom(lk.B6, 80)})
			for a, reason := range want {
				w := wantState{Open, reason}
				if reason == "" {
					w = wantState{Filtered, ReasonHostTimeout}
				}
				if r := got[portKey{a, 0}]; stateOf(r) != w {
					t.Errorf("-sn %s = %v (%s); want %v (%s)", a, r.State, r.Reason, w.state, w.reason)
				}
			}
			if sum.Raw == nil || sum.Raw.Forged != 0 {
				t.Errorf("Summary.Raw = %+v; want a raw scan with nothing forged", sum.Raw)
			}
			// A SYN scan of ports the firewall drops: all filtered after
			// their retries when discovery finds the host up; when down,
			// the host's ports not probed yet are left (host-timeout).
			ports := []portspec.Port{1, 2, 3, 4, 5, 6, 7, 8, 9, 10}
			for a, reason := range want {
				got, sum := synScan(t, scanner, Scanner{Pinger: EchoProber{}, InitialTimeout: 300 * time.Millisecond, Seed: 1}, hostPorts{a, ports})
				reasons := map[string]int{}
				for _, r := range got {
					reasons[r.Reason]++
				}
				up := sum.HostsDown == 0 && reasons[ReasonNoResponse] == len(ports)
				if down := sum.HostsDown == 1 && reasons[ReasonHostTimeout] > 0; up != (reason != "") || (!up && !down) {
					t.Errorf("-sS %s: %d hosts down, reasons %v; want it up: %v", a, sum.HostsDown, reasons, reason != "")
				}
			}
		})
	}
}

// TestDiscoveryBeforeFirstTimeouts: a firewalled host whose first probes
// all go to dropped ports goes through discovery a tenth of the initial
// timeout after its first probe, before those probes time out: it used to
// wait for them to time out and be retried (2 s) first. (How soon is the
// scan benchmark's firewalled scenario's to measure.)
func TestDiscoveryBeforeFirstTimeouts(t *testing.T) {
	scanner, target, lk := netlab.NewPair(t)
	firewalled(t, target)
	if err := lk.PinNeighbors(); err != nil {
		t.Fatal(err)
	}
	var ports []portspec.Port
	for p := portspec.Port(1000); p < 1100; p++ {
		ports = append(ports, p)
	}
	var log bytes.Buffer
	logger := slog.New(slog.NewTextHandler(&log, &slog.HandlerOptions{Level: slog.LevelDebug}))
	var sum Summary
	if err := scanner.Do(func() error {
		_, sum = collect(t, Scanner{Seed: 1, Logger: logger}, hostPorts{lk.B4, ports})
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	if sum.HostsDown != 0 {
		t.Errorf("%d hosts down; want the host up (discovery finds 22 and 443)", sum.HostsDown)
	}
	if !strings.Contains(log.String(), `msg="host discovery: no answer yet" addr=`+lk.B4.String()+" probes=0") {
		t.Errorf("discovery did not start before the first probes timed out; log:\n%s", log.String())
	}
}
