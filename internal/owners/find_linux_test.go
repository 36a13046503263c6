package owners

import (
	"context"
	"net"
	"os"
	"slices"
	"syscall"
	"testing"
	"time"

	"portolan/internal/procstat"
	"portolan/internal/testenv"
)

// inodeOf is the inode of socket c, what /proc/PID/fd links and the
// socket table name it by.
func inodeOf(t testing.TB, c syscall.Conn) uint32 {
	t.Helper()
	rc, err := c.SyscallConn()
	if err != nil {
		t.Fatal(err)
	}
	var ino uint32
	if err := rc.Control(func(fd uintptr) { ino = fdInode(t, int(fd)) }); err != nil {
		t.Fatal(err)
	}
	return ino
}

func listen(t testing.TB) *net.TCPListener {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	return l.(*net.TCPListener)
}

func pids(ps []*Process) []int {
	var out []int
	for _, p := range ps {
		out = append(out, p.PID)
	}
	return out
}

// TestFindDetails: command line, start time and cgroup are this process's,
// as /proc says them; a socket no file refers to has no process.
func TestFindDetails(t *testing.T) {
	l := listen(t)
	res, err := Find(context.Background(), []Query{{Inode: inodeOf(t, l)}, {Inode: 0}}, Options{First: true, Details: true})
	if err != nil {
		t.Fatal(err)
	}
	if len(res) != 2 || len(res[0].Procs) != 1 || res[0].Procs[0].PID != os.Getpid() {
		t.Fatalf("Find = %+v; want this process, then no process", res)
	}
	if res[1].Unseen != NoProcess || len(res[1].Procs) != 0 {
		t.Errorf("Find(inode 0) = %+v; want no-process", res[1])
	}
	got := res[0].Procs[0]
	if !slices.Equal(got.Cmdline, os.Args) {
		t.Errorf("Cmdline = %q; want %q", got.Cmdline, os.Args)
	}
	if got.UID != uint32(os.Geteuid()) || got.User != LookupUser(uint32(os.Geteuid())) {
		t.Errorf("owner = %+v; want uid %d", *got, os.Geteuid())
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

// TestFindShared: a socket held by two processes (a child given the
// listener, as pre-forked servers do) has both as owners, lowest pid
// first; with First only the lowest.
func TestFindShared(t *testing.T) {
	l := listen(t)
	want := append([]int{os.Getpid()}, testenv.ShareListener(t, l, 1)...)
	slices.Sort(want)
	for _, first := range []bool{false, true} {
		res, err := Find(context.Background(), []Query{{Inode: inodeOf(t, l)}}, Options{First: first})
		if err != nil {
			t.Fatal(err)
		}
		w := want
		if first {
			w = want[:1]
		}
		if got := pids(res[0].Procs); !slices.Equal(got, w) {
			t.Errorf("Find(First: %v) = pids %v; want %v", first, got, w)
		}
	}
}

// TestFindUnderSignals reads a large fd directory (this process's) while
// signals rain on the process: getdents returns early when one is
// pending, and that must not end the directory. The Go runtime's own
// preemption signals did this to ls -a, which lost thousands of owners.
func TestFindUnderSignals(t *testing.T) {
	const n = 3000
	qs := make([]Query, 0, n)
	for range n {
		c, err := net.ListenPacket("udp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		qs = append(qs, Query{Inode: inodeOf(t, c.(*net.UDPConn))})
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
		res, err := Find(context.Background(), qs, Options{})
		if err != nil {
			t.Fatal(err)
		}
		missing := 0
		for i := range res {
			if len(res[i].Procs) != 1 || res[i].Procs[0].PID != os.Getpid() {
				missing++
			}
		}
		if missing > 0 {
			t.Fatalf("round %d: %d of %d sockets without this process as their owner", round, missing, n)
		}
	}
}
