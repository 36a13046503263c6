package sockets

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"syscall"
	"testing"
	"time"

	"portolan/internal/netlab"
	"portolan/internal/portspec"
	"portolan/internal/procstat"
	"portolan/internal/testenv"
)

// TestFindOwnersFixture: every socket the test made is the test's own;
// TIME_WAIT has no process.
func TestFindOwnersFixture(t *testing.T) {
	f := newFixture(t)
	socks, err := (&Table{}).List(context.Background(), Query{Ports: f.ports})
	if err != nil {
		t.Fatal(err)
	}
	socks = f.ours(socks)
	if err := FindOwners(context.Background(), socks, OwnerOptions{}); err != nil {
		t.Fatal(err)
	}
	self, _ := os.ReadFile("/proc/self/comm")
	for _, s := range socks {
		if s.State == TimeWait {
			if s.Unseen != NoProcess || len(s.Procs) != 0 {
				t.Errorf("%v %v: Unseen %v, %d procs; want no-process, none", s.State, s.Local, s.Unseen, len(s.Procs))
			}
			continue
		}
		if len(s.Procs) != 1 || s.Procs[0].PID != os.Getpid() {
			t.Errorf("%v %v %v: owners %v; want this test (pid %d)", s.Proto, s.State, s.Local, pids(s.Procs), os.Getpid())
			continue
		}
		p := s.Procs[0]
		if want := string(bytes.TrimSpace(self)); p.Comm != want || p.UID != uint32(os.Geteuid()) || p.User != LookupUser(uint32(os.Geteuid())) {
			t.Errorf("owner of %v = %+v; want comm %q, uid %d", s.Local, *p, want, os.Geteuid())
		}
		if p.Cmdline != nil || !p.Start.IsZero() {
			t.Errorf("owner of %v has details without OwnerOptions.Details: %+v", s.Local, *p)
		}
	}
}

func pids(ps []*Process) []int {
	var out []int
	for _, p := range ps {
		out = append(out, p.PID)
	}
	return out
}

// TestFindOwnersDetails: command line, start time and cgroup are this
// process's, as /proc says them.
func TestFindOwnersDetails(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	p := portspec.Port(l.Addr().(*net.TCPAddr).Port)
	socks, err := (&Table{}).List(context.Background(), Query{Ports: []PortRange{{p, p}}})
	if err != nil || len(socks) != 1 {
		t.Fatalf("List = %d sockets, %v; want 1", len(socks), err)
	}
	if err := FindOwners(context.Background(), socks, OwnerOptions{First: true, Details: true}); err != nil {
		t.Fatal(err)
	}
	if len(socks[0].Procs) != 1 {
		t.Fatalf("owners = %v; want this process", pids(socks[0].Procs))
	}
	got := socks[0].Procs[0]
	if !slices.Equal(got.Cmdline, os.Args) {
		t.Errorf("Cmdline = %q; want %q", got.Cmdline, os.Args)
	}
	st, err := procstat.Read(os.Getpid())
	if err != nil {
		t.Fatal(err)
	}
	if want := startTime(st.StartTicks); !got.Start.Equal(want) || time.Since(got.Start) > time.Hour || time.Since(got.Start) < -2*time.Second {
		t.Errorf("Start = %v; want %v (a moment ago)", got.Start, want)
	}
	cg, _ := os.ReadFile("/proc/self/cgroup")
	path, _ := ParseProcCgroup(cg)
	if got.Cgroup == nil || got.Cgroup.Path != path {
		t.Errorf("Cgroup = %+v; want path %q", got.Cgroup, path)
	}
}

// shareListener starts n child processes (sleep) that inherit l, as a
// pre-forked server's workers do, and returns their pids; they are
// killed when the test ends.
func shareListener(t *testing.T, l *net.TCPListener, n int) []int {
	t.Helper()
	sleep := testenv.RequireCommand(t, "sleep")
	lf, err := l.File()
	if err != nil {
		t.Fatal(err)
	}
	defer lf.Close()
	var pids []int
	for range n {
		cmd := exec.Command(sleep, "60")
		cmd.ExtraFiles = []*os.File{lf}
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
		pids = append(pids, cmd.Process.Pid)
	}
	return pids
}

