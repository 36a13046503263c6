package sockets

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"syscall"
	"testing"

	"portolan/internal/netlab"
	"portolan/internal/owners"
	"portolan/internal/portspec"
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
	if err := FindOwners(context.Background(), socks, owners.Options{}); err != nil {
		t.Fatal(err)
	}
	self, _ := os.ReadFile("/proc/self/comm")
	for _, s := range socks {
		if s.State == TimeWait {
			if s.Unseen != owners.NoProcess || len(s.Procs) != 0 {
				t.Errorf("%v %v: Unseen %v, %d procs; want no-process, none", s.State, s.Local, s.Unseen, len(s.Procs))
			}
			continue
		}
		if len(s.Procs) != 1 || s.Procs[0].PID != os.Getpid() {
			t.Errorf("%v %v %v: owners %v; want this test (pid %d)", s.Proto, s.State, s.Local, pids(s.Procs), os.Getpid())
			continue
		}
		p := s.Procs[0]
		if want := string(bytes.TrimSpace(self)); p.Comm != want || p.UID != uint32(os.Geteuid()) || p.User != owners.LookupUser(uint32(os.Geteuid())) {
			t.Errorf("owner of %v = %+v; want comm %q, uid %d", s.Local, *p, want, os.Geteuid())
		}
		if p.Cmdline != nil || !p.Start.IsZero() {
			t.Errorf("owner of %v has details without owners.Options.Details: %+v", s.Local, *p)
		}
	}
}

func pids(ps []*owners.Process) []int {
	var out []int
	for _, p := range ps {
		out = append(out, p.PID)
	}
	return out
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
	Unseen owners.Unseen
	Owners []int
	Cgroup *owners.Cgroup
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
	testenv.CopyExecutable(t, exe, bin)
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
			if s.UID != 0 || len(s.Owners) != 0 || s.Unseen != owners.Denied && s.Unseen != owners.Hidden || s.Cgroup == nil || s.Why == "" {
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
	if err := FindOwners(context.Background(), socks, owners.Options{First: true, Details: true}); err != nil {
		r.Err = err.Error()
		return
	}
	for _, s := range socks {
		r.Sockets = append(r.Sockets, nobodySocket{s.Local.Port(), s.UID, s.Unseen, pids(s.Procs), s.Cgroup, ExplainUnseen(&s)})
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
		if err := FindOwners(context.Background(), socks, owners.Options{First: true}); err != nil || len(socks[0].Procs) != 1 || socks[0].Procs[0].PID != os.Getpid() {
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
