package cli

import (
	"bytes"
	"context"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"github.com/rogpeppe/go-internal/testscript"

	"portolan/internal/owners"
	"portolan/internal/portspec"
	"portolan/internal/sockets"
	"portolan/internal/testenv"
)

// socketCmds are the testscript commands that hold real sockets for
// ls.txtar and who.txtar. The sockets belong to this test process, so the
// scripts expect its pid ($TESTPID) as their owner.
//
//	listen VAR NETWORK ADDR   listen on ADDR (port 0) with NETWORK tcp4, tcp6 (v6only),
//	                          tcp (dual-stack on [::]), udp4 or udp6; $VAR = the port
//	dial VAR ADDR             connect to a listener made by listen; $VAR = the local port
//	timewait VAR ADDR         connect and close first, leaving TIME_WAIT; $VAR = the local port
//	freeport VAR              $VAR = a TCP and UDP port nothing holds (bound, then closed)
//	forked VAR N              listen on 127.0.0.1:0 (tcp4) and start N child processes
//	                          (sleep) that inherit the listener, as a pre-forked server's
//	                          workers do; $VAR = the port, $VAR_PID1... = the children
//	unixlisten ADDR           listen (stream) on a unix socket path or @abstract name
//	unixdial ADDR             connect to a unix listener
var socketCmds = map[string]func(ts *testscript.TestScript, neg bool, args []string){
	"unixlisten": cmdUnixListen,
	"unixdial":   cmdUnixDial,
	"forked":     cmdForked,
	"listen":     cmdListen,
	"dial":       cmdDial,
	"timewait":   cmdTimeWait,
	"freeport":   cmdFreePort,
}

func cmdListen(ts *testscript.TestScript, neg bool, args []string) {
	if neg || len(args) != 3 {
		ts.Fatalf("usage: listen VAR NETWORK ADDR")
	}
	var port int
	switch args[1] {
	case "udp4", "udp6":
		pc, err := net.ListenPacket(args[1], args[2])
		ts.Check(err)
		ts.Defer(func() { pc.Close() })
		port = pc.LocalAddr().(*net.UDPAddr).Port
	default:
		l, err := net.Listen(args[1], args[2])
		ts.Check(err)
		ts.Defer(func() { l.Close() })
		go testenv.Serve(l, testenv.Drain)
		port = l.Addr().(*net.TCPAddr).Port
	}
	ts.Setenv(args[0], strconv.Itoa(port))
}

func cmdDial(ts *testscript.TestScript, neg bool, args []string) {
	if neg || len(args) != 2 {
		ts.Fatalf("usage: dial VAR ADDR")
	}
	c, err := net.Dial("tcp", args[1])
	ts.Check(err)
	ts.Defer(func() { c.Close() })
	ts.Setenv(args[0], strconv.Itoa(c.LocalAddr().(*net.TCPAddr).Port))
}

func cmdTimeWait(ts *testscript.TestScript, neg bool, args []string) {
	if neg || len(args) != 2 {
		ts.Fatalf("usage: timewait VAR ADDR")
	}
	c, err := net.Dial("tcp", args[1])
	ts.Check(err)
	port := c.LocalAddr().(*net.TCPAddr).Port
	c.Close()
	// The server closes on EOF; wait for the kernel to move our end on.
	awaitTimeWait(ts, "", port)
	ts.Setenv(args[0], strconv.Itoa(port))
}

// awaitTimeWait waits (5 s at most) until local port is in TIME_WAIT in
// the network namespace netns ("" for ours).
func awaitTimeWait(ts *testscript.TestScript, netns string, port int) {
	q := sockets.Query{Proto: portspec.TCP, States: sockets.States(sockets.TimeWait),
		Ports: []sockets.PortRange{{Lo: portspec.Port(port), Hi: portspec.Port(port)}}}
	for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(5 * time.Millisecond) {
		socks, err := (&sockets.Table{Netns: netns}).List(context.Background(), q)
		ts.Check(err)
		if len(socks) > 0 {
			return
		}
		if time.Now().After(deadline) {
			ts.Fatalf("no TIME_WAIT on port %d after 5s", port)
		}
	}
}

