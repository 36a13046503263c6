// Package udpprobe holds the UDP payloads portolan sends to well-known
// ports and the recognizers that name a service from its reply.
//
// A UDP service answers only a datagram it understands, so an empty probe
// learns nothing from most open ports. Each payload here is a minimal valid
// request of its protocol, built from the protocol's specification (the
// RFC or the vendor's document named at each builder), chosen so that a
// server answers it without being changed by it: queries, status and
// version requests, the first message of a handshake. Every reply parser
// checks the framing it relies on and returns an error naming the
// protocol and the byte offset where the reply stopped making sense.
package udpprobe

import (
	"fmt"
	"slices"
	"sync"
)

// Protocol is one request and the recognizer for its replies.
type Protocol struct {
	// Name is the service name portolan reports (the IANA name where
	// there is one).
	Name string
	// Ports are the UDP ports the payload is sent to.
	Ports []uint16
	// Payload is the datagram sent.
	Payload []byte
	// Parse checks that reply answers Payload and returns what it says
	// worth showing (a version, a status line); "" when nothing.
	Parse func(reply []byte) (info string, err error)
	// OtherPort says the server answers from a port of its own, not the
	// one probed (TFTP's transfer ID).
	OtherPort bool
}

// Match is a recognized reply.
type Match struct {
	Service string `json:"service"`
	Info    string `json:"info,omitempty"`
}

// ParseError says where a reply stopped parsing.
type ParseError struct {
	Proto  string // the protocol parsed
	Offset int    // byte offset in the reply
	Msg    string
}

func (e *ParseError) Error() string {
	return fmt.Sprintf("%s reply at byte %d: %s", e.Proto, e.Offset, e.Msg)
}

func perr(proto string, off int, format string, args ...any) error {
	return &ParseError{Proto: proto, Offset: off, Msg: fmt.Sprintf(format, args...)}
}

// Protocols returns every protocol, in a stable order.
func Protocols() []Protocol { return slices.Clone(protocols()) }

var protocols = sync.OnceValue(func() []Protocol {
	return []Protocol{
		{Name: "domain", Ports: []uint16{53, 853}, Payload: dnsVersionBind, Parse: parseDNSVersion},
		{Name: "domain", Ports: []uint16{53}, Payload: dnsRootNS, Parse: parseDNSRoot},
		{Name: "mdns", Ports: []uint16{5353}, Payload: mdnsServices, Parse: parseMDNS},
		{Name: "ntp", Ports: []uint16{123}, Payload: ntpRequest, Parse: parseNTP},
		{Name: "snmp", Ports: []uint16{161}, Payload: snmpGet(0), Parse: parseSNMP},
		{Name: "snmp", Ports: []uint16{161}, Payload: snmpGet(1), Parse: parseSNMP},
		{Name: "netbios-ns", Ports: []uint16{137}, Payload: nbstatRequest, Parse: parseNBSTAT},
		{Name: "ssdp", Ports: []uint16{1900}, Payload: ssdpSearch, Parse: parseSSDP},
		{Name: "memcache", Ports: []uint16{11211}, Payload: memcachedStats, Parse: parseMemcached},
		{Name: "sip", Ports: []uint16{5060, 5061}, Payload: sipOptions, Parse: parseSIP},
		{Name: "isakmp", Ports: []uint16{500}, Payload: ikev1MainMode, Parse: parseIKE},
		{Name: "isakmp", Ports: []uint16{500}, Payload: ikev2SAInit, Parse: parseIKE},
		{Name: "ipsec-nat-t", Ports: []uint16{4500}, Payload: nonESP(ikev2SAInit), Parse: parseIKENATT},
		{Name: "quic", Ports: []uint16{443, 853}, Payload: quicVersionProbe, Parse: parseQUIC},
		{Name: "dtls", Ports: []uint16{443, 4433, 5684, 5061, 3391}, Payload: dtlsClientHello, Parse: parseDTLS},
		{Name: "sunrpc", Ports: []uint16{111, 2049}, Payload: rpcNullCall, Parse: parseRPC},
		{Name: "tftp", Ports: []uint16{69}, Payload: tftpRead, Parse: parseTFTP, OtherPort: true},
		{Name: "nat-pmp", Ports: []uint16{5351}, Payload: natpmpAddr, Parse: parseNATPMP},
		{Name: "ms-sql-m", Ports: []uint16{1434}, Payload: []byte{0x03}, Parse: parseMSSQL},
		{Name: "asf-rmcp", Ports: []uint16{623}, Payload: rmcpPing, Parse: parseRMCP},
		{Name: "xdmcp", Ports: []uint16{177}, Payload: xdmcpQuery, Parse: parseXDMCP},
		{Name: "stun", Ports: []uint16{3478, 19302}, Payload: stunBinding, Parse: parseSTUN},
		{Name: "openvpn", Ports: []uint16{1194}, Payload: openvpnReset, Parse: parseOpenVPN},
		{Name: "coap", Ports: []uint16{5683}, Payload: coapWellKnown, Parse: parseCoAP},
		{Name: "echo", Ports: []uint16{7}, Payload: echoPayload, Parse: parseEcho},
	}
})

