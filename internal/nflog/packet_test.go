package nflog

import (
	"bytes"
	"encoding/binary"
	"errors"
	"net"
	"net/netip"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
)

// attr appends one netlink attribute (native-endian header, padded).
func attr(b []byte, typ uint16, v []byte) []byte {
	b = binary.NativeEndian.AppendUint16(b, uint16(nlaHdrLen+len(v)))
	b = binary.NativeEndian.AppendUint16(b, typ)
	b = append(b, v...)
	for len(b)%4 != 0 {
		b = append(b, 0)
	}
	return b
}

func be16(v uint16) []byte { return binary.BigEndian.AppendUint16(nil, v) }
func be32(v uint32) []byte { return binary.BigEndian.AppendUint32(nil, v) }

// encodePacket is the kernel's side of ParsePacket, for tests.
func encodePacket(p Packet) []byte {
	b := []byte{p.Family, 0, byte(p.Group >> 8), byte(p.Group)}
	b = attr(b, attrPacketHdr, []byte{byte(p.HWProto >> 8), byte(p.HWProto), p.Hook, 0})
	if p.Mark != 0 {
		b = attr(b, attrMark, be32(p.Mark))
	}
	if !p.Timestamp.IsZero() {
		ts := binary.BigEndian.AppendUint64(nil, uint64(p.Timestamp.Unix()))
		b = attr(b, attrTimestamp, binary.BigEndian.AppendUint64(ts, uint64(p.Timestamp.Nanosecond()/1000)))
	}
	if p.InDev != 0 {
		b = attr(b, attrInDev, be32(p.InDev))
	}
	if p.OutDev != 0 {
		b = attr(b, attrOutDev, be32(p.OutDev))
	}
	if p.HWAddr != nil {
		hw := append(be16(uint16(len(p.HWAddr))), 0, 0)
		hw = append(hw, p.HWAddr...)
		b = attr(b, attrHWAddr, append(hw, make([]byte, 8-len(p.HWAddr))...))
	}
	if p.Prefix != "" {
		b = attr(b, attrPrefix, append([]byte(p.Prefix), 0))
	}
	if p.HasUID {
		b = attr(b, attrUID, be32(p.UID))
	}
	if p.GID != 0 {
		b = attr(b, attrGID, be32(p.GID))
	}
	if p.HasSeq {
		b = attr(b, attrSeq, be32(p.Seq))
	}
	if p.HWType != 0 {
		b = attr(b, attrHWType, be16(p.HWType))
	}
	if p.HWHeader != nil {
		b = attr(b, attrHWHeader, p.HWHeader)
	}
	if p.Payload != nil {
		b = attr(b, attrPayload, p.Payload)
	}
	return b
}

// ipv4 builds an IPv4 packet around an L4 header and data.
func ipv4(proto uint8, src, dst string, l4 []byte) []byte {
	h := make([]byte, 20)
	h[0] = 0x45
	binary.BigEndian.PutUint16(h[2:], uint16(20+len(l4)))
	h[8], h[9] = 64, proto
	s, d := netip.MustParseAddr(src).As4(), netip.MustParseAddr(dst).As4()
	copy(h[12:], s[:])
	copy(h[16:], d[:])
	return append(h, l4...)
}

func ipv6(next uint8, src, dst string, l4 []byte) []byte {
	h := make([]byte, 40)
	h[0] = 0x60
	binary.BigEndian.PutUint16(h[4:], uint16(len(l4)))
	h[6], h[7] = next, 64
	s, d := netip.MustParseAddr(src).As16(), netip.MustParseAddr(dst).As16()
	copy(h[8:], s[:])
	copy(h[24:], d[:])
	return append(h, l4...)
}

func tcp(sport, dport uint16, flags uint8, data string) []byte {
	h := make([]byte, 20)
	binary.BigEndian.PutUint16(h, sport)
	binary.BigEndian.PutUint16(h[2:], dport)
	h[12], h[13] = 5<<4, flags
	return append(h, data...)
}

func udp(sport, dport uint16, data string) []byte {
	h := make([]byte, 8)
	binary.BigEndian.PutUint16(h, sport)
	binary.BigEndian.PutUint16(h[2:], dport)
	binary.BigEndian.PutUint16(h[4:], uint16(8+len(data)))
	return append(h, data...)
}

