package kill

import (
	"bufio"
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"portolan/internal/netlab"
	"portolan/internal/portspec"
	"portolan/internal/procstat"
	"portolan/internal/sockets"
	"portolan/internal/sockets/socktest"
	"portolan/internal/testenv"
)

const (
	killHelperEnv = "PORTOLAN_KILL_HELPER"
	killNetnsEnv  = "PORTOLAN_KILL_NETNS"
)

// The kill tests run in network namespaces of their own: on a shared
// machine other programs may listen on the same port number on other
// addresses, and a kill by port would hit them too.

// TestKillHelperProcess is the process the kill tests stop: the test
// binary run again with PORTOLAN_KILL_HELPER set, and its sockets made in
// the namespace PORTOLAN_KILL_NETNS names. It prints "PORT n" and waits to
// be killed.
//
//	listen        listen on 127.0.0.1:0
//	ignore-term   the same, ignoring SIGTERM
//	client ADDR   connect to ADDR; n is the local port
func TestKillHelperProcess(t *testing.T) {
	mode := os.Getenv(killHelperEnv)
	if mode == "" {
		t.Skip("runs only as a child of the kill tests")
	}
	// Accepted connections are held open, never read, until the kill.
	port, err := testenv.HoldSockets(os.Getenv(killNetnsEnv), mode, func(net.Conn) { testenv.Hold() })
	if err != nil {
		t.Fatal(err)
	}
	fmt.Printf("PORT %d\n", port)
	testenv.Hold()
}

// child is a running helper process.
type child struct {
	*exec.Cmd
	done chan struct{} // closed when it has been waited for
}

// helper starts the test binary as a helper process in mode, with its
// sockets in h's namespace, and returns it with the port it printed. It is
// killed when the test ends.
func helper(t *testing.T, h *netlab.Host, mode string) (*child, portspec.Port) {
	t.Helper()
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(exe, "-test.run=^TestKillHelperProcess$", "-test.timeout=2m")
	cmd.Env = append(os.Environ(), killHelperEnv+"="+mode, killNetnsEnv+"="+h.Path())
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	t.Cleanup(func() {
		cmd.Process.Kill()
		<-done
	})
	lines := bufio.NewScanner(out)
	var port int
	for lines.Scan() {
		if v, ok := strings.CutPrefix(lines.Text(), "PORT "); ok {
			port, _ = strconv.Atoi(v)
			break
		}
	}
	go func() {
		for lines.Scan() {
		}
		cmd.Wait()
		close(done)
	}()
	if port == 0 {
		t.Fatalf("helper %q printed no port", mode)
	}
	return &child{cmd, done}, portspec.Port(port)
}

// exitedBy waits (up to 10 s) for the helper to end and returns the signal
// that ended it.
func exitedBy(t *testing.T, c *child) syscall.Signal {
	t.Helper()
	select {
	case <-c.done:
	case <-time.After(10 * time.Second):
		t.Fatalf("helper %d still runs", c.Process.Pid)
	}
	return c.ProcessState.Sys().(syscall.WaitStatus).Signal()
}

func stillRuns(pid int) bool {
	st, err := procstat.Read(pid)
	return err == nil && st.State != 'Z'
}

// killHost is a namespace of the test's own.
func killHost(t *testing.T) *netlab.Host {
	t.Helper()
	h, err := netlab.NewT(t).AddHost("kill")
	if err != nil {
		t.Fatal(err)
	}
	return h
}

// held reports whether anything listens on port p in h's namespace.
func held(t *testing.T, h *netlab.Host, p portspec.Port) bool {
	t.Helper()
	socks, err := (&sockets.Table{Netns: h.Path()}).List(context.Background(), sockets.Query{States: sockets.States(sockets.Listen), Ports: []sockets.PortRange{{Lo: p, Hi: p}}})
	if err != nil {
		t.Fatal(err)
	}
	return len(socks) > 0
}

