package testenv

import (
	"fmt"
	"net"
	"os/signal"
	"runtime"
	"strings"
	"syscall"

	"golang.org/x/sys/unix"
)

// HoldSockets is the body of a socket-holder child process (a test binary
// run again by its parent test): it enters the network namespace at
// netnsPath on a locked thread and makes the sockets mode asks for:
//
//	listen        listen on 127.0.0.1:0 and Serve each connection with handle
//	ignore-term   the same, ignoring SIGTERM
//	client ADDR   connect to ADDR
//
// It returns the port the parent should look at: the listener's, or the
// client's local port. The caller prints it and waits to be killed.
func HoldSockets(netnsPath, mode string, handle func(net.Conn)) (int, error) {
	runtime.LockOSThread() // sockets are made on this thread, in the namespace
	ns, err := unix.Open(netnsPath, unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		return 0, fmt.Errorf("open netns %s: %w", netnsPath, err)
	}
	if err := unix.Setns(ns, unix.CLONE_NEWNET); err != nil {
		return 0, fmt.Errorf("enter netns %s: %w", netnsPath, err)
	}
	verb, arg, _ := strings.Cut(mode, " ")
	switch verb {
	case "listen", "ignore-term":
		if verb == "ignore-term" {
			signal.Ignore(syscall.SIGTERM)
		}
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return 0, err
		}
		go Serve(l, handle)
		return l.Addr().(*net.TCPAddr).Port, nil
	case "client":
		c, err := net.Dial("tcp", arg)
		if err != nil {
			return 0, err
		}
		heldConns = append(heldConns, c)
		return c.LocalAddr().(*net.TCPAddr).Port, nil
	}
	return 0, fmt.Errorf("holder mode %q: want listen, ignore-term or client ADDR", mode)
}

// heldConns keeps client connections reachable until the process dies.
var heldConns []net.Conn