func cmdUnixListen(ts *testscript.TestScript, neg bool, args []string) {
	if neg || len(args) != 1 {
		ts.Fatalf("usage: unixlisten ADDR")
	}
	l, err := net.Listen("unix", args[0])
	ts.Check(err)
	ts.Defer(func() { l.Close() })
	go testenv.Serve(l, testenv.Drain)
}

func cmdUnixDial(ts *testscript.TestScript, neg bool, args []string) {
	if neg || len(args) != 1 {
		ts.Fatalf("usage: unixdial ADDR")
	}
	c, err := net.Dial("unix", args[0])
	ts.Check(err)
	ts.Defer(func() { c.Close() })
}

func cmdForked(ts *testscript.TestScript, neg bool, args []string) {
	if neg || len(args) != 2 {
		ts.Fatalf("usage: forked VAR N")
	}
	n, err := strconv.Atoi(args[1])
	ts.Check(err)
	sleep, err := exec.LookPath("sleep")
	ts.Check(err)
	l, err := net.Listen("tcp4", "127.0.0.1:0")
	ts.Check(err)
	ts.Defer(func() { l.Close() })
	// No Serve: handing the socket to a child (Fd) puts it in blocking
	// mode, and an Accept blocked in the kernel would hold up Close.
	f, err := l.(*net.TCPListener).File()
	ts.Check(err)
	defer f.Close()
	for i := range n {
		cmd := exec.Command(sleep, "300")
		cmd.ExtraFiles = []*os.File{f}
		ts.Check(cmd.Start())
		ts.Defer(func() { cmd.Process.Kill(); cmd.Wait() })
		ts.Setenv(args[0]+"_PID"+strconv.Itoa(i+1), strconv.Itoa(cmd.Process.Pid))
	}
	ts.Setenv(args[0], strconv.Itoa(l.Addr().(*net.TCPAddr).Port))
}

func cmdFreePort(ts *testscript.TestScript, neg bool, args []string) {
	if neg || len(args) != 1 {
		ts.Fatalf("usage: freeport VAR")
	}
	for range 100 {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		ts.Check(err)
		port := l.Addr().(*net.TCPAddr).Port
		l.Close()
		// The port must be free for UDP too, and in both families.
		if pc, err := net.ListenPacket("udp", ":"+strconv.Itoa(port)); err == nil {
			pc.Close()
			ts.Setenv(args[0], strconv.Itoa(port))
			return
		}
	}
	ts.Fatalf("no free port found")
}

// TestSocketScripts runs ls.txtar and who.txtar with the socket commands.
// TestScripts, which knows no such commands, skips them: they start with
// `[!exec:$SOCKET_CMDS] skip`, and only this test names a program there
// (a marker on PATH; testscript caches [exec:X] per name, so the name must
// differ between the two runners, hence the variable).
func TestSocketScripts(t *testing.T) {
	marker := t.TempDir()
	if err := os.WriteFile(filepath.Join(marker, "portolan-socket-cmds"), []byte("#!/bin/sh\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	comm, _ := os.ReadFile("/proc/self/comm")
	testscript.Run(t, testscript.Params{
		Files: []string{"testdata/script/ls.txtar", "testdata/script/who.txtar"},
		Cmds:  socketCmds,
		Setup: func(env *testscript.Env) error {
			env.Setenv("NO_COLOR", "1")
			env.Setenv("XDG_DATA_HOME", env.WorkDir+"/data")
			env.Setenv("PATH", marker+string(os.PathListSeparator)+env.Getenv("PATH"))
			env.Setenv("SOCKET_CMDS", "portolan-socket-cmds")
			env.Setenv("TESTPID", strconv.Itoa(os.Getpid()))
			env.Setenv("TESTCOMM", string(bytes.TrimSpace(comm)))
			env.Setenv("TESTUSER", owners.LookupUser(uint32(os.Geteuid())))
			return nil
		},
	})
}
