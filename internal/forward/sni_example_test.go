package forward_test

import (
	"crypto/tls"
	"errors"
	"fmt"
	"log"
	"net"

	"portolan/internal/forward"
)

// Reading the server name from the first bytes of a connection, as SNI
// routing does: parse what has come so far and read more while the
// ClientHello is incomplete.
func ExampleParseClientHello() {
	client, relay := net.Pipe()
	defer relay.Close()
	go tls.Client(client, &tls.Config{ServerName: "www.example", NextProtos: []string{"h2", "http/1.1"}}).Handshake()

	buf := make([]byte, 16<<10)
	n := 0
	for {
		k, err := relay.Read(buf[n:])
		if err != nil {
			log.Fatal(err)
		}
		n += k
		h, _, err := forward.ParseClientHello(buf[:n])
		if errors.Is(err, forward.ErrShortHello) {
			continue
		}
		if err != nil {
			log.Fatal(err)
		}
		fmt.Println(h.ServerName, h.ALPN)
		return
	}
	// Output: www.example [h2 http/1.1]
}
