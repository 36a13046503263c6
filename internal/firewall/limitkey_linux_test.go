package firewall

import (
	"context"
	"errors"
	"net"
	"net/netip"
	"syscall"
	"testing"

	"portolan/internal/netlab"
)

// probeFrom connects from h, from source address src, to dst:port.
func probeFrom(t *testing.T, h *netlab.Host, src, dst netip.Addr, port int) outcome {
	t.Helper()
	var got outcome
	err := h.Do(func() error {
		ctx, cancel := context.WithTimeout(context.Background(), dropWait)
		defer cancel()
		d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.IP(src.AsSlice())}}
		c, err := d.DialContext(ctx, "tcp", netip.AddrPortFrom(dst, uint16(port)).String())
		switch {
		case err == nil:
			c.Close()
			got = open
		case errors.Is(err, syscall.ECONNREFUSED):
			got = refused
		case isTimeout(err):
			got = dropped
		default:
			return err
		}
		return nil
	})
	if err != nil {
		t.Fatalf("connect from %s to %s: %v", src, dst, err)
	}
	return got
}

// sameNet returns the address n past p's base; nextNet the same in the
// next network of p's size.
func nthAddr(p netip.Prefix, n byte) netip.Addr {
	b := p.Addr().AsSlice()
	b[len(b)-1] += n
	a, _ := netip.AddrFromSlice(b)
	return a
}

func nextNet(p netip.Prefix, n byte) netip.Addr {
	b := p.Addr().AsSlice()
	b[p.Bits()/8-1]++
	b[len(b)-1] += n
	a, _ := netip.AddrFromSlice(b)
	return a
}

// TestLimitKeysIPv6ByPrefix: a client rotating through its /64 shares one
// bucket, and a full meter drops new sources instead of letting them
// through unlimited.
func TestLimitKeysIPv6ByPrefix(t *testing.T) {
	ctx := context.Background()
	rs := Ruleset{Policy: PolicyDrop, Rules: []Rule{mustRule(t, RuleSpec{Action: "limit", Ports: "22/tcp", Rate: "3/minute"})}}

	t.Run("same /64, same bucket", func(t *testing.T) {
		l := newLab(t)
		serveTCP(t, l.srv, 22)
		other := nthAddr(l.link.Net6, 0x33) // another address of the client's /64
		if err := l.cli.AddAddr(l.link.BDev, netip.PrefixFrom(other, 64)); err != nil {
			t.Fatal(err)
		}
		if err := l.fw.Apply(ctx, &rs); err != nil {
			t.Fatal(err)
		}
		for i := range 3 {
			if got := probeFrom(t, l.cli, l.link.B6, l.link.A6, 22); got != open {
				t.Fatalf("connection %d from %s: %s; want open", i+1, l.link.B6, got)
			}
		}
		if got := probeFrom(t, l.cli, other, l.link.A6, 22); got != dropped {
			t.Errorf("4th connection, from %s in the same /64: %s; want dropped (the /64's bucket is empty)", other, got)
		}
	})

	t.Run("configurable prefix", func(t *testing.T) {
		// /128: each address its own bucket; /56: another /64 of the same
		// /56 shares the bucket.
		for _, c := range []struct {
			prefix6 string
			other   func(*netlab.Link) netip.Addr
			bits    int
			want    outcome
		}{
			{"128", func(lk *netlab.Link) netip.Addr { return nthAddr(lk.Net6, 0x33) }, 64, open},
			{"56", func(lk *netlab.Link) netip.Addr { return nextNet(lk.Net6, 2) }, 64, dropped},
		} {
			t.Run("/"+c.prefix6, func(t *testing.T) {
				l := newLab(t)
				serveTCP(t, l.srv, 22)
				other := c.other(l.link)
				if err := l.cli.AddAddr(l.link.BDev, netip.PrefixFrom(other, c.bits)); err != nil {
					t.Fatal(err)
				}
				if !l.link.Net6.Contains(other) {
					if err := l.srv.AddRoute(netip.PrefixFrom(other, c.bits).Masked(), l.link.B6); err != nil {
						t.Fatal(err)
					}
				}
				rs := Ruleset{Policy: PolicyDrop, Rules: []Rule{mustRule(t, RuleSpec{Action: "limit", Ports: "22/tcp", Rate: "3/minute", Prefix6: c.prefix6})}}
				if err := l.fw.Apply(ctx, &rs); err != nil {
					t.Fatal(err)
				}
				tab, err := l.fw.Read(ctx)
				if err != nil {
					t.Fatal(err)
				}
				if !tab.Ruleset.Equal(&rs) {
					t.Fatalf("read back %v; want %v", tab.Ruleset.Rules, rs.Rules)
				}
				for i := range 3 {
					if got := probeFrom(t, l.cli, l.link.B6, l.link.A6, 22); got != open {
						t.Fatalf("connection %d from %s: %s; want open", i+1, l.link.B6, got)
					}
				}
				if got := probeFrom(t, l.cli, other, l.link.A6, 22); got != c.want {
					t.Errorf("prefix6 %s: 4th connection, from %s: %s; want %s", c.prefix6, other, got, c.want)
				}
			})
		}
	})

	t.Run("full meter drops new sources", func(t *testing.T) {
		old := meterSize
		meterSize = 1
		t.Cleanup(func() { meterSize = old })
		l := newLab(t)
		serveTCP(t, l.srv, 22)
		other6, other4 := nextNet(l.link.Net6, 2), nextNet(l.link.Net4, 2)
		for _, a := range []struct {
			addr netip.Addr
			bits int
			via  netip.Addr
		}{{other6, 64, l.link.B6}, {other4, 24, l.link.B4}} {
			if err := l.cli.AddAddr(l.link.BDev, netip.PrefixFrom(a.addr, a.bits)); err != nil {
				t.Fatal(err)
			}
			if err := l.srv.AddRoute(netip.PrefixFrom(a.addr, a.bits).Masked(), a.via); err != nil {
				t.Fatal(err)
			}
		}
		if err := l.fw.Apply(ctx, &rs); err != nil {
			t.Fatal(err)
		}
		for _, c := range []struct{ first, second, dst netip.Addr }{{l.link.B4, other4, l.link.A4}, {l.link.B6, other6, l.link.A6}} {
			if got := probeFrom(t, l.cli, c.first, c.dst, 22); got != open {
				t.Fatalf("first source %s: %s; want open", c.first, got)
			}
			if got := probeFrom(t, l.cli, c.second, c.dst, 22); got != dropped {
				t.Errorf("second source %s with the meter full: %s; want dropped", c.second, got)
			}
		}
	})
}
