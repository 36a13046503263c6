package scan

import (
	"encoding/binary"
	"fmt"
)

// EchoProber sends ICMP echo requests (ping) for host discovery
// (Scanner.Pinger). A reply reports the probe Open with ReasonEchoReply;
// anything else is left to time out. On Linux it uses an unprivileged ICMP
// socket where net.ipv4.ping_group_range lets the process's group have
// one, and a raw socket otherwise (root or CAP_NET_RAW); Open fails when
// neither is allowed. Elsewhere Open returns ErrUnsupported.
type EchoProber struct{}

// echoMagic starts the payload of every echo request, so that replies to
// other programs' pings are told from ours; the probe ID follows it.
const echoMagic = "portolan"

const (
	icmpEchoRequest   = 8
	icmpEchoReply     = 0
	icmp6EchoRequest  = 128
	icmp6EchoReply    = 129
	echoPayloadLength = len(echoMagic) + 8
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
		if len(b) < 20 || b[0]>>4 != 4 {
			return 0, fmt.Errorf("echo reply: not an IPv4 packet (%d bytes)", len(b))
		}
		ihl := int(b[0]&0x0f) * 4
		if ihl < 20 || len(b) < ihl {
			return 0, fmt.Errorf("echo reply: IPv4 header length %d at byte 0", ihl)
		}
		b = b[ihl:]
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
