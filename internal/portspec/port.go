// Package portspec owns the port vocabulary shared by every command: the
// Port and Proto types, port classes, compact port sets and the nmap-style
// port specifications users type ("22,80-90,U:53,T:ssh").
package portspec

import (
	"fmt"
	"strings"
)

// Port is a transport-layer port number.
type Port uint16

// Proto is a transport protocol that has ports.
type Proto uint8

// The protocols portolan knows. The zero value is no protocol.
const (
	TCP Proto = iota + 1
	UDP
	SCTP
	DCCP // in the IANA registry; not scanned
)

// Protos lists the protocols a port set can hold, in display order.
var Protos = []Proto{TCP, UDP, SCTP}

func (p Proto) String() string {
	switch p {
	case TCP:
		return "tcp"
	case UDP:
		return "udp"
	case SCTP:
		return "sctp"
	case DCCP:
		return "dccp"
	}
	return fmt.Sprintf("proto(%d)", uint8(p))
}

// ParseProto reads a protocol name, case-insensitively.
func ParseProto(s string) (Proto, error) {
	switch strings.ToLower(s) {
	case "tcp":
		return TCP, nil
	case "udp":
		return UDP, nil
	case "sctp":
		return SCTP, nil
	case "dccp":
		return DCCP, nil
	}
	return 0, fmt.Errorf("unknown protocol %q (want tcp, udp, sctp or dccp)", s)
}

// MarshalText writes the protocol name, so JSON shows "tcp", not 1.
func (p Proto) MarshalText() ([]byte, error) { return []byte(p.String()), nil }

// UnmarshalText reads a protocol name.
func (p *Proto) UnmarshalText(b []byte) error {
	v, err := ParseProto(string(b))
	if err != nil {
		return err
	}
	*p = v
	return nil
}

// Class is the IANA range a port falls in (RFC 6335 section 6).
type Class uint8

const (
	WellKnown  Class = iota + 1 // 0-1023, "system ports"
	Registered                  // 1024-49151, "user ports"
	Dynamic                     // 49152-65535, dynamic/private, never assigned
)

// ClassOf returns the class of port p.
func ClassOf(p Port) Class {
	switch {
	case p <= 1023:
		return WellKnown
	case p <= 49151:
		return Registered
	}
	return Dynamic
}

func (c Class) String() string {
	switch c {
	case WellKnown:
		return "well-known"
	case Registered:
		return "registered"
	case Dynamic:
		return "dynamic"
	}
	return fmt.Sprintf("class(%d)", uint8(c))
}

// Range returns the first and last port of the class.
func (c Class) Range() (Port, Port) {
	switch c {
	case WellKnown:
		return 0, 1023
	case Registered:
		return 1024, 49151
	}
	return 49152, 65535
}

// Describe names the class with its range, for people:
// "dynamic/private range (49152-65535)".
func (c Class) Describe() string {
	lo, hi := c.Range()
	switch c {
	case WellKnown:
		return fmt.Sprintf("well-known (system) range (%d-%d)", lo, hi)
	case Registered:
		return fmt.Sprintf("registered (user) range (%d-%d)", lo, hi)
	}
	return fmt.Sprintf("dynamic/private range (%d-%d)", lo, hi)
}

// MarshalText writes the class name.
func (c Class) MarshalText() ([]byte, error) { return []byte(c.String()), nil }
