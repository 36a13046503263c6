package rawnet

import (
	"encoding/binary"
	"net"
	"net/netip"
	"strings"
	"testing"

	"golang.org/x/net/bpf"
)

var (
	macA = net.HardwareAddr{0x02, 0x70, 0x6c, 0, 0, 1}
	macB = net.HardwareAddr{0x02, 0x70, 0x6c, 0, 0, 2}
)

// tcpChecksumOK recomputes the TCP checksum of an IP packet from scratch.
func tcpChecksumOK(t *testing.T, ip []byte) bool {
	t.Helper()
	var pseudo []byte
	var tcp []byte
	if ip[0]>>4 == 4 {
		if Checksum(ip[:20]) != 0 {
			t.Errorf("IPv4 header checksum wrong")
		}
		tcp = ip[20:]
		pseudo = append(append([]byte{}, ip[12:20]...), 0, 6, 0, byte(len(tcp)))
	} else {
		tcp = ip[40:]
		pseudo = append(append([]byte{}, ip[8:40]...), 0, 0, 0, byte(len(tcp)), 0, 0, 0, 6)
	}
	return Checksum(append(pseudo, tcp...)) == 0
}

func TestTemplateFill(t *testing.T) {
	cases := []struct {
		name     string
		src, dst string
		link     bool
	}{
		{"ipv4 raw", "198.18.0.1", "198.18.0.2", false},
		{"ipv4 ethernet", "198.18.0.1", "198.18.255.254", true},
		{"ipv6 raw", "fd00::1", "fd00::2", false},
		{"ipv6 ethernet", "fd00::1", "fd00:ffff::ffff", true},
		{"ipv4 loopback", "127.0.0.1", "127.0.0.1", false},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			src, dst := netip.MustParseAddr(c.src), netip.MustParseAddr(c.dst)
			var sm, dm net.HardwareAddr
			if c.link {
				sm, dm = macA, macB
			}
			tp, err := NewTemplate(src, sm, dm)
			if err != nil {
				t.Fatal(err)
			}
			buf := make([]byte, MaxSYNLen)
			for _, f := range []struct {
				sport, dport uint16
				seq          uint32
			}{{61000, 80, 0}, {65535, 65535, 0xffffffff}, {1, 0, 0x12345678}, {40000, 443, 0x80000001}} {
				b := tp.Fill(buf, dst, f.sport, f.dport, f.seq)
				ip := b
				if c.link {
					if string(b[0:6]) != string(dm) || string(b[6:12]) != string(sm) {
						t.Errorf("Ethernet addresses % x", b[:12])
					}
					ip = b[ethLen:]
				}
				if !tcpChecksumOK(t, ip) {
					t.Errorf("Fill(%s, %d, %d, %#x): TCP checksum wrong", dst, f.sport, f.dport, f.seq)
				}
				p, err := Parse(ip)
				if err != nil {
					t.Fatalf("Parse(Fill(...)) = %v", err)
				}
				want := Segment{Src: src, Dst: dst, SrcPort: f.sport, DstPort: f.dport, Seq: f.seq, Flags: FlagSYN}
				if p.Segment != want || p.ICMP {
					t.Errorf("Parse(Fill(...)) = %+v; want %+v", p.Segment, want)
				}
				b = tp.FillRST(buf, dst, f.sport, f.dport, f.seq)
				if c.link {
					b = b[ethLen:]
				}
				if !tcpChecksumOK(t, b) {
					t.Errorf("FillRST(%s, %d, %d, %#x): TCP checksum wrong", dst, f.sport, f.dport, f.seq)
				}
				if p, err := Parse(b); err != nil || p.Flags != FlagRST || p.Seq != f.seq {
					t.Errorf("Parse(FillRST(...)) = %+v, %v; want a reset with seq %#x", p.Segment, err, f.seq)
				}
				ack := ^f.seq
				b = tp.FillACK(buf, dst, f.sport, f.dport, f.seq, ack)
				if c.link {
					b = b[ethLen:]
				}
				if !tcpChecksumOK(t, b) {
					t.Errorf("FillACK(%s, %d, %d, %#x, %#x): TCP checksum wrong", dst, f.sport, f.dport, f.seq, ack)
				}
				want = Segment{Src: src, Dst: dst, SrcPort: f.sport, DstPort: f.dport, Seq: f.seq, Ack: ack, Flags: FlagACK}
				if p, err := Parse(b); err != nil || p.Segment != want {
					t.Errorf("Parse(FillACK(...)) = %+v, %v; want %+v", p.Segment, err, want)
				}
				// The template's slot is reused: a SYN after an ACK acknowledges nothing.
				if p, _ := Parse(tp.Fill(buf, dst, f.sport, f.dport, f.seq)[ethOff(c.link):]); p.Ack != 0 || p.Flags != FlagSYN {
					t.Errorf("Fill after FillACK = %+v; want a SYN with ack 0", p.Segment)
				}
			}
		})
	}
}

