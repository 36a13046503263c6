package watch

import (
	"errors"
	"fmt"

	"portolan/internal/nflog"
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
// over (from the network header; the capture rule copies 128 bytes,
// enough for the headers), with nflog.DecodeFlow. Time is left for the
// caller. A fragment past the first, a protocol other than TCP, UDP and
// ICMP echo requests, and TCP flags that belong to a connection (ACK or
// RST) are errors.
func Decode(b []byte) (Attempt, error) {
	perr := func(pos int, msg string) error {
		n := min(len(b), 16)
		return &ParseError{Input: fmt.Sprintf("%x", b[:n]), What: "packet", Pos: pos, Msg: msg}
	}
	f, err := nflog.DecodeFlow(b)
	if err != nil {
		var pe *nflog.ParseError
		if errors.As(err, &pe) {
			return Attempt{}, perr(pe.Offset, pe.What)
		}
		return Attempt{}, perr(0, err.Error())
	}
	if f.Fragment {
		return Attempt{}, perr(0, "a fragment past the first")
	}
	a := Attempt{Src: f.Src.Addr(), SrcPort: f.Src.Port(), Dst: f.Dst.Addr(), Port: portspec.Port(f.Dst.Port())}
	switch f.Proto {
	case nflog.ProtoTCP:
		a.Proto, a.Flags = portspec.TCP, f.TCPFlags
		a.Kind = tcpKind(a.Flags)
		if a.Kind == 0 {
			return Attempt{}, perr(0, fmt.Sprintf("TCP flags %#02x are not an attempt", a.Flags))
		}
	case nflog.ProtoUDP:
		a.Proto, a.Kind = portspec.UDP, KindUDP
	case nflog.ProtoICMP, nflog.ProtoICMPv6:
		if (f.Proto == nflog.ProtoICMP && f.ICMPType != 8) || (f.Proto == nflog.ProtoICMPv6 && f.ICMPType != 128) {
			return Attempt{}, perr(0, fmt.Sprintf("ICMP type %d is not an echo request", f.ICMPType))
		}
		a.Kind = KindEcho
	default:
		return Attempt{}, perr(0, fmt.Sprintf("protocol %d", f.Proto))
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
