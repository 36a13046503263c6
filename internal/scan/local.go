package scan

import (
	"errors"
	"fmt"
	"net/netip"
)

// Local is where probes leave from, as nmap's -e, -S and --source-port
// say. The zero value leaves all three to the kernel: the route's
// interface and source address, ephemeral source ports.
type Local struct {
	// Iface sends every probe through this interface, whatever the
	// routes say: sockets are bound to it (SO_BINDTODEVICE), raw probes
	// take the route through it. Empty means the route's interface.
	Iface string `json:"iface,omitempty"`
	// Addr is the probes' source address. For connect and UDP probes it
	// must be an address of this host (sockets are bound to it); a raw
	// SYN may carry any address, but its answers come back only to one
	// of ours. The zero Addr means the route's source address; probes to
	// the other family fail.
	Addr netip.Addr `json:"addr,omitzero"`
	// Port is every probe's source port. 0 means ephemeral ports (and a
	// block of 1,024 ports of its own for SYN).
	Port uint16 `json:"port,omitempty"`
}

// IsZero reports whether l leaves everything to the kernel.
func (l Local) IsZero() bool { return l == Local{} }

// ErrBindDevice marks a socket that could not be bound to an interface
// for lack of privilege: SO_BINDTODEVICE needs CAP_NET_RAW (on kernels
// before 5.7 always; later ones let an unprivileged socket bind once).
var ErrBindDevice = errors.New("binding to an interface needs CAP_NET_RAW")

// family checks that dst can be reached from l's address: an IPv4 source
// cannot send to an IPv6 destination.
func (l Local) family(dst netip.Addr) error {
	if l.Addr.IsValid() && l.Addr.Is4() != dst.Unmap().Is4() {
		return fmt.Errorf("source address %s cannot reach %s: another address family", l.Addr, dst)
	}
	return nil
}
