package scan

import (
	"encoding/binary"
	"fmt"
	"net/netip"
)

// EchoProber sends ICMP echo requests (ping) for host discovery
// (Scanner.Pinger). A reply reports the probe Open with ReasonEchoReply;
// anything else is left to time out. On Linux it uses an unprivileged ICMP
// socket where net.ipv4.ping_group_range lets the process's group have
// one, and a raw socket otherwise (root or CAP_NET_RAW); Open fails when
// neither is allowed. With CAP_NET_RAW it also sends IPv4 hosts an ICMP
// timestamp request (nmap's -PP, which firewalls that drop pings often
// let through), answered with ReasonTimestampReply. Elsewhere Open
// returns ErrUnsupported.
type EchoProber struct{}

// PingKind is one ICMP probe of host discovery. A Pinger's session
// receives it as the port of Send's destination.
type PingKind uint16

const (
	PingEcho      PingKind = iota // ICMP echo request (ICMPv6 for IPv6); nmap -PE
	PingTimestamp                 // ICMP timestamp request, IPv4 only; nmap -PP
)

func (k PingKind) String() string {
	switch k {
	case PingEcho:
		return "echo"
	case PingTimestamp:
		return "timestamp"
	}
	return fmt.Sprintf("ping kind %d", uint16(k))
}

// pingKinder is implemented by Pinger sessions that send more than an echo:
// PingKinds lists the probes for a, each sent as its own discovery probe.
type pingKinder interface{ PingKinds(a netip.Addr) []PingKind }

// echoMagic starts the payload of every echo request, so that replies to
// other programs' pings are told from ours; the probe ID follows it.
const echoMagic = "portolan"

const (
	icmpEchoRequest   = 8
	icmpEchoReply     = 0
	icmp6EchoRequest  = 128
	icmp6EchoReply    = 129
	echoPayloadLength = len(echoMagic) + 8

	icmpTimestampRequest = 13
	icmpTimestampReply   = 14
	timestampLength      = 20 // RFC 792: the header, then three 32-bit timestamps
)

// echoRequest builds an echo request carrying id; the checksum is computed
// for IPv4 (the kernel fills ICMPv6's).
func echoRequest(b []byte, v6 bool, seq uint16, id uint64) []byte {
	b = b[:0]
	typ := byte(icmpEchoRequest)
	if v6 {
		typ = icmp6EchoRequest
	}
	b = append(b, typ, 0, 0, 0, 0, 0, byte(seq>>8), byte(seq))
	b = append(b, echoMagic...)
	b = binary.BigEndian.AppendUint64(b, id)
	if !v6 {
		c := icmpChecksum(b)
		b[2], b[3] = byte(c>>8), byte(c)
	}
	return b
}

// parseEchoReply reads an echo reply sent to us and returns its probe ID.
// b is the ICMP message; for a raw IPv4 socket the IP header comes first
// and ipHeader says so.
func parseEchoReply(b []byte, v6, ipHeader bool) (uint64, error) {
	if ipHeader {
		var err error
		if b, err = skipIPv4(b); err != nil {
			return 0, fmt.Errorf("echo reply: %w", err)
		}
	}
	want := byte(icmpEchoReply)
	if v6 {
		want = icmp6EchoReply
	}
	if len(b) < 8+echoPayloadLength {
		return 0, fmt.Errorf("echo reply: %d bytes, want at least %d", len(b), 8+echoPayloadLength)
	}
	if b[0] != want || b[1] != 0 {
		return 0, fmt.Errorf("echo reply: ICMP type %d code %d at byte 0", b[0], b[1])
	}
	if string(b[8:8+len(echoMagic)]) != echoMagic {
		return 0, fmt.Errorf("echo reply: not portolan's payload at byte 8")
	}
	return binary.BigEndian.Uint64(b[8+len(echoMagic):]), nil
}

// skipIPv4 returns the payload of the IPv4 packet b.
func skipIPv4(b []byte) ([]byte, error) {
	if len(b) < 20 || b[0]>>4 != 4 {
		return nil, fmt.Errorf("not an IPv4 packet (%d bytes)", len(b))
	}
	ihl := int(b[0]&0x0f) * 4
	if ihl < 20 || len(b) < ihl {
		return nil, fmt.Errorf("IPv4 header length %d at byte 0", ihl)
	}
	return b[ihl:], nil
}

// timestampRequest builds an ICMP timestamp request whose identifier and
// sequence number carry token; the originate timestamp is ms, the
// milliseconds since midnight UTC as RFC 792 has it.
func timestampRequest(b []byte, token, ms uint32) []byte {
	b = append(b[:0], icmpTimestampRequest, 0, 0, 0)
	b = binary.BigEndian.AppendUint32(b, token)
	b = binary.BigEndian.AppendUint32(b, ms)
	b = append(b, 0, 0, 0, 0, 0, 0, 0, 0) // receive and transmit: the host's
	c := icmpChecksum(b)
	b[2], b[3] = byte(c>>8), byte(c)
	return b
}

// parseTimestampReply reads an ICMP timestamp reply and returns the token
// of the request it answers (its identifier and sequence number) and the
// originate timestamp it echoes. For a raw socket the IP header comes first
// and ipHeader says so.
func parseTimestampReply(b []byte, ipHeader bool) (token, ms uint32, err error) {
	if ipHeader {
		if b, err = skipIPv4(b); err != nil {
			return 0, 0, fmt.Errorf("timestamp reply: %w", err)
		}
	}
	if len(b) < timestampLength {
		return 0, 0, fmt.Errorf("timestamp reply: %d bytes, want %d", len(b), timestampLength)
	}
	if b[0] != icmpTimestampReply || b[1] != 0 {
		return 0, 0, fmt.Errorf("timestamp reply: ICMP type %d code %d at byte 0", b[0], b[1])
	}
	return binary.BigEndian.Uint32(b[4:]), binary.BigEndian.Uint32(b[8:]), nil
}

// icmpChecksum is the Internet checksum of b (RFC 1071).
func icmpChecksum(b []byte) uint16 {
	var sum uint32
	for i := 0; i+1 < len(b); i += 2 {
		sum += uint32(b[i])<<8 | uint32(b[i+1])
	}
	if len(b)%2 == 1 {
		sum += uint32(b[len(b)-1]) << 8
	}
	for sum > 0xffff {
		sum = sum>>16 + sum&0xffff
	}
	return ^uint16(sum)
}
