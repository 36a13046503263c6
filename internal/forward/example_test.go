package forward_test

import (
	"context"
	"fmt"
	"io"
	"log"
	"net"
	"time"

	"portolan/internal/forward"
)

// A relay from a free loopback port to an echo server; the half-close
// passes through, then Shutdown drains.
func ExampleServer() {
	backend, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		log.Fatal(err)
	}
	defer backend.Close()
	go func() {
		for {
			c, err := backend.Accept()
			if err != nil {
				return
			}
			go func() { io.Copy(c, c); c.Close() }()
		}
	}()

	var srv forward.Server // zero value: defaults, logs discarded
	rule := forward.Rule{Name: "echo", Listen: "127.0.0.1:0", Targets: []string{backend.Addr().String()}}
	if err := srv.Apply(context.Background(), []forward.Rule{rule}); err != nil {
		log.Fatal(err)
	}
	c, err := net.Dial("tcp", srv.Addr("echo").String())
	if err != nil {
		log.Fatal(err)
	}
	c.Write([]byte("hello"))
	c.(*net.TCPConn).CloseWrite()
	b, _ := io.ReadAll(c)
	fmt.Printf("%s\n", b)

	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	fmt.Println(srv.Shutdown(ctx))
	// Output:
	// hello
	// <nil>
}
