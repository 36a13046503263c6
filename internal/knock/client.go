package knock

import (
	"context"
	"crypto/ecdh"
	"crypto/rand"
	"fmt"
	"net"
	"net/netip"
	"time"

	"portolan/internal/portspec"
)

// SPA sends single-packet authorization requests.
type SPA struct {
	Key *ClientKey
	// Server seals requests to this server key (knockd's server-key), so
	// no observer reads them; nil sends them signed but readable.
	Server *ecdh.PublicKey
	// Now is the clock for the timestamp; nil means time.Now.
	Now func() time.Time
}

// Send asks server (its SPA port) to open ports for allow for d (0: the
// door's time) and returns the datagram sent. An invalid allow means the
// address this host sends from towards server.
func (c *SPA) Send(ctx context.Context, server netip.AddrPort, allow netip.Addr, ports []DoorPort, d time.Duration) ([]byte, error) {
	var dl net.Dialer
	conn, err := dl.DialContext(ctx, "udp", server.String())
	if err != nil {
		return nil, fmt.Errorf("spa to %s: %w", server, err)
	}
	defer conn.Close()
	if !allow.IsValid() {
		allow = conn.LocalAddr().(*net.UDPAddr).AddrPort().Addr().Unmap()
	}
	now := time.Now
	if c.Now != nil {
		now = c.Now
	}
	req := Request{Time: now(), AllowIP: allow, Ports: ports, Duration: d}
	rand.Read(req.Nonce[:])
	b, err := c.Key.Sign(&req)
	if err != nil {
		return nil, err
	}
	if c.Server != nil {
		if b, err = Seal(b, c.Server); err != nil {
			return nil, err
		}
	}
	if _, err := conn.Write(b); err != nil {
		return nil, fmt.Errorf("spa to %s: %w", server, err)
	}
	return b, nil
}

// Knock sends a classic sequence to host: one TCP SYN or one UDP datagram
// per knock, gap apart. A TCP knock is a connection attempt abandoned at
// once, so exactly one SYN leaves.
func Knock(ctx context.Context, host netip.Addr, seq []DoorPort, gap time.Duration) error {
	for i, k := range seq {
		if i > 0 && gap > 0 {
			t := time.NewTimer(gap)
			select {
			case <-ctx.Done():
				t.Stop()
				return ctx.Err()
			case <-t.C:
			}
		}
		addr := netip.AddrPortFrom(host, uint16(k.Port))
		var err error
		if k.Proto == portspec.UDP {
			err = knockUDP(addr)
		} else {
			err = knockSYN(addr)
		}
		if err != nil {
			return fmt.Errorf("knock %s/%s: %w", addr, k.Proto, err)
		}
	}
	return nil
}

func knockUDP(addr netip.AddrPort) error {
	c, err := net.DialUDP("udp", nil, net.UDPAddrFromAddrPort(addr))
	if err != nil {
		return err
	}
	defer c.Close()
	_, err = c.Write([]byte{0})
	return err
}
