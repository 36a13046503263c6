package bindcheck

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"unsafe"

	"golang.org/x/sys/unix"

	"portolan/internal/freeport"
	"portolan/internal/netlab"
	"portolan/internal/owners"
	"portolan/internal/portspec"
	"portolan/internal/sockets"
	"portolan/internal/sockets/socktest"
	"portolan/internal/testenv"
)

// Each test here makes the situation of one rule with real sockets (on
// loopback, or in a netlab namespace where a sysctl or an address is
// needed), asks Why, and checks the verdict and the explanation.

var (
	lo4    = netip.MustParseAddr("127.0.0.1")
	any4   = netip.IPv4Unspecified()
	any6   = netip.IPv6Unspecified()
	nobody = &Credential{UID: 65534, GID: 65534, Name: "nobody"}
)

// sockSpec is a socket for a test to hold.
type sockSpec struct {
	proto                        portspec.Proto
	addr                         netip.AddrPort
	reuseAddr, reusePort, v6only bool
	listen                       bool
}

// holdSock makes the socket s describes and closes it when the test ends;
// it returns its port (the kernel's pick for port 0).
func holdSock(t *testing.T, s sockSpec) portspec.Port {
	t.Helper()
	fam, sa, err := sockaddr(s.addr)
	if err != nil {
		t.Fatal(err)
	}
	typ := unix.SOCK_STREAM
	if s.proto == portspec.UDP {
		typ = unix.SOCK_DGRAM
	}
	fd, err := unix.Socket(fam, typ|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { unix.Close(fd) })
	if fam == unix.AF_INET6 {
		unix.SetsockoptInt(fd, unix.IPPROTO_IPV6, unix.IPV6_V6ONLY, boolInt(s.v6only))
	}
	if s.reuseAddr {
		unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_REUSEADDR, 1)
	}
	if s.reusePort {
		unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_REUSEPORT, 1)
	}
	if s.addr.Port() == 0 {
		// Not a kernel-chosen port: that comes from the ephemeral range,
		// where any process's outgoing connection may take the same
		// number in the other family or on another address while the
		// test looks, and the verdict then names that socket. Below the
		// range, only sockets bound on purpose are found.
		err = unix.EADDRINUSE
		for try := 0; try < 100 && err == unix.EADDRINUSE; try++ {
			p := 12000 + rand.IntN(8000)
			if _, sa, err = sockaddr(netip.AddrPortFrom(s.addr.Addr(), uint16(p))); err != nil {
				t.Fatal(err)
			}
			err = unix.Bind(fd, sa)
		}
	} else {
		err = unix.Bind(fd, sa)
	}
	if err != nil {
		t.Fatalf("bind %v: %v", s.addr, err)
	}
	if s.listen {
		if err := unix.Listen(fd, 8); err != nil {
			t.Fatalf("listen %v: %v", s.addr, err)
		}
	}
	got, err := unix.Getsockname(fd)
	if err != nil {
		t.Fatal(err)
	}
	switch a := got.(type) {
	case *unix.SockaddrInet4:
		return portspec.Port(a.Port)
	case *unix.SockaddrInet6:
		return portspec.Port(a.Port)
	}
	t.Fatalf("getsockname: %T", got)
	return 0
}