// ethOff is where the IP header starts in a template's packet.
func ethOff(link bool) int {
	if link {
		return ethLen
	}
	return 0
}

func TestUpdateChecksum(t *testing.T) {
	b := []byte{0x45, 0, 0, 44, 0x12, 0x34, 0x40, 0, 64, 6, 0, 0, 198, 18, 0, 1, 198, 18, 0, 2}
	c := Checksum(b)
	binary.BigEndian.PutUint16(b[18:], 0xabcd)
	if got, want := UpdateChecksum(c, 0x0002, 0xabcd), Checksum(b); got != want {
		t.Errorf("UpdateChecksum = %#x; want %#x", got, want)
	}
}

func TestCookie(t *testing.T) {
	// SipHash-2-4 reference vectors (the paper's appendix): key 00..0f,
	// messages 00..(n-1).
	k0, k1 := uint64(0x0706050403020100), uint64(0x0f0e0d0c0b0a0908)
	for n, want := range map[int]uint64{0: 0x726fdb47dd0e0e31, 8: 0x93f5f5799a932462, 15: 0xa129ca6149be45e5} {
		var m [40]byte
		for i := range n {
			m[i] = byte(i)
		}
		if got := siphash24(k0, k1, &m, n); got != want {
			t.Errorf("siphash24(%d bytes) = %#x; want %#x", n, got, want)
		}
	}
	a, b := netip.MustParseAddr("198.18.0.1"), netip.MustParseAddr("198.18.0.2")
	c := NewCookie(1, 2)
	if c.SYN(a, b, 61000, 80) == c.SYN(a, b, 61000, 81) || c.SYN(a, b, 61000, 80) == NewCookie(1, 3).SYN(a, b, 61000, 80) {
		t.Error("cookies of different ports or keys are equal")
	}
	if n := testing.AllocsPerRun(100, func() { c.SYN(a, b, 61000, 80) }); n != 0 {
		t.Errorf("Cookie.SYN allocates %v times", n)
	}
}

// ipv4TCP builds an IPv4 packet with a TCP header.
func ipv4TCP(src, dst string, sport, dport uint16, flags uint8, seq, ack uint32) []byte {
	b := make([]byte, 40)
	b[0], b[9] = 0x45, 6
	binary.BigEndian.PutUint16(b[2:], 40)
	copy(b[12:], netip.MustParseAddr(src).AsSlice())
	copy(b[16:], netip.MustParseAddr(dst).AsSlice())
	binary.BigEndian.PutUint16(b[20:], sport)
	binary.BigEndian.PutUint16(b[22:], dport)
	binary.BigEndian.PutUint32(b[24:], seq)
	binary.BigEndian.PutUint32(b[28:], ack)
	b[32], b[33] = 5<<4, flags
	return b
}

func ipv6TCP(src, dst string, sport, dport uint16, flags uint8, seq, ack uint32) []byte {
	b := make([]byte, 60)
	b[0], b[6] = 0x60, 6
	binary.BigEndian.PutUint16(b[4:], 20)
	copy(b[8:], netip.MustParseAddr(src).AsSlice())
	copy(b[24:], netip.MustParseAddr(dst).AsSlice())
	t := b[40:]
	binary.BigEndian.PutUint16(t[0:], sport)
	binary.BigEndian.PutUint16(t[2:], dport)
	binary.BigEndian.PutUint32(t[4:], seq)
	binary.BigEndian.PutUint32(t[8:], ack)
	t[12], t[13] = 5<<4, flags
	return b
}

// icmpError wraps quoted in an ICMP error of the given family and type.
func icmpError(from, to string, typ, code uint8, quoted []byte) []byte {
	if strings.Contains(from, ":") {
		b := make([]byte, 48, 48+len(quoted))
		b[0], b[6] = 0x60, 58
		binary.BigEndian.PutUint16(b[4:], uint16(8+len(quoted)))
		copy(b[8:], netip.MustParseAddr(from).AsSlice())
		copy(b[24:], netip.MustParseAddr(to).AsSlice())
		b[40], b[41] = typ, code
		return append(b, quoted...)
	}
	b := make([]byte, 28, 28+len(quoted))
	b[0], b[9] = 0x45, 1
	binary.BigEndian.PutUint16(b[2:], uint16(28+len(quoted)))
	copy(b[12:], netip.MustParseAddr(from).AsSlice())
	copy(b[16:], netip.MustParseAddr(to).AsSlice())
	b[20], b[21] = typ, code
	return append(b, quoted...)
}

