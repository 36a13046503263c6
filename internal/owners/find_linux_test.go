package owners

import (
	"context"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

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
	wantHolders(t, Query{Inode: inodeOf(t, l)}, true, want)
}

// wantHolders checks that find (with the iterator when iter and it can
// run here, else with the /proc walk) names the holders want (ascending)
// of the socket q, and with First the lowest of them.
func wantHolders(t *testing.T, q Query, iter bool, want []int) {
	t.Helper()
	if iter {
		if _, err := socketIter(); err != nil {
			t.Logf("no iterator here, the walk instead: %v", err)
		}
	}
	for _, first := range []bool{false, true} {
		res, err := find(context.Background(), "/proc", []Query{q}, Options{First: first}, iter)
		if err != nil {
			t.Fatal(err)
		}
		w := want
		if first {
			w = want[:1]
		}
		if got := pids(res[0].Procs); !slices.Equal(got, w) {
			t.Errorf("find(iterator %v, First %v) = pids %v; want %v", iter, first, got, w)
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

// TestFindSkipsVforkChild: a child of vfork (os/exec, posix_spawn) that
// has not exec'd yet holds a copy of its parent's files for that moment;
// neither the /proc walk nor the iterator may name it as a holder. A
// helper given this test's listener starts a program whose exec waits on
// a write lease this test holds on it, so the helper's vfork child stays
// in that moment until the lease is given up. (The test cannot be the
// parent itself: a Go program stops while a vfork of its own is pending
// whenever its collector needs every thread.)
func TestFindSkipsVforkChild(t *testing.T) {
	l := listen(t)
	prog := filepath.Join(t.TempDir(), "prog")
	if err := os.WriteFile(prog, []byte("#!/bin/sh\nexit 0\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	f, err := os.Open(prog)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if _, err := unix.FcntlInt(f.Fd(), unix.F_SETLEASE, unix.F_WRLCK); err != nil {
		t.Fatalf("write lease on %s: %v", prog, err)
	}
	lf, err := l.File()
	if err != nil {
		t.Fatal(err)
	}
	defer lf.Close()
	helper := exec.Command(os.Args[0], "-test.run=^TestVforkHelper$")
	helper.Env = append(os.Environ(), vforkEnv+"="+prog)
	helper.ExtraFiles = []*os.File{lf}
	if err := helper.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() {
		unix.FcntlInt(f.Fd(), unix.F_SETLEASE, unix.F_UNLCK)
		if err := helper.Wait(); err != nil {
			t.Errorf("helper: %v", err)
		}
	}()
	child := waitVforkChild(t, helper.Process.Pid)

	want := []int{os.Getpid(), helper.Process.Pid}
	slices.Sort(want)
	t.Logf("the vfork child: pid %d", child)
	for _, iter := range []bool{false, true} {
		wantHolders(t, Query{Inode: inodeOf(t, l)}, iter, want)
	}
}

// vforkEnv names the program TestVforkHelper starts.
const vforkEnv = "OWNERS_VFORK_PROG"

// TestVforkHelper is the helper of TestFindSkipsVforkChild: it holds the
// listener given as fd 3 and runs the program named by vforkEnv.
func TestVforkHelper(t *testing.T) {
	prog := os.Getenv(vforkEnv)
	if prog == "" {
		t.Skip("run by TestFindSkipsVforkChild")
	}
	if err := exec.Command(prog).Run(); err != nil {
		t.Fatal(err)
	}
}

// waitVforkChild waits for a child of parent that has not exec'd and
// returns its pid.
func waitVforkChild(t *testing.T, parent int) int {
	t.Helper()
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(5 * time.Millisecond) {
		ents, err := os.ReadDir("/proc")
		if err != nil {
			t.Fatal(err)
		}
		for _, e := range ents {
			pid, err := strconv.Atoi(e.Name())
			if err != nil {
				continue
			}
			if st, err := procstat.Read(pid); err == nil && st.PPID == parent && st.Flags&procstat.FlagForkNoExec != 0 {
				return pid
			}
		}
	}
	t.Fatalf("no child of vfork of pid %d waiting for its exec after 10s", parent)
	return 0
}