var parseCases = []struct {
	name string
	p    Packet
}{
	{"syn", Packet{
		Group: 7, Family: 2, Hook: 1, Prefix: "knock ", HWProto: 0x0800,
		Timestamp: time.Unix(1_800_000_000, 123_456_000), InDev: 3, HasSeq: true, Seq: 41,
		HWType: 1, HWAddr: net.HardwareAddr{2, 0x70, 0x6c, 0, 0, 2}, HWHeader: bytes.Repeat([]byte{1}, 14),
		Payload: ipv4(ProtoTCP, "198.18.0.2", "198.18.0.1", tcp(40000, 7000, TCPSyn, "")),
	}},
	{"udp6", Packet{
		Group: 65535, Family: 10, Hook: 1, Prefix: "spa", HWProto: 0x86dd, Mark: 9, InDev: 1,
		Payload: ipv6(ProtoUDP, "fd00::2", "fd00::1", udp(5000, 62201, "hello")),
	}},
	{"output", Packet{Group: 1, Family: 2, Hook: 3, OutDev: 4, HasUID: true, UID: 1000, GID: 1000,
		Payload: ipv4(ProtoICMP, "198.18.0.1", "198.18.0.2", []byte{8, 0, 0, 0, 1, 2})}},
	{"bare", Packet{Group: 0, Family: 2}},
}

func TestParsePacket(t *testing.T) {
	for _, tc := range parseCases {
		t.Run(tc.name, func(t *testing.T) {
			got, err := ParsePacket(encodePacket(tc.p))
			if err != nil {
				t.Fatalf("ParsePacket: %v", err)
			}
			if d := cmp.Diff(tc.p, got, cmpopts.EquateEmpty()); d != "" {
				t.Errorf("ParsePacket (-want +got):\n%s", d)
			}
		})
	}
}

func TestParsePacketErrors(t *testing.T) {
	good := encodePacket(parseCases[0].p)
	for _, tc := range []struct {
		name string
		in   []byte
		off  int
	}{
		{"empty", nil, 0},
		{"short attribute header", append([]byte{2, 0, 0, 7}, 8, 0), 4},
		{"attribute past the end", attr([]byte{2, 0, 0, 7}, attrPrefix, []byte("abc"))[:9], 4},
		{"attribute length 2", []byte{2, 0, 0, 7, 2, 0, 10, 0}, 4},
		{"short mark", attr([]byte{2, 0, 0, 7}, attrMark, []byte{1}), 4},
		{"long hwaddr", attr([]byte{2, 0, 0, 7}, attrHWAddr, append(be16(9), make([]byte, 10)...)), 4},
		{"bad usec", attr([]byte{2, 0, 0, 7}, attrTimestamp, append(make([]byte, 8), 0, 0, 0, 0, 0xff, 0, 0, 0)), 4},
		{"truncated", good[:len(good)-3], -1},
	} {
		_, err := ParsePacket(tc.in)
		var pe *ParseError
		if !errors.As(err, &pe) {
			t.Errorf("%s: ParsePacket = %v; want a ParseError", tc.name, err)
			continue
		}
		if tc.off >= 0 && pe.Offset != tc.off {
			t.Errorf("%s: ParsePacket error at %d (%v); want %d", tc.name, pe.Offset, err, tc.off)
		}
	}
}

func FuzzParsePacket(f *testing.F) {
	for _, tc := range parseCases {
		f.Add(encodePacket(tc.p))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		p, err := ParsePacket(b)
		if err != nil {
			return
		}
		// What parses round-trips through the kernel's encoding.
		q, err := ParsePacket(encodePacket(p))
		if err != nil {
			t.Fatalf("re-parse: %v", err)
		}
		if d := cmp.Diff(p, q, cmpopts.EquateEmpty()); d != "" {
			t.Fatalf("round trip (-first +second):\n%s", d)
		}
		p.Flow()
	})
}

