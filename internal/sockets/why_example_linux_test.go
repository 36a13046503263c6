package sockets_test

import (
	"context"
	"fmt"
	"log"
	"net"
	"net/netip"

	"portolan/internal/portspec"
	"portolan/internal/sockets"
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

	v, err := sockets.Why(context.Background(), sockets.WhyRequest{
		Addr: netip.MustParseAddr("127.0.0.1"), Port: port, Nearest: -1,
	})
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println(v.OK, v.Rule, sockets.ErrnoName(v.Errno), len(v.Conflicts) > 0)
	// Output: false in-use EADDRINUSE true
}

// PlanKill is a dry run: it names the processes Kill would signal.
func ExamplePlanKill() {
	plan, err := sockets.PlanKill(context.Background(), sockets.KillRequest{Port: 3000})
	if err != nil {
		log.Fatal(err)
	}
	for _, t := range plan.Targets {
		if t.Refused != "" {
			fmt.Printf("pid %d: not signalled: %s %s\n", t.Process.PID, t.Refused, t.Instead)
			continue
		}
		fmt.Printf("pid %d (%s) would get %v\n", t.Process.PID, t.Process.Comm, plan.Signal)
	}
}