// freeTCPPort returns a port nothing holds on either family right now.
func freeTCPPort(t *testing.T) portspec.Port {
	t.Helper()
	l, err := net.Listen("tcp", ":0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return portspec.Port(l.Addr().(*net.TCPAddr).Port)
}

func mustWhy(t *testing.T, req Request) *Verdict {
	t.Helper()
	v, err := Why(context.Background(), req)
	if err != nil {
		t.Fatalf("Why(%+v) = %v", req, err)
	}
	return v
}

// checkVerdict checks the outcome, the rule and that the explanation says
// each of want.
func checkVerdict(t *testing.T, v *Verdict, ok bool, rule Rule, want ...string) {
	t.Helper()
	if v.OK != ok || v.Rule != rule {
		t.Errorf("Why %v/%v: ok=%v rule=%v errno=%v; want ok=%v rule=%v\n%s", v.Local, v.Proto, v.OK, v.Rule, ErrnoName(v.Errno), ok, rule, v.Explanation)
	}
	for _, w := range want {
		if !strings.Contains(v.Explanation, w) {
			t.Errorf("Why %v/%v explanation lacks %q:\n%s", v.Local, v.Proto, w, v.Explanation)
		}
	}
}

// hasFix reports whether a fix says each of the words.
func hasFix(v *Verdict, words ...string) bool {
	return slices.ContainsFunc(v.Fixes, func(f string) bool {
		for _, w := range words {
			if !strings.Contains(f, w) {
				return false
			}
		}
		return true
	})
}

func checkFix(t *testing.T, v *Verdict, words ...string) {
	t.Helper()
	if !hasFix(v, words...) {
		t.Errorf("Why %v/%v: no fix saying %q in:\n  %s", v.Local, v.Proto, words, strings.Join(v.Fixes, "\n  "))
	}
}

func checkNote(t *testing.T, v *Verdict, rule Rule, want string) {
	t.Helper()
	for _, n := range v.Notes {
		if n.Rule == rule && strings.Contains(n.Text, want) {
			return
		}
	}
	t.Errorf("Why %v/%v: no %v note saying %q in %+v", v.Local, v.Proto, rule, want, v.Notes)
}

// checkHolder checks that the first conflict is held by this process.
func checkHolder(t *testing.T, v *Verdict) {
	t.Helper()
	if len(v.Conflicts) == 0 {
		t.Fatalf("Why %v: no conflicts", v.Local)
	}
	c := v.Conflicts[0]
	if len(c.Procs) == 0 || c.Procs[0].PID != os.Getpid() {
		t.Errorf("Why %v: first conflict %v held by %v; want this process (%d)", v.Local, c.Local, c.Procs, os.Getpid())
	}
}

func TestWhyFreePort(t *testing.T) {
	p := freeTCPPort(t)
	v := mustWhy(t, Request{Port: p})
	checkVerdict(t, v, true, RuleNone, "succeeds as")
	if v.Local.Addr() != any6 && v.Local.Addr() != any4 {
		t.Errorf("Why(:%d) tried %v; want the wildcard", p, v.Local)
	}
	if len(v.Conflicts) != 0 || len(v.Fixes) != 0 || len(v.Nearest) != 0 {
		t.Errorf("Why(:%d) ok, yet conflicts %v fixes %v nearest %v", p, v.Conflicts, v.Fixes, v.Nearest)
	}
}

func TestWhyInUse(t *testing.T) {
	p := holdSock(t, sockSpec{proto: portspec.TCP, addr: netip.AddrPortFrom(lo4, 0), listen: true})
	v := mustWhy(t, Request{Addr: lo4, Port: p})
	checkVerdict(t, v, false, RuleInUse, "is taken", "LISTEN 127.0.0.1:"+strconv.Itoa(int(p)), "on the same address", "pid "+strconv.Itoa(os.Getpid()))
	if v.Errno != syscall.EADDRINUSE || v.Step != "bind" {
		t.Errorf("errno %v at %q; want EADDRINUSE at bind", v.Errno, v.Step)
	}
	checkHolder(t, v)
	checkFix(t, v, "stop pid "+strconv.Itoa(os.Getpid()), "portolan kill "+strconv.Itoa(int(p))+"/tcp")
	if len(v.Nearest) != 3 {
		t.Fatalf("nearest = %v; want 3 ports", v.Nearest)
	}
	for _, n := range v.Nearest {
		if d := int(n) - int(p); d < -200 || d > 200 || d == 0 {
			t.Errorf("nearest port %d is not near %d", n, p)
		}
		if err := freeport.CheckFree(n); err != nil {
			t.Logf("nearest port %d taken since (shared machine): %v", n, err)
		}
	}

	// UDP: a bound UDP socket holds the port just as a listener does.
	pu := holdSock(t, sockSpec{proto: portspec.UDP, addr: netip.AddrPortFrom(lo4, 0)})
	v = mustWhy(t, Request{Addr: lo4, Port: pu, Proto: portspec.UDP})
	checkVerdict(t, v, false, RuleInUse, "udp UNCONN 127.0.0.1:"+strconv.Itoa(int(pu)))
	checkHolder(t, v)
}

func TestWhyWildcard(t *testing.T) {
	// A specific address taken; the wildcard covers it.
	p := holdSock(t, sockSpec{proto: portspec.TCP, addr: netip.AddrPortFrom(netip.MustParseAddr("127.0.0.2"), 0), listen: true})
	v := mustWhy(t, Request{Addr: any4, Port: p})
	checkVerdict(t, v, false, RuleWildcard, "127.0.0.2, which the wildcard covers", "wildcard and a specific address of the same family exclude each other")
	checkHolder(t, v)
	// 127.0.0.1 is free on that port: the fix is tried and offered.
	checkFix(t, v, "bind 127.0.0.1 instead of the wildcard", "tried, it succeeds")

	// The wildcard taken; a specific address inside it.
	p = holdSock(t, sockSpec{proto: portspec.TCP, addr: netip.AddrPortFrom(any4, 0), listen: true})
	v = mustWhy(t, Request{Addr: lo4, Port: p})
	checkVerdict(t, v, false, RuleWildcard, "on the wildcard, which covers 127.0.0.1")
	checkHolder(t, v)
}

func TestWhyDualStack(t *testing.T) {
	// IPv4 wildcard taken: a dual-stack [::] collides, a v6only one does not.
	p := holdSock(t, sockSpec{proto: portspec.TCP, addr: netip.AddrPortFrom(any4, 0), listen: true})
	v := mustWhy(t, Request{Addr: any6, Port: p})
	checkVerdict(t, v, false, RuleDualStack, "dual-stack overlap", "IPV6_V6ONLY", "which a dual-stack [::] covers")
	checkHolder(t, v)
	checkFix(t, v, "IPV6_V6ONLY", "tried, it succeeds")
	v = mustWhy(t, Request{Addr: any6, Port: p, V6Only: true})
	checkVerdict(t, v, true, RuleNone, "(IPv6 only) succeeds")
	if len(v.Others) == 0 {
		t.Errorf("v6only bind: the IPv4 listener should be listed as not in the way")
	}

	// A dual-stack [::] listener takes 0.0.0.0 and every IPv4 address.
	p = holdSock(t, sockSpec{proto: portspec.TCP, addr: netip.AddrPortFrom(any6, 0), listen: true})
	v = mustWhy(t, Request{Addr: lo4, Port: p})
	checkVerdict(t, v, false, RuleDualStack, "[::] without IPV6_V6ONLY, which covers every IPv4 address too")
	checkFix(t, v, "make the other server bind [::] with IPV6_V6ONLY")

	// A v6only [::] listener leaves IPv4 alone.
	p = holdSock(t, sockSpec{proto: portspec.TCP, addr: netip.AddrPortFrom(any6, 0), v6only: true, listen: true})
	checkVerdict(t, mustWhy(t, Request{Addr: any4, Port: p}), true, RuleNone)
}

func TestWhyReuseAddrListening(t *testing.T) {
	p := holdSock(t, sockSpec{proto: portspec.TCP, addr: netip.AddrPortFrom(lo4, 0), reuseAddr: true, listen: true})
	v := mustWhy(t, Request{Addr: lo4, Port: p, ReuseAddr: true})
	checkVerdict(t, v, false, RuleReuseAddrListening, "SO_REUSEADDR does not let a socket share a port with a listening socket")
	checkHolder(t, v)
	checkFix(t, v, "SO_REUSEPORT on both")
}

func TestWhyReuseAddrBoth(t *testing.T) {
	// Bound without SO_REUSEADDR, not listening: ours alone does not help.
	p := holdSock(t, sockSpec{proto: portspec.TCP, addr: netip.AddrPortFrom(lo4, 0)})
	v := mustWhy(t, Request{Addr: lo4, Port: p, ReuseAddr: true})
	checkVerdict(t, v, false, RuleReuseAddrBoth, "shares a port only when both sockets set it", "UNCONN 127.0.0.1:"+strconv.Itoa(int(p))+" (bound, not listening)")
	checkFix(t, v, "set SO_REUSEADDR on both sockets")

	// Bound with SO_REUSEADDR: without it we fail, and the fix is proven.
	p = holdSock(t, sockSpec{proto: portspec.TCP, addr: netip.AddrPortFrom(lo4, 0), reuseAddr: true})
	v = mustWhy(t, Request{Addr: lo4, Port: p})
	checkVerdict(t, v, false, RuleInUse)
	checkFix(t, v, "set SO_REUSEADDR on the new socket", "tried, the bind then succeeds")
	v = mustWhy(t, Request{Addr: lo4, Port: p, ReuseAddr: true})
	checkVerdict(t, v, true, RuleNone)
	checkNote(t, v, RuleReuseAddrBoth, "set SO_REUSEADDR as well and are not listening")

	// UDP: both with SO_REUSEADDR share the port, with a warning.
	pu := holdSock(t, sockSpec{proto: portspec.UDP, addr: netip.AddrPortFrom(lo4, 0), reuseAddr: true})
	v = mustWhy(t, Request{Addr: lo4, Port: pu, Proto: portspec.UDP, ReuseAddr: true})
	checkVerdict(t, v, true, RuleNone)
	checkNote(t, v, RuleReuseAddrBoth, "unicast datagrams go to one of them only")
}

func TestWhyReusePort(t *testing.T) {
	testenv.RequireRoot(t)
	// A root listener with SO_REUSEPORT: root may join it, nobody may not.
	p := holdSock(t, sockSpec{proto: portspec.TCP, addr: netip.AddrPortFrom(lo4, 0), reusePort: true, listen: true})
	v := mustWhy(t, Request{Addr: lo4, Port: p, ReusePort: true})
	checkVerdict(t, v, true, RuleNone)
	checkNote(t, v, RuleReusePort, "shared with 1 socket(s) through SO_REUSEPORT")
	v = mustWhy(t, Request{Addr: lo4, Port: p, ReusePort: true, As: nobody})
	checkVerdict(t, v, false, RuleReusePort, "same effective uid", "uid 0 (root), you are uid 65534 (nobody)")
	checkFix(t, v, "run the new socket as uid 0")
	// Without SO_REUSEPORT, a root caller gets the fix proven.
	v = mustWhy(t, Request{Addr: lo4, Port: p})
	checkVerdict(t, v, false, RuleInUse)
	checkFix(t, v, "set SO_REUSEPORT", "tried, it succeeds")

	// A listener without SO_REUSEPORT, same uid: the other side lacks it.
	p = holdSock(t, sockSpec{proto: portspec.TCP, addr: netip.AddrPortFrom(lo4, 0), listen: true})
	v = mustWhy(t, Request{Addr: lo4, Port: p, ReusePort: true})
	checkVerdict(t, v, false, RuleReusePort, "did not set SO_REUSEPORT: both sockets must")
	checkFix(t, v, "set SO_REUSEPORT on the socket already bound too")
}

// timeWait leaves a connection in TIME_WAIT on a local port of 127.0.0.1,
// made by a client socket with or without SO_REUSEADDR, and returns the port.
func timeWait(t *testing.T, reuse bool) portspec.Port {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go testenv.Serve(ln, testenv.Drain)
	fd, err := unix.Socket(unix.AF_INET, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	if reuse {
		unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_REUSEADDR, 1)
	}
	if err := unix.Bind(fd, &unix.SockaddrInet4{Addr: lo4.As4()}); err != nil {
		t.Fatal(err)
	}
	sa, _ := unix.Getsockname(fd)
	port := portspec.Port(sa.(*unix.SockaddrInet4).Port)
	if err := unix.Connect(fd, &unix.SockaddrInet4{Addr: lo4.As4(), Port: ln.Addr().(*net.TCPAddr).Port}); err != nil {
		t.Fatal(err)
	}
	unix.Close(fd) // we close first: TIME_WAIT is on our side
	socktest.WaitState(t, "", port, sockets.TimeWait)
	return port
}

func TestWhyTimeWait(t *testing.T) {
	// The old socket had SO_REUSEADDR: setting it on ours passes TIME_WAIT.
	p := timeWait(t, true)
	v := mustWhy(t, Request{Addr: lo4, Port: p})
	checkVerdict(t, v, false, RuleTimeWait, "TIME_WAIT still holds 127.0.0.1:"+strconv.Itoa(int(p)), "only with SO_REUSEADDR")
	checkFix(t, v, "set SO_REUSEADDR on the new socket", "tried")
	if hasFix(v, "wait for TIME_WAIT to end") {
		t.Errorf("SO_REUSEADDR works here, yet the fixes say to wait: %q", v.Fixes)
	}
	v = mustWhy(t, Request{Addr: lo4, Port: p, ReuseAddr: true})
	checkVerdict(t, v, true, RuleNone)
	checkNote(t, v, RuleTimeWait, "did not block: SO_REUSEADDR was set on both sides")

	// The old socket lacked it: nothing but waiting helps.
	p = timeWait(t, false)
	v = mustWhy(t, Request{Addr: lo4, Port: p, ReuseAddr: true})
	checkVerdict(t, v, false, RuleTimeWait, "you did, the old one did not")
	checkFix(t, v, "wait for TIME_WAIT to end")
	if len(v.Conflicts) == 0 || v.Conflicts[0].State != sockets.TimeWait || v.Conflicts[0].Unseen != owners.NoProcess {
		t.Errorf("conflicts %+v; want the TIME_WAIT socket, held by no process", v.Conflicts)
	}
}

func TestWhyConnection(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	c, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	p := portspec.Port(c.LocalAddr().(*net.TCPAddr).Port)
	v := mustWhy(t, Request{Addr: any4, Port: p})
	checkVerdict(t, v, false, RuleConnection, "uses port "+strconv.Itoa(int(p))+" as its local port", "ESTABLISHED", "-> "+ln.Addr().String())
	checkHolder(t, v)
	checkFix(t, v, "ip_local_reserved_ports=", strconv.Itoa(int(p))+" (the list there now", "explicit binds still work")
}

func TestWhyPrivilegedInNetns(t *testing.T) {
	lab := netlab.NewT(t)
	h, err := lab.AddHost("why")
	if err != nil {
		t.Fatal(err)
	}
	if err := h.SetSysctl("net.ipv4.ip_unprivileged_port_start", "2000"); err != nil {
		t.Fatal(err)
	}
	v := mustWhy(t, Request{Netns: h.Path(), Addr: lo4, Port: 1500, As: nobody})
	checkVerdict(t, v, false, RulePrivileged, "Port 1500 is privileged", "ip_unprivileged_port_start (2000 in this network namespace)", "nobody (uid 65534) lacks CAP_NET_BIND_SERVICE")
	if v.Errno != syscall.EACCES || v.As.UID != 65534 || v.As.CapNetBindService || v.UnprivilegedPortStart != 2000 {
		t.Errorf("errno %v as %+v start %d; want EACCES as uid 65534 without the capability, start 2000", v.Errno, v.As, v.UnprivilegedPortStart)
	}
	checkFix(t, v, "setcap cap_net_bind_service=+ep")
	checkFix(t, v, "sysctl -w net.ipv4.ip_unprivileged_port_start=1500")
	if len(v.Nearest) == 0 || slices.ContainsFunc(v.Nearest, func(p portspec.Port) bool { return p < 2000 }) {
		t.Errorf("nearest = %v; want ports from 2000 up (bindable by nobody)", v.Nearest)
	}
	// Above the threshold nobody may bind; root may bind below it.
	checkVerdict(t, mustWhy(t, Request{Netns: h.Path(), Addr: lo4, Port: 2500, As: nobody}), true, RuleNone, "succeeds as nobody")
	v = mustWhy(t, Request{Netns: h.Path(), Addr: lo4, Port: 1500})
	checkVerdict(t, v, true, RuleNone)
	checkNote(t, v, RulePrivileged, "allowed because root has CAP_NET_BIND_SERVICE")

	// Privileged and taken: both are said.
	ln, err := h.Listen("tcp", "127.0.0.1:1600")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	v = mustWhy(t, Request{Netns: h.Path(), Addr: lo4, Port: 1600, As: nobody})
	checkVerdict(t, v, false, RulePrivileged)
	checkNote(t, v, RuleInUse, "even with the privilege the bind would fail")
}

func TestWhyReservedInNetns(t *testing.T) {
	lab := netlab.NewT(t)
	h, err := lab.AddHost("why")
	if err != nil {
		t.Fatal(err)
	}
	if err := h.SetSysctl("net.ipv4.ip_local_reserved_ports", "40000-40010"); err != nil {
		t.Fatal(err)
	}
	v := mustWhy(t, Request{Netns: h.Path(), Addr: lo4, Port: 40005})
	checkVerdict(t, v, true, RuleNone)
	checkNote(t, v, RuleReserved, "an explicit bind like this one is not affected")
	if v := mustWhy(t, Request{Netns: h.Path(), Addr: lo4, Port: 40020}); len(v.Notes) != 0 {
		t.Errorf("port 40020 is not reserved, yet notes %+v", v.Notes)
	}
}

func TestWhyNonLocalInNetns(t *testing.T) {
	a, _, lk := netlab.NewPair(t)
	other := netip.MustParseAddr("198.18.0.99")
	v := mustWhy(t, Request{Netns: a.Path(), Addr: other, Port: 8080})
	checkVerdict(t, v, false, RuleNonLocal, "198.18.0.99 is not an address of this host", "IP_FREEBIND", "ip_nonlocal_bind")
	if v.Errno != syscall.EADDRNOTAVAIL {
		t.Errorf("errno %v; want EADDRNOTAVAIL", v.Errno)
	}
	checkFix(t, v, "IP_FREEBIND")
	if len(v.Nearest) != 0 {
		t.Errorf("nearest ports %v offered for an address problem", v.Nearest)
	}
	// The link's own address binds.
	checkVerdict(t, mustWhy(t, Request{Netns: a.Path(), Addr: lk.A4, Port: 8080}), true, RuleNone)
	// With ip_nonlocal_bind it binds, and the note says why.
	if err := a.SetSysctl("net.ipv4.ip_nonlocal_bind", "1"); err != nil {
		t.Fatal(err)
	}
	v = mustWhy(t, Request{Netns: a.Path(), Addr: other, Port: 8080})
	checkVerdict(t, v, true, RuleNone)
	checkNote(t, v, RuleNonLocal, "allowed because net.ipv4.ip_nonlocal_bind")
}

func TestWhyOther(t *testing.T) {
	// A link-local IPv6 address without a zone is malformed for bind.
	v := mustWhy(t, Request{Addr: netip.MustParseAddr("fe80::1"), Port: freeTCPPort(t)})
	if v.OK || v.Rule != RuleOther && v.Rule != RuleNonLocal {
		t.Errorf("Why(fe80::1) ok=%v rule=%v; want a failure explained as other or non-local", v.OK, v.Rule)
	}
}

func TestWhyBadRequest(t *testing.T) {
	for _, r := range []Request{
		{Addr: lo4, Port: 80, V6Only: true},
		{Port: 80, Proto: portspec.SCTP},
		{Addr: netip.MustParseAddr("224.0.0.1"), Port: 80},
	} {
		if _, err := Why(context.Background(), r); err == nil {
			t.Errorf("Why(%+v) = nil error; want the request refused", r)
		}
	}
}

const whyChildEnv = "PORTOLAN_WHY_CHILD"

// TestWhyUnprivileged runs TestWhyUnprivilegedChild as uid 65534, so Why
// runs as an ordinary user: no user switch, the capability read from the
// process's own status.
func TestWhyUnprivileged(t *testing.T) {
	testenv.RequireRoot(t)
	out := runTestChild(t, "TestWhyUnprivilegedChild", []string{whyChildEnv + "=1"}, &syscall.SysProcAttr{
		Credential: &syscall.Credential{Uid: 65534, Gid: 65534},
	})
	if !bytes.Contains(out, []byte("--- PASS: TestWhyUnprivilegedChild")) {
		t.Fatalf("child did not pass:\n%s", out)
	}
}

func TestWhyUnprivilegedChild(t *testing.T) {
	if os.Getenv(whyChildEnv) == "" {
		t.Skip("runs only as a child of TestWhyUnprivileged")
	}
	b, err := os.ReadFile("/proc/sys/net/ipv4/ip_unprivileged_port_start")
	if err != nil {
		t.Skip(err)
	}
	start, _ := strconv.Atoi(strings.TrimSpace(string(b)))
	if start < 2 {
		t.Skipf("ip_unprivileged_port_start is %d: no privileged ports here", start)
	}
	v := mustWhy(t, Request{Addr: lo4, Port: portspec.Port(start - 1)})
	checkVerdict(t, v, false, RulePrivileged, "lacks CAP_NET_BIND_SERVICE")
	if v.As.UID != 65534 || v.As.CapNetBindService {
		t.Errorf("tried as %+v; want uid 65534 without CAP_NET_BIND_SERVICE", v.As)
	}
	_, err = Why(context.Background(), Request{Addr: lo4, Port: 8080, As: &Credential{UID: 0, GID: 0, Name: "root"}})
	if err == nil || !strings.Contains(err.Error(), "needs root") {
		t.Errorf("Why as root from uid 65534 = %v; want a switch refused, needing root", err)
	}
	// A free port of our own is fine.
	p := freeTCPPort(t)
	checkVerdict(t, mustWhy(t, Request{Addr: lo4, Port: p}), true, RuleNone, "as nobody")
}

// runTestChild runs the test binary (copied where any user can run it)
// with -test.run=^name$ and the environment and attributes given, and
// returns its output; a failing child fails the test.
func runTestChild(t *testing.T, name string, env []string, attr *syscall.SysProcAttr) []byte {
	t.Helper()
	dir, err := os.MkdirTemp("", "portolan-sockets-child-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	bin := filepath.Join(dir, "sockets.test")
	testenv.CopyExecutable(t, exe, bin)
	cmd := exec.Command(bin, "-test.run=^"+name+"$", "-test.count=1", "-test.v")
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), env...)
	cmd.SysProcAttr = attr
	out, err := cmd.CombinedOutput()
	var ee *exec.ExitError
	if err != nil && !errors.As(err, &ee) {
		t.Fatalf("run %s: %v", name, err)
	}
	if err != nil {
		t.Fatalf("child %s: %v\n%s", name, err, out)
	}
	return out
}