func planKill(t *testing.T, req Request) *Plan {
	t.Helper()
	plan, err := NewPlan(context.Background(), req)
	if err != nil {
		t.Fatalf("NewPlan(%+v) = %v", req, err)
	}
	return plan
}

func TestKillTERM(t *testing.T) {
	h := killHost(t)
	cmd, p := helper(t, h, "listen")
	plan := planKill(t, Request{Netns: h.Path(), Port: p, Protos: []portspec.Proto{portspec.TCP}})
	if !plan.Held() || len(plan.Targets) != 1 || plan.Targets[0].Process.PID != cmd.Process.Pid || plan.Targets[0].Refused != "" {
		t.Fatalf("plan for port %d: %+v; want the helper %d as the one target", p, plan.Targets, cmd.Process.Pid)
	}
	res, err := Run(context.Background(), plan)
	if err != nil {
		t.Fatal(err)
	}
	if !res.Freed || res.Escalated || len(res.Steps) != 1 || res.Steps[0].Signal != syscall.SIGTERM {
		t.Errorf("Kill = %+v; want the port freed by one TERM", res)
	}
	if sig := exitedBy(t, cmd); sig != syscall.SIGTERM {
		t.Errorf("helper ended by %v; want TERM", sig)
	}
	if held(t, h, p) {
		t.Errorf("port %d still held after the kill", p)
	}
}

func TestKillEscalates(t *testing.T) {
	h := killHost(t)
	cmd, p := helper(t, h, "ignore-term")
	plan := planKill(t, Request{Netns: h.Path(), Port: p, Grace: 300 * time.Millisecond})
	if len(plan.Targets) != 1 || plan.Targets[0].Process.PID != cmd.Process.Pid {
		t.Fatalf("plan %+v; want the helper alone", plan.Targets)
	}
	res, err := Run(context.Background(), plan)
	if err != nil {
		t.Fatal(err)
	}
	if !res.Freed || !res.Escalated {
		t.Fatalf("Kill = %+v; want freed after escalation", res)
	}
	var sigs []syscall.Signal
	for _, s := range res.Steps {
		sigs = append(sigs, s.Signal)
	}
	if len(sigs) != 2 || sigs[0] != syscall.SIGTERM || sigs[1] != syscall.SIGKILL {
		t.Errorf("signals %v; want TERM then KILL", sigs)
	}
	if res.Steps[1].After < 300*time.Millisecond {
		t.Errorf("KILL sent after %v; want after the 300ms grace", res.Steps[1].After)
	}
	if sig := exitedBy(t, cmd); sig != syscall.SIGKILL {
		t.Errorf("helper ended by %v; want KILL", sig)
	}
}

func TestKillDryRunKillsNothing(t *testing.T) {
	h := killHost(t)
	cmd, p := helper(t, h, "listen")
	plan := planKill(t, Request{Netns: h.Path(), Port: p})
	if len(plan.Signalled()) != 1 || plan.Signalled()[0].Process.PID != cmd.Process.Pid {
		t.Fatalf("plan %+v; want the helper to be signalled", plan.Targets)
	}
	time.Sleep(100 * time.Millisecond)
	if !stillRuns(cmd.Process.Pid) {
		t.Fatal("the helper died from a plan alone")
	}
	if !held(t, h, p) {
		t.Errorf("port %d free after a dry run; want it still held", p)
	}
}

