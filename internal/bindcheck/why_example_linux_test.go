package bindcheck_test

import (
	"context"
	"fmt"
	"log"
	"net"
	"net/netip"

	"portolan/internal/bindcheck"
	"portolan/internal/portspec"
)

// Why explains a bind that fails: here the port is held by a listener of
// this very program.
func ExampleWhy() {
	l, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		log.Fatal(err)
	}
	defer l.Close()
	port := portspec.Port(l.Addr().(*net.TCPAddr).Port)

	v, err := bindcheck.Why(context.Background(), bindcheck.Request{
		Addr: netip.MustParseAddr("127.0.0.1"), Port: port, Nearest: -1,
	})
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println(v.OK, v.Rule, bindcheck.ErrnoName(v.Errno), len(v.Conflicts) > 0)
	// Output: false in-use EADDRINUSE true
}
