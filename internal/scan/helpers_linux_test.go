package scan

import (
	"net"
	"net/netip"
	"os/exec"
	"strings"
	"testing"

	"golang.org/x/sys/unix"

	"portolan/internal/portspec"
)

// space is a plain addresses x ports space for tests.
type space struct {
	addrs []netip.Addr
	ports []portspec.Port
}

func (s space) Size() uint64 { return uint64(len(s.addrs) * len(s.ports)) }

func (s space) At(i uint64) (netip.Addr, portspec.Port, portspec.Proto) {
	n := uint64(len(s.ports))
	return s.addrs[i/n], s.ports[i%n], portspec.TCP
}

// listSpace is an explicit list of TCP endpoints.
type listSpace []netip.AddrPort

func (s listSpace) Size() uint64 { return uint64(len(s)) }

func (s listSpace) At(i uint64) (netip.Addr, portspec.Port, portspec.Proto) {
	return s[i].Addr(), portspec.Port(s[i].Port()), portspec.TCP
}

func sockaddr(a netip.Addr, port int) (unix.Sockaddr, int) {
	if a.Is4() {
		return &unix.SockaddrInet4{Addr: a.As4(), Port: port}, unix.AF_INET
	}
	return &unix.SockaddrInet6{Addr: a.As16(), Port: port}, unix.AF_INET6
}

func boundSocket(t testing.TB, a netip.Addr) (int, portspec.Port) {
	t.Helper()
	sa, family := sockaddr(a, 0)
	fd, err := unix.Socket(family, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		t.Fatalf("socket: %v", err)
	}
	t.Cleanup(func() { unix.Close(fd) })
	if err := unix.Bind(fd, sa); err != nil {
		t.Fatalf("bind %s: %v", a, err)
	}
	got, err := unix.Getsockname(fd)
	if err != nil {
		t.Fatalf("getsockname: %v", err)
	}
	switch s := got.(type) {
	case *unix.SockaddrInet4:
		return fd, portspec.Port(s.Port)
	case *unix.SockaddrInet6:
		return fd, portspec.Port(s.Port)
	}
	t.Fatalf("getsockname: %T", got)
	return 0, 0
}

// closedPort holds a port without listening: SYNs to it get a reset, and
// nothing else can bind it while the test runs.
func closedPort(t testing.TB, a netip.Addr) portspec.Port {
	_, p := boundSocket(t, a)
	return p
}

// droppedPort is a listener whose accept queue is full: the kernel then
// drops new SYNs silently, exactly what a firewall's DROP looks like to a
// scanner.
func droppedPort(t testing.TB, a netip.Addr) portspec.Port {
	t.Helper()
	fd, p := boundSocket(t, a)
	if err := listen0(fd); err != nil {
		t.Fatalf("listen: %v", err)
	}
	c, err := net.Dial("tcp", netip.AddrPortFrom(a, uint16(p)).String()) // fills the queue of one
	if err != nil {
		t.Fatalf("fill accept queue: %v", err)
	}
	t.Cleanup(func() { c.Close() })
	return p
}

// listen0 listens with an accept queue of one connection.
func listen0(fd int) error { return unix.Listen(fd, 0) }

// openPort is a listener that accepts and closes.
func openPort(t testing.TB, a netip.Addr) portspec.Port {
	t.Helper()
	ln, err := net.Listen("tcp", netip.AddrPortFrom(a, 0).String())
	if err != nil {
		t.Fatalf("listen: %v", err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			c.Close()
		}
	}()
	return portspec.Port(ln.Addr().(*net.TCPAddr).Port)
}

func loopback6(t testing.TB) netip.Addr {
	t.Helper()
	ln, err := net.Listen("tcp", "[::1]:0")
	if err != nil {
		t.Skipf("no IPv6 loopback: %v", err)
	}
	ln.Close()
	return netip.IPv6Loopback()
}

// ip runs the ip command, failing the test on error.
func ip(t testing.TB, args ...string) {
	t.Helper()
	out, err := exec.Command("ip", args...).CombinedOutput()
	if err != nil {
		t.Fatalf("ip %s: %v: %s", strings.Join(args, " "), err, out)
	}
}
