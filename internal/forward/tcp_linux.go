package forward

import (
	"errors"
	"net"
	"os"
	"runtime"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"
)

// pipeSize is the capacity asked of each splice pipe, and so the most one
// splice(2) moves: fewer calls per megabyte. The kernel allocates the
// pages only while data sits in the pipe.
const pipeSize = 1 << 20

// splicePipe is a kernel pipe that data passes through on its way from one
// socket to the other, never entering user space.
type splicePipe struct {
	r, w    int
	n       int // bytes in the pipe
	slots   int // buffers the pipe holds, each at least one byte; 0 if unknown
	cleanup runtime.Cleanup
}

// pipes keeps empty pipes for the next connections; one that the pool
// drops is closed by its cleanup.
var pipes = sync.Pool{New: func() any {
	var fds [2]int
	if err := unix.Pipe2(fds[:], unix.O_NONBLOCK|unix.O_CLOEXEC); err != nil {
		return nil
	}
	size, err := unix.FcntlInt(uintptr(fds[0]), unix.F_SETPIPE_SZ, pipeSize)
	if err != nil {
		// A smaller pipe works too.
		size, _ = unix.FcntlInt(uintptr(fds[0]), unix.F_GETPIPE_SZ, 0)
	}
	p := &splicePipe{r: fds[0], w: fds[1], slots: size / os.Getpagesize()}
	p.cleanup = runtime.AddCleanup(p, func(fds [2]int) {
		unix.Close(fds[0])
		unix.Close(fds[1])
	}, fds)
	return p
}}

// errNoPipe ends a connection when no pipe can be made (out of descriptors).
var errNoPipe = errors.New("splice pipe: cannot create")

// splicer moves one direction with splice(2) and counts the bytes.
//
// The splices are raw system calls: both ends are non-blocking, so the
// call never sleeps, and skipping the runtime's syscall bookkeeping saves
// it from waking its monitor thread and handing the P to another thread
// on each call, which on short connections cost more than the copy.
type splicer struct {
	dst     syscall.RawConn
	p       *splicePipe
	total   int64
	err     error // why the direction ended; nil with done: EOF
	werr    error
	moved   bool // bytes moved since the flag was last cleared
	me      *atomic.Bool
	quiet   bool // me was set: the next bytes clear it
	more    bool // read returned after a chunk, not at EOF or an error
	fromSrc func(fd uintptr) bool
	toDst   func(fd uintptr) bool
	count   *atomic.Uint64 // the rule's byte counter for this direction
}

func splice(from, to int, n int) (int, syscall.Errno) {
	r, _, errno := unix.RawSyscall6(unix.SYS_SPLICE, uintptr(from), 0, uintptr(to), 0, uintptr(n), unix.SPLICE_F_NONBLOCK)
	return int(r), errno
}

// read is the source's RawConn.Read callback: it fills the pipe from the
// socket and empties it into the destination until the source has
// nothing more (false: wait until it is readable), reaches EOF or fails.
func (s *splicer) read(fd uintptr) bool {
	for {
		if s.p == nil {
			p, _ := pipes.Get().(*splicePipe)
			if p == nil {
				s.err = errNoPipe
				return true
			}
			s.p = p
		}
		n, errno := splice(int(fd), s.p.w, pipeSize)
		switch {
		case errno == unix.EAGAIN:
			// The pipe is empty (every chunk was passed on): give it back
			// while waiting, so idle connections hold only their sockets.
			s.release()
			return false
		case errno == unix.EINTR:
			continue
		case errno != 0:
			s.err = os.NewSyscallError("splice", errno)
			return true
		case n == 0:
			return true
		}
		s.p.n += n
		if err := s.dst.Write(s.toDst); err != nil {
			s.err = err
			return true
		}
		if s.werr != nil {
			s.err = s.werr
			return true
		}
		s.moved = true
		if s.quiet {
			// Busy again: the other direction must not end the connection as idle.
			s.quiet = false
			s.me.Store(false)
		}
		// Leave RawRead after each chunk so that a Close waiting for this
		// reader (an abort, Shutdown) is not held up by a busy stream.
		s.more = true
		return true
	}
}

