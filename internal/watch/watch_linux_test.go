package watch

import (
	"context"
	"net/netip"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"portolan/internal/netlab"
	"portolan/internal/portspec"
	"portolan/internal/scan"
)

// recorder keeps the events a watcher emits.
type recorder struct {
	mu  sync.Mutex
	evs []Event
}

func (r *recorder) add(e Event) { r.mu.Lock(); r.evs = append(r.evs, e); r.mu.Unlock() }

func (r *recorder) of(typ string) []Event {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []Event
	for _, e := range r.evs {
		if e.Type == typ {
			out = append(out, e)
		}
	}
	return out
}

// watching starts a watcher on srv whose capture bans through itself
// when block is set, and stops it with the test.
func watching(t *testing.T, srv *netlab.Host, w *Watcher, capt *Capture, block bool) (*recorder, *Running) {
	t.Helper()
	rec := &recorder{}
	w.OnEvent = rec.add
	if block {
		w.Blocker = capt
	}
	ctx, cancel := context.WithCancel(context.Background())
	rn, err := capt.Start(ctx, w, 1, 0)
	if err != nil {
		cancel()
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- rn.Serve(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Serve: %v", err)
		}
		if err := rn.Close(context.Background()); err != nil {
			t.Errorf("Close: %v", err)
		}
	})
	return rec, rn
}

// portRange is a scan space of ports lo..hi on one address.
type portRange struct {
	addr   netip.Addr
	lo, hi portspec.Port
}

func (p portRange) Size() uint64 { return uint64(p.hi-p.lo) + 1 }
func (p portRange) At(i uint64) (netip.Addr, portspec.Port, portspec.Proto) {
	return p.addr, p.lo + portspec.Port(i), portspec.TCP
}

// waitUntil polls cond for up to d.
func waitUntil(d time.Duration, cond func() bool) bool {
	for end := time.Now().Add(d); time.Now().Before(end); time.Sleep(20 * time.Millisecond) {
		if cond() {
			return true
		}
	}
	return cond()
}

// TestScanDetectedBlockedUnblocked: portolan's own connect scan from
// the client is detected once it has touched Thresholds.Ports distinct
// ports, the client is banned (a following connection to a served port
// fails), and the kernel lifts the ban when it runs out.
func TestScanDetectedBlockedUnblocked(t *testing.T) {
	cli, srv, lk := netlab.NewPair(t)
	serve(t, srv, "198.18.0.2:8080")
	const ban = 2 * time.Second
	w := &Watcher{Ban: ban}
	capt := &Capture{NetNS: srv.FD()}
	rec, _ := watching(t, srv, w, capt, true)
	if !dialOK(t, cli, "198.18.0.2:8080") {
		t.Fatal("no connection before the scan")
	}

	s := scan.Scanner{Retries: -1, MaxTimeout: 200 * time.Millisecond, HostDownAfter: -1}
	if err := cli.Do(func() error {
		_, err := s.Run(context.Background(), portRange{lk.B4, 1000, 1199})
		return err
	}); err != nil {
		t.Fatal(err)
	}
	if !waitUntil(5*time.Second, func() bool { return len(rec.of(TypeBlock)) > 0 }) {
		t.Fatalf("no block after a 200-port scan; detections %v", rec.of(TypeDetection))
	}
	det := rec.of(TypeDetection)[0]
	blk := rec.of(TypeBlock)[0]
	if det.Scan != Vertical || det.Source != netip.MustParsePrefix("198.18.0.1/32") {
		t.Errorf("detection %+v; want a vertical scan from 198.18.0.1/32", det)
	}
	// Bounded: the detection came with the Ports-th distinct port.
	ports := map[portspec.Port]bool{}
	for _, e := range rec.of(TypeAttempt) {
		if e.Time.After(det.Time) {
			break
		}
		ports[e.Port] = true
	}
	if len(ports) > DefaultThresholds.Ports {
		t.Errorf("detected after %d distinct ports; want at most %d", len(ports), DefaultThresholds.Ports)
	}
	if blk.Action != "blocked" || blk.Ban != ban {
		t.Fatalf("block %+v; want blocked for %v", blk, ban)
	}
	if dialOK(t, cli, "198.18.0.2:8080") {
		t.Fatal("the scanner connected after its ban")
	}
	if !waitUntil(ban+3*time.Second, func() bool { return dialOK(t, cli, "198.18.0.2:8080") }) {
		t.Fatalf("still banned well after the ban ran out; blocks %+v", rec.of(TypeBlock))
	}
	if st := w.Stats(); st.Blocks != 1 || st.Detections < 1 {
		t.Errorf("Stats() = %+v; want 1 block", st)
	}
}

