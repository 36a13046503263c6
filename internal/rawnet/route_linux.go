package rawnet

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"syscall"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// LookupRoute asks the kernel (RTM_GETROUTE over netlink, in the calling
// thread's network namespace) how packets to dst leave. An unreachable,
// prohibited or blackhole route is the kernel's error (EHOSTUNREACH,
// EACCES, EINVAL; ENETUNREACH for no route), wrapped, so that callers can
// tell them apart as a connect() would.
func LookupRoute(dst netip.Addr) (Route, error) { return LookupRouteVia(dst, "") }

// LookupRouteVia is LookupRoute for packets that must leave through the
// interface named ifname (nmap's -e): the kernel's answer for that output
// interface. An empty ifname is LookupRoute.
func LookupRouteVia(dst netip.Addr, ifname string) (Route, error) {
	dst = dst.Unmap()
	var rs []netlink.Route
	var err error
	if ifname == "" {
		rs, err = netlink.RouteGet(dst.AsSlice())
	} else {
		rs, err = netlink.RouteGetWithOptions(dst.AsSlice(), &netlink.RouteGetOptions{Oif: ifname})
	}
	if err != nil {
		return Route{}, fmt.Errorf("route to %s: %w", dst, err)
	}
	if len(rs) == 0 {
		return Route{}, fmt.Errorf("route to %s: %w", dst, unix.ENETUNREACH)
	}
	rt := rs[0]
	r := Route{Ifindex: rt.LinkIndex, NextHop: dst}
	if a, ok := netip.AddrFromSlice(rt.Src); ok {
		r.Src = a.Unmap()
	}
	if a, ok := netip.AddrFromSlice(rt.Gw); ok && a.IsValid() && !a.IsUnspecified() {
		r.NextHop = a.Unmap()
	}
	if !r.Src.IsValid() {
		return Route{}, fmt.Errorf("route to %s: no source address", dst)
	}
	l, err := netlink.LinkByIndex(rt.LinkIndex)
	if err != nil {
		return Route{}, fmt.Errorf("route to %s: interface %d: %w", dst, rt.LinkIndex, err)
	}
	a := l.Attrs()
	r.Ifname = a.Name
	if a.EncapType == "ether" && len(a.HardwareAddr) == 6 && a.Flags&net.FlagLoopback == 0 {
		r.SrcMAC = a.HardwareAddr
	}
	return r, nil
}

// ErrNoNeighbor means the next hop did not answer address resolution
// (ARP or neighbour discovery): the kernel marked it failed.
var ErrNoNeighbor = errors.New("next hop does not answer address resolution")

// Neighbors reads the kernel's neighbour table (ARP and NDP) of the
// network namespace it was opened in, from any goroutine.
type Neighbors struct{ h *netlink.Handle }

// OpenNeighbors opens a netlink socket in the calling thread's network
// namespace.
func OpenNeighbors() (*Neighbors, error) {
	h, err := netlink.NewHandle(unix.NETLINK_ROUTE)
	if err != nil {
		return nil, fmt.Errorf("netlink: %w", err)
	}
	return &Neighbors{h}, nil
}

// Lookup returns the MAC address of ip on interface ifindex, nil if it is
// not known (yet), or ErrNoNeighbor if resolution failed.
func (n *Neighbors) Lookup(ifindex int, ip netip.Addr) (net.HardwareAddr, error) {
	fam := netlink.FAMILY_V4
	if ip.Is6() && !ip.Is4In6() {
		fam = netlink.FAMILY_V6
	}
	ns, err := n.h.NeighList(ifindex, fam)
	if err != nil {
		return nil, fmt.Errorf("neighbours of interface %d: %w", ifindex, err)
	}
	for _, e := range ns {
		a, ok := netip.AddrFromSlice(e.IP)
		if !ok || a.Unmap() != ip.Unmap() {
			continue
		}
		switch {
		case e.State&netlink.NUD_FAILED != 0:
			return nil, fmt.Errorf("neighbour %s: %w", ip, ErrNoNeighbor)
		case e.State&(netlink.NUD_INCOMPLETE|netlink.NUD_NONE) != 0:
			return nil, nil
		case len(e.HardwareAddr) == 6:
			return e.HardwareAddr, nil
		}
	}
	return nil, nil
}

// Close closes the netlink socket.
func (n *Neighbors) Close() error {
	n.h.Close()
	return nil
}

// Solicit makes the kernel resolve ip's link-layer address: it sends one
// empty UDP datagram to ip's discard port (9), which needs the address.
// A raw packet would not: AF_PACKET skips the neighbour layer.
func Solicit(ip netip.Addr) error { return SolicitVia(ip, "") }

// SolicitVia is Solicit on the interface named ifname (the datagram's
// socket is bound to it), for a next hop that a route through another
// interface would not reach. An empty ifname is Solicit.
func SolicitVia(ip netip.Addr, ifname string) error {
	d := net.Dialer{}
	if ifname != "" {
		d.Control = func(_, _ string, rc syscall.RawConn) error {
			var serr error
			if err := rc.Control(func(fd uintptr) {
				serr = unix.SetsockoptString(int(fd), unix.SOL_SOCKET, unix.SO_BINDTODEVICE, ifname)
			}); err != nil {
				return err
			}
			return serr
		}
	}
	c, err := d.Dial("udp", netip.AddrPortFrom(ip, 9).String())
	if err != nil {
		return fmt.Errorf("solicit %s: %w", ip, err)
	}
	defer c.Close()
	if _, err := c.Write(nil); err != nil {
		return fmt.Errorf("solicit %s: %w", ip, err)
	}
	return nil
}
