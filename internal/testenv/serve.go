package testenv

import (
	"io"
	"net"
	"testing"
)

// Serve accepts connections on ln until it is closed, runs handle on each
// in its own goroutine and closes the connection when handle returns. A nil
// handle closes every connection at once. Call it with go.
func Serve(ln net.Listener, handle func(net.Conn)) {
	for {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		go func() {
			defer c.Close()
			if handle != nil {
				handle(c)
			}
		}()
	}
}

// Drain is a Serve handler that reads until the peer closes, so a client
// that closes first is left in TIME_WAIT.
func Drain(c net.Conn) { io.Copy(io.Discard, c) }

// ServeLoopback listens on 127.0.0.1 (a free port), serves with handle
// until the test ends, and returns the listener's address.
func ServeLoopback(t testing.TB, handle func(net.Conn)) string {
	t.Helper()
	ln, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go Serve(ln, handle)
	return ln.Addr().String()
}

// Hold blocks for the rest of the process's life: a holder child keeps its
// sockets until its parent kills it.
func Hold() { select {} }

// EchoUDP sends every datagram on pc back to its sender until pc is
// closed. Call it with go.
func EchoUDP(pc net.PacketConn) {
	buf := make([]byte, 64<<10)
	for {
		n, from, err := pc.ReadFrom(buf)
		if err != nil {
			return
		}
		pc.WriteTo(buf[:n], from)
	}
}