// TestOneServiceNotFlagged: 200 connections from one client to one open
// port are no scan.
func TestOneServiceNotFlagged(t *testing.T) {
	cli, srv, _ := netlab.NewPair(t)
	serve(t, srv, "198.18.0.2:8080")
	w := &Watcher{}
	rec, _ := watching(t, srv, w, &Capture{NetNS: srv.FD()}, true)
	for i := range 200 {
		if !dialOK(t, cli, "198.18.0.2:8080") {
			t.Fatalf("connection %d failed", i)
		}
	}
	if !waitUntil(5*time.Second, func() bool { return len(rec.of(TypeAttempt)) >= 200 }) {
		t.Fatalf("%d attempts seen; want 200", len(rec.of(TypeAttempt)))
	}
	if d := rec.of(TypeDetection); len(d) > 0 {
		t.Fatalf("flagged: %+v", d[0])
	}
}

// TestNeverBlockGateway: the client is the server's gateway; its scan
// is detected but not banned.
func TestNeverBlockGateway(t *testing.T) {
	cli, srv, lk := netlab.NewPair(t)
	serve(t, srv, "198.18.0.2:8080")
	if err := srv.AddRoute(netip.MustParsePrefix("198.18.99.0/24"), lk.A4); err != nil {
		t.Fatal(err)
	}
	resolv := t.TempDir() + "/resolv.conf"
	if err := os.WriteFile(resolv, []byte("nameserver 198.18.0.53\nnameserver fd00::53\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	nb, err := GatherNeverBlock(context.Background(), NeverBlockSources{Netns: srv.Path(), ResolvConf: resolv,
		SSHConnection: "198.18.0.77 50000 198.18.0.2 22", Allow: []netip.Prefix{netip.MustParsePrefix("198.18.7.0/24")}})
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct{ p, reason string }{
		{"198.18.0.53/32", "resolver"}, {"fd00::/64", "resolver"}, {"198.18.0.77/32", "ssh peer"}, {"198.18.7.9/32", "allow-list"},
	} {
		if r, ok := nb.Check(netip.MustParsePrefix(c.p)); !ok || !strings.HasPrefix(r, c.reason) {
			t.Errorf("Check(%s) = %q, %v; want %s", c.p, r, ok, c.reason)
		}
	}
	if _, ok := nb.Check(netip.MustParsePrefix("198.18.0.9/32")); ok {
		t.Errorf("198.18.0.9 on the never-block list %v", nb.Entries())
	}
	if r, ok := nb.Check(netip.MustParsePrefix("198.18.0.1/32")); !ok {
		t.Fatalf("gateway 198.18.0.1 not on the never-block list %v", nb.Entries())
	} else {
		t.Logf("never-block: %s", r)
	}
	w := &Watcher{NeverBlock: nb, Ban: time.Minute}
	rec, _ := watching(t, srv, w, &Capture{NetNS: srv.FD()}, true)
	s := scan.Scanner{Retries: -1, MaxTimeout: 200 * time.Millisecond, HostDownAfter: -1}
	if err := cli.Do(func() error {
		_, err := s.Run(context.Background(), portRange{lk.B4, 2000, 2099})
		return err
	}); err != nil {
		t.Fatal(err)
	}
	if !waitUntil(5*time.Second, func() bool { return len(rec.of(TypeBlock)) > 0 }) {
		t.Fatal("no block decision after a scan")
	}
	for _, b := range rec.of(TypeBlock) {
		if b.Action == "blocked" {
			t.Fatalf("the gateway was banned: %+v", b)
		}
	}
	if !dialOK(t, cli, "198.18.0.2:8080") {
		t.Fatal("the gateway cannot connect")
	}
	if st := w.Stats(); st.Refused == 0 || st.Blocks != 0 {
		t.Errorf("Stats() = %+v; want refused bans, no blocks", st)
	}
}

