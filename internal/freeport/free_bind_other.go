//go:build !linux

package freeport

import (
	"fmt"
	"net"
	"net/netip"

	"portolan/internal/portspec"
)

// ProbeBind binds proto (TCP or UDP) to ap and closes the socket again. Off
// Linux this goes through the net package, which listens (briefly) and
// always sets SO_REUSEADDR, so reuse is ignored; the IPv6 wildcard is
// bound dual-stack where the system allows it.
func ProbeBind(proto portspec.Proto, ap netip.AddrPort, reuse bool) error {
	fam := "4"
	if ap.Addr().Is6() && !ap.Addr().Is4In6() {
		fam = "6"
		if ap.Addr().IsUnspecified() {
			fam = ""
		}
	}
	switch proto {
	case portspec.TCP:
		l, err := net.Listen("tcp"+fam, ap.String())
		if err != nil {
			return fmt.Errorf("bind %v %v: %w", proto, ap, err)
		}
		return l.Close()
	case portspec.UDP:
		c, err := net.ListenPacket("udp"+fam, ap.String())
		if err != nil {
			return fmt.Errorf("bind %v %v: %w", proto, ap, err)
		}
		return c.Close()
	}
	return fmt.Errorf("bind %v %v: protocol not supported (want tcp or udp)", proto, ap)
}
