package cli

import (
	"bufio"
	"context"
	"fmt"
	"maps"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/rogpeppe/go-internal/testscript"
	"golang.org/x/sys/unix"

	"portolan/internal/netlab"
	"portolan/internal/owners"
	"portolan/internal/procstat"
	"portolan/internal/testenv"
)

// localPortCmds are the testscript commands of why.txtar, kill.txtar and
// ephemeral.txtar, besides the socket commands of TestSocketScripts.
//
//	holder VAR NETNS MODE    start a separate process (this test binary) whose sockets
//	                         are in NETNS: MODE listen, ignore-term (listen, ignoring
//	                         SIGTERM) or "client ADDR"; $VAR = its port, $VAR_PID = its
//	                         pid. Only in a namespace: on a shared machine other programs
//	                         may hold the same port number on other addresses, and a
//	                         kill by port in ours would reach them.
//	alive PID                the process runs (not a zombie); negate with !
//	netns VAR                a network namespace of a new netlab lab; $VAR = its path
//	sysctl NETNS KEY VALUE   set a net.* sysctl inside NETNS
//	nslisten NETNS ADDR [mapped]  listen (TCP) on ADDR inside NETNS; with mapped, on an
//	                         IPv6 socket bound to the IPv4-mapped form of the IPv4 ADDR
//	nsdial NETNS ADDR N      open N connections to ADDR from inside NETNS (all must work)
//	nsconn VAR NETNS ADDR    one connection to ADDR from inside NETNS; $VAR = its local port
//	nstimewait VAR NETNS ADDR  connect and close first, leaving TIME_WAIT; $VAR = the local port
//	unshared VAR             start a process (this test binary) in a network namespace of
//	                         its own that no name refers to (as a container's), listening
//	                         on 0.0.0.0:0 there; $VAR = its port, $VAR_PID = its pid
var localPortCmds = map[string]func(ts *testscript.TestScript, neg bool, args []string){
	"unshared":   cmdUnshared,
	"nsconn":     cmdNsConn,
	"nstimewait": cmdNsTimeWait,
	"holder":     cmdHolder,
	"alive":      cmdAlive,
	"netns":      cmdNetns,
	"sysctl":     cmdSysctl,
	"nslisten":   cmdNsListen,
	"nsdial":     cmdNsDial,
}

const (
	holderEnv      = "PORTOLAN_CLI_HOLDER"
	holderNetnsEnv = "PORTOLAN_CLI_HOLDER_NETNS"
)

// TestHolderProcess is the process `holder` starts: this test binary run
// again with PORTOLAN_CLI_HOLDER set, its sockets made in the namespace
// PORTOLAN_CLI_HOLDER_NETNS names. It prints "PORT n" and waits to be
// killed.
func TestHolderProcess(t *testing.T) {
	mode := os.Getenv(holderEnv)
	if mode == "" {
		t.Skip("runs only as a process started by the holder script command")
	}
	port, err := testenv.HoldSockets(os.Getenv(holderNetnsEnv), mode, testenv.Drain)
	if err != nil {
		t.Fatal(err)
	}
	fmt.Printf("PORT %d\n", port)
	testenv.Hold()
}

const unsharedEnv = "PORTOLAN_CLI_UNSHARED"

// init is the whole of the process `unshared` starts (this test binary,
// with PORTOLAN_CLI_UNSHARED set). It runs in init, which the runtime runs
// on the main thread: /proc/PID/ns/net shows that thread's namespace, as
// it would for a container's process. It moves to a new network
// namespace, listens on 0.0.0.0:0 there (its loopback is down, as in a
// fresh namespace), prints "PORT n" and waits to be killed (5 minutes at
// most).
func init() {
	if os.Getenv(unsharedEnv) == "" {
		return
	}
	if err := unix.Unshare(unix.CLONE_NEWNET); err != nil {
		fmt.Fprintln(os.Stderr, "unshare:", err)
		os.Exit(1)
	}
	l, err := net.Listen("tcp4", "0.0.0.0:0")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	fmt.Printf("PORT %d\n", l.Addr().(*net.TCPAddr).Port)
	time.Sleep(5 * time.Minute)
	os.Exit(0)
}

