package rawnet

import (
	"errors"
	"net"
	"net/netip"
)

// ErrNotSupported is returned by the socket functions on systems other
// than Linux.
var ErrNotSupported = errors.New("raw packet sockets are not supported on this system")

// Route is how packets to one destination leave: the interface, the
// source address the kernel would use, and for an Ethernet interface the
// MAC addresses of both ends of the first hop.
type Route struct {
	Ifindex int
	Ifname  string
	Src     netip.Addr
	// NextHop is the gateway, or the destination itself when it is on
	// the link.
	NextHop netip.Addr
	// SrcMAC is the interface's address; nil means the interface has no
	// link layer (loopback, tun): packets go through a raw IP socket.
	SrcMAC net.HardwareAddr
}

// Link reports whether packets on this route carry an Ethernet header
// (AF_PACKET) rather than going through a raw IP socket.
func (r Route) Link() bool { return r.SrcMAC != nil }

// Stats counts what a Receiver's socket saw since it opened.
type Stats struct {
	Packets uint64 // passed the filter, including those dropped
	Drops   uint64 // passed the filter but found the receive buffer full
}
