package scan

import (
	"encoding/binary"
	"fmt"
	"net"
	"net/netip"
	"os"
	"strings"
	"testing"

	"portolan/internal/netlab"
	"portolan/internal/portspec"
	"portolan/internal/testenv"
)

// udpHostPorts is one host's UDP ports.
type udpHostPorts struct {
	addr  netip.Addr
	ports []portspec.Port
}

func (s udpHostPorts) Size() uint64   { return uint64(len(s.ports)) }
func (s udpHostPorts) PortCount() int { return len(s.ports) }
func (s udpHostPorts) At(i uint64) (netip.Addr, portspec.Port, portspec.Proto) {
	return s.addr, s.ports[i], portspec.UDP
}

// serveUDP answers every datagram on pc with what answer returns (nothing
// when it returns nil), until pc is closed.
func serveUDP(pc net.PacketConn, answer func([]byte) []byte) {
	buf := make([]byte, 2048)
	for {
		n, from, err := pc.ReadFrom(buf)
		if err != nil {
			return
		}
		if out := answer(buf[:n]); out != nil {
			pc.WriteTo(out, from)
		}
	}
}

// dnsAnswer is a small authoritative server for one name: version.bind in
// class CH, answered with a TXT record; anything else is refused. It
// reads the question as a server would (RFC 1035 4.1), independently of
// udpprobe's parser.
func dnsAnswer(q []byte) []byte {
	if len(q) < 12 || q[2]&0x80 != 0 || binary.BigEndian.Uint16(q[4:]) != 1 {
		return nil
	}
	off := 12
	var labels []string
	for off < len(q) && q[off] != 0 {
		l := int(q[off])
		if l > 63 || off+1+l > len(q) {
			return nil
		}
		labels = append(labels, string(q[off+1:off+1+l]))
		off += 1 + l
	}
	off++
	if off+4 > len(q) {
		return nil
	}
	qtype, qclass := binary.BigEndian.Uint16(q[off:]), binary.BigEndian.Uint16(q[off+2:])
	question := q[12 : off+4]
	r := append([]byte{}, q[:2]...)
	name := strings.ToLower(strings.Join(labels, "."))
	if name != "version.bind" || qtype != 16 || qclass != 3 {
		r = append(r, 0x84, 0x05, 0, 1, 0, 0, 0, 0, 0, 0) // QR AA, REFUSED
		return append(r, question...)
	}
	r = append(r, 0x84, 0x00, 0, 1, 0, 1, 0, 0, 0, 0)
	r = append(r, question...)
	txt := "labdns 9.18.0"
	r = append(r, 0xc0, 12, 0, 16, 0, 3, 0, 0, 0, 0) // name -> question, TXT, CH, TTL 0
	r = binary.BigEndian.AppendUint16(r, uint16(1+len(txt)))
	r = append(r, byte(len(txt)))
	return append(r, txt...)
}

// ntpAnswer is an NTP server of stratum 2 (RFC 5905): mode 4, the
// client's transmit timestamp as origin.
func ntpAnswer(q []byte) []byte {
	if len(q) < 48 || q[0]&7 != 3 {
		return nil
	}
	r := make([]byte, 48)
	r[0] = 4<<3 | 4
	r[1] = 2
	copy(r[12:16], []byte{198, 18, 0, 1})
	copy(r[24:32], q[40:48])
	return r
}

// tftpServe is a TFTP server that has no files (RFC 1350): it answers a
// read request with ERROR 1 from a new port of its own, its transfer ID,
// as real servers do.
func tftpServe(t *testing.T, target *netlab.Host, pc net.PacketConn, a netip.Addr) {
	buf := make([]byte, 2048)
	for {
		n, from, err := pc.ReadFrom(buf)
		if err != nil {
			return
		}
		if n < 4 || binary.BigEndian.Uint16(buf) != 1 {
			continue
		}
		// The transfer port is one the scan probes (a dropped one): an
		// ephemeral port may be, and the reply is still 69's.
		tid, err := target.ListenPacket("udp", netip.AddrPortFrom(a, 43002).String())
		if err != nil {
			t.Errorf("tftp transfer socket: %v", err)
			return
		}
		tid.WriteTo(append([]byte{0, 5, 0, 1}, "File not found\x00"...), from)
		tid.Close()
	}
}