type parseCase struct {
	name   string
	pkt    []byte
	want   Packet
	err    string // substring of the error; "" for none
	filter bool   // whether Filter(61000, 61999) passes it
}

func parseCases() []parseCase {
	a4, b4 := netip.MustParseAddr("198.18.0.1"), netip.MustParseAddr("198.18.0.2")
	a6, b6 := netip.MustParseAddr("fd00::1"), netip.MustParseAddr("fd00::2")
	r := netip.MustParseAddr("198.18.0.254")
	return []parseCase{
		{name: "syn-ack v4", pkt: ipv4TCP("198.18.0.2", "198.18.0.1", 80, 61000, FlagSYN|FlagACK, 7, 100),
			want: Packet{Segment: Segment{Src: b4, Dst: a4, SrcPort: 80, DstPort: 61000, Seq: 7, Ack: 100, Flags: FlagSYN | FlagACK}}, filter: true},
		{name: "rst v6", pkt: ipv6TCP("fd00::2", "fd00::1", 22, 61999, FlagRST|FlagACK, 0, 5),
			want: Packet{Segment: Segment{Src: b6, Dst: a6, SrcPort: 22, DstPort: 61999, Ack: 5, Flags: FlagRST | FlagACK}}, filter: true},
		{name: "v4 other port", pkt: ipv4TCP("198.18.0.2", "198.18.0.1", 80, 62000, FlagSYN|FlagACK, 7, 100),
			want: Packet{Segment: Segment{Src: b4, Dst: a4, SrcPort: 80, DstPort: 62000, Seq: 7, Ack: 100, Flags: FlagSYN | FlagACK}}},
		{name: "v6 below range", pkt: ipv6TCP("fd00::2", "fd00::1", 22, 60999, FlagRST, 0, 5),
			want: Packet{Segment: Segment{Src: b6, Dst: a6, SrcPort: 22, DstPort: 60999, Ack: 5, Flags: FlagRST}}},
		{name: "icmp unreach v4", pkt: icmpError("198.18.0.254", "198.18.0.1", 3, 1, ipv4TCP("198.18.0.1", "198.18.0.2", 61000, 80, FlagSYN, 99, 0)[:28]),
			want: Packet{Segment: Segment{Src: a4, Dst: b4, SrcPort: 61000, DstPort: 80, Seq: 99}, ICMP: true, Type: 3, Code: 1, From: r}, filter: true},
		{name: "icmp6 unreach", pkt: icmpError("fd00::2", "fd00::1", 1, 4, ipv6TCP("fd00::1", "fd00::2", 61000, 80, FlagSYN, 99, 0)),
			want: Packet{Segment: Segment{Src: a6, Dst: b6, SrcPort: 61000, DstPort: 80, Seq: 99}, ICMP: true, Type: 1, Code: 4, From: b6}, filter: true},
		{name: "icmp echo", pkt: icmpError("198.18.0.2", "198.18.0.1", 0, 0, make([]byte, 8)), err: "type 0 at byte 20"},
		{name: "icmp short quote", pkt: icmpError("198.18.0.2", "198.18.0.1", 3, 3, ipv4TCP("198.18.0.1", "198.18.0.2", 61000, 80, FlagSYN, 99, 0)[:24]),
			err: "4 bytes of TCP at byte 48", filter: true},
		{name: "empty", pkt: nil, err: "empty packet at byte 0"},
		{name: "short v4", pkt: []byte{0x45, 0, 0}, err: "3 bytes at byte 0"},
		{name: "bad ihl", pkt: append([]byte{0x41}, make([]byte, 39)...), err: "header length 4 at byte 0"},
		{name: "version 5", pkt: []byte{0x50}, err: "version 5 at byte 0"},
		{name: "udp", pkt: func() []byte { b := ipv4TCP("198.18.0.2", "198.18.0.1", 53, 61000, 0, 0, 0); b[9] = 17; return b }(),
			err: "protocol 17 at byte 19"},
		{name: "fragment", pkt: func() []byte {
			b := ipv4TCP("198.18.0.2", "198.18.0.1", 80, 61000, FlagSYN|FlagACK, 0, 0)
			b[7] = 1
			return b
		}(), err: "fragment at byte 6"},
		{name: "short tcp", pkt: ipv4TCP("198.18.0.2", "198.18.0.1", 80, 61000, FlagSYN|FlagACK, 0, 0)[:30], err: "10 bytes at byte 20", filter: true},
		{name: "bad data offset", pkt: func() []byte {
			b := ipv6TCP("fd00::2", "fd00::1", 80, 61000, FlagSYN|FlagACK, 0, 0)
			b[52] = 1 << 4
			return b
		}(), err: "data offset 4 at byte 52", filter: true},
	}
}