func cmdUnshared(ts *testscript.TestScript, neg bool, args []string) {
	if neg || len(args) != 1 {
		ts.Fatalf("usage: unshared VAR")
	}
	startHolder(ts, args[0], "-test.run=^$", unsharedEnv+"=1")
}

func cmdHolder(ts *testscript.TestScript, neg bool, args []string) {
	if neg || len(args) != 3 {
		ts.Fatalf("usage: holder VAR NETNS MODE")
	}
	labHost(ts, args[1]) // only in a namespace of our own
	startHolder(ts, args[0], "-test.run=^TestHolderProcess$", holderEnv+"="+args[2], holderNetnsEnv+"="+args[1])
}

// startHolder starts this test binary with the flag run and env, reads
// the "PORT n" it prints and sets $VAR and $VAR_PID; the process is killed
// when the script ends.
func startHolder(ts *testscript.TestScript, name, run string, env ...string) {
	exe, err := os.Executable()
	ts.Check(err)
	cmd := exec.Command(exe, run, "-test.timeout=6m")
	cmd.Env = append(os.Environ(), env...)
	out, err := cmd.StdoutPipe()
	ts.Check(err)
	ts.Check(cmd.Start())
	done := make(chan struct{})
	ts.Defer(func() {
		cmd.Process.Kill()
		<-done
	})
	lines := bufio.NewScanner(out)
	port := ""
	for lines.Scan() {
		if v, ok := strings.CutPrefix(lines.Text(), "PORT "); ok {
			port = v
			break
		}
	}
	go func() {
		for lines.Scan() {
		}
		cmd.Wait() // reaps it, so a killed holder does not linger as a zombie
		close(done)
	}()
	if port == "" {
		ts.Fatalf("holder %s (%s) printed no port", name, env)
	}
	ts.Setenv(name, port)
	ts.Setenv(name+"_PID", strconv.Itoa(cmd.Process.Pid))
}

func cmdAlive(ts *testscript.TestScript, neg bool, args []string) {
	if len(args) != 1 {
		ts.Fatalf("usage: alive PID")
	}
	pid, err := strconv.Atoi(args[0])
	if err != nil {
		ts.Fatalf("alive: pid %q: %v", args[0], err)
	}
	st, err := procstat.Read(pid)
	alive := err == nil && st.State != 'Z'
	if alive == neg {
		ts.Fatalf("process %s alive: %v", args[0], alive)
	}
}

// labHosts maps namespace paths to their hosts, for the commands that take
// a NETNS argument. Scripts run in parallel.
var (
	labMu    sync.Mutex
	labHosts = map[string]*netlab.Host{}
)

func cmdNetns(ts *testscript.TestScript, neg bool, args []string) {
	if neg || len(args) != 1 {
		ts.Fatalf("usage: netns VAR")
	}
	lab, err := netlab.New()
	ts.Check(err)
	ts.Defer(func() { lab.Close() })
	h, err := lab.AddHost("s")
	ts.Check(err)
	labMu.Lock()
	labHosts[h.Path()] = h
	labMu.Unlock()
	ts.Setenv(args[0], h.Path())
}

func labHost(ts *testscript.TestScript, path string) *netlab.Host {
	labMu.Lock()
	h, ok := labHosts[path]
	labMu.Unlock()
	if !ok {
		ts.Fatalf("%s: not a namespace made by the netns command", path)
	}
	return h
}

func cmdSysctl(ts *testscript.TestScript, neg bool, args []string) {
	if neg || len(args) != 3 {
		ts.Fatalf("usage: sysctl NETNS KEY VALUE")
	}
	ts.Check(labHost(ts, args[0]).SetSysctl(args[1], args[2]))
}

func cmdNsListen(ts *testscript.TestScript, neg bool, args []string) {
	if neg || len(args) < 2 || len(args) > 3 || len(args) == 3 && args[2] != "mapped" {
		ts.Fatalf("usage: nslisten NETNS ADDR [mapped]")
	}
	var l net.Listener
	var err error
	if len(args) == 3 {
		l, err = listenMapped(labHost(ts, args[0]), netip.MustParseAddrPort(args[1]))
	} else {
		l, err = labHost(ts, args[0]).Listen("tcp", args[1])
	}
	ts.Check(err)
	ts.Defer(func() { l.Close() })
	go testenv.Serve(l, testenv.Drain)
}

