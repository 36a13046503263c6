package watch

import (
	"encoding/binary"
	"fmt"
	"net/netip"

	"portolan/internal/portspec"
)

// ParseError is an input the package could not read: a packet, a
// configuration value, a resolv.conf line.
type ParseError struct {
	Input string // the input, or for packets its first bytes in hex
	What  string // what was being read
	Pos   int    // byte offset (packets) or line number (files); 0: none
	Msg   string
}

func (e *ParseError) Error() string {
	if e.Pos > 0 {
		return fmt.Sprintf("%s %q at %d: %s", e.What, e.Input, e.Pos, e.Msg)
	}
	return fmt.Sprintf("%s %q: %s", e.What, e.Input, e.Msg)
}

// TCP flag bits.
const (
	flagFIN = 0x01
	flagSYN = 0x02
	flagRST = 0x04
	flagPSH = 0x08
	flagACK = 0x10
	flagURG = 0x20
)

// Decode reads the attempt in an IPv4 or IPv6 packet as NFLOG hands it
// over (from the network header; the capture rules ask for 96 bytes,
// enough for the headers). Time is left for the caller. IPv6 extension
// headers are skipped, up to a fragment header: a fragment that is not
// the first has no transport header and is an error.
func Decode(b []byte) (Attempt, error) {
	perr := func(pos int, msg string) error {
		n := min(len(b), 16)
		return &ParseError{Input: fmt.Sprintf("%x", b[:n]), What: "packet", Pos: pos, Msg: msg}
	}
	if len(b) < 1 {
		return Attempt{}, perr(0, "empty")
	}
	var a Attempt
	var proto uint8
	var off int
	switch b[0] >> 4 {
	case 4:
		if len(b) < 20 {
			return a, perr(len(b), "short IPv4 header")
		}
		ihl := int(b[0]&0x0f) * 4
		if ihl < 20 || len(b) < ihl {
			return a, perr(0, fmt.Sprintf("bad IPv4 header length %d", ihl))
		}
		if binary.BigEndian.Uint16(b[6:8])&0x1fff != 0 {
			return a, perr(6, "IPv4 fragment past the first")
		}
		proto = b[9]
		a.Src = netip.AddrFrom4([4]byte(b[12:16]))
		a.Dst = netip.AddrFrom4([4]byte(b[16:20]))
		off = ihl
	case 6:
		if len(b) < 40 {
			return a, perr(len(b), "short IPv6 header")
		}
		proto = b[6]
		a.Src = netip.AddrFrom16([16]byte(b[8:24]))
		a.Dst = netip.AddrFrom16([16]byte(b[24:40]))
		off = 40
	ext:
		for range 8 { // extension headers, bounded
			switch proto {
			case 0, 43, 60: // hop-by-hop, routing, destination options
				if len(b) < off+8 {
					return a, perr(off, "short IPv6 extension header")
				}
				proto = b[off]
				off += (int(b[off+1]) + 1) * 8
				continue
			case 44: // fragment
				if len(b) < off+8 {
					return a, perr(off, "short IPv6 fragment header")
				}
				if binary.BigEndian.Uint16(b[off+2:off+4])&0xfff8 != 0 {
					return a, perr(off+2, "IPv6 fragment past the first")
				}
				proto = b[off]
				off += 8
				continue
			}
			break ext
		}
	default:
		return a, perr(0, fmt.Sprintf("IP version %d", b[0]>>4))
	}
	switch proto {
	case 6:
		if len(b) < off+14 {
			return a, perr(off, "short TCP header")
		}
		a.Proto = portspec.TCP
		a.SrcPort = binary.BigEndian.Uint16(b[off:])
		a.Port = portspec.Port(binary.BigEndian.Uint16(b[off+2:]))
		a.Flags = b[off+13]
		a.Kind = tcpKind(a.Flags)
		if a.Kind == 0 {
			return a, perr(off+13, fmt.Sprintf("TCP flags %#02x are not an attempt", a.Flags))
		}
	case 17:
		if len(b) < off+4 {
			return a, perr(off, "short UDP header")
		}
		a.Proto = portspec.UDP
		a.SrcPort = binary.BigEndian.Uint16(b[off:])
		a.Port = portspec.Port(binary.BigEndian.Uint16(b[off+2:]))
		a.Kind = KindUDP
	default:
		return a, perr(off, fmt.Sprintf("protocol %d", proto))
	}
	return a, nil
}

// tcpKind classifies the flags of a TCP packet; 0 for packets of a
// connection (ACK or RST set).
func tcpKind(f uint8) Kind {
	switch {
	case f&(flagSYN|flagACK|flagRST) == flagSYN:
		return KindSYN
	case f&(flagSYN|flagACK|flagRST) != 0:
		return 0
	case f&0x3f == 0:
		return KindNULL
	case f&0x3f == flagFIN:
		return KindFIN
	case f&0x3f == flagFIN|flagPSH|flagURG:
		return KindXmas
	}
	return KindOdd
}
