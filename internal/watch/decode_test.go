package watch

import (
	"encoding/binary"
	"errors"
	"net/netip"
	"strings"
	"testing"

	"portolan/internal/portspec"
)

// packet builds an IPv4 or IPv6 packet from src to dst carrying a TCP
// (flags) or UDP (udp) header.
func packet(src, dst string, proto uint8, sport, dport uint16, flags uint8) []byte {
	s, d := netip.MustParseAddr(src), netip.MustParseAddr(dst)
	var b []byte
	if s.Is4() {
		b = make([]byte, 20)
		b[0] = 0x45
		b[8] = 64
		b[9] = proto
		copy(b[12:], s.AsSlice())
		copy(b[16:], d.AsSlice())
	} else {
		b = make([]byte, 40)
		b[0] = 0x60
		b[6] = proto
		b[7] = 64
		copy(b[8:], s.AsSlice())
		copy(b[24:], d.AsSlice())
	}
	l4 := make([]byte, 20)
	binary.BigEndian.PutUint16(l4, sport)
	binary.BigEndian.PutUint16(l4[2:], dport)
	if proto == 6 {
		l4[12] = 5 << 4
		l4[13] = flags
	} else {
		l4 = l4[:8]
	}
	return append(b, l4...)
}

// icmpPacket builds an ICMP (IPv4) or ICMPv6 message of type typ.
func icmpPacket(src, dst string, typ uint8) []byte {
	proto := uint8(1)
	if netip.MustParseAddr(src).Is6() {
		proto = 58
	}
	b := packet(src, dst, proto, 0, 0, 0) // an 8-byte "UDP" header: room for ICMP's
	b[len(b)-8] = typ
	return b
}

var decodeCases = []struct {
	name string
	pkt  []byte
	want Attempt
	err  string
}{
	{"syn4", packet("198.18.0.9", "198.18.0.1", 6, 40000, 22, flagSYN), Attempt{Src: netip.MustParseAddr("198.18.0.9"), Dst: netip.MustParseAddr("198.18.0.1"), SrcPort: 40000, Proto: portspec.TCP, Port: 22, Kind: KindSYN, Flags: flagSYN}, ""},
	{"syn-ece-cwr", packet("198.18.0.9", "198.18.0.1", 6, 1, 80, flagSYN|0xc0), Attempt{Src: netip.MustParseAddr("198.18.0.9"), Dst: netip.MustParseAddr("198.18.0.1"), SrcPort: 1, Proto: portspec.TCP, Port: 80, Kind: KindSYN, Flags: flagSYN | 0xc0}, ""},
	{"fin6", packet("fd00::9", "fd00::1", 6, 5, 443, flagFIN), Attempt{Src: netip.MustParseAddr("fd00::9"), Dst: netip.MustParseAddr("fd00::1"), SrcPort: 5, Proto: portspec.TCP, Port: 443, Kind: KindFIN, Flags: flagFIN}, ""},
	{"null", packet("198.18.0.9", "198.18.0.1", 6, 5, 1, 0), Attempt{Src: netip.MustParseAddr("198.18.0.9"), Dst: netip.MustParseAddr("198.18.0.1"), SrcPort: 5, Proto: portspec.TCP, Port: 1, Kind: KindNULL}, ""},
	{"xmas", packet("198.18.0.9", "198.18.0.1", 6, 5, 1, flagFIN|flagPSH|flagURG), Attempt{Src: netip.MustParseAddr("198.18.0.9"), Dst: netip.MustParseAddr("198.18.0.1"), SrcPort: 5, Proto: portspec.TCP, Port: 1, Kind: KindXmas, Flags: flagFIN | flagPSH | flagURG}, ""},
	{"odd", packet("198.18.0.9", "198.18.0.1", 6, 5, 1, flagPSH), Attempt{Src: netip.MustParseAddr("198.18.0.9"), Dst: netip.MustParseAddr("198.18.0.1"), SrcPort: 5, Proto: portspec.TCP, Port: 1, Kind: KindOdd, Flags: flagPSH}, ""},
	{"udp6", packet("fd00::9", "fd00::1", 17, 53000, 53, 0), Attempt{Src: netip.MustParseAddr("fd00::9"), Dst: netip.MustParseAddr("fd00::1"), SrcPort: 53000, Proto: portspec.UDP, Port: 53, Kind: KindUDP}, ""},
	{"ack", packet("198.18.0.9", "198.18.0.1", 6, 5, 1, flagACK), Attempt{}, "not an attempt"},
	{"synack", packet("198.18.0.9", "198.18.0.1", 6, 5, 1, flagSYN|flagACK), Attempt{}, "not an attempt"},
	{"empty", nil, Attempt{}, "empty packet"},
	{"short4", packet("198.18.0.9", "198.18.0.1", 6, 5, 1, 0)[:19], Attempt{}, "ipv4 header in 19 bytes"},
	{"shorttcp", packet("198.18.0.9", "198.18.0.1", 6, 5, 1, 0)[:30], Attempt{}, "tcp header in 10 bytes"},
	{"echo", icmpPacket("198.18.0.9", "198.18.0.1", 8), Attempt{Src: netip.MustParseAddr("198.18.0.9"), Dst: netip.MustParseAddr("198.18.0.1"), Kind: KindEcho}, ""},
	{"echo6", icmpPacket("fd00::9", "fd00::1", 128), Attempt{Src: netip.MustParseAddr("fd00::9"), Dst: netip.MustParseAddr("fd00::1"), Kind: KindEcho}, ""},
	{"echo reply", icmpPacket("198.18.0.9", "198.18.0.1", 0), Attempt{}, "not an echo request"},
	{"gre", packet("198.18.0.9", "198.18.0.1", 47, 5, 1, 0), Attempt{}, "protocol 47"},
	{"version", []byte{0x50, 0, 0}, Attempt{}, "ip version 5"},
}

