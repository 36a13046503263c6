package ephemeral

import (
	"context"
	"errors"
	"net"
	"net/netip"
	"os"
	"strings"
	"syscall"
	"testing"

	"golang.org/x/sys/unix"

	"portolan/internal/netlab"
	"portolan/internal/portspec"
	"portolan/internal/sockets"
	"portolan/internal/sockets/socktest"
	"portolan/internal/testenv"
)

func mustEphemeral(t *testing.T, req Request) *Report {
	t.Helper()
	r, err := Survey(context.Background(), req)
	if err != nil {
		t.Fatalf("Ephemeral(%+v) = %v", req, err)
	}
	return r
}

// destOf returns the destination to remote, or a zero one.
func destOf(r *Report, remote netip.AddrPort) Destination {
	for _, d := range r.Destinations {
		if d.Remote == remote {
			return d
		}
	}
	return Destination{}
}

func stateCount(d Destination, st sockets.State) int {
	for _, c := range d.States {
		if c.State == st {
			return c.Count
		}
	}
	return 0
}

// TestEphemeralCountsLoopback opens connections to a loopback listener of
// its own and finds them counted, by state, with this process on top. As
// root it runs in a namespace of its own: TIME_WAIT buckets are counted per
// namespace, and in the root one the tests of other packages running at the
// same time can fill them (net.ipv4.tcp_max_tw_buckets is a few thousand on
// a small machine), after which the kernel drops closing sockets at once
// instead of keeping them in TIME_WAIT.
func TestEphemeralCountsLoopback(t *testing.T) {
	listen, dial, netns := net.Listen, net.Dial, ""
	if os.Geteuid() == 0 {
		h := ephemeralHost(t, "")
		netns = h.Path()
		listen = h.Listen
		dial = func(network, addr string) (net.Conn, error) {
			return h.DialContext(context.Background(), network, addr)
		}
	}
	ln, err := listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go testenv.Serve(ln, testenv.Drain)
	remote := netip.MustParseAddrPort(ln.Addr().String())
	req := Request{Netns: netns, Dest: remote.Addr(), DestPort: remote.Port()}
	if d := destOf(mustEphemeral(t, req), remote); d.InUse != 0 {
		t.Fatalf("before any connection: %+v", d)
	}
	const n, closed = 7, 3
	var conns []net.Conn
	for range n {
		c, err := dial("tcp", ln.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		conns = append(conns, c)
	}
	defer func() {
		for _, c := range conns {
			c.Close()
		}
	}()
	for _, c := range conns[:closed] {
		port := c.LocalAddr().(*net.TCPAddr).Port
		c.Close() // we close first: TIME_WAIT on our side
		socktest.WaitState(t, netns, portspec.Port(port), sockets.TimeWait)
	}
	r := mustEphemeral(t, req)
	d := destOf(r, remote)
	if d.InUse != n || stateCount(d, sockets.Established) != n-closed || stateCount(d, sockets.TimeWait) != closed || d.TimeWait != closed {
		t.Errorf("destination %v: %+v; want %d in use: %d ESTABLISHED, %d TIME_WAIT", remote, d, n, n-closed, closed)
	}
	if d.Headroom != r.Usable-n {
		t.Errorf("headroom %d; want usable %d - %d", d.Headroom, r.Usable, n)
	}
	if len(r.Destinations) != 1 {
		t.Errorf("filtered report has %d destinations; want 1", len(r.Destinations))
	}
	if len(r.Top) == 0 || r.Top[0].Process.PID != os.Getpid() || r.Top[0].Sockets != n-closed {
		t.Errorf("top processes %+v; want this process with %d sockets (TIME_WAIT has no process)", r.Top, n-closed)
	}
}

// TestEphemeralHeadroomInNetns checks the arithmetic in a namespace of its
// own, where nothing else runs: headroom drops by exactly the connections
// opened.
func TestEphemeralHeadroomInNetns(t *testing.T) {
	h := ephemeralHost(t, "40000 40999")
	req := Request{Netns: h.Path()}
	before := mustEphemeral(t, req)
	if before.Range != (sockets.PortRange{Lo: 40000, Hi: 40999}) || before.Size != 1000 || before.Usable != 1000 || len(before.Destinations) != 0 {
		t.Fatalf("before: range %v size %d usable %d destinations %v; want 40000-40999, 1000, 1000, none", before.Range, before.Size, before.Usable, before.Destinations)
	}
	const n = 7
	for range n {
		c, err := h.DialContext(context.Background(), "tcp", "127.0.0.1:30000")
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
	}
	after := mustEphemeral(t, req)
	d := destOf(after, netip.MustParseAddrPort("127.0.0.1:30000"))
	if d.InUse != n || d.Headroom != before.Usable-n || after.Usable != before.Usable {
		t.Errorf("after %d connections: %+v usable %d; want %d in use, headroom %d", n, d, after.Usable, n, before.Usable-n)
	}
	if !strings.Contains(after.Advice[0], "no destination is near exhaustion") {
		t.Errorf("advice %q; want no alarm", after.Advice)
	}
}

// TestEphemeralExhaustedInNetns gives a namespace ten ephemeral ports,
// uses them all with real connections, checks the errnos the report
// explains, and the report's verdict and advice.
func TestEphemeralExhaustedInNetns(t *testing.T) {
	h := ephemeralHost(t, "40000 40009")
	var connected int
	var last error
	for range 50 { // bounded: the range holds 10
		c, err := h.DialContext(context.Background(), "tcp", "127.0.0.1:30000")
		if err != nil {
			last = err
			break
		}
		defer c.Close()
		connected++
	}
	if connected != 10 || !errors.Is(last, syscall.EADDRNOTAVAIL) {
		t.Fatalf("connected %d, then %v; want 10, then EADDRNOTAVAIL", connected, last)
	}
	// Another destination still connects: ports run out per destination.
	ln2, err := h.Listen("tcp", "127.0.0.1:30001")
	if err != nil {
		t.Fatal(err)
	}
	defer ln2.Close()
	go testenv.Serve(ln2, testenv.Drain)
	c, err := h.DialContext(context.Background(), "tcp", "127.0.0.1:30001")
	if err != nil {
		t.Fatalf("connect to another destination: %v; want it to work", err)
	}
	c.Close()
	// bind to port 0 needs a port no socket holds: EADDRINUSE.
	err = h.Do(func() error {
		fd, err := unix.Socket(unix.AF_INET, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
		if err != nil {
			return err
		}
		defer unix.Close(fd)
		return unix.Bind(fd, &unix.SockaddrInet4{Addr: [4]byte{127, 0, 0, 1}})
	})
	if !errors.Is(err, syscall.EADDRINUSE) {
		t.Errorf("bind to port 0 in the exhausted range = %v; want EADDRINUSE", err)
	}
	// UDP: ten bound sockets take the range; an unbound sendto gets EAGAIN.
	for range 10 {
		pc, err := h.ListenPacket("udp4", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		defer pc.Close()
	}
	err = h.Do(func() error {
		fd, err := unix.Socket(unix.AF_INET, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
		if err != nil {
			return err
		}
		defer unix.Close(fd)
		return unix.Sendto(fd, []byte("x"), 0, &unix.SockaddrInet4{Addr: [4]byte{127, 0, 0, 1}, Port: 9})
	})
	if !errors.Is(err, syscall.EAGAIN) {
		t.Errorf("UDP sendto with the range used up = %v; want EAGAIN", err)
	}
	for _, e := range []string{"EADDRNOTAVAIL", "EADDRINUSE", "EAGAIN"} {
		if !strings.Contains(errnoCalls(), e) {
			t.Errorf("Errnos does not explain %s", e)
		}
	}

	r := mustEphemeral(t, Request{Netns: h.Path()})
	d := destOf(r, netip.MustParseAddrPort("127.0.0.1:30000"))
	if !r.Exhausted || r.Usable != 10 || d.InUse != 10 || d.Headroom != 0 || stateCount(d, sockets.Established) != 10 {
		t.Errorf("report: exhausted %v usable %d, destination %+v; want exhausted, 10 usable, 10 ESTABLISHED, no headroom", r.Exhausted, r.Usable, d)
	}
	if r.UDP != 10 {
		t.Errorf("UDP sockets in the range: %d; want 10", r.UDP)
	}
	advice := strings.Join(r.Advice, "\n")
	for _, want := range []string{
		"exhausted: connections from 127.0.0.1 to 127.0.0.1:30000 take all 10 usable local ports; the next connect() there fails with EADDRNOTAVAIL",
		"widen the range: sysctl -w net.ipv4.ip_local_port_range='10000 65535' (now 40000-40009, 10 ports)",
		"spread the load",
		"10 UDP sockets use ports of the range",
	} {
		if !strings.Contains(advice, want) {
			t.Errorf("advice lacks %q:\n%s", want, advice)
		}
	}
	if strings.Contains(advice, "reuse connections") {
		t.Errorf("advice tells to reuse connections, but none is in TIME_WAIT:\n%s", advice)
	}
	if len(r.Top) != 1 || r.Top[0].Process.PID != os.Getpid() || r.Top[0].Sockets != 10 {
		t.Errorf("top processes %+v; want this process with 10", r.Top)
	}
}

// ephemeralHost is a namespace with ephemeral range rng (empty: the
// default) and a server on 127.0.0.1:30000, outside the ranges tested.
func ephemeralHost(t *testing.T, rng string) *netlab.Host {
	t.Helper()
	h, err := netlab.NewT(t).AddHost("eph")
	if err != nil {
		t.Fatal(err)
	}
	if rng != "" {
		if err := h.SetSysctl("net.ipv4.ip_local_port_range", rng); err != nil {
			t.Fatal(err)
		}
	}
	ln, err := h.Listen("tcp", "127.0.0.1:30000")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go testenv.Serve(ln, testenv.Drain)
	return h
}

func errnoCalls() string {
	var b strings.Builder
	for _, e := range Errnos {
		b.WriteString(e.Errno + " " + e.Call + " " + e.Meaning + "\n")
	}
	return b.String()
}

// TestEphemeralSample reads the counters over a short interval in a quiet
// namespace: the connections opened meanwhile are counted.
func TestEphemeralSample(t *testing.T) {
	h := ephemeralHost(t, "")
	// Ephemeral samples for 300ms; open 5 connections during it.
	done := make(chan struct{})
	go func() {
		defer close(done)
		for range 5 {
			c, err := h.DialContext(context.Background(), "tcp", "127.0.0.1:30000")
			if err != nil {
				return
			}
			c.Close()
		}
	}()
	r := mustEphemeral(t, Request{Netns: h.Path(), Sample: 300e6})
	<-done
	if r.Counters == nil || r.Counters.Interval < 300e6 {
		t.Fatalf("counters %+v; want a sample of at least 300ms", r.Counters)
	}
	if r.Counters.ActiveOpens > 5 || r.Counters.PassiveOpens > 5 {
		t.Errorf("counters %+v; the namespace saw at most 5 connections", r.Counters)
	}
}
