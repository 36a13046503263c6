package sockets

import (
	"bufio"
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"portolan/internal/owners"
	"portolan/internal/testenv"
)

const unixNobodyEnv = "PORTOLAN_UNIX_NOBODY"

// TestUnixNobodyChild is the child of TestListUnixAnotherUser: as uid
// 65534 it listens on the path in PORTOLAN_UNIX_NOBODY, says "ready" and
// waits (a minute at most) to be killed.
func TestUnixNobodyChild(t *testing.T) {
	path := os.Getenv(unixNobodyEnv)
	if path == "" {
		t.Skip("runs only as the child of TestListUnixAnotherUser")
	}
	l, err := net.Listen("unix", path)
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	fmt.Println("ready")
	time.Sleep(time.Minute)
}

func listUnix(t *testing.T, q UnixQuery) []UnixSocket {
	t.Helper()
	socks, err := (&Table{}).ListUnix(context.Background(), q)
	if err != nil {
		t.Fatalf("ListUnix(%+v) = %v", q, err)
	}
	return socks
}

func byInode(socks []UnixSocket, ino uint32) *UnixSocket {
	for i := range socks {
		if socks[i].Inode == ino {
			return &socks[i]
		}
	}
	return nil
}

// inodeOf is the socket inode of a net.Conn or net.Listener's file.
func inodeOf(t *testing.T, c interface{ File() (*os.File, error) }) uint32 {
	t.Helper()
	f, err := c.File()
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var st unix.Stat_t
	if err := unix.Fstat(int(f.Fd()), &st); err != nil {
		t.Fatal(err)
	}
	return uint32(st.Ino)
}

// TestListUnix: a listener on a path, a connection to it (both ends, each
// naming the other as peer), an abstract listener and a socketpair, as
// the kernel reports them, with this process as owner.
func TestListUnix(t *testing.T) {
	path := filepath.Join(t.TempDir(), "app.sock")
	l, err := net.Listen("unix", path)
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	c, err := net.Dial("unix", path)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	sc, err := l.Accept()
	if err != nil {
		t.Fatal(err)
	}
	defer sc.Close()
	abstract := fmt.Sprintf("@portolan-unix-test-%d", os.Getpid())
	al, err := net.Listen("unix", abstract)
	if err != nil {
		t.Fatal(err)
	}
	defer al.Close()
	pair, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Close(pair[0])
	defer unix.Close(pair[1])
	var st0, st1 unix.Stat_t
	unix.Fstat(pair[0], &st0)
	unix.Fstat(pair[1], &st1)

	socks := listUnix(t, UnixQuery{})
	lst := byInode(socks, inodeOf(t, l.(*net.UnixListener)))
	if lst == nil || lst.Name != path || lst.State != Listen || lst.Type != UnixStream || lst.FileInode == 0 {
		t.Fatalf("listener on %s: %+v; want LISTEN stream with that name and a file", path, lst)
	}
	cl := byInode(socks, inodeOf(t, c.(*net.UnixConn)))
	srv := byInode(socks, inodeOf(t, sc.(*net.UnixConn)))
	if cl == nil || srv == nil {
		t.Fatalf("connection ends not listed: client %+v, accepted %+v", cl, srv)
	}
	if cl.State != Established || cl.Name != "" || cl.Peer != srv.Inode || cl.PeerName != path {
		t.Errorf("client end %+v; want ESTAB, unnamed, peer %d named %s", cl, srv.Inode, path)
	}
	if srv.Name != path || srv.Peer != cl.Inode {
		t.Errorf("accepted end %+v; want named %s with peer %d", srv, path, cl.Inode)
	}
	ab := byInode(socks, inodeOf(t, al.(*net.UnixListener)))
	if ab == nil || ab.Name != abstract || !ab.Abstract() || ab.FileInode != 0 {
		t.Errorf("abstract listener %+v; want name %s, abstract, no file", ab, abstract)
	}
	p0, p1 := byInode(socks, uint32(st0.Ino)), byInode(socks, uint32(st1.Ino))
	if p0 == nil || p1 == nil || p0.Peer != p1.Inode || p1.Peer != p0.Inode || p0.Type != UnixDgram || p0.Name != "" {
		t.Errorf("socketpair %+v / %+v; want two unnamed dgram sockets, each the other's peer", p0, p1)
	}

	// Only listeners, and by name: the listener and the connection it
	// accepted carry the path.
	if got := listUnix(t, UnixQuery{States: States(Listen)}); byInode(got, lst.Inode) == nil || byInode(got, cl.Inode) != nil {
		t.Errorf("ListUnix(listeners) has the listener %v, the client %v; want only the listener", byInode(got, lst.Inode) != nil, byInode(got, cl.Inode) != nil)
	}
	named := listUnix(t, UnixQuery{Name: path})
	if len(named) != 2 || byInode(named, lst.Inode) == nil || byInode(named, srv.Inode) == nil {
		t.Errorf("ListUnix(name %s) = %+v; want the listener and the accepted connection", path, named)
	}
	if err := FindUnixOwners(context.Background(), named, owners.Options{}); err != nil {
		t.Fatal(err)
	}
	for _, s := range named {
		if len(s.Procs) != 1 || s.Procs[0].PID != os.Getpid() {
			t.Errorf("owners of %s (inode %d) = %v; want this process", s.Name, s.Inode, s.Procs)
		}
	}
}

// TestListUnixAnotherUser: a socket made by uid 65534 in another process
// is listed with that uid and, as root, its process.
func TestListUnixAnotherUser(t *testing.T) {
	testenv.RequireRoot(t)
	// The test's temporary directories are root's alone: nobody needs one
	// it can enter (for the binary) and write (for the socket).
	dir, err := os.MkdirTemp("", "portolan-unix-nobody-")
	if err != nil {
		t.Fatal(err)
	}
	defer os.RemoveAll(dir)
	if err := os.Chmod(dir, 0o777); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(dir, "nobody.sock")
	exe := filepath.Join(dir, "sockets.test")
	testenv.CopyExecutable(t, os.Args[0], exe)
	cmd := exec.Command(exe, "-test.run=^TestUnixNobodyChild$", "-test.timeout=2m")
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), unixNobodyEnv+"="+path)
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: 65534, Gid: 65534}}
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { cmd.Process.Kill(); cmd.Wait() }()
	if sc := bufio.NewScanner(out); !sc.Scan() || sc.Text() != "ready" {
		t.Fatalf("child as nobody did not listen on %s", path)
	}
	socks := listUnix(t, UnixQuery{Name: path, States: States(Listen)})
	if len(socks) != 1 {
		t.Fatalf("ListUnix(%s) = %+v; want one listener", path, socks)
	}
	s := socks[0]
	if s.HasUID && s.UID != 65534 {
		t.Errorf("socket of nobody: uid %d; want 65534", s.UID)
	}
	if err := FindUnixOwners(context.Background(), socks, owners.Options{}); err != nil {
		t.Fatal(err)
	}
	if pids := pids(socks[0].Procs); !slices.Equal(pids, []int{cmd.Process.Pid}) {
		t.Errorf("owners of %s = %v; want the child %d", path, pids, cmd.Process.Pid)
	}
}