// A client connected to the port (the port is its remote port) is never a
// target, and stays alive (in CLOSE_WAIT) when the server is killed.
func TestKillLeavesClients(t *testing.T) {
	h := killHost(t)
	server, p := helper(t, h, "listen")
	client, _ := helper(t, h, "client 127.0.0.1:"+strconv.Itoa(int(p)))
	plan := planKill(t, Request{Netns: h.Path(), Port: p, AllStates: true})
	if len(plan.Targets) != 1 || plan.Targets[0].Process.PID != server.Process.Pid {
		t.Fatalf("plan %+v; want the server alone", plan.Targets)
	}
	for _, tg := range plan.Targets {
		if tg.Process.PID == client.Process.Pid {
			t.Fatalf("the client (remote port %d) is a target: %+v", p, tg)
		}
	}
	res, err := Run(context.Background(), plan)
	if err != nil {
		t.Fatal(err)
	}
	if !res.Freed {
		t.Errorf("Kill = %+v; want the port freed (the server's orphaned connection belongs to the kernel)", res)
	}
	exitedBy(t, server)
	time.Sleep(100 * time.Millisecond)
	if !stillRuns(client.Process.Pid) {
		t.Error("the client was killed with the server")
	}
}

// A client in CLOSE_WAIT whose local port is the port asked about: by
// default it does not hold the port (nothing listens), and is untouched;
// with AllStates it is the target.
func TestKillCloseWaitClient(t *testing.T) {
	h := killHost(t)
	ln, err := h.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	client, p := helper(t, h, "client "+ln.Addr().String())
	c, err := ln.Accept()
	if err != nil {
		t.Fatal(err)
	}
	c.Close() // the client's end goes to CLOSE_WAIT
	socktest.WaitState(t, h.Path(), p, sockets.CloseWait)

	ours := func(socks []sockets.Socket) bool {
		return slices.ContainsFunc(socks, func(s sockets.Socket) bool {
			return s.State == sockets.CloseWait && s.Remote.String() == ln.Addr().String()
		})
	}
	plan := planKill(t, Request{Netns: h.Path(), Port: p})
	if plan.Held() || len(plan.Targets) != 0 {
		t.Fatalf("plan for local port %d of a CLOSE_WAIT client: %+v; want nothing held", p, plan.Targets)
	}
	if !ours(plan.Passed) {
		t.Errorf("passed sockets %+v; want the CLOSE_WAIT one", plan.Passed)
	}
	if !stillRuns(client.Process.Pid) {
		t.Fatal("client died")
	}
	plan = planKill(t, Request{Netns: h.Path(), Port: p, AllStates: true})
	if !slices.ContainsFunc(plan.Targets, func(t Target) bool { return t.Process.PID == client.Process.Pid && ours(t.Sockets) }) {
		t.Errorf("plan with AllStates: %+v; want the client among the targets", plan.Targets)
	}
}

func TestKillRefusesItself(t *testing.T) {
	h := killHost(t)
	l, err := h.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	p := portspec.Port(l.Addr().(*net.TCPAddr).Port)
	plan := planKill(t, Request{Netns: h.Path(), Port: p})
	if len(plan.Targets) != 1 || !strings.Contains(plan.Targets[0].Refused, "portolan itself") || len(plan.Signalled()) != 0 {
		t.Fatalf("plan %+v; want this process refused", plan.Targets)
	}
	res, err := Run(context.Background(), plan)
	if err != nil {
		t.Fatal(err)
	}
	if res.Freed || len(res.Steps) != 0 || len(res.Remaining) != 1 {
		t.Errorf("Kill of a refused plan = %+v; want nothing signalled and the port still held", res)
	}
}

func TestParseSignal(t *testing.T) {
	for in, want := range map[string]syscall.Signal{"TERM": syscall.SIGTERM, "sigkill": syscall.SIGKILL, "hup": syscall.SIGHUP, "15": syscall.SIGTERM, "USR1": syscall.SIGUSR1} {
		if got, err := ParseSignal(in); err != nil || got != want {
			t.Errorf("ParseSignal(%q) = %v, %v; want %v", in, got, err, want)
		}
	}
	for _, in := range []string{"", "TERMINATE", "0", "99", "-1"} {
		if got, err := ParseSignal(in); err == nil {
			t.Errorf("ParseSignal(%q) = %v; want an error", in, got)
		}
	}
	if n := SignalName(syscall.SIGTERM); n != "TERM" {
		t.Errorf("SignalName(SIGTERM) = %q", n)
	}
}