// listenMapped listens on [::ffff:A]:PORT, an IPv6 socket (IPV6_V6ONLY
// off, as binding a mapped address needs) that only takes IPv4 peers of A;
// net.Listen would make an IPv4 socket of it.
func listenMapped(h *netlab.Host, ap netip.AddrPort) (net.Listener, error) {
	var l net.Listener
	err := h.Do(func() error {
		fd, err := unix.Socket(unix.AF_INET6, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
		if err != nil {
			return err
		}
		f := os.NewFile(uintptr(fd), "mapped")
		defer f.Close()
		if err := unix.SetsockoptInt(fd, unix.IPPROTO_IPV6, unix.IPV6_V6ONLY, 0); err != nil {
			return err
		}
		sa := &unix.SockaddrInet6{Port: int(ap.Port()), Addr: netip.AddrFrom16(ap.Addr().As16()).As16()}
		if err := unix.Bind(fd, sa); err != nil {
			return fmt.Errorf("bind [::ffff:%v]:%d: %w", ap.Addr(), ap.Port(), err)
		}
		if err := unix.Listen(fd, 16); err != nil {
			return err
		}
		l, err = net.FileListener(f)
		return err
	})
	return l, err
}

func cmdNsDial(ts *testscript.TestScript, neg bool, args []string) {
	if neg || len(args) != 3 {
		ts.Fatalf("usage: nsdial NETNS ADDR N")
	}
	n, err := strconv.Atoi(args[2])
	ts.Check(err)
	h := labHost(ts, args[0])
	for i := range n {
		c, err := h.DialContext(context.Background(), "tcp", args[1])
		if err != nil {
			ts.Fatalf("connection %d of %d to %s: %v", i+1, n, args[1], err)
		}
		ts.Defer(func() { c.Close() })
	}
}

func cmdNsConn(ts *testscript.TestScript, neg bool, args []string) {
	if neg || len(args) != 3 {
		ts.Fatalf("usage: nsconn VAR NETNS ADDR")
	}
	c, err := labHost(ts, args[1]).DialContext(context.Background(), "tcp", args[2])
	ts.Check(err)
	ts.Defer(func() { c.Close() })
	ts.Setenv(args[0], strconv.Itoa(c.LocalAddr().(*net.TCPAddr).Port))
}

func cmdNsTimeWait(ts *testscript.TestScript, neg bool, args []string) {
	if neg || len(args) != 3 {
		ts.Fatalf("usage: nstimewait VAR NETNS ADDR")
	}
	c, err := labHost(ts, args[1]).DialContext(context.Background(), "tcp", args[2])
	ts.Check(err)
	port := c.LocalAddr().(*net.TCPAddr).Port
	c.Close()
	awaitTimeWait(ts, args[1], port)
	ts.Setenv(args[0], strconv.Itoa(port))
}

// TestLocalPortScripts runs why.txtar, kill.txtar and ephemeral.txtar with
// the socket commands of TestSocketScripts and the commands above.
// TestScripts skips them: they start with `[!exec:$LOCALPORT_CMDS] skip`.
func TestLocalPortScripts(t *testing.T) {
	marker := t.TempDir()
	if err := os.WriteFile(filepath.Join(marker, "portolan-localport-cmds"), []byte("#!/bin/sh\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	cmds := maps.Clone(socketCmds)
	maps.Copy(cmds, localPortCmds)
	testscript.Run(t, testscript.Params{
		Files: []string{"testdata/script/why.txtar", "testdata/script/kill.txtar", "testdata/script/ephemeral.txtar", "testdata/script/ls_netns.txtar"},
		Cmds:  cmds,
		Condition: func(cond string) (bool, error) {
			if cond == "root" {
				return os.Geteuid() == 0, nil
			}
			return false, fmt.Errorf("unknown condition %q", cond)
		},
		Setup: func(env *testscript.Env) error {
			env.Setenv("NO_COLOR", "1")
			env.Setenv("XDG_DATA_HOME", env.WorkDir+"/data")
			env.Setenv("PATH", marker+string(os.PathListSeparator)+env.Getenv("PATH"))
			env.Setenv("LOCALPORT_CMDS", "portolan-localport-cmds")
			env.Setenv("TESTPID", strconv.Itoa(os.Getpid()))
			env.Setenv("TESTUSER", owners.LookupUser(uint32(os.Geteuid())))
			return nil
		},
	})
}