var flowCases = []struct {
	name string
	in   []byte
	want Flow
}{
	{"tcp syn v4", ipv4(ProtoTCP, "198.18.0.2", "198.18.0.1", tcp(40000, 7000, TCPSyn, "")),
		Flow{Proto: ProtoTCP, Src: netip.MustParseAddrPort("198.18.0.2:40000"), Dst: netip.MustParseAddrPort("198.18.0.1:7000"), TCPFlags: TCPSyn}},
	{"udp v4 padded", append(ipv4(ProtoUDP, "198.18.0.2", "198.18.0.1", udp(1, 2, "ab")), 0, 0, 0),
		Flow{Proto: ProtoUDP, Src: netip.MustParseAddrPort("198.18.0.2:1"), Dst: netip.MustParseAddrPort("198.18.0.1:2"), Data: []byte("ab")}},
	{"udp v6", ipv6(ProtoUDP, "fd00::2", "fd00::1", udp(5000, 62201, "spa")),
		Flow{Proto: ProtoUDP, Src: netip.MustParseAddrPort("[fd00::2]:5000"), Dst: netip.MustParseAddrPort("[fd00::1]:62201"), Data: []byte("spa")}},
	{"tcp v6 after hop-by-hop", ipv6(0, "fd00::2", "fd00::1", append([]byte{ProtoTCP, 0, 1, 4, 0, 0, 0, 0}, tcp(1, 22, TCPSyn|TCPAck, "x")...)),
		Flow{Proto: ProtoTCP, Src: netip.MustParseAddrPort("[fd00::2]:1"), Dst: netip.MustParseAddrPort("[fd00::1]:22"), TCPFlags: TCPSyn | TCPAck, Data: []byte("x")}},
	{"v6 later fragment", ipv6(44, "fd00::2", "fd00::1", []byte{ProtoUDP, 0, 0, 8, 0, 0, 0, 1}),
		Flow{Proto: ProtoUDP, Src: netip.MustParseAddrPort("[fd00::2]:0"), Dst: netip.MustParseAddrPort("[fd00::1]:0"), Fragment: true}},
	{"icmp echo", ipv4(ProtoICMP, "198.18.0.1", "198.18.0.2", []byte{8, 0, 0, 0, 1, 2}),
		Flow{Proto: ProtoICMP, Src: netip.MustParseAddrPort("198.18.0.1:0"), Dst: netip.MustParseAddrPort("198.18.0.2:0"), ICMPType: 8, Data: []byte{1, 2}}},
	{"gre", ipv4(47, "198.18.0.1", "198.18.0.2", []byte{1, 2, 3}),
		Flow{Proto: 47, Src: netip.MustParseAddrPort("198.18.0.1:0"), Dst: netip.MustParseAddrPort("198.18.0.2:0")}},
}

func TestDecodeFlow(t *testing.T) {
	for _, tc := range flowCases {
		got, err := DecodeFlow(tc.in)
		if err != nil {
			t.Errorf("%s: DecodeFlow: %v", tc.name, err)
			continue
		}
		if d := cmp.Diff(tc.want, got, cmpopts.EquateEmpty(), cmp.Comparer(func(a, b netip.AddrPort) bool { return a == b })); d != "" {
			t.Errorf("%s: DecodeFlow (-want +got):\n%s", tc.name, d)
		}
	}
	for _, bad := range []struct {
		name string
		in   []byte
		off  int
	}{
		{"empty", nil, 0},
		{"version 5", []byte{0x50}, 0},
		{"short v4", ipv4(ProtoTCP, "198.18.0.1", "198.18.0.2", nil)[:19], 0},
		{"short tcp", ipv4(ProtoTCP, "198.18.0.1", "198.18.0.2", make([]byte, 10)), 20},
		{"tcp offset past end", ipv4(ProtoTCP, "198.18.0.1", "198.18.0.2", append(make([]byte, 12), 0xf0, 0, 0, 0, 0, 0, 0, 0)), 20},
		{"short udp v6", ipv6(ProtoUDP, "fd00::1", "fd00::2", make([]byte, 4)), 40},
		{"long v6 option", ipv6(60, "fd00::1", "fd00::2", []byte{ProtoUDP, 9, 0, 0, 0, 0, 0, 0}), 40},
	} {
		_, err := DecodeFlow(bad.in)
		var pe *ParseError
		if !errors.As(err, &pe) || pe.Offset != bad.off {
			t.Errorf("%s: DecodeFlow = %v; want a ParseError at %d", bad.name, err, bad.off)
		}
	}
}

func FuzzDecodeFlow(f *testing.F) {
	for _, tc := range flowCases {
		f.Add(tc.in)
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		fl, err := DecodeFlow(b)
		if err != nil {
			return
		}
		if len(fl.Data) > len(b) {
			t.Fatalf("data of %d bytes from a packet of %d", len(fl.Data), len(b))
		}
		if fl.Proto != ProtoTCP && fl.Proto != ProtoUDP && (fl.Src.Port() != 0 || fl.Dst.Port() != 0) {
			t.Fatalf("ports for protocol %d", fl.Proto)
		}
	})
}

// BenchmarkParse measures parsing a knock packet and its flow, which must
// not allocate.
func BenchmarkParse(b *testing.B) {
	msg := encodePacket(parseCases[0].p)
	in := interner{}
	var p Packet
	b.ReportAllocs()
	for b.Loop() {
		if err := parsePacket(msg, &p, in); err != nil {
			b.Fatal(err)
		}
		if _, err := p.Flow(); err != nil {
			b.Fatal(err)
		}
	}
}