// TestEventCountMatches: every attempt sent is an event, or a kernel
// drop counted by the rate limit. Connects to a closed port are one SYN
// each (the reset ends them).
func TestEventCountMatches(t *testing.T) {
	for _, c := range []struct {
		name        string
		rate, burst uint32
	}{{"under the limit", 0, 0}, {"over the limit", 100, 50}} {
		t.Run(c.name, func(t *testing.T) {
			cli, srv, _ := netlab.NewPair(t)
			w := &Watcher{Thresholds: Thresholds{Ports: 1 << 20, Hosts: 1 << 20, SlowPairs: 1 << 20}}
			rec, rn := watching(t, srv, w, &Capture{NetNS: srv.FD(), Rate: c.rate, Burst: c.burst}, false)
			const sent = 1000
			for range sent {
				ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
				conn, err := cli.DialContext(ctx, "tcp", "198.18.0.2:9")
				cancel()
				if err == nil {
					conn.Close()
					t.Fatal("port 9 is open")
				}
			}
			var st Stats
			ok := waitUntil(5*time.Second, func() bool {
				rn.Sync(context.Background())
				st = w.Stats()
				return uint64(len(rec.of(TypeAttempt)))+st.RateLimited+st.SocketLost >= sent
			})
			got := uint64(len(rec.of(TypeAttempt)))
			t.Logf("sent %d: events %d, rate-limited %d, socket lost %d", sent, got, st.RateLimited, st.SocketLost)
			if !ok || got+st.RateLimited+st.SocketLost != sent {
				t.Fatalf("sent %d attempts: %d events + %d rate-limited + %d lost; want the sum to match", sent, got, st.RateLimited, st.SocketLost)
			}
			if c.rate != 0 && st.RateLimited == 0 {
				t.Error("nothing rate-limited at 100/s")
			}
		})
	}
}

// TestOddFlagProbes: FIN, NULL and Xmas probes (sent raw from the
// client) are captured as such and make an odd-flags detection.
func TestOddFlagProbes(t *testing.T) {
	cli, srv, lk := netlab.NewPair(t)
	w := &Watcher{}
	rec, _ := watching(t, srv, w, &Capture{NetNS: srv.FD()}, false)
	var fd int
	if err := cli.Do(func() error {
		var err error
		fd, err = unix.Socket(unix.AF_INET, unix.SOCK_RAW, unix.IPPROTO_RAW)
		return err
	}); err != nil {
		t.Fatal(err)
	}
	defer unix.Close(fd)
	flags := []uint8{flagFIN, 0, flagFIN | flagPSH | flagURG}
	for i, f := range flags {
		pkt := packet(lk.A4.String(), lk.B4.String(), 6, uint16(40000+i), uint16(5000+i), f)
		if err := unix.Sendto(fd, pkt, 0, &unix.SockaddrInet4{Addr: lk.B4.As4()}); err != nil {
			t.Fatal(err)
		}
	}
	if !waitUntil(5*time.Second, func() bool { return len(rec.of(TypeDetection)) > 0 }) {
		t.Fatalf("no detection; attempts %+v", rec.of(TypeAttempt))
	}
	var kinds []Kind
	for _, e := range rec.of(TypeAttempt) {
		kinds = append(kinds, e.Kind)
	}
	if len(kinds) != 3 || kinds[0] != KindFIN || kinds[1] != KindNULL || kinds[2] != KindXmas {
		t.Errorf("attempt kinds %v; want fin, null, xmas", kinds)
	}
	if d := rec.of(TypeDetection)[0]; d.Scan != OddProbe || d.Source != netip.MustParsePrefix("198.18.0.1/32") {
		t.Errorf("detection %+v; want odd-flags from 198.18.0.1/32", d)
	}
}

