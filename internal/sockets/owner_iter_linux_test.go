package sockets

import (
	"context"
	"net"
	"os"
	"slices"
	"testing"

	"portolan/internal/portspec"
	"portolan/internal/testenv"
)

// requireSocketIter stops the test unless the socket-file iterator loads
// here (root, BTF); under CI it must.
func requireSocketIter(t *testing.T) {
	t.Helper()
	testenv.RequireRoot(t)
	if _, err := socketIter(); err != nil {
		if testenv.InCI() {
			t.Fatal(err)
		}
		t.Skip(err)
	}
}

// TestSocketIterMatchesWalk: the iterator and the /proc walk name the same
// holders for every socket: the fixture's (this process), a listener
// shared with two forked children, and one held only by a child.
func TestSocketIterMatchesWalk(t *testing.T) {
	requireSocketIter(t)
	f := newFixture(t)
	shared, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer shared.Close()
	forked := shareListener(t, shared.(*net.TCPListener), 2)
	given, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	child := shareListener(t, given.(*net.TCPListener), 1)
	given.Close()
	ports := slices.Clone(f.ports)
	for _, l := range []net.Listener{shared, given} {
		p := portspec.Port(l.Addr().(*net.TCPAddr).Port)
		ports = append(ports, PortRange{p, p})
	}
	want := map[int][]int{ // port -> holders
		shared.Addr().(*net.TCPAddr).Port: append([]int{os.Getpid()}, forked...),
		given.Addr().(*net.TCPAddr).Port:  child,
	}
	slices.Sort(want[shared.Addr().(*net.TCPAddr).Port])

	for _, first := range []bool{false, true} {
		socks, err := (&Table{}).List(context.Background(), Query{Ports: ports})
		if err != nil {
			t.Fatal(err)
		}
		walked := slices.Clone(socks)
		opt := OwnerOptions{First: first, Details: true}
		if err := findOwners(context.Background(), "/proc", walked, opt, false); err != nil {
			t.Fatal(err)
		}
		if err := findOwners(context.Background(), "/proc", socks, opt, true); err != nil {
			t.Fatal(err)
		}
		seen := 0
		for i, s := range socks {
			w := walked[i]
			if got, wp := pids(s.Procs), pids(w.Procs); !slices.Equal(got, wp) || s.Unseen != w.Unseen {
				t.Errorf("First %v: %v %v: iterator %v (%v), walk %v (%v)", first, s.State, s.Local, got, s.Unseen, wp, w.Unseen)
			}
			for j, p := range s.Procs {
				if q := w.Procs[min(j, len(w.Procs)-1)]; p.Comm != q.Comm || p.UID != q.UID || !slices.Equal(p.Cmdline, q.Cmdline) {
					t.Errorf("%v: iterator's owner %+v; walk's %+v", s.Local, *p, *q)
				}
			}
			if h, ok := want[int(s.Local.Port())]; ok && s.State == Listen {
				seen++
				if first {
					h = h[:1]
				}
				if got := pids(s.Procs); !slices.Equal(got, h) {
					t.Errorf("First %v: holders of %v = %v; want %v", first, s.Local, got, h)
				}
			}
		}
		if seen != len(want) {
			t.Errorf("found %d of the %d shared listeners", seen, len(want))
		}
	}
}

// TestKernelLayoutVmlinux: the running kernel's BTF parses, with the
// fields at plausible places.
func TestKernelLayoutVmlinux(t *testing.T) {
	const name = "/sys/kernel/btf/vmlinux"
	b, err := os.ReadFile(name)
	if os.IsNotExist(err) && !testenv.InCI() {
		t.Skip(err)
	}
	if err != nil {
		t.Fatal(err)
	}
	l, err := parseKernelLayout(name, b)
	if err != nil {
		t.Fatal(err)
	}
	if l.IterFunc == 0 || l.InodeSB == l.InodeIno || l.TaskTgid < 8 || l.TaskTgid%4 != 0 || l.InodeIno%8 != 0 {
		t.Errorf("parseKernelLayout(%s) = %+v", name, l)
	}
}
