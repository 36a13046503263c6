package rawnet

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"net/netip"
)

// TCP flags.
const (
	FlagFIN = 0x01
	FlagSYN = 0x02
	FlagRST = 0x04
	FlagPSH = 0x08
	FlagACK = 0x10
)

// Ethernet types.
const (
	EtherTypeIPv4 = 0x0800
	EtherTypeIPv6 = 0x86dd
)

const (
	ethLen    = 14
	ipv4Len   = 20
	ipv6Len   = 40
	synTCPLen = 24 // header with an MSS option, as nmap and the kernels send
	synMSS    = 1460
	synWindow = 1024
	synTTL    = 64
)

// MaxSYNLen is the longest packet a Template fills: Ethernet, IPv6, TCP.
const MaxSYNLen = ethLen + ipv6Len + synTCPLen

// Template is a prebuilt TCP SYN from one source address, with or without
// an Ethernet header. Fill copies it and writes the destination, ports and
// sequence number, updating the checksums from sums of the fixed parts
// computed once, so a packet costs a copy and a few additions.
type Template struct {
	pkt    [MaxSYNLen]byte
	n      int    // packet length
	l3     int    // offset of the IP header: 0 or ethLen
	v6     bool   // IPv6
	ipSum  uint32 // IPv4 header sum without the destination
	tcpSum uint32 // TCP sum (pseudo-header included) without destination, ports and sequence
}

// NewTemplate builds the SYN template for packets from src. With src and
// dst MAC addresses (6 bytes each) the packet starts with an Ethernet
// header, for AF_PACKET; with nil ones it starts with the IP header, for a
// raw IP socket.
func NewTemplate(src netip.Addr, srcMAC, dstMAC net.HardwareAddr) (*Template, error) {
	if !src.IsValid() {
		return nil, errors.New("syn template: no source address")
	}
	src = src.Unmap()
	t := &Template{v6: src.Is6()}
	b := t.pkt[:]
	if srcMAC != nil || dstMAC != nil {
		if len(srcMAC) != 6 || len(dstMAC) != 6 {
			return nil, fmt.Errorf("syn template: MAC addresses %s and %s: want 6 bytes each", srcMAC, dstMAC)
		}
		copy(b[0:6], dstMAC)
		copy(b[6:12], srcMAC)
		et := uint16(EtherTypeIPv4)
		if t.v6 {
			et = EtherTypeIPv6
		}
		binary.BigEndian.PutUint16(b[12:], et)
		t.l3 = ethLen
	}
	ip := b[t.l3:]
	var tcp []byte
	var pseudo uint32
	if t.v6 {
		ip[0] = 0x60
		binary.BigEndian.PutUint16(ip[4:], synTCPLen)
		ip[6] = 6 // TCP
		ip[7] = synTTL
		s := src.As16()
		copy(ip[8:24], s[:])
		tcp = ip[ipv6Len:]
		pseudo = sum16(0, s[:]) + 6 + synTCPLen
		t.n = t.l3 + ipv6Len + synTCPLen
	} else {
		ip[0] = 0x45
		binary.BigEndian.PutUint16(ip[2:], ipv4Len+synTCPLen)
		binary.BigEndian.PutUint16(ip[6:], 0x4000) // DF
		ip[8] = synTTL
		ip[9] = 6
		s := src.As4()
		copy(ip[12:16], s[:])
		t.ipSum = sum16(0, ip[:ipv4Len]) // destination and checksum still zero
		tcp = ip[ipv4Len:]
		pseudo = sum16(0, s[:]) + 6 + synTCPLen
		t.n = t.l3 + ipv4Len + synTCPLen
	}
	tcp[12] = (synTCPLen / 4) << 4
	tcp[13] = FlagSYN
	binary.BigEndian.PutUint16(tcp[14:], synWindow)
	tcp[20], tcp[21] = 2, 4 // MSS option
	binary.BigEndian.PutUint16(tcp[22:], synMSS)
	t.tcpSum = pseudo + sum16(0, tcp[:synTCPLen])
	return t, nil
}

// Len is the length of the packets the template fills.
func (t *Template) Len() int { return t.n }

// IPv6 reports whether the template sends IPv6.
func (t *Template) IPv6() bool { return t.v6 }