const whyDeniedEnv = "PORTOLAN_WHY_DENIED_CHILD"

// TestWhyDeniedByBPF attaches a BPF program that refuses every IPv4 bind
// to a cgroup of its own and runs TestWhyDeniedChild inside it: the bind
// fails with EPERM though the port is neither privileged nor taken, and
// Why says a BPF program on the cgroup's bind hook refused it.
func TestWhyDeniedByBPF(t *testing.T) {
	testenv.RequireRoot(t)
	mnt := t.TempDir()
	if err := unix.Mount("none", mnt, "cgroup2", 0, ""); err != nil {
		t.Skipf("mount cgroup2: %v", err)
	}
	t.Cleanup(func() { unix.Unmount(mnt, unix.MNT_DETACH) })
	cg := filepath.Join(mnt, "portolan-why-"+strconv.Itoa(os.Getpid()))
	if err := os.Mkdir(cg, 0o755); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.Remove(cg) })
	cgfd, err := unix.Open(cg, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Close(cgfd)
	prog, err := loadDenyBind()
	if err != nil {
		t.Skipf("load BPF program: %v", err)
	}
	defer unix.Close(prog)
	var attach [20]byte
	ne.PutUint32(attach[0:], uint32(cgfd))
	ne.PutUint32(attach[4:], uint32(prog))
	ne.PutUint32(attach[8:], unix.BPF_CGROUP_INET4_BIND)
	if _, _, errno := unix.Syscall(unix.SYS_BPF, unix.BPF_PROG_ATTACH, uintptr(unsafe.Pointer(&attach[0])), unsafe.Sizeof(attach)); errno != 0 {
		t.Skipf("attach BPF program to %s: %v", cg, errno)
	}
	out := runTestChild(t, "TestWhyDeniedChild", []string{whyDeniedEnv + "=1"}, &syscall.SysProcAttr{UseCgroupFD: true, CgroupFD: cgfd})
	if !bytes.Contains(out, []byte("--- PASS: TestWhyDeniedChild")) {
		t.Fatalf("child did not pass:\n%s", out)
	}
}

