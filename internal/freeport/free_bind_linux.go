package freeport

import (
	"fmt"
	"net"
	"net/netip"
	"syscall"

	"portolan/internal/portspec"
)

// ProbeBind binds a fresh socket of proto (TCP or UDP) to ap and closes it
// again, without listening, so nothing can connect to it meanwhile. It
// returns nil when the bind succeeds, otherwise the bind error (wrapped; test
// it with errors.Is(err, syscall.EADDRINUSE)). The IPv6 wildcard is bound
// dual-stack (IPV6_V6ONLY off), as a server listening on ":port" does, so it
// also conflicts with IPv4 holders. With reuse, SO_REUSEADDR is set as most
// servers do, so sockets left in TIME_WAIT by a closed listener do not count.
func ProbeBind(proto portspec.Proto, ap netip.AddrPort, reuse bool) error {
	var typ int
	switch proto {
	case portspec.TCP:
		typ = syscall.SOCK_STREAM
	case portspec.UDP:
		typ = syscall.SOCK_DGRAM
	default:
		return fmt.Errorf("bind %v %v: protocol not supported (want tcp or udp)", proto, ap)
	}
	a := ap.Addr().Unmap()
	family := syscall.AF_INET
	var sa syscall.Sockaddr
	if a.Is4() {
		sa = &syscall.SockaddrInet4{Port: int(ap.Port()), Addr: a.As4()}
	} else {
		family = syscall.AF_INET6
		sa6 := &syscall.SockaddrInet6{Port: int(ap.Port()), Addr: a.As16()}
		if z := a.Zone(); z != "" {
			if ifi, err := net.InterfaceByName(z); err == nil {
				sa6.ZoneId = uint32(ifi.Index)
			}
		}
		sa = sa6
	}
	fd, err := syscall.Socket(family, typ|syscall.SOCK_CLOEXEC, 0)
	if err != nil {
		return fmt.Errorf("bind %v %v: socket: %w", proto, ap, err)
	}
	defer syscall.Close(fd)
	if family == syscall.AF_INET6 && a.IsUnspecified() {
		if err := syscall.SetsockoptInt(fd, syscall.IPPROTO_IPV6, syscall.IPV6_V6ONLY, 0); err != nil {
			return fmt.Errorf("bind %v %v: IPV6_V6ONLY: %w", proto, ap, err)
		}
	}
	if reuse {
		if err := syscall.SetsockoptInt(fd, syscall.SOL_SOCKET, syscall.SO_REUSEADDR, 1); err != nil {
			return fmt.Errorf("bind %v %v: SO_REUSEADDR: %w", proto, ap, err)
		}
	}
	if err := syscall.Bind(fd, sa); err != nil {
		return fmt.Errorf("bind %v %v: %w", proto, ap, err)
	}
	return nil
}