// Link reports whether the packets start with an Ethernet header.
func (t *Template) Link() bool { return t.l3 != 0 }

// Fill writes a SYN to dst:dport from sport with sequence number seq into
// b, which must hold Len bytes, and returns the packet. dst must be of the
// template's family (an IPv4-mapped address counts as IPv4, as the
// template's source does). It allocates nothing.
func (t *Template) Fill(b []byte, dst netip.Addr, sport, dport uint16, seq uint32) []byte {
	return t.fill(b, dst, sport, dport, seq, 0, FlagSYN)
}

// FillRST writes a reset instead: what ends the half-open connection a
// SYN-ACK to us opened on the target, as the kernel would have sent had
// its own reset not been suppressed. seq is the SYN-ACK's acknowledgement.
func (t *Template) FillRST(b []byte, dst netip.Addr, sport, dport uint16, seq uint32) []byte {
	return t.fill(b, dst, sport, dport, seq, 0, FlagRST)
}

// FillACK writes a bare ACK acknowledging ack, nmap's -PA host discovery
// probe: a host answers it with a reset whatever the port's state (a
// stateless firewall often lets it through), and the reset's sequence
// number is ack (RFC 9293, 3.10.7.1), so ack carries the cookie.
func (t *Template) FillACK(b []byte, dst netip.Addr, sport, dport uint16, seq, ack uint32) []byte {
	return t.fill(b, dst, sport, dport, seq, ack, FlagACK)
}

func (t *Template) fill(b []byte, dst netip.Addr, sport, dport uint16, seq, ack uint32, flags uint8) []byte {
	b = b[:t.n]
	copy(b, t.pkt[:t.n])
	ip := b[t.l3:]
	var tcp []byte
	var dsum uint32
	if t.v6 {
		d := dst.As16()
		copy(ip[24:40], d[:])
		dsum = sum16(0, d[:])
		tcp = ip[ipv6Len:]
	} else {
		d := dst.Unmap().As4()
		copy(ip[16:20], d[:])
		dsum = sum16(0, d[:])
		binary.BigEndian.PutUint16(ip[10:], fold(t.ipSum+dsum))
		tcp = ip[ipv4Len:]
	}
	binary.BigEndian.PutUint16(tcp[0:], sport)
	binary.BigEndian.PutUint16(tcp[2:], dport)
	binary.BigEndian.PutUint32(tcp[4:], seq)
	binary.BigEndian.PutUint32(tcp[8:], ack)
	s := t.tcpSum + dsum + uint32(sport) + uint32(dport) + seq>>16 + seq&0xffff + ack>>16 + ack&0xffff
	if flags != FlagSYN {
		// The flags share a 16-bit word with the data offset: take the
		// template's SYN out of the sum and put the new flags in.
		tcp[13] = flags
		s += uint32(^uint16(FlagSYN)) + uint32(flags)
	}
	binary.BigEndian.PutUint16(tcp[16:], fold(s))
	return b
}

// Segment is the part of a TCP header a scanner reads.
type Segment struct {
	Src, Dst         netip.Addr
	SrcPort, DstPort uint16
	Seq, Ack         uint32
	Flags            uint8
}

// Packet is a parsed reply: a TCP segment to us, or an ICMP destination
// unreachable error quoting a segment we sent.
type Packet struct {
	// Segment is the TCP segment, or for an ICMP error the header of the
	// segment it quotes (from us to the target).
	Segment
	ICMP       bool       // an ICMP (or ICMPv6) destination unreachable
	Type, Code uint8      // its type and code
	From       netip.Addr // who sent the ICMP error
}

// ICMP types Parse returns.
const (
	ICMPUnreach  = 3 // IPv4 destination unreachable
	ICMP6Unreach = 1 // ICMPv6 destination unreachable
)