// loadDenyBind loads "r0 = 0; exit" as a cgroup inet4 bind program: every
// bind it sees is refused with EPERM.
func loadDenyBind() (int, error) {
	insns := [16]byte{0: 0xb7, 8: 0x95} // BPF_ALU64|BPF_MOV|BPF_K r0, 0; BPF_JMP|BPF_EXIT
	license := []byte("GPL\x00")
	var attr [128]byte
	ne.PutUint32(attr[0:], unix.BPF_PROG_TYPE_CGROUP_SOCK_ADDR)
	ne.PutUint32(attr[4:], 2)
	ne.PutUint64(attr[8:], uint64(uintptr(unsafe.Pointer(&insns[0]))))
	ne.PutUint64(attr[16:], uint64(uintptr(unsafe.Pointer(&license[0]))))
	ne.PutUint32(attr[68:], unix.BPF_CGROUP_INET4_BIND) // expected_attach_type
	fd, _, errno := unix.Syscall(unix.SYS_BPF, unix.BPF_PROG_LOAD, uintptr(unsafe.Pointer(&attr[0])), unsafe.Sizeof(attr))
	runtime.KeepAlive(insns)
	runtime.KeepAlive(license)
	if errno != 0 {
		return -1, errno
	}
	return int(fd), nil
}

