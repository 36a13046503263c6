package scan

import (
	"context"
	"encoding/binary"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"runtime"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"portolan/internal/netlab"
	"portolan/internal/portspec"
	"portolan/internal/rawnet"
	"portolan/internal/testenv"
)

// synScan runs a SYN scan of sp from host h and returns the results.
func synScan(t *testing.T, h *netlab.Host, s Scanner, sp Space) (map[portKey]Result, Summary) {
	t.Helper()
	if s.Prober == nil {
		s.Prober = SYNProber{}
	}
	var got map[portKey]Result
	var sum Summary
	if err := h.Do(func() error {
		got, sum = collect(t, s, sp)
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	return got, sum
}

// nft runs nft inside h's namespace.
func nft(t *testing.T, h *netlab.Host, script string) {
	t.Helper()
	testenv.RequireCommand(t, "nft")
	cmd := h.Command(context.Background(), "nft", "-f", "-")
	// One statement per line: nft takes "; }" badly.
	cmd.Stdin = strings.NewReader(strings.NewReplacer("{ ", "{\n", "; ", "\n", " }", "\n}").Replace(script))
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("nft: %v: %s", err, out)
	}
}

// TestSYNRecall scans 3,000 ports of a namespace over a veth link, over
// IPv4 and IPv6: every one of 40 listeners must be found open, a port
// whose SYNs are dropped filtered, and every other port closed by a reset.
// The kernel's resets are kept away by the guard, and no reply is forged.
func TestSYNRecall(t *testing.T) {
	scanner, target, lk := netlab.NewPair(t)
	for _, fam := range []string{"ip4", "ip6"} {
		t.Run(fam, func(t *testing.T) {
			addr := lk.B4
			if fam == "ip6" {
				addr = lk.B6
			}
			const lo, n = 20000, 3000
			open := map[portspec.Port]bool{}
			if err := target.Do(func() error {
				for len(open) < 40 {
					p := openPort(t, addr)
					open[p] = true
				}
				return nil
			}); err != nil {
				t.Fatal(err)
			}
			dropped := portspec.Port(lo + 7)
			nft(t, target, fmt.Sprintf("table inet synrecall%s { chain in { type filter hook input priority 0; tcp dport %d drop; } }", fam, dropped))
			sp := listSpace{}
			for p := range open {
				sp = append(sp, netip.AddrPortFrom(addr, uint16(p)))
			}
			for p := lo; p < lo+n; p++ {
				if !open[portspec.Port(p)] {
					sp = append(sp, netip.AddrPortFrom(addr, uint16(p)))
				}
			}
			got, sum := synScan(t, scanner, Scanner{MaxTimeout: 300 * time.Millisecond}, sp)
			if len(got) != len(sp) {
				t.Errorf("%d results for %d ports", len(got), len(sp))
			}
			wrong := 0
			for _, e := range sp {
				p := portspec.Port(e.Port())
				r := got[portKey{addr, p}]
				want := wantState{Closed, ReasonReset}
				switch {
				case open[p]:
					want = wantState{Open, ReasonSynAck}
				case p == dropped:
					want = wantState{Filtered, ReasonNoResponse}
				}
				if stateOf(r) != want {
					if wrong++; wrong < 10 {
						t.Errorf("%s = %v (%s); want %v (%s)", e, r.State, r.Reason, want.state, want.reason)
					}
				}
			}
			if sum.Raw == nil {
				t.Fatal("Summary.Raw is nil for a SYN scan")
			}
			if !strings.HasPrefix(sum.Raw.RSTGuard, "nftables") || sum.Raw.Forged != 0 || len(sum.Raw.Tarpits) != 0 {
				t.Errorf("Raw = %+v; want the nftables guard, nothing forged, no tarpit", *sum.Raw)
			}
			if sum.Open != uint64(len(open)) {
				t.Errorf("Summary.Open = %d; want %d", sum.Open, len(open))
			}
			t.Logf("%s: %d ports, sent %d, drops %d, rate %.0f (min %.0f), completeness %.4f",
				fam, len(sp), sum.Sent, sum.Raw.Drops, sum.Raw.Rate, sum.Raw.MinRate, sum.Completeness)
		})
	}
}

// TestSYNUnreachable: destinations the scanner's routing table refuses
// are filtered with the reason connect would give, without a packet.
func TestSYNUnreachable(t *testing.T) {
	scanner, _, lk := netlab.NewPair(t)
	ip(t, "-n", scanner.Netns(), "route", "replace", "unreachable", "198.18.50.0/24")
	ip(t, "-n", scanner.Netns(), "route", "replace", "prohibit", "198.18.51.0/24")
	ip(t, "-n", scanner.Netns(), "neigh", "replace", "198.18.0.99", "lladdr", "02:00:00:00:00:99", "dev", lk.ADev, "nud", "permanent")
	sp := listSpace{
		netip.MustParseAddrPort("198.18.50.1:80"),
		netip.MustParseAddrPort("198.18.51.1:80"),
		netip.MustParseAddrPort("198.18.0.99:80"), // nobody has that MAC: silence
	}
	got, _ := synScan(t, scanner, Scanner{MaxTimeout: 200 * time.Millisecond, HostDownAfter: -1}, sp)
	want := []wantState{{Filtered, ReasonHostUnreach}, {Filtered, ReasonAdminProhibited}, {Filtered, ReasonNoResponse}}
	for i, e := range sp {
		if r := got[portKey{e.Addr(), portspec.Port(e.Port())}]; stateOf(r) != want[i] {
			t.Errorf("%s = %v (%s); want %v (%s)", e, r.State, r.Reason, want[i].state, want[i].reason)
		}
	}
}

// TestSYNTarpit: a target whose firewall redirects every TCP port to one
// listener answers every SYN. The canary ports give it away: its ports are
// reported filtered (tarpit), not open, and the host is named in the
// summary.
func TestSYNTarpit(t *testing.T) {
	scanner, target, lk := netlab.NewPair(t)
	ln, err := target.Listen("tcp", ":7777")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	nft(t, target, "table inet tarpit { chain pre { type nat hook prerouting priority -100; tcp dport != 7777 redirect to :7777; } }")
	for _, addr := range []netip.Addr{lk.B4, lk.B6} {
		t.Run(addr.String(), func(t *testing.T) {
			sp := space{addrs: []netip.Addr{addr}}
			for p := 1000; p < 1300; p++ {
				sp.ports = append(sp.ports, portspec.Port(p))
			}
			got, sum := synScan(t, scanner, Scanner{}, sp)
			states := map[wantState]int{}
			for _, r := range got {
				states[stateOf(r)]++
			}
			if states[wantState{Filtered, ReasonTarpit}] != len(sp.ports) {
				t.Errorf("states %v; want all %d ports filtered (%s)", states, len(sp.ports), ReasonTarpit)
			}
			if sum.Raw == nil || len(sum.Raw.Tarpits) != 1 || sum.Raw.Tarpits[0] != addr {
				t.Errorf("Raw = %+v; want tarpit %s", sum.Raw, addr)
			}
		})
	}
}

// TestSYNForgedReplies: while a scan waits on ports whose SYNs the target
// drops, another process in the target's namespace floods the scanner
// with SYN-ACKs from those ports to every port the scanner may use, with
// guessed sequence numbers. None may be reported open; the summary counts
// them as forged.
func TestSYNForgedReplies(t *testing.T) {
	scanner, target, lk := netlab.NewPair(t)
	nft(t, target, "table inet forged { chain in { type filter hook input priority 0; tcp dport 2000-2009 drop; } }")
	sp := listSpace{}
	for p := 2000; p < 2010; p++ {
		sp = append(sp, netip.AddrPortFrom(lk.B4, uint16(p)))
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan int)
	go func() {
		sent := 0
		_ = target.Do(func() error {
			fd, err := unix.Socket(unix.AF_INET, unix.SOCK_RAW, unix.IPPROTO_RAW)
			if err != nil {
				return err
			}
			defer unix.Close(fd)
			to := &unix.SockaddrInet4{Addr: lk.A4.As4()}
			// Bounded: at most 3 rounds over the scanner's possible
			// source ports, until the scan ends.
			for round := 0; round < 3 && ctx.Err() == nil; round++ {
				for _, e := range sp {
					for dport := 61000; dport <= 65535; dport++ {
						pkt := forgedSYNACK(lk.B4, lk.A4, e.Port(), uint16(dport), uint32(round*65536+dport))
						if unix.Sendto(fd, pkt, 0, to) == nil {
							sent++
						}
					}
				}
			}
			return nil
		})
		done <- sent
	}()
	got, sum := synScan(t, scanner, Scanner{MinTimeout: 500 * time.Millisecond, InitialTimeout: 2 * time.Second, HostDownAfter: -1}, sp)
	cancel()
	sent := <-done
	for _, e := range sp {
		if r := got[portKey{e.Addr(), portspec.Port(e.Port())}]; r.State != Filtered {
			t.Errorf("%s = %v (%s); want filtered: forged replies were believed", e, r.State, r.Reason)
		}
	}
	if sum.Raw == nil || sum.Raw.Forged == 0 {
		t.Errorf("Raw = %+v after %d forged packets; want them counted as forged", sum.Raw, sent)
	}
	t.Logf("%d forged packets sent, %d seen and ignored", sent, sum.Raw.Forged)
}

// forgedSYNACK builds an IPv4 SYN-ACK with a guessed acknowledgement.
func forgedSYNACK(src, dst netip.Addr, sport, dport uint16, ack uint32) []byte {
	b := make([]byte, 40)
	b[0], b[8], b[9] = 0x45, 64, 6
	binary.BigEndian.PutUint16(b[2:], 40)
	s, d := src.As4(), dst.As4()
	copy(b[12:], s[:])
	copy(b[16:], d[:])
	binary.BigEndian.PutUint16(b[10:], rawnet.Checksum(b[:20]))
	tcp := b[20:]
	binary.BigEndian.PutUint16(tcp[0:], sport)
	binary.BigEndian.PutUint16(tcp[2:], dport)
	binary.BigEndian.PutUint32(tcp[4:], 12345)
	binary.BigEndian.PutUint32(tcp[8:], ack)
	tcp[12], tcp[13] = 5<<4, rawnet.FlagSYN|rawnet.FlagACK
	binary.BigEndian.PutUint16(tcp[14:], 65535)
	ph := append(append(append([]byte{}, s[:]...), d[:]...), 0, 6, 0, 20)
	binary.BigEndian.PutUint16(tcp[16:], rawnet.Checksum(append(ph, tcp...)))
	return b
}

// TestSYNLoopback takes the raw IP path (loopback has no link layer): an
// open and a closed port on 127.0.0.1 and ::1, inside a namespace of its
// own so that the guard's rule touches nothing else.
func TestSYNLoopback(t *testing.T) {
	l := netlab.NewT(t)
	h, err := l.AddHost("lo")
	if err != nil {
		t.Fatal(err)
	}
	for _, a := range []netip.Addr{netip.MustParseAddr("127.0.0.1"), netip.IPv6Loopback()} {
		t.Run(a.String(), func(t *testing.T) {
			var open, closed portspec.Port
			if err := h.Do(func() error {
				open, closed = openPort(t, a), closedPort(t, a)
				return nil
			}); err != nil {
				t.Fatal(err)
			}
			sp := space{addrs: []netip.Addr{a}, ports: []portspec.Port{open, closed}}
			got, sum := synScan(t, h, Scanner{}, sp)
			want := map[portspec.Port]wantState{open: {Open, ReasonSynAck}, closed: {Closed, ReasonReset}}
			for p, w := range want {
				if r := got[portKey{a, p}]; stateOf(r) != w {
					t.Errorf("%s:%d = %v (%s); want %v (%s)", a, p, r.State, r.Reason, w.state, w.reason)
				}
			}
			if sum.Raw == nil || len(sum.Raw.Tarpits) != 0 {
				t.Errorf("Raw = %+v; want no tarpit", sum.Raw)
			}
		})
	}
}

// TestSYNLoopbackInSourceBlock scans loopback ports that lie inside the
// scan's own block of source ports. The guard drops the kernel's view of
// the replies to those ports, but it must not drop the probes themselves,
// which on loopback arrive at a destination port of that block: they did,
// and the README's first command (a SYN scan of 127.0.0.1's top 1,000 as
// root) reported such a port filtered.
func TestSYNLoopbackInSourceBlock(t *testing.T) {
	l := netlab.NewT(t)
	h, err := l.AddHost("lo")
	if err != nil {
		t.Fatal(err)
	}
	a := netip.MustParseAddr("127.0.0.1")
	const open, closed = 61010, 61020 // in the block 61000-62023
	if err := h.Do(func() error {
		ln, err := net.Listen("tcp", netip.AddrPortFrom(a, open).String())
		if err != nil {
			return err
		}
		t.Cleanup(func() { ln.Close() })
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	sp := space{addrs: []netip.Addr{a}, ports: []portspec.Port{open, closed}}
	got, _ := synScan(t, h, Scanner{Prober: SYNProber{SourcePort: 61000}}, sp)
	want := map[portspec.Port]wantState{open: {Open, ReasonSynAck}, closed: {Closed, ReasonReset}}
	for p, w := range want {
		if r := got[portKey{a, p}]; stateOf(r) != w {
			t.Errorf("%s:%d = %v (%s); want %v (%s)", a, p, r.State, r.Reason, w.state, w.reason)
		}
	}
}

// synSessionPair opens a SYN session without canaries in the scanner of
// a new netlab pair; its replies go to the channel. The caller closes it.
func synSessionPair(t *testing.T) (scanner, target *netlab.Host, lk *netlab.Link, replies chan Reply, sess Session) {
	t.Helper()
	scanner, target, lk = netlab.NewPair(t)
	replies = make(chan Reply, 64)
	if err := scanner.Do(func() error {
		var err error
		sess, err = SYNProber{Canaries: -1}.Open(context.Background(), func(r Reply) { replies <- r })
		return err
	}); err != nil {
		t.Fatal(err)
	}
	return scanner, target, lk, replies, sess
}

// TestSYNPartialBatch: the sender waits for a batch of probes, or for the
// scanner's Flush, before it sends. Probes short of a batch must still go
// out, both without a Flush (on the sender's tick: a caller that never
// flushes is not stranded) and with one, and each draws its answer.
func TestSYNPartialBatch(t *testing.T) {
	scanner, target, lk, replies, sess := synSessionPair(t)
	defer sess.Close()
	var open portspec.Port
	if err := target.Do(func() error { open = openPort(t, lk.B4); return nil }); err != nil {
		t.Fatal(err)
	}
	closed := []portspec.Port{open + 1, open + 2}
	// The first round waits for the next hop's address, whose resolution
	// sends what waited for it; the others find it known.
	for round, flush := range []bool{true, false, true} {
		want := map[uint64]State{}
		for i, p := range append([]portspec.Port{open}, closed...) {
			id := uint64(round)<<32 | uint64(3*round+i)
			want[id] = Closed
			if p == open {
				want[id] = Open
			}
			if err := scanner.Do(func() error { return sess.Send(id, netip.AddrPortFrom(lk.B4, uint16(p)), portspec.TCP) }); err != nil {
				t.Fatal(err)
			}
		}
		if flush {
			sess.(flusher).Flush()
		}
		deadline := time.After(10 * time.Second)
		for len(want) > 0 {
			select {
			case r := <-replies:
				if st, ok := want[r.ID]; !ok || r.State != st {
					t.Errorf("flush %v: reply %d %v (%s); want one of %v", flush, r.ID, r.State, r.Reason, want)
				}
				delete(want, r.ID)
			case <-deadline:
				t.Fatalf("flush %v: %d of 3 probes short of a batch never answered: %v", flush, len(want), want)
			}
		}
	}
}

// TestSYNCloseSendsQueuedResets: the reset the prober owes a SYN-ACK (the
// guard keeps the kernel from sending it) waits in the send queue like any
// packet; Close must send it, or the target keeps a half-open connection
// that answers the next scan from that source port with stale numbers
// (ignored as forged: the open port then looks silent).
func TestSYNCloseSendsQueuedResets(t *testing.T) {
	testenv.RequireCommand(t, "ss")
	scanner, target, lk, replies, sess := synSessionPair(t)
	var open portspec.Port
	if err := target.Do(func() error { open = openPort(t, lk.B4); return nil }); err != nil {
		sess.Close()
		t.Fatal(err)
	}
	if err := scanner.Do(func() error { return sess.Send(1, netip.AddrPortFrom(lk.B4, uint16(open)), portspec.TCP) }); err != nil {
		sess.Close()
		t.Fatal(err)
	}
	sess.(flusher).Flush()
	select {
	case r := <-replies:
		if r.State != Open {
			t.Errorf("port %d: %v (%s); want open", open, r.State, r.Reason)
		}
	case <-time.After(10 * time.Second):
		sess.Close()
		t.Fatalf("port %d never answered", open)
	}
	if err := sess.Close(); err != nil {
		t.Fatal(err)
	}
	out, err := target.Command(context.Background(), "ss", "-Htn", "state", "syn-recv").CombinedOutput()
	if err != nil {
		t.Fatalf("ss: %v: %s", err, out)
	}
	if s := strings.TrimSpace(string(out)); s != "" {
		t.Errorf("the target keeps a half-open connection after Close (the reset was never sent):\n%s", s)
	}
}

// BenchmarkSYNSend measures the per-probe work of a SYN scan: Send (route
// cache, cookie, template, queue, table) and Cancel, with the sender and
// receiver goroutines running against a real target that answers every
// probe with a reset. Its allocs/op covers every goroutine of the process.
func BenchmarkSYNSend(b *testing.B) {
	scanner, _, lk := netlab.NewPair(b)
	var sess Session
	if err := scanner.Do(func() error {
		var err error
		sess, err = SYNProber{Canaries: -1}.Open(context.Background(), func(Reply) {})
		if err != nil {
			return err
		}
		// The first Send resolves the next hop.
		for sess.Send(1<<32, netip.AddrPortFrom(lk.B4, 1), portspec.TCP) != nil {
			time.Sleep(time.Millisecond)
		}
		b.ReportAllocs()
		b.ResetTimer()
		const slots = 16384
		for i := 0; i < b.N; i++ {
			id := uint64(i/slots+2)<<32 | uint64(i%slots)
			sess.Cancel(id - 1<<32)
			dst := netip.AddrPortFrom(lk.B4, uint16(1+i%60000))
			for sess.Send(id, dst, portspec.TCP) != nil {
				runtime.Gosched() // the send queue is full: the sender catches up
			}
		}
		b.StopTimer()
		return nil
	}); err != nil {
		b.Fatal(err)
	}
	rs := sess.(rawStatser).RawStats()
	sess.Close()
	b.ReportMetric(float64(rs.Drops), "drops")
}

// TestSYNRateLimitedRejects: ports rejected with ICMP port unreachable by
// a kernel that rate-limits its ICMP errors (a burst of 6, then one a
// second) are all reported as rejected, not as silent: the SYN prober sees
// the ICMP errors, and the scanner re-probes as the bucket refills. Dropped
// ports stay silent, and closed ports are reset.
func TestSYNRateLimitedRejects(t *testing.T) {
	scanner, target, lk := netlab.NewPair(t)
	nft(t, target, "table inet fw { chain input { type filter hook input priority 0; tcp dport 1000-1009 reject; tcp dport 2000-2003 drop } }")
	want := map[portspec.Port]wantState{}
	for p := portspec.Port(1000); p <= 1009; p++ {
		want[p] = wantState{Filtered, ReasonPortUnreach}
	}
	for p := portspec.Port(2000); p <= 2003; p++ {
		want[p] = wantState{Filtered, ReasonNoResponse}
	}
	for p := portspec.Port(3000); p <= 3003; p++ {
		want[p] = wantState{Closed, ReasonReset}
	}
	var ports []portspec.Port
	for p := range want {
		ports = append(ports, p)
	}
	for _, addr := range []netip.Addr{lk.B4, lk.B6} {
		t.Run(addr.String(), func(t *testing.T) {
			got, _ := synScan(t, scanner, Scanner{Seed: 1}, hostPorts{addr, ports})
			for p, w := range want {
				if r := got[portKey{addr, p}]; stateOf(r) != w {
					t.Errorf("%s port %d = %v (%s); want %v (%s)", addr, p, r.State, r.Reason, w.state, w.reason)
				}
			}
		})
	}
}

// TestSYNDiscoveryFirewalledHost: host discovery through the SYN prober
// (SYNs to the discovery ports, and the raw ICMP echo) finds a host whose
// firewall drops everything but three open ports, so all three are
// reported without -Pn, over IPv4 and IPv6.
func TestSYNDiscoveryFirewalledHost(t *testing.T) {
	scanner, target, lk := netlab.NewPair(t)
	open := firewalled(t, target)
	var ports []portspec.Port
	for p := portspec.Port(1); p <= 999; p++ {
		ports = append(ports, p)
	}
	ports = append(ports, 31337)
	for _, addr := range []netip.Addr{lk.B4, lk.B6} {
		t.Run(addr.String(), func(t *testing.T) {
			got, sum := synScan(t, scanner, Scanner{Seed: 1, Pinger: EchoProber{}}, hostPorts{addr, ports})
			for _, p := range open {
				if r := got[portKey{addr, p}]; r.State != Open {
					t.Errorf("%s port %d = %v (%s); want open", addr, p, r.State, r.Reason)
				}
			}
			if sum.HostsDown != 0 || len(got) != len(ports) {
				t.Errorf("%d hosts down, %d results; want the host up and %d results", sum.HostsDown, len(got), len(ports))
			}
		})
	}
}

// TestSYNDeadNeighbor: a destination on the link whose address nobody
// answers ARP for waits for resolution without holding up the live host
// scanned with it; its ports end filtered, the live host's are right.
func TestSYNDeadNeighbor(t *testing.T) {
	scanner, target, lk := netlab.NewPair(t)
	var open, closed portspec.Port
	if err := target.Do(func() error {
		open, closed = openPort(t, lk.B4), closedPort(t, lk.B4)
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	dead := netip.MustParseAddr("198.18.0.77")
	sp := listSpace{netip.AddrPortFrom(lk.B4, uint16(open)), netip.AddrPortFrom(lk.B4, uint16(closed))}
	for p := 1; p <= 20; p++ {
		sp = append(sp, netip.AddrPortFrom(dead, uint16(p)))
	}
	got, _ := synScan(t, scanner, Scanner{Seed: 1}, sp)
	if r := got[portKey{lk.B4, open}]; stateOf(r) != (wantState{Open, ReasonSynAck}) {
		t.Errorf("live open port = %v (%s)", r.State, r.Reason)
	}
	if r := got[portKey{lk.B4, closed}]; stateOf(r) != (wantState{Closed, ReasonReset}) {
		t.Errorf("live closed port = %v (%s)", r.State, r.Reason)
	}
	for _, e := range sp[2:] {
		if r := got[portKey{e.Addr(), portspec.Port(e.Port())}]; r.State != Filtered {
			t.Errorf("%s = %v (%s); want filtered", e, r.State, r.Reason)
		}
	}
	if len(got) != len(sp) {
		t.Errorf("%d results for %d ports", len(got), len(sp))
	}
}

// TestSYNRepeatScan scans an open port twice from the same source ports.
// The first scan must reset the half-open connection its SYN-ACK opened
// (the guard keeps the kernel from doing it): else the target, still in
// SYN-RECV for that 4-tuple, answers the second scan's SYN with the old
// connection's numbers, which fail the cookie check, and rate-limits the
// retries (seen as a flaky open port in the CLI tests).
func TestSYNRepeatScan(t *testing.T) {
	scanner, target, lk := netlab.NewPair(t)
	var open portspec.Port
	if err := target.Do(func() error {
		open = openPort(t, lk.B4)
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	sp := space{addrs: []netip.Addr{lk.B4}, ports: []portspec.Port{open}}
	for i := range 2 {
		got, _ := synScan(t, scanner, Scanner{Seed: 1, Prober: SYNProber{SourcePort: 61000}}, sp)
		if r := got[portKey{lk.B4, open}]; stateOf(r) != (wantState{Open, ReasonSynAck}) {
			t.Errorf("scan %d: port %d = %v (%s); want open (syn-ack)", i+1, open, r.State, r.Reason)
		}
	}
}

// TestCanaryWait: the canary verdict waits a few of the host's round trips,
// never less than a canary may spend queued, never more than the wait for
// a host that has not answered at all.
func TestCanaryWait(t *testing.T) {
	for _, tc := range []struct {
		maxRTT time.Duration
		want   time.Duration
	}{
		{0, synCanaryWait},
		{100 * time.Microsecond, synCanaryMin},
		{10 * time.Millisecond, synCanaryRTTs * 10 * time.Millisecond},
		{80 * time.Millisecond, synCanaryWait},
	} {
		d := &synDest{maxRTT: int64(tc.maxRTT)}
		if got := d.canaryWait(); got != tc.want {
			t.Errorf("canaryWait with slowest answer %v = %v; want %v", tc.maxRTT, got, tc.want)
		}
	}
}

// TestCanaryVerdictAfterRTTs: a host whose canaries go unanswered (a
// firewall drops them) is judged normal once its round trips say they
// would have come, counted from when the canaries left the send queue, and
// the open answers held for the verdict go out. Canaries not seen leaving
// wait as long as one may spend queued, too.
func TestCanaryVerdictAfterRTTs(t *testing.T) {
	for _, tc := range []struct {
		name       string
		left       int64 // canaryLeft; canarySent is 1
		early, due int64
	}{
		{"left at once", 1, 1 + int64(synCanaryMin)/2, 2 + int64(synCanaryMin)},
		{"left 30 ms later", 1 + int64(30*time.Millisecond), 2 + int64(synCanaryMin), 2 + int64(30*time.Millisecond+synCanaryMin)},
		{"not seen leaving", 0, 2 + int64(synCanaryMin), 2 + int64(synCanaryQueued)},
	} {
		s := &synSession{log: slog.New(slog.DiscardHandler)}
		d := &synDest{canarySent: 1, canaryLeft: tc.left, canaries: make([]synKey, 3), maxRTT: int64(time.Millisecond)}
		d.held = []Reply{{ID: 7, State: Open, Reason: ReasonSynAck}}
		s.table = newSynTable(synTableStart, synTableSize)
		s.decide(d, tc.early)
		if d.verdict != canaryPending || len(s.flush) != 0 {
			t.Fatalf("%s: verdict %v, %d released before the wait; want pending, none", tc.name, d.verdict, len(s.flush))
		}
		s.decide(d, tc.due)
		if d.verdict != canaryNormal || len(s.flush) != 1 || s.flush[0].State != Open {
			t.Fatalf("%s: verdict %v, released %+v after the wait; want normal, the open answer", tc.name, d.verdict, s.flush)
		}
	}
}

// TestCanariesLeaving: a pending verdict's clock starts when the send
// queue has sent everything queued up to its last canary, not before, and
// only for the destinations of that queue.
func TestCanariesLeaving(t *testing.T) {
	s := &synSession{log: slog.New(slog.DiscardHandler), start: time.Now()}
	q, other := &synQueue{sent: 10}, &synQueue{}
	d := &synDest{q: q, canarySent: 1, canaryPos: 14}
	e := &synDest{q: other, canarySent: 1, canaryPos: 1}
	q.leaving, other.leaving = []*synDest{d}, []*synDest{e}
	s.sentLocked(q, 3)
	if d.canaryLeft != 0 || e.canaryLeft != 0 {
		t.Fatalf("stamped after 13 of 14 sent: %d, other queue %d; want 0, 0", d.canaryLeft, e.canaryLeft)
	}
	s.sentLocked(q, 1)
	if d.canaryLeft == 0 || e.canaryLeft != 0 {
		t.Fatalf("after 14 of 14 sent: left %d, other queue %d; want stamped, 0", d.canaryLeft, e.canaryLeft)
	}
	at := d.canaryLeft
	s.sentLocked(q, 5)
	if d.canaryLeft != at {
		t.Errorf("stamped again: %d, first %d", d.canaryLeft, at)
	}
}