func TestParse(t *testing.T) {
	for _, c := range parseCases() {
		t.Run(c.name, func(t *testing.T) {
			got, err := Parse(c.pkt)
			if c.err != "" {
				if err == nil || !strings.Contains(err.Error(), c.err) {
					t.Fatalf("Parse = %v; want an error with %q", err, c.err)
				}
				return
			}
			if err != nil || got != c.want {
				t.Errorf("Parse = %+v, %v; want %+v", got, err, c.want)
			}
		})
	}
}

// TestFilter runs the filter's portable part in x/net/bpf's VM.
func TestFilter(t *testing.T) {
	core, err := filterCore(61000, 61999)
	if err != nil {
		t.Fatal(err)
	}
	vm, err := bpf.NewVM(core)
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range parseCases() {
		if len(c.pkt) == 0 {
			continue
		}
		n, err := vm.Run(c.pkt)
		if err != nil {
			t.Fatalf("%s: %v", c.name, err)
		}
		if got := n > 0; got != c.filter {
			t.Errorf("%s: filter passes %v; want %v", c.name, got, c.filter)
		}
	}
	if _, err := Filter(2, 1); err == nil {
		t.Error("Filter(2, 1) = nil error")
	}
	prog, err := Filter(61000, 61999)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := bpf.Assemble(prog); err != nil {
		t.Errorf("Assemble(Filter) = %v", err)
	}
}

func FuzzParse(f *testing.F) {
	for _, c := range parseCases() {
		f.Add(c.pkt)
	}
	core, err := filterCore(61000, 61999)
	if err != nil {
		f.Fatal(err)
	}
	vm, err := bpf.NewVM(core)
	if err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		p, err := Parse(b)
		if err == nil && p.ICMP == (p.Type == 0 && p.Code == 0 && !p.From.IsValid()) {
			t.Errorf("Parse(% x) = %+v: ICMP fields inconsistent", b, p)
		}
		if len(b) > 0 {
			if _, err := vm.Run(b); err != nil {
				t.Errorf("filter on % x: %v", b, err)
			}
		}
	})
}

// FuzzTemplate: whatever the addresses, ports and sequence, Fill makes a
// packet with right checksums that Parse reads back.
func FuzzTemplate(f *testing.F) {
	f.Add([]byte{198, 18, 0, 1}, []byte{198, 18, 0, 2}, uint16(61000), uint16(80), uint32(1), false)
	f.Add(netip.MustParseAddr("fd00::1").AsSlice(), netip.MustParseAddr("fd00::2").AsSlice(), uint16(1), uint16(65535), uint32(0xffffffff), true)
	f.Fuzz(func(t *testing.T, s, d []byte, sport, dport uint16, seq uint32, link bool) {
		src, ok1 := netip.AddrFromSlice(s)
		dst, ok2 := netip.AddrFromSlice(d)
		src, dst = src.Unmap(), dst.Unmap() // as NewTemplate takes them
		if !ok1 || !ok2 || src.Is4() != dst.Is4() {
			return
		}
		var sm, dm net.HardwareAddr
		if link {
			sm, dm = macA, macB
		}
		tp, err := NewTemplate(src, sm, dm)
		if err != nil {
			t.Fatal(err)
		}
		buf := make([]byte, MaxSYNLen)
		for _, ack := range []uint32{0, seq ^ 0x5a5a5a5a} {
			var b []byte
			if ack == 0 {
				b = tp.Fill(buf, dst, sport, dport, seq)
			} else {
				b = tp.FillACK(buf, dst, sport, dport, seq, ack)
			}
			b = b[ethOff(link):]
			if !tcpChecksumOK(t, b) {
				t.Fatalf("checksum wrong for %s %s %d %d %d ack %d", src, dst, sport, dport, seq, ack)
			}
			p, err := Parse(b)
			if err != nil || p.Src != src || p.Dst != dst || p.SrcPort != sport || p.DstPort != dport || p.Seq != seq || p.Ack != ack {
				t.Fatalf("Parse(Fill) = %+v, %v; want ack %d", p, err, ack)
			}
		}
	})
}

func BenchmarkFill(b *testing.B) {
	tp, _ := NewTemplate(netip.MustParseAddr("198.18.0.1"), macA, macB)
	c := NewCookie(1, 2)
	src, dst := netip.MustParseAddr("198.18.0.1"), netip.MustParseAddr("198.18.0.2")
	buf := make([]byte, MaxSYNLen)
	b.ReportAllocs()
	for i := 0; b.Loop(); i++ {
		port := uint16(i)
		tp.Fill(buf, dst, 61000, port, c.SYN(src, dst, 61000, port))
	}
}
