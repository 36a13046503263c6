//go:build unix

package knock

import (
	"net/netip"

	"golang.org/x/sys/unix"
)

// knockSYN starts a non-blocking connect, which sends one SYN, and closes
// the socket before any answer, which sends nothing more.
func knockSYN(addr netip.AddrPort) error {
	var sa unix.Sockaddr
	fam := unix.AF_INET
	if a := addr.Addr().Unmap(); a.Is4() {
		sa = &unix.SockaddrInet4{Port: int(addr.Port()), Addr: a.As4()}
	} else {
		fam = unix.AF_INET6
		sa = &unix.SockaddrInet6{Port: int(addr.Port()), Addr: a.As16()}
	}
	fd, err := unix.Socket(fam, unix.SOCK_STREAM, 0)
	if err != nil {
		return err
	}
	defer unix.Close(fd)
	unix.CloseOnExec(fd)
	if err := unix.SetNonblock(fd, true); err != nil {
		return err
	}
	if err := unix.Connect(fd, sa); err != nil && err != unix.EINPROGRESS {
		return err
	}
	return nil
}
