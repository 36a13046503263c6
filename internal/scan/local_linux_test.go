package scan

import (
	"encoding/binary"
	"errors"
	"net"
	"net/netip"
	"sync"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"portolan/internal/netlab"
	"portolan/internal/portspec"
)

// seenProbe is a probe as the target's kernel received it.
type seenProbe struct {
	src     netip.AddrPort
	ifindex int // the interface it came in on
}

// captureProbes records, in h's namespace, every IPv4 packet of proto
// (6 TCP, 17 UDP) to port: the source address and port the scanner put in
// it and the interface it arrived on. stop ends the capture and returns
// what it saw.
func captureProbes(t *testing.T, h *netlab.Host, proto byte, port portspec.Port) (stop func() []seenProbe) {
	t.Helper()
	var fd int
	if err := h.Do(func() (err error) {
		fd, err = unix.Socket(unix.AF_PACKET, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, int(htons(unix.ETH_P_IP)))
		return err
	}); err != nil {
		t.Fatalf("packet socket: %v", err)
	}
	if err := unix.SetsockoptTimeval(fd, unix.SOL_SOCKET, unix.SO_RCVTIMEO, &unix.Timeval{Usec: 50_000}); err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	var seen []seenProbe
	done := make(chan struct{})
	finished := make(chan struct{})
	go func() {
		defer close(finished)
		buf := make([]byte, 2048)
		for {
			n, from, err := unix.Recvfrom(fd, buf, 0)
			if err != nil {
				// Stop only once the socket is drained (a read timed
				// out): a fast scan is over before this goroutine ran.
				select {
				case <-done:
					return
				default:
					continue
				}
			}
			if n < 24 || buf[0]>>4 != 4 || buf[9] != proto {
				continue
			}
			ihl := int(buf[0]&0xf) * 4
			if n < ihl+4 || binary.BigEndian.Uint16(buf[ihl+2:]) != uint16(port) {
				continue
			}
			src := netip.AddrPortFrom(netip.AddrFrom4([4]byte(buf[12:16])), binary.BigEndian.Uint16(buf[ihl:]))
			ll, _ := from.(*unix.SockaddrLinklayer)
			if ll == nil || ll.Pkttype == unix.PACKET_OUTGOING {
				continue
			}
			mu.Lock()
			seen = append(seen, seenProbe{src, ll.Ifindex})
			mu.Unlock()
		}
	}()
	var once sync.Once
	stop = func() []seenProbe {
		once.Do(func() { close(done); <-finished; unix.Close(fd) })
		mu.Lock()
		defer mu.Unlock()
		return seen
	}
	t.Cleanup(func() { stop() })
	return stop
}

func htons(v uint16) uint16 { return v<<8 | v>>8 }

// TestLocalEndpoints scans a target from a host with two links to it and
// a second address on the first, and checks in the target's namespace
// where each probe came from: -S (Local.Addr) sets the source address,
// -e (Local.Iface) the interface and with it the source address, and
// --source-port (Local.Port) the source port; for connect, SYN and UDP
// probes. The open port must be found open every time: the answers found
// their way back to the scanner.
func TestLocalEndpoints(t *testing.T) {
	lab := netlab.NewT(t)
	scanner, err := lab.AddHost("scanner")
	if err != nil {
		t.Fatal(err)
	}
	target, err := lab.AddHost("target")
	if err != nil {
		t.Fatal(err)
	}
	l0, err := lab.Link(scanner, target)
	if err != nil {
		t.Fatal(err)
	}
	l1, err := lab.Link(scanner, target)
	if err != nil {
		t.Fatal(err)
	}
	second := netip.MustParseAddr("198.18.0.11")
	if err := scanner.AddAddr(l0.ADev, netip.PrefixFrom(second, 24)); err != nil {
		t.Fatal(err)
	}
	// The target's first address is reachable through the second link
	// too, but only for a socket bound to it: a worse metric.
	ip(t, "-n", scanner.Netns(), "route", "add", l0.Net4.String(), "dev", l1.ADev, "metric", "1000")
	var if0, if1 int
	var open, udpOpen portspec.Port
	if err := target.Do(func() error {
		for dev, idx := range map[string]*int{l0.BDev: &if0, l1.BDev: &if1} {
			ifi, err := net.InterfaceByName(dev)
			if err != nil {
				return err
			}
			*idx = ifi.Index
		}
		open = openPort(t, netip.IPv4Unspecified())
		// Bound to the address probed, so that replies come from it
		// whichever link they leave by.
		pc, err := net.ListenPacket("udp4", netip.AddrPortFrom(l0.B4, 0).String())
		if err != nil {
			return err
		}
		t.Cleanup(func() { pc.Close() })
		go serveUDP(pc, func(b []byte) []byte { return b })
		udpOpen = portspec.Port(pc.LocalAddr().(*net.UDPAddr).Port)
		return nil
	}); err != nil {
		t.Fatal(err)
	}

	cases := []struct {
		name    string
		prober  string
		local   Local
		wantSrc netip.Addr
		wantIf  int
	}{
		{"connect, routed", "connect", Local{}, l0.A4, if0},
		{"connect -S", "connect", Local{Addr: second}, second, if0},
		{"connect -e", "connect", Local{Iface: l1.ADev}, l1.A4, if1},
		{"connect --source-port", "connect", Local{Port: 40555}, l0.A4, if0},
		{"connect -e -S --source-port", "connect", Local{Iface: l1.ADev, Addr: l1.A4, Port: 40556}, l1.A4, if1},
		{"syn -S", "syn", Local{Addr: second}, second, if0},
		{"syn -e", "syn", Local{Iface: l1.ADev}, l1.A4, if1},
		{"syn --source-port", "syn", Local{Port: 53}, l0.A4, if0},
		{"udp -S --source-port", "udp", Local{Addr: second, Port: 40557}, second, if0},
		{"udp -e", "udp", Local{Iface: l1.ADev}, l1.A4, if1},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			p, err := ProberByName(c.prober, ProberOptions{Local: c.local})
			if err != nil {
				t.Fatal(err)
			}
			port, proto := open, byte(unix.IPPROTO_TCP)
			var sp Space = listSpace{netip.AddrPortFrom(l0.B4, uint16(open))}
			if c.prober == "udp" {
				port, proto = udpOpen, unix.IPPROTO_UDP
				sp = udpHostPorts{l0.B4, []portspec.Port{udpOpen}}
			}
			stop := captureProbes(t, target, proto, port)
			var got map[portKey]Result
			if err := scanner.Do(func() error {
				got, _ = collect(t, Scanner{Prober: p, HostDownAfter: -1}, sp)
				return nil
			}); err != nil {
				t.Fatal(err)
			}
			seen := stop()
			if r := got[portKey{l0.B4, port}]; r.State != Open {
				t.Errorf("port %d: %s (%s); want open: the answer did not come back", port, r.State, r.Reason)
			}
			if len(seen) == 0 {
				t.Fatalf("the target saw no probe to port %d", port)
			}
			for _, s := range seen {
				if s.src.Addr() != c.wantSrc || s.ifindex != c.wantIf || c.local.Port != 0 && s.src.Port() != c.local.Port {
					t.Errorf("probe from %s on interface %d; want from %s (port %d) on %d", s.src, s.ifindex, c.wantSrc, c.local.Port, c.wantIf)
				}
			}
		})
	}
}

