package forward

import (
	"context"
	"crypto/tls"
	"io"
	"net"
	"testing"

	"portolan/internal/testenv"
)

// BenchmarkSNIConnect is BenchmarkTCPConnect on a rule with SNI routes:
// the client sends a real ClientHello (no TLS behind it, so only the
// relay's work is timed), the target echoes it, the client reads it back
// and closes. The plain case is the same bytes through a rule without
// routes.
func BenchmarkSNIConnect(b *testing.B) {
	hello := clientHello(b, &tls.Config{ServerName: "x.example"})
	back := testenv.ServeLoopback(b, func(c net.Conn) { io.Copy(c, c) })
	s := &Server{}
	if err := s.Apply(context.Background(), []Rule{
		{Name: "plain", Listen: "127.0.0.1:0", Targets: []string{back}},
		{Name: "sni", Listen: "127.0.0.1:0", SNI: []SNIRoute{{Pattern: "*.example", Targets: []string{back}}}},
	}); err != nil {
		b.Fatal(err)
	}
	defer s.Shutdown(context.Background())
	for _, rule := range []string{"plain", "sni"} {
		b.Run(rule, func(b *testing.B) {
			addr := s.Addr(rule).String()
			got := make([]byte, len(hello))
			for range b.N {
				c, err := net.Dial("tcp", addr)
				if err != nil {
					b.Fatal(err)
				}
				c.Write(hello)
				if _, err := io.ReadFull(c, got); err != nil {
					b.Fatal(err)
				}
				c.Close()
			}
		})
	}
}