func TestWhyDeniedChild(t *testing.T) {
	if os.Getenv(whyDeniedEnv) == "" {
		t.Skip("runs only as a child of TestWhyDeniedByBPF")
	}
	p := freeTCPPort(t) // an IPv6 bind: the program only sees IPv4
	v := mustWhy(t, Request{Addr: lo4, Port: p})
	checkVerdict(t, v, false, RuleDenied, "refused with EPERM", "not by the privileged-port rule", "BPF program(s) attached to the bind hook of cgroup /portolan-why-")
	checkFix(t, v, "bpftool cgroup tree")
	if len(v.Nearest) != 0 {
		t.Errorf("nearest ports %v offered for a denial", v.Nearest)
	}
	// IPv6 is not hooked: the same port binds there.
	checkVerdict(t, mustWhy(t, Request{Addr: any6, V6Only: true, Port: p}), true, RuleNone)
}

// TestWhyForkedHolders: a listener shared with two child processes (given
// the socket, as a pre-forked server's workers are) is held by all three;
// the fix must name every one, since stopping the first frees nothing.
func TestWhyForkedHolders(t *testing.T) {
	l, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	pids := append([]int{os.Getpid()}, testenv.ShareListener(t, l.(*net.TCPListener), 2)...)
	slices.Sort(pids)
	port := portspec.Port(l.Addr().(*net.TCPAddr).Port)

	v := mustWhy(t, Request{Addr: lo4, Port: port, Nearest: -1})
	checkVerdict(t, v, false, RuleInUse)
	if len(v.Conflicts) != 1 {
		t.Fatalf("Why conflicts = %d sockets; want 1", len(v.Conflicts))
	}
	var got []int
	for _, p := range v.Conflicts[0].Procs {
		got = append(got, p.PID)
	}
	if !slices.Equal(got, pids) {
		t.Errorf("Why conflict owners = %v; want %v", got, pids)
	}
	want := fmt.Sprintf("stop pids %d, %d and %d (", pids[0], pids[1], pids[2])
	found := false
	for _, f := range v.Fixes {
		if strings.HasPrefix(f, want) && strings.Contains(f, fmt.Sprintf("portolan kill %d/tcp", port)) {
			found = true
		}
	}
	if !found {
		t.Errorf("Why fixes = %q; want one starting %q that stops them all", v.Fixes, want)
	}
}