// TestIPv6ScanBannedAsPrefix: an IPv6 connect scan is detected and its
// source's /64 banned.
func TestIPv6ScanBannedAsPrefix(t *testing.T) {
	cli, srv, lk := netlab.NewPair(t)
	serve(t, srv, "[fd00::2]:8080")
	w := &Watcher{Ban: time.Minute}
	capt := &Capture{NetNS: srv.FD()}
	rec, _ := watching(t, srv, w, capt, true)
	s := scan.Scanner{Retries: -1, MaxTimeout: 200 * time.Millisecond, HostDownAfter: -1}
	if err := cli.Do(func() error {
		_, err := s.Run(context.Background(), portRange{lk.B6, 1000, 1099})
		return err
	}); err != nil {
		t.Fatal(err)
	}
	if !waitUntil(5*time.Second, func() bool { return len(rec.of(TypeBlock)) > 0 }) {
		t.Fatal("no block after an IPv6 scan")
	}
	if b := rec.of(TypeBlock)[0]; b.Source != netip.MustParsePrefix("fd00::/64") || b.Action != "blocked" {
		t.Fatalf("block %+v; want fd00::/64 blocked", b)
	}
	if dialOK(t, cli, "[fd00::2]:8080") {
		t.Fatal("the IPv6 scanner connected during its ban")
	}
}

// TestClosedOnlyDryRunUDP: with Keep = Listening.Closed, attempts to a
// served port are left out and those to closed ports kept; a dry run
// reports the ban it would make and bans nothing; UDP datagrams to a
// closed port are captured.
func TestClosedOnlyDryRunUDP(t *testing.T) {
	cli, srv, lk := netlab.NewPair(t)
	serve(t, srv, "198.18.0.2:8080")
	l := &Listening{Netns: srv.Path()}
	if err := l.Refresh(context.Background()); err != nil {
		t.Fatal(err)
	}
	w := &Watcher{Keep: l.Closed, DryRun: true, Thresholds: Thresholds{Ports: 5}}
	capt := &Capture{NetNS: srv.FD(), UDP: true}
	rec, _ := watching(t, srv, w, capt, false)
	for range 10 {
		if !dialOK(t, cli, "198.18.0.2:8080") {
			t.Fatal("no connection to the served port")
		}
	}
	for p := range 6 {
		dialOK(t, cli, netip.AddrPortFrom(lk.B4, uint16(9000+p)).String())
	}
	c, err := cli.DialContext(context.Background(), "udp", "198.18.0.2:5353")
	if err != nil {
		t.Fatal(err)
	}
	for range 3 {
		// The port unreachable that answers the first ends its
		// conntrack entry and makes the socket's next write fail, so
		// one or two count as new flows.
		c.Write([]byte("x"))
	}
	c.Close()
	if !waitUntil(5*time.Second, func() bool { return len(rec.of(TypeBlock)) > 0 && w.Stats().Filtered >= 10 }) {
		t.Fatalf("stats %+v, blocks %v", w.Stats(), rec.of(TypeBlock))
	}
	time.Sleep(200 * time.Millisecond)
	var tcp, udp int
	for _, e := range rec.of(TypeAttempt) {
		switch {
		case e.Port == 8080:
			t.Errorf("attempt to the served port kept: %+v", e)
		case e.Kind == KindUDP && e.Port == 5353:
			udp++
		case e.Kind == KindSYN:
			tcp++
		}
	}
	if tcp != 6 || udp < 1 || udp > 3 {
		t.Errorf("kept %d SYNs to closed ports and %d UDP datagrams; want 6, and 1 to 3", tcp, udp)
	}
	if b := rec.of(TypeBlock)[0]; b.Action != "dry-run" || b.Ban != 10*time.Minute {
		t.Errorf("block %+v; want a dry run of a 10m ban", b)
	}
	bans, err := capt.Banned(context.Background())
	if err != nil || len(bans) != 0 {
		t.Errorf("Banned() = %v, %v; want nothing banned in a dry run", bans, err)
	}
	if !dialOK(t, cli, "198.18.0.2:8080") {
		t.Error("the dry run blocked the client")
	}
}

