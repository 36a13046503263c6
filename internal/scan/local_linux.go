package scan

import (
	"errors"
	"fmt"
	"net/netip"

	"golang.org/x/sys/unix"

	"portolan/internal/portspec"
)

// bindLocal applies l to the new socket fd of family: the interface, then
// the source address src (if valid) and l's port. A fixed source port is
// shared by every probe socket of a scan: Linux lets several TCP sockets
// bind one address and port only when each sets SO_REUSEADDR and none
// listens, and their connects are then told apart by the whole 4-tuple
// (a second probe to the same address and port while the first socket
// lives gets EADDRNOTAVAIL, which the scanner treats as busy). Errors are
// wrapped, never bare errnos, so that none reads as a passing shortage.
func bindLocal(fd, family int, l Local, src netip.Addr) error {
	if l.Iface != "" {
		if err := unix.SetsockoptString(fd, unix.SOL_SOCKET, unix.SO_BINDTODEVICE, l.Iface); err != nil {
			return bindDeviceErr(l.Iface, err)
		}
	}
	if l.Port == 0 && !src.IsValid() {
		return nil
	}
	if l.Port != 0 {
		if err := unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_REUSEADDR, 1); err != nil {
			return fmt.Errorf("SO_REUSEADDR: %w", err)
		}
	}
	if err := unix.Bind(fd, sockaddrFor(family, src, l.Port)); err != nil {
		switch {
		case errors.Is(err, unix.EADDRNOTAVAIL) && src.IsValid():
			return fmt.Errorf("bind source address %s: not an address of this host (%w)", src, err)
		case errors.Is(err, unix.EADDRINUSE):
			return fmt.Errorf("bind source port %d: in use by a socket of this host that does not share it (a listener, or one without SO_REUSEADDR) (%w)", l.Port, err)
		case errors.Is(err, unix.EACCES):
			return fmt.Errorf("bind source port %d: ports below 1024 need CAP_NET_BIND_SERVICE (%w)", l.Port, err)
		}
		return fmt.Errorf("bind %s: %w", netip.AddrPortFrom(src, l.Port), err)
	}
	return nil
}

// bindDeviceErr explains a failed SO_BINDTODEVICE.
func bindDeviceErr(iface string, err error) error {
	switch {
	case errors.Is(err, unix.EPERM):
		return fmt.Errorf("bind to interface %s: %w (%w)", iface, ErrBindDevice, err)
	case errors.Is(err, unix.ENODEV):
		return fmt.Errorf("bind to interface %s: no such interface (%w)", iface, err)
	}
	return fmt.Errorf("bind to interface %s: %w", iface, err)
}

// sockaddrFor is the local address src:port of family; an invalid src is
// the wildcard.
func sockaddrFor(family int, src netip.Addr, port uint16) unix.Sockaddr {
	if family == unix.AF_INET6 {
		sa := &unix.SockaddrInet6{Port: int(port)}
		if src.IsValid() {
			sa.Addr = src.As16()
		}
		return sa
	}
	sa := &unix.SockaddrInet4{Port: int(port)}
	if src.IsValid() {
		sa.Addr = src.Unmap().As4()
	}
	return sa
}

// Check tries l on a socket of the kind a scan over proto uses (connect
// and host discovery: TCP; -sU: UDP), in the calling thread's network
// namespace, so that a caller can refuse it before any probe goes out:
// an interface that does not exist, SO_BINDTODEVICE without the privilege
// (ErrBindDevice), an address not of this host, a port a listener holds.
func (l Local) Check(proto portspec.Proto) error {
	sotype := unix.SOCK_STREAM
	if proto == portspec.UDP {
		sotype = unix.SOCK_DGRAM
	}
	return checkLocal(l, sotype)
}

// checkLocal tries l on a socket of type sotype, so that a session fails
// at Open with the reason (no such interface, no privilege, an address
// that is not ours, a port held by a listener) rather than on each probe.
func checkLocal(l Local, sotype int) error {
	if l.IsZero() {
		return nil
	}
	family := unix.AF_INET
	if l.Addr.IsValid() && !l.Addr.Unmap().Is4() {
		family = unix.AF_INET6
	}
	fd, err := unix.Socket(family, sotype|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return fmt.Errorf("socket: %w", err)
	}
	defer unix.Close(fd)
	if family == unix.AF_INET6 {
		_ = unix.SetsockoptInt(fd, unix.SOL_IPV6, unix.IPV6_V6ONLY, 1)
	}
	return bindLocal(fd, family, l, l.Addr.Unmap())
}
