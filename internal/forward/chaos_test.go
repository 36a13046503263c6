package forward

import (
	"context"
	"encoding/binary"
	"io"
	"net"
	"net/netip"
	"strings"
	"sync"
	"testing"
	"time"
)

// rstDial connects to addr and closes at once with a reset (SO_LINGER 0),
// so the connection may be gone before the relay looks at it.
func rstDial(addr string) {
	c, err := net.DialTimeout("tcp", addr, 2*time.Second)
	if err != nil {
		return
	}
	c.(*net.TCPConn).SetLinger(0)
	c.Close()
}

// TestAcceptProxyResetClientsDoNotCrash: clients that connect and reset
// at once, from an address that is not a trusted proxy, on a rule that
// accepts PROXY headers. The relay looked the client's address up on the
// socket after the hand-off, found none on a reset socket and panicked,
// taking every rule down.
func TestAcceptProxyResetClientsDoNotCrash(t *testing.T) {
	trusted := []netip.Prefix{netip.MustParsePrefix("198.18.0.0/15")}
	s, _ := start(t,
		Rule{Name: "untrusted", Listen: "127.0.0.1:0", Targets: []string{backend(t, echo)}, TrustedProxies: trusted},
		Rule{Name: "trusted", Listen: "127.0.0.1:0", Targets: []string{backend(t, echo)}, TrustedProxies: []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8")}})
	for _, rule := range []string{"untrusted", "trusted"} {
		addr := s.Addr(rule).String()
		var wg sync.WaitGroup
		for range 4 {
			wg.Go(func() {
				for range 250 {
					rstDial(addr)
				}
			})
		}
		wg.Wait()
	}
	roundTrip(t, dial(t, s, "untrusted"), "still here")
	c := dial(t, s, "trusted")
	io.WriteString(c, "PROXY TCP4 198.18.0.9 198.18.0.1 4000 80\r\n")
	roundTrip(t, c, "still here")
}

// chaosClient is one kind of hostile or broken client.
type chaosClient struct {
	name string
	tcp  func(addr string) // nil: not for TCP rules
	udp  func(addr string) // nil: not for UDP rules
}

var chaosClients = []chaosClient{
	{name: "connect-rst", tcp: rstDial},
	{name: "half-open", tcp: func(addr string) {
		// Sends part of a request, half-closes and goes away without reading.
		c, err := net.DialTimeout("tcp", addr, 2*time.Second)
		if err != nil {
			return
		}
		io.WriteString(c, "GET / HT")
		c.(*net.TCPConn).CloseWrite()
		c.Close()
	}},
	{name: "garbage", tcp: func(addr string) {
		c, err := net.DialTimeout("tcp", addr, 2*time.Second)
		if err != nil {
			return
		}
		defer c.Close()
		c.Write([]byte("\x00\xff\r\n\r\n\x00\r\nQUIT\n\x21\x11\xff\xff garbage"))
		c.SetReadDeadline(time.Now().Add(50 * time.Millisecond))
		io.Copy(io.Discard, c)
	}},
	{name: "oversized-proxy-v1", tcp: func(addr string) {
		c, err := net.DialTimeout("tcp", addr, 2*time.Second)
		if err != nil {
			return
		}
		defer c.Close()
		io.WriteString(c, "PROXY TCP4 "+strings.Repeat("1", 4096)+"\r\n")
		c.SetReadDeadline(time.Now().Add(50 * time.Millisecond))
		io.Copy(io.Discard, c)
	}},
	{name: "oversized-proxy-v2", tcp: func(addr string) {
		c, err := net.DialTimeout("tcp", addr, 2*time.Second)
		if err != nil {
			return
		}
		defer c.Close()
		h := append(append([]byte(nil), proxyV2Sig...), 0x21, 0x11, 0, 0)
		binary.BigEndian.PutUint16(h[14:], 0xffff)
		c.Write(h)
		c.Write(make([]byte, 1024))
		c.SetReadDeadline(time.Now().Add(50 * time.Millisecond))
		io.Copy(io.Discard, c)
	}},
	{name: "silent", tcp: func(addr string) {
		// Connects and says nothing for a while, then leaves.
		c, err := net.DialTimeout("tcp", addr, 2*time.Second)
		if err != nil {
			return
		}
		time.Sleep(100 * time.Millisecond)
		c.Close()
	}},
	{name: "udp-garbage", udp: func(addr string) {
		c, err := net.Dial("udp", addr)
		if err != nil {
			return
		}
		defer c.Close()
		for _, n := range []int{0, 1, 1400, 65000} {
			c.Write(make([]byte, n))
		}
	}},
	{name: "udp-vanish", udp: func(addr string) {
		// A datagram, then the client's port is gone: replies meet ICMP port unreachable.
		c, err := net.Dial("udp", addr)
		if err != nil {
			return
		}
		c.Write([]byte("ping"))
		c.Close()
	}},
}

// TestChaosEveryRuleKindKeepsServing throws every kind of hostile client
// at every kind of rule at once (plain, send-proxy, accept-proxy from a
// trusted and an untrusted peer, UDP), then checks that each rule still
// relays for a well-behaved client.
func TestChaosEveryRuleKindKeepsServing(t *testing.T) {
	n := 60 // rounds of every client kind per rule
	if testing.Short() {
		n = 10
	}
	tcpEcho := backend(t, echo)
	// The send-proxy target strips the header it is sent, then echoes.
	proxied := backend(t, func(c *net.TCPConn) {
		if _, err := ReadProxyHeader(c); err != nil {
			return
		}
		echo(c)
	})
	udpTarget := udpBackend(t, udpEcho)
	loop := []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8")}
	elsewhere := []netip.Prefix{netip.MustParsePrefix("198.18.0.0/15")}
	rules := []Rule{
		{Name: "plain", Listen: "127.0.0.1:0", Targets: []string{tcpEcho}, IdleTimeout: time.Second},
		{Name: "send-proxy", Listen: "127.0.0.1:0", Targets: []string{proxied}, ProxyProtocol: 2, IdleTimeout: time.Second},
		{Name: "accept-trusted", Listen: "127.0.0.1:0", Targets: []string{tcpEcho}, TrustedProxies: loop, ConnectTimeout: time.Second, IdleTimeout: time.Second},
		{Name: "accept-untrusted", Listen: "127.0.0.1:0", Targets: []string{tcpEcho}, TrustedProxies: elsewhere, IdleTimeout: time.Second},
		{Name: "udp", Proto: UDP, Listen: "127.0.0.1:0", Targets: []string{udpTarget}, IdleTimeout: time.Second},
	}
	s, _ := start(t, rules...)

	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	var wg sync.WaitGroup
	for _, r := range rules {
		addr := s.Addr(r.Name).String()
		for _, cc := range chaosClients {
			f := cc.tcp
			if r.Proto == UDP {
				f = cc.udp
			}
			if f == nil {
				continue
			}
			wg.Go(func() {
				for i := 0; i < n && ctx.Err() == nil; i++ {
					f(addr)
				}
			})
		}
	}
	wg.Wait()

	for _, name := range []string{"plain", "send-proxy", "accept-untrusted"} {
		roundTrip(t, dial(t, s, name), "after the storm")
	}
	c := dial(t, s, "accept-trusted")
	io.WriteString(c, "PROXY TCP6 fd00::9 fd00::1 4000 80\r\n")
	roundTrip(t, c, "after the storm")
	u, err := net.Dial("udp", s.Addr("udp").String())
	if err != nil {
		t.Fatal(err)
	}
	defer u.Close()
	u.SetReadDeadline(time.Now().Add(5 * time.Second))
	u.Write([]byte("udp after the storm"))
	b := make([]byte, 64)
	if k, err := u.Read(b); err != nil || string(b[:k]) != "udp after the storm" {
		t.Fatalf("udp echo after the storm = %q, %v", b[:k], err)
	}
}
