package forward

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"sync"
	"unsafe"

	"golang.org/x/sys/unix"
)

// unixSocketsSupported: the event loop relays unix stream sockets as it
// does TCP ones (accept4, connect, splice and shutdown work the same).
const unixSocketsSupported = true

// unixFile is a listening socket's file, removed when the listener
// closes unless another one has taken its place meanwhile.
type unixFile struct {
	path     string
	dev, ino uint64
	once     sync.Once
}

// remove unlinks the file if it is still the one this listener bound
// (nil-safe: TCP listeners and abstract sockets have none).
func (f *unixFile) remove() {
	if f == nil {
		return
	}
	f.once.Do(func() {
		var st unix.Stat_t
		if unix.Lstat(f.path, &st) == nil && st.Dev == f.dev && st.Ino == f.ino {
			unix.Unlink(f.path)
		}
	})
}

// listenUnix makes a rule's listening unix socket: a file left by an
// earlier run that nobody listens on is replaced; mode and owner are set
// before listen, so that no client connects under the umask's mode.
func listenUnix(r *Rule) (fd int, local net.Addr, file *unixFile, err error) {
	path, err := ParseUnixAddr(r.Listen)
	if err != nil {
		return -1, nil, nil, err
	}
	if !isAbstract(path) {
		if err := removeStale(path); err != nil {
			return -1, nil, nil, err
		}
	}
	fd, err = unix.Socket(unix.AF_UNIX, unix.SOCK_STREAM|unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return -1, nil, nil, os.NewSyscallError("socket", err)
	}
	fail := func(what string, err error) (int, net.Addr, *unixFile, error) {
		unix.Close(fd)
		if file != nil {
			unix.Unlink(path)
		}
		return -1, nil, nil, os.NewSyscallError(what, err)
	}
	if err := unix.Bind(fd, &unix.SockaddrUnix{Name: unixSockaddrName(path)}); err != nil {
		return fail("bind", err)
	}
	if !isAbstract(path) {
		var st unix.Stat_t
		if err := unix.Lstat(path, &st); err != nil {
			return fail("stat", err)
		}
		file = &unixFile{path: path, dev: st.Dev, ino: st.Ino}
		if r.UnixMode != 0 {
			if err := unix.Chmod(path, uint32(r.UnixMode.Perm())); err != nil {
				return fail("chmod", err)
			}
		}
		if r.UnixOwner != "" {
			uid, gid, err := ParseUnixOwner(r.UnixOwner)
			if err != nil {
				unix.Close(fd)
				unix.Unlink(path)
				return -1, nil, nil, err
			}
			if err := unix.Lchown(path, uid, gid); err != nil {
				return fail("chown", err)
			}
		}
	}
	if err := unix.Listen(fd, listenBacklog()); err != nil {
		return fail("listen", err)
	}
	return fd, unixAddr(path), file, nil
}

// listenBacklog is the kernel's somaxconn, as the standard library uses.
func listenBacklog() int {
	b, err := os.ReadFile("/proc/sys/net/core/somaxconn")
	if err != nil {
		return unix.SOMAXCONN
	}
	n := 0
	for _, c := range b {
		if c < '0' || c > '9' {
			break
		}
		n = n*10 + int(c-'0')
	}
	return max(min(n, 1<<16-1), 1)
}

// errInUse says a socket file has a listener: it is not replaced.
var errInUse = errors.New("in use: something listens on it")

// removeStale removes a socket file that nothing listens on (a connect
// is refused), and refuses one that something does, or any other kind
// of file.
func removeStale(path string) error {
	fi, err := os.Lstat(path)
	switch {
	case errors.Is(err, os.ErrNotExist):
		return nil
	case err != nil:
		return err
	case fi.Mode()&os.ModeSocket == 0:
		return fmt.Errorf("%s: exists and is not a socket", path)
	}
	c, err := net.Dial("unix", path)
	if err == nil {
		c.Close()
		return fmt.Errorf("%s: %w", path, errInUse)
	}
	if !errors.Is(err, unix.ECONNREFUSED) {
		return fmt.Errorf("%s: is it in use? %w", path, err)
	}
	if err := os.Remove(path); err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("remove stale socket: %w", err)
	}
	return nil
}

// connectUnix opens a non-blocking unix stream socket and starts
// connecting it to path, as connectTCP does.
func connectUnix(path string) (fd int, done bool, err error) {
	r, _, e := unix.RawSyscall(unix.SYS_SOCKET, unix.AF_UNIX, unix.SOCK_STREAM|unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC, 0)
	if e != 0 {
		return -1, false, os.NewSyscallError("socket", e)
	}
	fd = int(r)
	var sa unix.RawSockaddrUnix
	sa.Family = unix.AF_UNIX
	name := unixSockaddrName(path)
	for i := range len(name) {
		sa.Path[i] = int8(name[i])
	}
	n := uintptr(2 + len(name)) // family, then the path (abstract: no NUL at the end)
	if !isAbstract(path) {
		n++
	}
	_, _, e = unix.RawSyscall(unix.SYS_CONNECT, uintptr(fd), uintptr(unsafe.Pointer(&sa)), n)
	if e == 0 {
		// A unix connect is made or refused at once; EAGAIN means the
		// target's backlog is full (no connect is left in progress).
		return fd, true, nil
	}
	rawClose(fd)
	return -1, false, os.NewSyscallError("connect", e)
}

// dialError is the error of a failed connect to a target, naming its
// address (a unix socket's path, or the IP address dialled).
func dialError(target string, ap netip.AddrPort, err error) error {
	if path, ok := unixPath(target); ok {
		return &net.OpError{Op: "dial", Net: "unix", Addr: unixAddr(path), Err: err}
	}
	return &net.OpError{Op: "dial", Net: "tcp", Addr: net.TCPAddrFromAddrPort(ap), Err: err}
}