// udpLab starts, in the target, a DNS server on 53, an NTP server on 123,
// a TFTP server on 69 and an answer-anything service on 40000, and a firewall that rejects
// 42000-42003 with ICMP administratively prohibited and drops
// 43000-43003. Ports 41000-41003 have nothing: ICMP port unreachable.
func udpLab(t *testing.T, target *netlab.Host, addrs ...netip.Addr) map[portspec.Port]wantState {
	t.Helper()
	testenv.RequireCommand(t, "nft")
	for _, a := range addrs {
		for port, answer := range map[int]func([]byte) []byte{
			53:    dnsAnswer,
			123:   ntpAnswer,
			40000: func(b []byte) []byte { return []byte("hello\n") },
		} {
			pc, err := target.ListenPacket("udp", netip.AddrPortFrom(a, uint16(port)).String())
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { pc.Close() })
			go serveUDP(pc, answer)
		}
		pc, err := target.ListenPacket("udp", netip.AddrPortFrom(a, 69).String())
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { pc.Close() })
		go tftpServe(t, target, pc, a)
	}
	cmd := target.Command(t.Context(), "nft", "-f", "-")
	cmd.Stdin = strings.NewReader(`table inet fw {
 chain input {
  type filter hook input priority 0;
  udp dport 42000-42003 reject with icmpx type admin-prohibited
  udp dport 43000-43003 drop
 }
}
`)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("nft: %v\n%s", err, out)
	}
	want := map[portspec.Port]wantState{
		53:    {Open, ReasonUDPResponse},
		69:    {Open, ReasonUDPResponse},
		123:   {Open, ReasonUDPResponse},
		40000: {Open, ReasonUDPResponse},
	}
	for i := range portspec.Port(4) {
		want[41000+i] = wantState{Closed, ReasonPortUnreach}
		want[42000+i] = wantState{Filtered, ReasonAdminProhibited}
		want[43000+i] = wantState{OpenFiltered, ReasonNoResponse}
	}
	return want
}

