package owners

import (
	"context"
	"net"
	"os"
	"slices"
	"testing"

	"golang.org/x/sys/unix"

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
// holders for every socket: this process's own (a listener, both ends of a
// connection, a UDP socket, a unix socket pair), a listener shared with two
// forked children, and one held only by a child.
func TestSocketIterMatchesWalk(t *testing.T) {
	requireSocketIter(t)
	own := listen(t)
	dialed, err := net.Dial("tcp", own.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer dialed.Close()
	accepted, err := own.Accept()
	if err != nil {
		t.Fatal(err)
	}
	defer accepted.Close()
	udp, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer udp.Close()
	pair, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Close(pair[0])
	defer unix.Close(pair[1])
	shared := listen(t)
	forked := testenv.ShareListener(t, shared, 2)
	given := listen(t)
	child := testenv.ShareListener(t, given, 1)
	givenIno := inodeOf(t, given)
	given.Close()

	self := []int{os.Getpid()}
	holders := map[uint32][]int{ // inode -> holders
		inodeOf(t, own):                     self,
		inodeOf(t, dialed.(*net.TCPConn)):   self,
		inodeOf(t, accepted.(*net.TCPConn)): self,
		inodeOf(t, udp.(*net.UDPConn)):      self,
		fdInode(t, pair[0]):                 self,
		fdInode(t, pair[1]):                 self,
		inodeOf(t, shared):                  append(slices.Clone(self), forked...),
		givenIno:                            child,
	}
	var qs []Query
	for ino, h := range holders {
		slices.Sort(h)
		qs = append(qs, Query{Inode: ino})
	}
	for _, first := range []bool{false, true} {
		opt := Options{First: first, Details: true}
		walked, err := find(context.Background(), "/proc", qs, opt, false)
		if err != nil {
			t.Fatal(err)
		}
		iterated, err := find(context.Background(), "/proc", qs, opt, true)
		if err != nil {
			t.Fatal(err)
		}
		for i, q := range qs {
			r, w := iterated[i], walked[i]
			if got, wp := pids(r.Procs), pids(w.Procs); !slices.Equal(got, wp) || r.Unseen != w.Unseen {
				t.Errorf("First %v: inode %d: iterator %v (%v), walk %v (%v)", first, q.Inode, got, r.Unseen, wp, w.Unseen)
			}
			for j, p := range r.Procs {
				if q := w.Procs[min(j, len(w.Procs)-1)]; p.Comm != q.Comm || p.UID != q.UID || !slices.Equal(p.Cmdline, q.Cmdline) {
					t.Errorf("iterator's owner %+v; walk's %+v", *p, *q)
				}
			}
			h := holders[q.Inode]
			if first {
				h = h[:1]
			}
			if got := pids(r.Procs); !slices.Equal(got, h) {
				t.Errorf("First %v: holders of inode %d = %v; want %v", first, q.Inode, got, h)
			}
		}
	}
}

// fdInode is the inode of the file open as fd.
func fdInode(t testing.TB, fd int) uint32 {
	t.Helper()
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		t.Fatal(err)
	}
	return uint32(st.Ino)
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