// TestSourcePortConnectScan scans 400 ports from one source port: every
// probe socket binds it with SO_REUSEADDR, and the connects are told apart
// by their destinations, so every closed port is still closed (reset) and
// the open one open. A listener on the source port makes the scan fail at
// once, as does an address that is not the scanner's.
func TestSourcePortConnectScan(t *testing.T) {
	scanner, target, lk := netlab.NewPair(t)
	ln, err := target.Listen("tcp4", netip.AddrPortFrom(lk.B4, 0).String())
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	peers := make(chan net.Addr, 16)
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				close(peers)
				return
			}
			select {
			case peers <- c.RemoteAddr():
			default:
			}
			c.Close()
		}
	}()
	open := portspec.Port(ln.Addr().(*net.TCPAddr).Port)
	sp := space{addrs: []netip.Addr{lk.B4}}
	for p := portspec.Port(1000); p < 1400; p++ {
		if p != open {
			sp.ports = append(sp.ports, p)
		}
	}
	sp.ports = append(sp.ports, open)
	stop := captureProbes(t, target, unix.IPPROTO_TCP, open)
	var got map[portKey]Result
	if err := scanner.Do(func() error {
		got, _ = collect(t, Scanner{Prober: ConnectProber{Local: Local{Port: 40600}}, Seed: 1}, sp)
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	for _, p := range sp.ports {
		want := Closed
		if p == open {
			want = Open
		}
		if r := got[portKey{lk.B4, p}]; r.State != want {
			t.Errorf("port %d: %s (%s); want %s", p, r.State, r.Reason, want)
		}
	}
	for _, s := range stop() {
		if s.src.Port() != 40600 {
			t.Errorf("probe to the open port from %s; want source port 40600", s.src)
		}
	}
	select {
	case a := <-peers:
		if a.(*net.TCPAddr).Port != 40600 {
			t.Errorf("the listener accepted a connection from %s; want source port 40600", a)
		}
	case <-time.After(5 * time.Second):
		t.Error("the listener accepted no connection")
	}

	if err := scanner.Do(func() error {
		ln, err := net.Listen("tcp4", ":40601")
		if err != nil {
			return err
		}
		defer ln.Close()
		for _, l := range []Local{{Port: 40601}, {Addr: netip.MustParseAddr("198.18.0.77")}} {
			s := Scanner{Prober: ConnectProber{Local: l}}
			if _, err := s.Run(t.Context(), sp); err == nil {
				t.Errorf("scan from %+v: no error", l)
			}
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
}

// TestBindDeviceErr: SO_BINDTODEVICE refused for lack of privilege says
// CAP_NET_RAW (ErrBindDevice), a missing interface says so.
func TestBindDeviceErr(t *testing.T) {
	for _, c := range []struct {
		errno unix.Errno
		priv  bool
	}{{unix.EPERM, true}, {unix.ENODEV, false}, {unix.EINVAL, false}} {
		err := bindDeviceErr("eth9", c.errno)
		if errors.Is(err, ErrBindDevice) != c.priv || !errors.Is(err, c.errno) {
			t.Errorf("bindDeviceErr(eth9, %v) = %v; want ErrBindDevice: %v", c.errno, err, c.priv)
		}
	}
}