// scanUDPHost scans want's ports of addr from the scanner host with the
// UDP prober and checks each port's state and reason.
func scanUDPHost(t *testing.T, scanner *netlab.Host, addr netip.Addr, want map[portspec.Port]wantState) map[portKey]Result {
	t.Helper()
	var got map[portKey]Result
	if err := scanner.Do(func() error {
		got, _ = collect(t, Scanner{Prober: UDPProber{}, Seed: 1}, udpHostPorts{addr, portsOf(want)})
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	for p, w := range want {
		if r := got[portKey{addr, p}]; stateOf(r) != w {
			t.Errorf("%s port %d/udp = %v (%s); want %v (%s)", addr, p, r.State, r.Reason, w.state, w.reason)
		}
	}
	return got
}

func portsOf(want map[portspec.Port]wantState) []portspec.Port {
	var ports []portspec.Port
	for p := range want {
		ports = append(ports, p)
	}
	return ports
}

// TestUDPStates scans a target with real UDP services, closed ports, and
// a firewall that rejects some ports and drops others, over IPv4 and IPv6,
// with the target's ICMP rate limit off: every state and reason comes from
// the real kernel, and the services are named from their replies.
func TestUDPStates(t *testing.T) {
	scanner, target, lk := netlab.NewPair(t)
	for _, k := range []string{"net.ipv4.icmp_ratelimit", "net.ipv6.icmp.ratelimit"} {
		if err := target.SetSysctl(k, "0"); err != nil {
			t.Fatal(err)
		}
	}
	want := udpLab(t, target, lk.B4, lk.B6)
	for _, addr := range []netip.Addr{lk.B4, lk.B6} {
		t.Run(addr.String(), func(t *testing.T) {
			got := scanUDPHost(t, scanner, addr, want)
			for _, c := range []struct {
				port            portspec.Port
				service, banner string
			}{{53, "domain", "version: labdns 9.18.0"}, {123, "ntp", "v4 stratum 2"}, {69, "tftp", "error 1: File not found"}} {
				r := got[portKey{addr, c.port}]
				if r.Service != c.service || r.Banner != c.banner {
					t.Errorf("%s port %d/udp: service %q banner %q; want %q, %q", addr, c.port, r.Service, r.Banner, c.service, c.banner)
				}
			}
		})
	}
}

// TestUDPRateLimitedClosed: a target that rate-limits its ICMP errors (a
// refill every 100 ms per destination after a burst of 6, on IPv4 and
// IPv6) answers only the first few closed ports of a wave. The rest must
// still come out closed, not open|filtered, and the dropped ports among
// them open|filtered; the target's own counters show that it did suppress
// errors.
func TestUDPRateLimitedClosed(t *testing.T) {
	scanner, target, lk := netlab.NewPair(t)
	for _, k := range []string{"net.ipv4.icmp_ratelimit", "net.ipv6.icmp.ratelimit"} {
		if err := target.SetSysctl(k, "100"); err != nil {
			t.Fatal(err)
		}
	}
	want := udpLab(t, target, lk.B4, lk.B6)
	for p := portspec.Port(41004); p < 41040; p++ {
		want[p] = wantState{Closed, ReasonPortUnreach}
	}
	for _, addr := range []netip.Addr{lk.B4, lk.B6} {
		t.Run(addr.String(), func(t *testing.T) {
			before := icmpRateLimited(t, target)
			scanUDPHost(t, scanner, addr, want)
			if after := icmpRateLimited(t, target); after <= before {
				t.Errorf("the target suppressed no ICMP error (rate-limit counters %d before, %d after): the test tests nothing", before, after)
			}
		})
	}
}

// icmpRateLimited sums the target's counters of ICMP errors it did not
// send for its per-destination rate limit (Icmp RateLimitHost, Icmp6
// Icmp6RateLimitHost in /proc/net/snmp{,6}).
func icmpRateLimited(t *testing.T, h *netlab.Host) int {
	t.Helper()
	total := 0
	err := h.Do(func() error {
		for _, f := range []string{"/proc/thread-self/net/snmp", "/proc/thread-self/net/snmp6"} {
			b, err := os.ReadFile(f)
			if err != nil {
				return err
			}
			total += snmpCounter(string(b), "RateLimitHost")
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return total
}

// snmpCounter sums the counters whose name ends in suffix, in either of
// /proc/net/snmp's layouts (a header line and a value line per protocol)
// or snmp6's (one "name value" per line).
func snmpCounter(text, suffix string) int {
	lines := strings.Split(text, "\n")
	total := 0
	for i, l := range lines {
		f := strings.Fields(l)
		if len(f) == 2 && strings.HasSuffix(f[0], suffix) {
			var v int
			fmt.Sscan(f[1], &v)
			total += v
			continue
		}
		if i+1 >= len(lines) || len(f) < 2 || !strings.HasSuffix(f[0], ":") {
			continue
		}
		vals := strings.Fields(lines[i+1])
		if len(vals) != len(f) || vals[0] != f[0] || i%2 == 1 {
			continue
		}
		for j, name := range f {
			if strings.HasSuffix(name, suffix) {
				var v int
				fmt.Sscan(vals[j], &v)
				total += v
			}
		}
	}
	return total
}

// manyHosts is every address of a prefix x some UDP ports.
type manyHosts struct {
	first netip.Addr
	n     int
	ports []portspec.Port
}

func (s manyHosts) Size() uint64 { return uint64(s.n * len(s.ports)) }
func (s manyHosts) At(i uint64) (netip.Addr, portspec.Port, portspec.Proto) {
	a := s.first
	for range int(i) / len(s.ports) {
		a = a.Next()
	}
	return a, s.ports[int(i)%len(s.ports)], portspec.UDP
}

// TestUDPForgetsHosts scans more loopback hosts than the session keeps:
// the idle ones are forgotten (all but whether they sent errors) and every
// port still comes out closed.
func TestUDPForgetsHosts(t *testing.T) {
	defer func(n int) { udpMaxHosts = n }(udpMaxHosts)
	udpMaxHosts = 16
	sp := manyHosts{netip.MustParseAddr("127.0.9.1"), 200, closedUDPPorts(t, 3)}
	got, _ := collect(t, Scanner{Prober: UDPProber{}, Seed: 1}, sp)
	if len(got) != 600 {
		t.Errorf("%d results; want 600", len(got))
	}
	for k, r := range got {
		if r.State != Closed {
			t.Errorf("%s port %d = %v (%s); want closed", k.addr, k.port, r.State, r.Reason)
		}
	}
}

// closedUDPPorts returns n UDP ports nothing on 127.0.0.0/8 is bound to
// now.
func closedUDPPorts(t *testing.T, n int) []portspec.Port {
	var ports []portspec.Port
	for range n {
		pc, err := net.ListenPacket("udp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		defer pc.Close() // all held at once: n different ports
		ports = append(ports, portspec.Port(pc.LocalAddr().(*net.UDPAddr).Port))
	}
	return ports
}