// TestHorizontalSweep: one port on Hosts addresses of the server is a
// sweep.
func TestHorizontalSweep(t *testing.T) {
	cli, srv, lk := netlab.NewPair(t)
	for i := range 10 {
		if err := srv.AddAddr(lk.BDev, netip.PrefixFrom(netip.AddrFrom4([4]byte{198, 18, 0, byte(20 + i)}), 24)); err != nil {
			t.Fatal(err)
		}
	}
	w := &Watcher{}
	rec, _ := watching(t, srv, w, &Capture{NetNS: srv.FD()}, false)
	for i := range 10 {
		dialOK(t, cli, netip.AddrPortFrom(netip.AddrFrom4([4]byte{198, 18, 0, byte(20 + i)}), 22).String())
	}
	if !waitUntil(5*time.Second, func() bool { return len(rec.of(TypeDetection)) > 0 }) {
		t.Fatalf("no detection; %d attempts", len(rec.of(TypeAttempt)))
	}
	if d := rec.of(TypeDetection)[0]; d.Scan != Horizontal || d.Port != 22 {
		t.Errorf("detection %+v; want a horizontal sweep of port 22", d)
	}
}

// TestPingSweep: with ICMP, echo requests to Hosts addresses of the
// server are a horizontal sweep.
func TestPingSweep(t *testing.T) {
	cli, srv, lk := netlab.NewPair(t)
	for i := range 10 {
		if err := srv.AddAddr(lk.BDev, netip.PrefixFrom(netip.AddrFrom4([4]byte{198, 18, 0, byte(20 + i)}), 24)); err != nil {
			t.Fatal(err)
		}
	}
	w := &Watcher{}
	rec, _ := watching(t, srv, w, &Capture{NetNS: srv.FD(), ICMP: true}, false)
	var fd int
	if err := cli.Do(func() error {
		var err error
		fd, err = unix.Socket(unix.AF_INET, unix.SOCK_RAW, unix.IPPROTO_ICMP)
		return err
	}); err != nil {
		t.Fatal(err)
	}
	defer unix.Close(fd)
	echo := []byte{8, 0, 0, 0, 0, 1, 0, 1}
	sum := ^uint16(uint16(8)<<8 + 1 + 1) // the checksum of the message above
	echo[2], echo[3] = byte(sum>>8), byte(sum)
	for i := range 10 {
		if err := unix.Sendto(fd, echo, 0, &unix.SockaddrInet4{Addr: [4]byte{198, 18, 0, byte(20 + i)}}); err != nil {
			t.Fatal(err)
		}
	}
	if !waitUntil(5*time.Second, func() bool { return len(rec.of(TypeDetection)) > 0 }) {
		t.Fatalf("no detection; attempts %+v", rec.of(TypeAttempt))
	}
	if d := rec.of(TypeDetection)[0]; d.Scan != Horizontal || d.Kind != KindEcho {
		t.Errorf("detection %+v; want a horizontal sweep of echo requests", d)
	}
	if a := rec.of(TypeAttempt)[0]; a.Kind != KindEcho || a.Proto != 0 || a.Src != lk.A4 {
		t.Errorf("attempt %+v; want an echo request from %s", a, lk.A4)
	}
}