// write is the destination's RawConn.Write callback: it empties the pipe.
func (s *splicer) write(fd uintptr) bool {
	for s.p.n > 0 {
		n, errno := splice(s.p.r, int(fd), s.p.n)
		switch {
		case errno == unix.EAGAIN:
			return false
		case errno == unix.EINTR:
			continue
		case errno != 0:
			s.werr = os.NewSyscallError("splice", errno)
			return true
		case n == 0:
			s.werr = os.NewSyscallError("splice", unix.EIO)
			return true
		}
		s.p.n -= n
		s.total += int64(n)
		s.count.Add(uint64(n))
	}
	return true
}

// release returns an empty pipe to the pool; one still holding bytes of
// this connection is closed instead.
func (s *splicer) release() {
	switch {
	case s.p == nil:
	case s.p.n == 0:
		pipes.Put(s.p)
	default:
		s.p.cleanup.Stop()
		unix.Close(s.p.r)
		unix.Close(s.p.w)
	}
	s.p = nil
}

// pipe copies src to dst with splice(2), so the bytes stay in the kernel.
// With an idle timeout, the read deadline is renewed only when it expires
// after bytes moved, not per chunk. me and other say whether each
// direction saw no bytes in its last full idle period; the connection is
// idle when both did. A direction that reached EOF counts as idle from
// then on.
func pipe(dst, src *net.TCPConn, idle time.Duration, me, other *atomic.Bool, count *atomic.Uint64) (int64, error) {
	sc, err := src.SyscallConn()
	if err != nil {
		return 0, err
	}
	dc, err := dst.SyscallConn()
	if err != nil {
		return 0, err
	}
	s := &splicer{dst: dc, me: me, count: count}
	s.fromSrc = s.read
	s.toDst = s.write
	defer s.release()
	if idle > 0 {
		// Only a read deadline: a peer that stops reading just holds
		// the connection (backpressure, bounded by the socket
		// buffers) until the other side goes idle.
		src.SetReadDeadline(time.Now().Add(idle))
	}
	for {
		s.more = false
		err := sc.Read(s.fromSrc)
		switch {
		case err == nil && s.more:
			continue
		case err == nil:
			me.Store(true)
			return s.total, s.err
		case errors.Is(err, os.ErrDeadlineExceeded):
			if !s.moved {
				me.Store(true)
				s.quiet = true
				if other.Load() {
					return s.total, errIdle
				}
			}
			s.moved = false
			src.SetReadDeadline(time.Now().Add(idle))
		default:
			me.Store(true)
			return s.total, err
		}
	}
}

// closeWrite half-closes c (a FIN to its peer), with a raw call like the
// splices.
func closeWrite(c *net.TCPConn) {
	rc, err := c.SyscallConn()
	if err != nil {
		return
	}
	rc.Control(func(fd uintptr) {
		unix.RawSyscall(unix.SYS_SHUTDOWN, fd, unix.SHUT_WR, 0)
	})
}

// setKeepAlive turns keep-alive on; the default case (kernel timers) is
// one raw setsockopt.
func setKeepAlive(c *net.TCPConn, ka net.KeepAliveConfig) {
	if ka.Idle >= 0 || ka.Interval >= 0 || ka.Count >= 0 {
		c.SetKeepAliveConfig(ka)
		return
	}
	rc, err := c.SyscallConn()
	if err != nil {
		return
	}
	rc.Control(func(fd uintptr) {
		one := int32(1)
		unix.RawSyscall6(unix.SYS_SETSOCKOPT, fd, unix.SOL_SOCKET, unix.SO_KEEPALIVE, uintptr(unsafe.Pointer(&one)), 4, 0)
	})
}