func TestDecode(t *testing.T) {
	for _, c := range decodeCases {
		t.Run(c.name, func(t *testing.T) {
			got, err := Decode(c.pkt)
			if c.err != "" {
				var pe *ParseError
				if err == nil || !strings.Contains(err.Error(), c.err) || !errors.As(err, &pe) {
					t.Fatalf("Decode(%x) = %+v, %v; want a *ParseError with %q", c.pkt, got, err, c.err)
				}
				return
			}
			if err != nil || got != c.want {
				t.Fatalf("Decode(%x) = %+v, %v; want %+v", c.pkt, got, err, c.want)
			}
		})
	}
}

// TestDecodeIPv6Extensions: a destination options header and a first
// fragment are skipped to the TCP header; a later fragment is refused.
func TestDecodeIPv6Extensions(t *testing.T) {
	base := packet("fd00::9", "fd00::1", 6, 7, 8080, flagSYN)
	withExt := func(next uint8, ext []byte) []byte {
		b := append([]byte{}, base[:40]...)
		b[6] = next
		b = append(b, ext...)
		return append(b, base[40:]...)
	}
	opts := withExt(60, []byte{6, 0, 1, 4, 0, 0, 0, 0}) // dest options, PadN
	if a, err := Decode(opts); err != nil || a.Port != 8080 || a.Kind != KindSYN {
		t.Errorf("Decode(with destination options) = %+v, %v; want SYN to 8080", a, err)
	}
	frag := withExt(44, []byte{6, 0, 0, 1, 0, 0, 0, 1}) // offset 0, more fragments
	if a, err := Decode(frag); err != nil || a.Port != 8080 {
		t.Errorf("Decode(first fragment) = %+v, %v; want SYN to 8080", a, err)
	}
	later := withExt(44, []byte{6, 0, 0, 0x10, 0, 0, 0, 1})
	if _, err := Decode(later); err == nil || !strings.Contains(err.Error(), "a fragment past the first") {
		t.Errorf("Decode(later fragment) err = %v; want fragment past the first", err)
	}
}

// FuzzDecode: no input panics, and a decoded attempt is one the capture
// rules select (a TCP flag mix that opens nothing else, or UDP).
func FuzzDecode(f *testing.F) {
	for _, c := range decodeCases {
		f.Add(c.pkt)
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		a, err := Decode(b)
		if err != nil {
			var pe *ParseError
			if !errors.As(err, &pe) {
				t.Fatalf("Decode(%x) error %v is not a *ParseError", b, err)
			}
			return
		}
		if !a.Src.IsValid() || !a.Dst.IsValid() || a.Kind == 0 {
			t.Fatalf("Decode(%x) = %+v: invalid attempt without error", b, a)
		}
		if a.Proto == portspec.TCP && tcpKind(a.Flags) != a.Kind {
			t.Fatalf("Decode(%x): kind %v for flags %#x", b, a.Kind, a.Flags)
		}
	})
}