// Parse reads an IPv4 or IPv6 packet (from its IP header on, as a cooked
// AF_PACKET socket gives it) carrying TCP or an ICMP destination
// unreachable that quotes TCP. Errors name the byte where the packet went
// wrong. It allocates nothing for packets it accepts.
func Parse(b []byte) (Packet, error) {
	var p Packet
	src, dst, proto, l4, off, err := parseIP(b, 0)
	if err != nil {
		return p, err
	}
	switch proto {
	case 6:
		p.Segment, err = parseTCP(l4, off)
		p.Src, p.Dst = src, dst
		return p, err
	case 1, 58:
		if len(l4) < 8 {
			return p, fmt.Errorf("icmp: %d bytes at byte %d, want 8", len(l4), off)
		}
		p.ICMP, p.Type, p.Code, p.From = true, l4[0], l4[1], src
		want := uint8(ICMPUnreach)
		if proto == 58 {
			want = ICMP6Unreach
		}
		if p.Type != want {
			return p, fmt.Errorf("icmp: type %d at byte %d: not destination unreachable", p.Type, off)
		}
		qsrc, qdst, qproto, ql4, qoff, err := parseIP(l4[8:], off+8)
		if err != nil {
			return p, fmt.Errorf("icmp quote: %w", err)
		}
		if qproto != 6 {
			return p, fmt.Errorf("icmp quote: protocol %d at byte %d: not TCP", qproto, off+8)
		}
		// RFC 792 quotes 8 bytes of the transport header: ports and sequence.
		if len(ql4) < 8 {
			return p, fmt.Errorf("icmp quote: %d bytes of TCP at byte %d, want 8", len(ql4), qoff)
		}
		p.Src, p.Dst = qsrc, qdst
		p.SrcPort = binary.BigEndian.Uint16(ql4[0:])
		p.DstPort = binary.BigEndian.Uint16(ql4[2:])
		p.Seq = binary.BigEndian.Uint32(ql4[4:])
		return p, nil
	}
	return p, fmt.Errorf("ip: protocol %d at byte %d: not TCP or ICMP", proto, off-1)
}

// parseIP reads an IP header at b (base is b's offset in the packet, for
// errors) and returns the addresses, the protocol and the payload. A
// quoted packet's total length may exceed what is there; a received one
// may be truncated by the filter's snap length, so neither is checked
// against len(b) beyond the headers.
func parseIP(b []byte, base int) (src, dst netip.Addr, proto uint8, l4 []byte, off int, err error) {
	if len(b) < 1 {
		return src, dst, 0, nil, base, fmt.Errorf("ip: empty packet at byte %d", base)
	}
	switch b[0] >> 4 {
	case 4:
		if len(b) < ipv4Len {
			return src, dst, 0, nil, base, fmt.Errorf("ipv4: %d bytes at byte %d, want %d", len(b), base, ipv4Len)
		}
		ihl := int(b[0]&0x0f) * 4
		if ihl < ipv4Len || ihl > len(b) {
			return src, dst, 0, nil, base, fmt.Errorf("ipv4: header length %d at byte %d", ihl, base)
		}
		if binary.BigEndian.Uint16(b[6:])&0x1fff != 0 {
			return src, dst, 0, nil, base, fmt.Errorf("ipv4: fragment at byte %d", base+6)
		}
		src = netip.AddrFrom4([4]byte(b[12:16]))
		dst = netip.AddrFrom4([4]byte(b[16:20]))
		return src, dst, b[9], b[ihl:], base + ihl, nil
	case 6:
		if len(b) < ipv6Len {
			return src, dst, 0, nil, base, fmt.Errorf("ipv6: %d bytes at byte %d, want %d", len(b), base, ipv6Len)
		}
		src = netip.AddrFrom16([16]byte(b[8:24]))
		dst = netip.AddrFrom16([16]byte(b[24:40]))
		// Extension headers are not followed: our SYNs carry none, and
		// the replies to them none either.
		return src, dst, b[6], b[ipv6Len:], base + ipv6Len, nil
	}
	return src, dst, 0, nil, base, fmt.Errorf("ip: version %d at byte %d", b[0]>>4, base)
}

func parseTCP(b []byte, off int) (Segment, error) {
	var s Segment
	if len(b) < 20 {
		return s, fmt.Errorf("tcp: %d bytes at byte %d, want 20", len(b), off)
	}
	if d := int(b[12]>>4) * 4; d < 20 {
		return s, fmt.Errorf("tcp: data offset %d at byte %d", d, off+12)
	}
	s.SrcPort = binary.BigEndian.Uint16(b[0:])
	s.DstPort = binary.BigEndian.Uint16(b[2:])
	s.Seq = binary.BigEndian.Uint32(b[4:])
	s.Ack = binary.BigEndian.Uint32(b[8:])
	s.Flags = b[13]
	return s, nil
}
