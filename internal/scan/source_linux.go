package scan

import (
	"net/netip"
	"time"

	"golang.org/x/sys/unix"
)

// sourceCache remembers the source address the kernel picks for a
// destination host, so that probe sockets can be bound to it: a connect
// from a socket bound to an address skips choosing one and recording it in
// the kernel's bind table, and a failed connect skips resetting it, about
// a tenth of the CPU of a probe to a closed port. The address is the one
// the kernel would use anyway (asked with a datagram socket, which sends
// nothing); it is asked again once sourceTTL has passed (looked at every
// sourceCheck probes, to keep the clock out of most), so a route that
// changes during a scan is followed. Only the first sourceHosts hosts are
// remembered: a scan of many hosts with few ports each gains nothing from
// it, and memory stays flat.
type sourceCache struct {
	m map[netip.Addr]*source // pointers: a lookup updates uses in place, no map write per probe
}

type source struct {
	addr  netip.Addr // invalid: leave the socket unbound
	until time.Time
	uses  uint32
}

const (
	sourceHosts = 256
	sourceTTL   = 10 * time.Second
	sourceCheck = 64
)

// lookup returns the source address for dst, or the zero Addr when probes
// to dst should leave it to the kernel.
func (c *sourceCache) lookup(dst netip.Addr) netip.Addr {
	if dst.Zone() != "" || dst.IsLinkLocalUnicast() {
		return netip.Addr{} // a link-local source would need its zone too
	}
	s := c.m[dst]
	switch {
	case s != nil:
		if s.uses++; s.uses%sourceCheck != 0 || time.Now().Before(s.until) {
			return s.addr
		}
	case len(c.m) >= sourceHosts:
		return netip.Addr{}
	case c.m == nil:
		c.m = make(map[netip.Addr]*source)
	}
	if s == nil {
		s = &source{}
		c.m[dst] = s
	}
	s.addr, s.until = routeSource(dst), time.Now().Add(sourceTTL)
	return s.addr
}

// forget drops dst's entry, after its address failed a probe.
func (c *sourceCache) forget(dst netip.Addr) {
	if s := c.m[dst]; s != nil && s.addr.IsValid() {
		delete(c.m, dst)
	}
}

// routeSource returns the source address the kernel picks for dst, or the
// zero Addr if there is none (no route) or it is link-local.
func routeSource(dst netip.Addr) netip.Addr {
	family := unix.AF_INET6
	var sa unix.Sockaddr = &unix.SockaddrInet6{Port: 9, Addr: dst.As16()}
	if dst.Is4() {
		family = unix.AF_INET
		sa = &unix.SockaddrInet4{Port: 9, Addr: dst.As4()}
	}
	fd, err := unix.Socket(family, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return netip.Addr{}
	}
	defer unix.Close(fd)
	if unix.Connect(fd, sa) != nil {
		return netip.Addr{}
	}
	var a netip.Addr
	switch l, _ := unix.Getsockname(fd); l := l.(type) {
	case *unix.SockaddrInet4:
		a = netip.AddrFrom4(l.Addr)
	case *unix.SockaddrInet6:
		a = netip.AddrFrom16(l.Addr)
	}
	if !a.IsValid() || a.IsUnspecified() || a.IsLinkLocalUnicast() {
		return netip.Addr{}
	}
	return a
}

// spares keeps unconnected probe sockets for reuse, each bound to a port
// of its own and to a source address or none. A few slots cover scans
// over both families and more than one source; beyond that the oldest is
// closed.
type spares struct {
	s    [4]spareSock
	next int
}

type spareSock struct {
	fd     int
	ok     bool // the slot holds fd
	family int
	src    netip.Addr
}

// take returns a spare socket of family bound to src, if there is one.
func (sp *spares) take(family int, src netip.Addr) (int, bool) {
	for i := range sp.s {
		if s := &sp.s[i]; s.ok && s.family == family && s.src == src {
			s.ok = false
			return s.fd, true
		}
	}
	return -1, false
}

// put keeps fd, whose connect failed and left it unconnected, for reuse.
func (sp *spares) put(family int, src netip.Addr, fd int) {
	for i := range sp.s {
		if !sp.s[i].ok {
			sp.s[i] = spareSock{fd: fd, ok: true, family: family, src: src}
			return
		}
	}
	old := &sp.s[sp.next]
	sp.next = (sp.next + 1) % len(sp.s)
	unix.Close(old.fd)
	*old = spareSock{fd: fd, ok: true, family: family, src: src}
}

// close closes every spare socket.
func (sp *spares) close() {
	for i := range sp.s {
		if sp.s[i].ok {
			unix.Close(sp.s[i].fd)
			sp.s[i].ok = false
		}
	}
}
