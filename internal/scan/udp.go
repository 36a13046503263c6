package scan

import (
	"portolan/internal/udpprobe"
)

// UDPProber probes UDP ports, as nmap -sU does: it sends each port the
// payloads of the protocols registered on it (udpprobe; an empty datagram
// elsewhere) and reads the verdict from what comes back:
//
//   - a UDP datagram from the port: open (named by the payload's
//     recognizer when the reply parses);
//   - ICMP port unreachable: closed;
//   - any other ICMP unreachable: filtered;
//   - nothing, after the retries: open|filtered.
//
// ICMP errors come through IP_RECVERR / IPV6_RECVERR on ordinary UDP
// sockets: the kernel matches each error to the socket whose datagram
// drew it and hands over the original destination with the ICMP type and
// code. That needs no privilege, and no parsing of quoted headers.
//
// Hosts rate-limit ICMP errors (Linux: net.ipv4.icmp_ratelimit, one per
// second per destination after a burst of 6; IPv6 scaled by prefix
// length; and icmp_msgs_per_sec for all destinations), so silence from a
// host that sends errors is not proof of anything: the error may have been
// suppressed. A silent probe counts only when a later probe to the same
// host drew an error (the host had a token to spare when it saw ours);
// otherwise it is sent again, paced: small batches followed by a canary
// to a port known to draw an error, so each batch costs the host one
// token and proves every silent probe before the first error in it. A
// host that never sends errors is not paced at all.
//
// TCP probes (the scanner's host discovery) go through a ConnectProber
// session. The zero value is ready.
type UDPProber struct {
	// Payloads returns the datagrams to send to a port, in order. Nil
	// means udpprobe.Payloads; an empty result sends one empty datagram.
	Payloads func(port uint16) [][]byte
	// Recognize names the service behind a reply. Nil means
	// udpprobe.Recognize.
	Recognize func(port uint16, reply []byte) (service, info string, ok bool)
	// Local binds the probe sockets (and host discovery's TCP ones) to an
	// interface, a source address and a source port; with a source port,
	// one socket per family is opened. The zero value leaves them to the
	// kernel.
	Local Local
}

func (u UDPProber) payloads(port uint16) [][]byte {
	if u.Payloads != nil {
		return u.Payloads(port)
	}
	return udpprobe.Payloads(port)
}

func (u UDPProber) recognize(port uint16, reply []byte) (string, string, bool) {
	if u.Recognize != nil {
		return u.Recognize(port, reply)
	}
	m, ok := udpprobe.Recognize(port, reply)
	return m.Service, m.Info, ok
}

// icmpVerdict turns an ICMP error's type and code into a port state. ok is
// false for errors that say nothing about the port (fragmentation needed,
// say).
func icmpVerdict(v6 bool, typ, code uint8) (st State, reason string, ok bool) {
	if v6 {
		switch typ {
		case 1: // destination unreachable
			switch code {
			case 4:
				return Closed, ReasonPortUnreach, true
			case 0:
				return Filtered, ReasonNetUnreach, true
			case 1, 5, 6:
				return Filtered, ReasonAdminProhibited, true
			case 2, 3:
				return Filtered, ReasonHostUnreach, true
			}
		case 3: // time exceeded
			return Filtered, ReasonTimeExceeded, true
		}
		return Unknown, "", false
	}
	switch typ {
	case 3: // destination unreachable
		switch code {
		case 3:
			return Closed, ReasonPortUnreach, true
		case 0, 6, 11:
			return Filtered, ReasonNetUnreach, true
		case 1, 5, 7, 8, 12:
			return Filtered, ReasonHostUnreach, true
		case 2:
			return Filtered, ReasonProtoUnreach, true
		case 9:
			return Filtered, ReasonNetProhibited, true
		case 10:
			return Filtered, ReasonHostProhibited, true
		case 13, 14, 15:
			return Filtered, ReasonAdminProhibited, true
		}
	case 11: // time exceeded
		return Filtered, ReasonTimeExceeded, true
	}
	return Unknown, "", false
}