// TestFindOwnersShared: a socket held by two processes (a child given the
// listener, as pre-forked servers do) has both as owners, lowest pid
// first; with First only the lowest.
func TestFindOwnersShared(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	p := portspec.Port(l.Addr().(*net.TCPAddr).Port)
	want := append([]int{os.Getpid()}, shareListener(t, l.(*net.TCPListener), 1)...)
	slices.Sort(want)
	for _, first := range []bool{false, true} {
		socks, err := (&Table{}).List(context.Background(), Query{Ports: []PortRange{{p, p}}})
		if err != nil || len(socks) != 1 {
			t.Fatalf("List = %d sockets, %v; want 1", len(socks), err)
		}
		if err := FindOwners(context.Background(), socks, OwnerOptions{First: first}); err != nil {
			t.Fatal(err)
		}
		w := want
		if first {
			w = want[:1]
		}
		if got := pids(socks[0].Procs); !slices.Equal(got, w) {
			t.Errorf("FindOwners(First: %v) = pids %v; want %v", first, got, w)
		}
	}
}

// nobodyReport is what the unprivileged child of TestFindOwnersAsNobody
// saw.
type nobodyReport struct {
	PID     int
	Sockets []nobodySocket
	Err     string
}

type nobodySocket struct {
	Port   uint16
	UID    uint32
	Unseen Unseen
	Owners []int
	Cgroup *Cgroup
	Why    string
}

// TestFindOwnersAsNobody drops to uid 65534 in a child: the root-owned
// listener of this test then has no visible owner, and the child says
// why (denied, with the uid and cgroup from the kernel) instead of
// nothing, while its own listener still shows the child as owner.
func TestFindOwnersAsNobody(t *testing.T) {
	if os.Getenv("SOCKETS_NOBODY_CHILD") != "" {
		t.Skip("the child runs TestNobodyChild")
	}
	testenv.RequireRoot(t)
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	port := l.Addr().(*net.TCPAddr).Port

	// The test binary sits in a root-only build directory: copy it where
	// nobody can run it.
	dir, err := os.MkdirTemp("", "sockets-nobody-") // t.TempDir's parent is root-only
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	exe, _ := os.Executable()
	bin := filepath.Join(dir, "sockets.test")
	copyExecutable(t, exe, bin)
	cmd := exec.Command(bin, "-test.run=^TestNobodyChild$", "-test.v")
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "SOCKETS_NOBODY_CHILD="+strconv.Itoa(port))
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: 65534, Gid: 65534}}
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("child as nobody: %v\n%s", err, out)
	}
	i := bytes.Index(out, []byte("REPORT "))
	if i < 0 {
		t.Fatalf("child printed no report:\n%s", out)
	}
	var r nobodyReport
	if err := json.Unmarshal(bytes.SplitN(out[i+7:], []byte{'\n'}, 2)[0], &r); err != nil {
		t.Fatal(err)
	}
	if r.Err != "" {
		t.Fatalf("child: %s", r.Err)
	}
	t.Logf("nobody saw: %+v", r.Sockets)
	if len(r.Sockets) != 2 {
		t.Fatalf("child saw %d sockets; want 2 (ours, its own): %+v", len(r.Sockets), r)
	}
	for _, s := range r.Sockets {
		switch int(s.Port) {
		case port:
			if s.UID != 0 || len(s.Owners) != 0 || s.Unseen != Denied && s.Unseen != Hidden || s.Cgroup == nil || s.Why == "" {
				t.Errorf("root's socket seen by nobody: %+v; want uid 0, no owners, denied, a cgroup and a reason", s)
			}
		default:
			if s.UID != 65534 || !slices.Equal(s.Owners, []int{r.PID}) {
				t.Errorf("nobody's own socket: %+v; want uid 65534, owner %d", s, r.PID)
			}
		}
	}
}