var byPort = sync.OnceValue(func() map[uint16][]int {
	m := make(map[uint16][]int)
	for i, p := range protocols() {
		for _, port := range p.Ports {
			m[port] = append(m[port], i)
		}
	}
	return m
})

// Payloads returns the datagrams to send to port: one per protocol
// registered there, nil elsewhere (an empty datagram is the probe then).
// The slices are shared: do not modify them.
func Payloads(port uint16) [][]byte {
	idx := byPort()[port]
	if len(idx) == 0 {
		return nil
	}
	ps := protocols()
	out := make([][]byte, len(idx))
	for i, j := range idx {
		out[i] = ps[j].Payload
	}
	return out
}

// Recognize names the service that sent reply from port: the protocols
// registered on the port are tried first, then every other one (a service
// on a port of its own). ok is false when no recognizer accepts it.
func Recognize(port uint16, reply []byte) (m Match, ok bool) {
	ps := protocols()
	idx := byPort()[port]
	tried := make([]bool, len(ps))
	for _, i := range idx {
		tried[i] = true
		if info, err := ps[i].Parse(reply); err == nil {
			return Match{Service: ps[i].Name, Info: info}, true
		}
	}
	for i, p := range ps {
		if tried[i] || p.Name == "echo" {
			continue // an echo only counts where echo is expected
		}
		if info, err := p.Parse(reply); err == nil {
			return Match{Service: p.Name, Info: info}, true
		}
	}
	return Match{}, false
}

// OtherPortReplies returns the ports whose servers answer from another
// port: a reply from an unexpected port of a host being probed there is
// matched with RecognizeOn.
func OtherPortReplies() []uint16 {
	var ports []uint16
	for _, p := range protocols() {
		if p.OtherPort {
			ports = append(ports, p.Ports...)
		}
	}
	return ports
}

// RecognizeOn reports whether reply answers one of port's own payloads,
// trying no other protocol.
func RecognizeOn(port uint16, reply []byte) (Match, bool) {
	ps := protocols()
	for _, i := range byPort()[port] {
		if info, err := ps[i].Parse(reply); err == nil {
			return Match{Service: ps[i].Name, Info: info}, true
		}
	}
	return Match{}, false
}

// printable returns b as text with control characters dropped and at most
// n bytes kept, for info strings taken from replies.
func printable(b []byte, n int) string {
	out := make([]byte, 0, min(len(b), n))
	for _, c := range b {
		if len(out) >= n {
			break
		}
		switch {
		case c == '\t' || c == ' ':
			out = append(out, ' ')
		case c >= 0x21 && c < 0x7f:
			out = append(out, c)
		}
	}
	return string(out)
}