// TestWhyConnectionReservedAdvice: the sysctl fix for a port a connection
// uses adds to the ip_local_reserved_ports list (writing the sysctl
// replaces it), and is offered only for a port the kernel could pick: one
// inside the ephemeral range.
func TestWhyConnectionReservedAdvice(t *testing.T) {
	lab := netlab.NewT(t)
	h, err := lab.AddHost("why")
	if err != nil {
		t.Fatal(err)
	}
	for k, v := range map[string]string{"net.ipv4.ip_local_port_range": "41000 41999", "net.ipv4.ip_local_reserved_ports": "40000-40010,40100"} {
		if err := h.SetSysctl(k, v); err != nil {
			t.Fatal(err)
		}
	}
	ln, err := h.Listen("tcp4", "127.0.0.1:30000")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	c, err := h.DialContext(context.Background(), "tcp4", "127.0.0.1:30000")
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	p := portspec.Port(c.LocalAddr().(*net.TCPAddr).Port)
	v := mustWhy(t, Request{Netns: h.Path(), Addr: any4, Port: p, Nearest: -1})
	checkVerdict(t, v, false, RuleConnection)
	checkFix(t, v, fmt.Sprintf("sysctl -w net.ipv4.ip_local_reserved_ports=40000-40010,40100,%d ", p))

	// A source port chosen by the program, outside the range: no sysctl.
	var fixed net.Conn
	err = h.Do(func() (err error) {
		d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 20000}}
		fixed, err = d.Dial("tcp4", "127.0.0.1:30000")
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	defer fixed.Close()
	v = mustWhy(t, Request{Netns: h.Path(), Addr: any4, Port: 20000, Nearest: -1})
	checkVerdict(t, v, false, RuleConnection)
	if hasFix(v, "ip_local_reserved_ports") {
		t.Errorf("Why 20000 (outside the ephemeral range) offers the reserved-ports sysctl:\n  %s", strings.Join(v.Fixes, "\n  "))
	}
	checkFix(t, v, "outside the ephemeral range (41000-41999)", "change that program's source port")
}

// TestWhyMulticastBroadcast: multicast and broadcast addresses bind with
// ip_nonlocal_bind off; the note must not claim it is on.
func TestWhyMulticastBroadcast(t *testing.T) {
	a, _, lk := netlab.NewPair(t)
	if err := a.SetSysctl("net.ipv4.ip_nonlocal_bind", "0"); err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		addr netip.Addr
		want string
	}{
		{netip.MustParseAddr("239.1.2.3"), "is a multicast group address"},
		{netip.MustParseAddr("ff05::1:3"), "is a multicast group address"},
		{netip.MustParseAddr("255.255.255.255"), "is a broadcast address"},
		{broadcastOf(lk.Net4), "is a broadcast address"},
	}
	for _, c := range cases {
		v := mustWhy(t, Request{Netns: a.Path(), Addr: c.addr, Port: 5353, Proto: portspec.UDP})
		checkVerdict(t, v, true, RuleNone)
		checkNote(t, v, RuleNonLocal, c.want)
		for _, n := range v.Notes {
			if strings.Contains(n.Text, "is on") {
				t.Errorf("Why %v/udp with ip_nonlocal_bind=0: note %q", c.addr, n.Text)
			}
		}
	}
}