// TestNobodyChild is the unprivileged half of TestFindOwnersAsNobody.
func TestNobodyChild(t *testing.T) {
	port, _ := strconv.Atoi(os.Getenv("SOCKETS_NOBODY_CHILD"))
	if port == 0 {
		t.Skip("run by TestFindOwnersAsNobody")
	}
	r := nobodyReport{PID: os.Getpid()}
	defer func() {
		b, _ := json.Marshal(r)
		fmt.Printf("REPORT %s\n", b)
	}()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		r.Err = err.Error()
		return
	}
	defer l.Close()
	own := portspec.Port(l.Addr().(*net.TCPAddr).Port)
	socks, err := (&Table{}).List(context.Background(), Query{States: States(Listen), Ports: []PortRange{{portspec.Port(port), portspec.Port(port)}, {own, own}}})
	if err != nil {
		r.Err = err.Error()
		return
	}
	if err := FindOwners(context.Background(), socks, OwnerOptions{First: true, Details: true}); err != nil {
		r.Err = err.Error()
		return
	}
	for _, s := range socks {
		r.Sockets = append(r.Sockets, nobodySocket{s.Local.Port(), s.UID, s.Unseen, pids(s.Procs), s.Cgroup, s.Unseen.Explain(&s)})
	}
}

func copyExecutable(t testing.TB, from, to string) {
	t.Helper()
	in, err := os.Open(from)
	if err != nil {
		t.Fatal(err)
	}
	defer in.Close()
	out, err := os.OpenFile(to, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, 0o755)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := io.Copy(out, in); err != nil {
		t.Fatal(err)
	}
	if err := out.Close(); err != nil {
		t.Fatal(err)
	}
}

// TestListNetns reads the table of a namespace the test made (netlab): a
// listener there is found with Netns, by name or by path, and not without;
// its owner is still this process (owners are per process, not per
// namespace).
func TestListNetns(t *testing.T) {
	lab := netlab.NewT(t)
	h, err := lab.AddHost("a")
	if err != nil {
		t.Fatal(err)
	}
	l, err := h.Listen("tcp", "[::1]:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	p := portspec.Port(l.Addr().(*net.TCPAddr).Port)
	q := Query{States: States(Listen), Ports: []PortRange{{p, p}}}

	for _, ns := range []string{h.Netns(), h.Path()} {
		socks, err := (&Table{Netns: ns}).List(context.Background(), q)
		if err != nil || len(socks) != 1 || socks[0].Local.Addr() != netip.IPv6Loopback() {
			t.Fatalf("List(netns %s) = %+v, %v; want the listener on ::1", ns, socks, err)
		}
		if err := FindOwners(context.Background(), socks, OwnerOptions{First: true}); err != nil || len(socks[0].Procs) != 1 || socks[0].Procs[0].PID != os.Getpid() {
			t.Errorf("owner in netns %s = %v, %v; want this process", ns, pids(socks[0].Procs), err)
		}
	}
	if here, err := (&Table{}).List(context.Background(), q); err != nil || len(here) != 0 {
		t.Errorf("List(own netns) = %d sockets, %v; want none (the listener is elsewhere)", len(here), err)
	}
	if _, err := (&Table{Netns: "portolan-no-such-netns"}).List(context.Background(), q); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("List(netns that does not exist) err = %v; want not exist", err)
	}
}

// TestFindOwnersUnderSignals reads a large fd directory (this process's)
// while signals rain on the process: getdents returns early when one is
// pending, and that must not end the directory. The Go runtime's own
// preemption signals did this to ls -a, which lost thousands of owners.
func TestFindOwnersUnderSignals(t *testing.T) {
	const n = 3000
	var ports []PortRange
	for range n {
		c, err := net.ListenPacket("udp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		p := portspec.Port(c.LocalAddr().(*net.UDPAddr).Port)
		ports = append(ports, PortRange{p, p})
	}
	socks, err := (&Table{}).List(context.Background(), Query{Proto: portspec.UDP, Ports: ports})
	if err != nil || len(socks) != n {
		t.Fatalf("List = %d sockets, %v; want %d", len(socks), err, n)
	}
	stop := make(chan struct{})
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			select {
			case <-stop:
				return
			default:
				// SIGURG is the runtime's own preemption signal: harmless.
				syscall.Kill(os.Getpid(), syscall.SIGURG)
			}
		}
	}()
	defer func() { close(stop); <-done }()
	for round := range 20 {
		if err := FindOwners(context.Background(), socks, OwnerOptions{}); err != nil {
			t.Fatal(err)
		}
		missing := 0
		for i := range socks {
			if len(socks[i].Procs) != 1 || socks[i].Procs[0].PID != os.Getpid() {
				missing++
			}
		}
		if missing > 0 {
			t.Fatalf("round %d: %d of %d sockets without this process as their owner", round, missing, n)
		}
	}
}
