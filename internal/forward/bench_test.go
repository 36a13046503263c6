package forward

import (
	"context"
	"io"
	"net"
	"testing"
	"time"
)

// BenchmarkTCPRelay pushes bytes through the relay to a sink that reads
// with a user-space buffer, so any splice(2) seen under strace is the
// relay's. Run: go test -bench TCPRelay -run XXX ./internal/forward
func BenchmarkTCPRelay(b *testing.B) {
	for _, bc := range []struct {
		name string
		idle time.Duration
	}{{"copy", 0}, {"chunked-idle", time.Minute}} {
		b.Run(bc.name, func(b *testing.B) {
			ln, err := net.Listen("tcp4", "127.0.0.1:0")
			if err != nil {
				b.Fatal(err)
			}
			defer ln.Close()
			go func() {
				for {
					c, err := ln.Accept()
					if err != nil {
						return
					}
					go func() {
						buf := make([]byte, 256<<10)
						for {
							if _, err := c.Read(buf); err != nil {
								c.Close()
								return
							}
						}
					}()
				}
			}()
			s := &Server{}
			if err := s.Apply(context.Background(), []Rule{{Name: "b", Listen: "127.0.0.1:0", Targets: []string{ln.Addr().String()}, IdleTimeout: bc.idle}}); err != nil {
				b.Fatal(err)
			}
			defer s.Shutdown(context.Background())
			c, err := net.Dial("tcp", s.Addr("b").String())
			if err != nil {
				b.Fatal(err)
			}
			buf := make([]byte, 256<<10)
			b.SetBytes(int64(len(buf)))
			b.ResetTimer()
			for range b.N {
				if _, err := c.Write(buf); err != nil {
					b.Fatal(err)
				}
			}
			c.Close()
		})
	}
}

// BenchmarkTCPConnect measures one connect, one byte echoed, and close
// through the relay: the per-connection cost.
func BenchmarkTCPConnect(b *testing.B) {
	ln, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	defer ln.Close()
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() { io.Copy(c, c); c.Close() }()
		}
	}()
	s := &Server{}
	if err := s.Apply(context.Background(), []Rule{{Name: "b", Listen: "127.0.0.1:0", Targets: []string{ln.Addr().String()}}}); err != nil {
		b.Fatal(err)
	}
	defer s.Shutdown(context.Background())
	addr := s.Addr("b").String()
	one := make([]byte, 1)
	b.ResetTimer()
	for range b.N {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			b.Fatal(err)
		}
		c.Write(one)
		if _, err := c.Read(one); err != nil {
			b.Fatal(err)
		}
		c.Close()
	}
}

// BenchmarkUDPRoundTrip is one request and its reply through a UDP session.
func BenchmarkUDPRoundTrip(b *testing.B) {
	c := udpRelayClient(b)
	q := make([]byte, 64)
	buf := make([]byte, 2048)
	b.ResetTimer()
	for range b.N {
		c.SetReadDeadline(time.Now().Add(5 * time.Second))
		c.Write(q)
		if _, err := c.Read(buf); err != nil {
			b.Fatal(err)
		}
	}
}

// udpRelayClient returns a client socket of a UDP rule relaying to an
// echo backend; both end with b.
func udpRelayClient(b *testing.B) net.Conn {
	upAddr := udpBackend(b, udpEcho)
	s := &Server{}
	if err := s.Apply(context.Background(), []Rule{{Name: "u", Proto: UDP, Listen: "127.0.0.1:0", Targets: []string{upAddr}}}); err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
		defer cancel()
		s.Shutdown(ctx)
	})
	c, err := net.Dial("udp4", s.Addr("u").String())
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { c.Close() })
	return c
}
