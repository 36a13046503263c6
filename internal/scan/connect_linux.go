package scan

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"runtime"
	"sync"
	"sync/atomic"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"

	"portolan/internal/portspec"
)

// newEpollWake makes a session's epoll instance with an eventfd in it,
// which wakes the session's goroutine.
func newEpollWake() (epfd, wake int, err error) {
	if epfd, err = unix.EpollCreate1(unix.EPOLL_CLOEXEC); err != nil {
		return -1, -1, fmt.Errorf("epoll: %w", err)
	}
	if wake, err = unix.Eventfd(0, unix.EFD_CLOEXEC|unix.EFD_NONBLOCK); err != nil {
		unix.Close(epfd)
		return -1, -1, fmt.Errorf("eventfd: %w", err)
	}
	ev := unix.EpollEvent{Events: unix.EPOLLIN, Fd: int32(wake)}
	if err := unix.EpollCtl(epfd, unix.EPOLL_CTL_ADD, wake, &ev); err != nil {
		unix.Close(epfd)
		unix.Close(wake)
		return -1, -1, fmt.Errorf("epoll add: %w", err)
	}
	return epfd, wake, nil
}

// Open starts a session: an epoll instance and the goroutine that waits on
// it.
func (c ConnectProber) Open(ctx context.Context, report func(Reply)) (Session, error) {
	if err := checkLocal(c.Local, unix.SOCK_STREAM); err != nil {
		return nil, fmt.Errorf("connect scan: %w", err)
	}
	limit := noFileBudget()
	epfd, wake, err := newEpollWake()
	if err != nil {
		return nil, err
	}
	s := &epollSession{
		epfd: epfd, wake: wake, report: report,
		limit:  limit,
		local:  c.Local,
		ids:    make(map[uint64]int32),
		queued: make(map[uint64]struct{}),
		zones:  make(map[string]uint32),
		done:   make(chan struct{}),
		nsfd:   -1,
	}
	go s.poll()
	s.startHelpers()
	return s, nil
}

// startHelpers starts a helper thread per core beyond the caller's, in the
// caller's network namespace; without one (a single core, or a namespace
// it cannot enter) the caller does all the probing.
func (s *epollSession) startHelpers() {
	n := runtime.GOMAXPROCS(0) - 1
	if n < 1 {
		return
	}
	nsfd, err := unix.Open("/proc/thread-self/ns/net", unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		return
	}
	s.nsfd = nsfd
	s.jobs = make(chan job, 256)
	s.queueMax = 8 * n
	ready := make(chan bool)
	ok := 0
	for range n {
		s.helpers.Add(1)
		go s.helper(nsfd, ready)
		if <-ready {
			ok++
		}
	}
	if ok == 0 {
		close(s.jobs)
		s.helpers.Wait()
		s.jobs = nil
	}
}

// noFileBudget returns how many sockets a scan may hold: the open-files
// limit (which Go raised to the hard limit at start-up; a library does not
// change process-wide limits), less some descriptors for everything else.
func noFileBudget() int {
	var rl unix.Rlimit
	if err := unix.Getrlimit(unix.RLIMIT_NOFILE, &rl); err != nil {
		return 1024 - 64
	}
	return int(max(64, min(rl.Cur, 1<<20)-64))
}

// epollSession is a ConnectProber session. Send and Cancel run on the
// scheduler's goroutine, poll on its own; mu guards conns and ids between
// them. A socket belongs to whoever marks it not live first: poll (an
// event), Cancel or Close; that one closes it.
type epollSession struct {
	epfd, wake int
	report     func(Reply)
	limit      int
	zones      map[string]uint32 // IPv6 zone name -> interface index
	local      Local             // where probes leave from; read-only

	mu     sync.Mutex
	conns  []conn // by file descriptor
	ids    map[uint64]int32
	queued map[uint64]struct{} // handed to a helper, not yet sent
	closed bool
	done   chan struct{}

	spare   spares      // Send's own sockets to reuse
	sources sourceCache // Send's only

	jobs     chan job // to the helper threads; nil: none
	queueMax int      // probes waiting for the helpers beyond which Send probes itself
	helpers  sync.WaitGroup
	nsfd     int                   // the namespace the session was opened in
	fatal    atomic.Pointer[error] // a helper's error that ends the scan
}

type conn struct {
	id    uint64
	start time.Time
	gen   uint32 // tells a stale event for a reused descriptor from a live one
	live  bool
}

func (s *epollSession) InFlightLimit() int { return s.limit }

func (s *epollSession) Send(id uint64, dst netip.AddrPort, proto portspec.Proto) error {
	if proto != portspec.TCP {
		return fmt.Errorf("connect probe over %s: %w", proto, ErrUnsupported)
	}
	if err := s.fatal.Load(); err != nil {
		return *err
	}
	var sa rawAddr
	if err := s.sockaddr(dst, &sa); err != nil {
		return err
	}
	src, err := s.source(dst.Addr().Unmap())
	if err != nil {
		return err
	}
	// A probe goes to a helper thread while the helpers' queue is short:
	// connect is nearly all the work, one thread issuing them uses one
	// core, and this thread also runs the scheduler, so the helpers take
	// more than their share. A short queue keeps them busy without
	// holding probes back.
	if s.jobs != nil && len(s.jobs) < s.queueMax {
		s.mu.Lock()
		s.queued[id] = struct{}{}
		s.mu.Unlock()
		select {
		case s.jobs <- job{id, sa, src}:
			return nil
		default:
			s.mu.Lock()
			delete(s.queued, id)
			s.mu.Unlock()
		}
	}
	err = s.probe(id, &sa, src, &s.spare)
	if err != nil && src.IsValid() && !s.local.Addr.IsValid() && errors.Is(err, ErrBusy) {
		// Perhaps the address is gone: the next try asks again.
		s.sources.forget(dst.Addr().Unmap())
	}
	return err
}

// source is the address probes to dst are bound to: Local's, or the one
// the route gives (sourceCache), or none where the kernel must choose (a
// socket bound to an interface without a source address picks one of that
// interface's as it connects).
func (s *epollSession) source(dst netip.Addr) (netip.Addr, error) {
	switch {
	case s.local.Addr.IsValid():
		if err := s.local.family(dst); err != nil {
			return netip.Addr{}, err
		}
		return s.local.Addr.Unmap(), nil
	case s.local.Iface != "":
		return netip.Addr{}, nil
	}
	return s.sources.lookup(dst), nil
}

// job is a probe handed to a helper thread.
type job struct {
	id  uint64
	sa  rawAddr
	src netip.Addr // source address to bind, if valid
}

// rawAddr is a destination in the kernel's form, made without allocating.
type rawAddr struct {
	sa     unix.RawSockaddrInet6 // a RawSockaddrInet4 in its first bytes for IPv4
	len    uint32
	family int
}

// connect starts connecting fd to a. It is a raw system call: on a
// non-blocking socket it never waits, and the runtime's bookkeeping for a
// blocking call would be a tenth of a refused probe's user time.
func connect(fd int, a *rawAddr) unix.Errno {
	_, _, e := unix.RawSyscall(unix.SYS_CONNECT, uintptr(fd), uintptr(unsafe.Pointer(&a.sa)), uintptr(a.len))
	return e
}

// helper runs probes on a thread of its own, in the network namespace the
// session was opened in. ready gets whether it got there.
func (s *epollSession) helper(nsfd int, ready chan<- bool) {
	defer s.helpers.Done()
	// The thread stays locked: if it had to switch namespaces, the
	// runtime retires it when the goroutine ends instead of reusing it.
	runtime.LockOSThread()
	if !sameNetns(nsfd) && unix.Setns(nsfd, unix.CLONE_NEWNET) != nil {
		ready <- false
		return
	}
	ready <- true
	var spare spares
	defer spare.close()
	for j := range s.jobs {
		s.mu.Lock()
		_, ok := s.queued[j.id]
		delete(s.queued, j.id)
		s.mu.Unlock()
		if !ok {
			continue // cancelled before it went out
		}
		if err := s.probe(j.id, &j.sa, j.src, &spare); err != nil {
			if !errors.Is(err, ErrBusy) {
				s.fatal.CompareAndSwap(nil, &err) // the next Send returns it
			}
			s.report(Reply{ID: j.id}) // no verdict: the scanner sends it again
		}
	}
}

// sameNetns reports whether the calling thread is in the namespace nsfd.
func sameNetns(nsfd int) bool {
	var a, b unix.Stat_t
	if unix.Fstat(nsfd, &a) != nil || unix.Stat("/proc/thread-self/ns/net", &b) != nil {
		return false
	}
	return a.Dev == b.Dev && a.Ino == b.Ino
}

// probe connects to sa and reports the outcome, or registers the socket
// with epoll if the outcome is not known yet, from a socket bound to src
// if that is valid. spare is the caller's own set of reusable sockets.
func (s *epollSession) probe(id uint64, sa *rawAddr, src netip.Addr, spare *spares) error {
	fd, err := socket(sa.family, src, s.local, spare)
	if err != nil {
		return sendErr("socket", err)
	}
	start := time.Now()
	errno := connect(fd, sa)
	again := false
	if errno == unix.EINPROGRESS {
		// On loopback and veth the answer is usually processed inside
		// connect itself. A second connect reads it (EALREADY: still in
		// progress; EISCONN: connected; else the error), and after an
		// error it leaves the socket unconnected, ready for the next
		// probe: a closed port then costs no socket and no close, which
		// is a third of the kernel's work per port.
		again = true
		switch errno = connect(fd, sa); errno {
		case unix.EALREADY:
			errno = unix.EINPROGRESS
		case unix.EISCONN:
			errno = 0
		}
	}
	switch errno {
	case unix.EINPROGRESS:
		return s.wait(id, fd, start)
	case 0: // connected
		r, _ := outcome(fd)
		r.ID, r.RTT = id, time.Since(start)
		unix.Close(fd)
		s.report(r)
		return nil
	}
	st, reason, busy := verdict(errno)
	switch {
	case busy:
		unix.Close(fd)
		return sendErr("connect", errno)
	case st == Unknown && again:
		// Odd, but about this probe only: probe again on a new socket.
		unix.Close(fd)
		s.report(Reply{ID: id})
		return nil
	case st == Unknown:
		unix.Close(fd)
		return fmt.Errorf("connect: %w", errno)
	}
	s.report(Reply{ID: id, State: st, Reason: reason, RTT: time.Since(start)})
	spare.put(sa.family, src, fd)
	return nil
}

// socket returns an unconnected non-blocking TCP socket bound to src (if
// valid) and to what l asks: a spare one, if any, or a new one. Either is
// made on the calling thread, so in its network namespace.
func socket(family int, src netip.Addr, l Local, spare *spares) (int, error) {
	if fd, ok := spare.take(family, src); ok {
		return fd, nil
	}
	if l.IsZero() {
		return ownPortSocket(family, src)
	}
	fd, err := unix.Socket(family, unix.SOCK_STREAM|unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return -1, err
	}
	if err := bindLocal(fd, family, l, src); err != nil {
		unix.Close(fd)
		return -1, err
	}
	return fd, nil
}

// ownPortSocket returns a socket bound to a port of its own, named
// explicitly: the kernel then keeps the port across the probes the socket
// is reused for (a port it picked at connect or at bind(0) is given back
// when a connect fails), and a connect skips its search for a free
// ephemeral port, a tenth of the CPU of a probe. The port is one that a
// bind to port 0 picked a moment before; if another socket took it in
// between, a socket picked that way is used as it is.
func ownPortSocket(family int, src netip.Addr) (int, error) {
	newSocket := func() (int, error) {
		return unix.Socket(family, unix.SOCK_STREAM|unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC, 0)
	}
	tmp, err := newSocket()
	if err != nil {
		return -1, err
	}
	var local unix.Sockaddr = &unix.SockaddrInet4{}
	if family == unix.AF_INET6 {
		local = &unix.SockaddrInet6{}
	}
	switch {
	case src.Is4() && family == unix.AF_INET:
		local = &unix.SockaddrInet4{Addr: src.As4()}
	case src.Is6() && family == unix.AF_INET6:
		local = &unix.SockaddrInet6{Addr: src.As16()}
	}
	if err := unix.Bind(tmp, local); err != nil {
		unix.Close(tmp)
		return -1, err
	}
	sa, err := unix.Getsockname(tmp)
	if err != nil {
		return tmp, nil
	}
	fd, err := newSocket()
	if err != nil {
		return tmp, nil
	}
	unix.Close(tmp)
	// If the port was taken in between, the unbound socket works as before.
	_ = unix.Bind(fd, sa)
	return fd, nil
}

// wait registers fd, whose connect is in progress, with epoll; poll
// reports it.
func (s *epollSession) wait(id uint64, fd int, start time.Time) error {
	s.mu.Lock()
	if fd >= len(s.conns) {
		s.conns = append(s.conns, make([]conn, fd+1-len(s.conns)+len(s.conns)/2)...)
	}
	c := &s.conns[fd]
	c.gen++
	c.id, c.start, c.live = id, start, true
	gen := c.gen
	s.ids[id] = int32(fd)
	s.mu.Unlock()
	ev := unix.EpollEvent{Events: unix.EPOLLOUT | unix.EPOLLONESHOT, Fd: int32(fd), Pad: int32(gen)}
	if err := unix.EpollCtl(s.epfd, unix.EPOLL_CTL_ADD, fd, &ev); err != nil {
		s.Cancel(id)
		return sendErr("epoll add", err)
	}
	return nil
}

// sendErr wraps err, marking local shortages as ErrBusy.
func sendErr(op string, err error) error {
	if errno, ok := err.(unix.Errno); ok {
		if _, _, busy := verdict(errno); busy {
			return fmt.Errorf("%s: %w (%w)", op, ErrBusy, err)
		}
	}
	return fmt.Errorf("%s: %w", op, err)
}

// sockaddr fills sa with dst.
func (s *epollSession) sockaddr(dst netip.AddrPort, sa *rawAddr) error {
	a := dst.Addr().Unmap()
	port := dst.Port()
	port = port>>8 | port<<8 // network byte order
	if a.Is4() {
		sa4 := (*unix.RawSockaddrInet4)(unsafe.Pointer(&sa.sa))
		sa4.Family, sa4.Port, sa4.Addr = unix.AF_INET, port, a.As4()
		sa.len, sa.family = unix.SizeofSockaddrInet4, unix.AF_INET
		return nil
	}
	sa.sa = unix.RawSockaddrInet6{Family: unix.AF_INET6, Port: port, Addr: a.As16()}
	sa.len, sa.family = unix.SizeofSockaddrInet6, unix.AF_INET6
	if z := a.Zone(); z != "" {
		idx, ok := s.zones[z]
		if !ok {
			ifi, err := net.InterfaceByName(z)
			if err != nil {
				return fmt.Errorf("zone of %s: %w", a, err)
			}
			idx = uint32(ifi.Index)
			s.zones[z] = idx
		}
		sa.sa.Scope_id = idx
	}
	return nil
}

// own marks fd's probe as no longer live, if it is the one expected, and
// returns it; the caller then owns the socket.
func (s *epollSession) own(fd int, gen uint32) (conn, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if fd >= len(s.conns) {
		return conn{}, false
	}
	c := &s.conns[fd]
	if !c.live || c.gen != gen {
		return conn{}, false
	}
	c.live = false
	delete(s.ids, c.id)
	return *c, true
}

func (s *epollSession) Cancel(id uint64) (Reply, bool) {
	s.mu.Lock()
	if _, q := s.queued[id]; q {
		// Still waiting for a helper thread (a loaded machine): it never
		// went out, so it is no attempt, and no verdict.
		delete(s.queued, id)
		s.mu.Unlock()
		return Reply{ID: id}, true
	}
	fd, ok := s.ids[id]
	var c conn
	if ok {
		c = s.conns[fd]
		s.conns[fd].live = false
		delete(s.ids, id)
	}
	s.mu.Unlock()
	if !ok {
		return Reply{}, false
	}
	// The kernel may have the answer while poll has not got to it.
	r, done := outcome(int(fd))
	r.ID, r.RTT = id, time.Since(c.start)
	unix.Close(int(fd)) // also leaves the epoll set
	return r, done
}

// outcome reads how the connect on fd ended; done is false while it is
// still in progress.
func outcome(fd int) (r Reply, done bool) {
	errno, err := unix.GetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_ERROR)
	if err != nil {
		return Reply{}, false
	}
	if errno == 0 {
		if _, err := unix.Getpeername(fd); err != nil {
			return Reply{}, false // not connected yet
		}
	}
	r.State, r.Reason, _ = verdict(unix.Errno(errno))
	if r.State == Open {
		if selfConnected(fd) {
			r.State, r.Reason = Unknown, ""
		}
		resetOnClose(fd)
	}
	return r, r.State != Unknown || errno == 0
}

func (s *epollSession) poll() {
	defer close(s.done)
	events := make([]unix.EpollEvent, 256)
	for {
		n, err := unix.EpollWait(s.epfd, events, -1)
		if err != nil {
			if errors.Is(err, unix.EINTR) {
				continue
			}
			return // only on a closed or broken epoll; Close handles the rest
		}
		now := time.Now()
		for _, ev := range events[:n] {
			fd := int(ev.Fd)
			if fd == s.wake {
				s.mu.Lock()
				closed := s.closed
				s.mu.Unlock()
				if closed {
					return
				}
				continue
			}
			c, ok := s.own(fd, uint32(ev.Pad))
			if !ok {
				continue // cancelled meanwhile
			}
			r, _ := outcome(fd) // an event: done, or Unknown to probe again
			r.ID, r.RTT = c.id, now.Sub(c.start)
			unix.Close(fd)
			s.report(r)
		}
	}
}

// resetOnClose sets SO_LINGER 0, so that closing the connection sends a
// reset and leaves no TIME_WAIT behind: thousands of open ports probed
// would otherwise tie up ephemeral ports for a minute. Only connected
// sockets need it; one closed while connecting or refused has no
// TIME_WAIT.
func resetOnClose(fd int) {
	unix.SetsockoptLinger(fd, unix.SOL_SOCKET, unix.SO_LINGER, &unix.Linger{Onoff: 1, Linger: 0})
}

// selfConnected reports a connection to itself: a loopback connect whose
// ephemeral source port happened to be the port probed. TCP simultaneous
// open makes it succeed though nothing listens; Go's net package checks the
// same.
func selfConnected(fd int) bool {
	la, err1 := unix.Getsockname(fd)
	ra, err2 := unix.Getpeername(fd)
	if err1 != nil || err2 != nil {
		return false
	}
	switch l := la.(type) {
	case *unix.SockaddrInet4:
		r, ok := ra.(*unix.SockaddrInet4)
		return ok && l.Port == r.Port && l.Addr == r.Addr
	case *unix.SockaddrInet6:
		r, ok := ra.(*unix.SockaddrInet6)
		return ok && l.Port == r.Port && l.Addr == r.Addr
	}
	return false
}

func (s *epollSession) Close() error {
	if s.jobs != nil {
		close(s.jobs)
		s.helpers.Wait()
	}
	if s.nsfd >= 0 {
		unix.Close(s.nsfd)
	}
	s.mu.Lock()
	s.closed = true
	s.mu.Unlock()
	one := []byte{1, 0, 0, 0, 0, 0, 0, 0}
	unix.Write(s.wake, one)
	<-s.done
	s.mu.Lock()
	for fd := range s.conns {
		if s.conns[fd].live {
			s.conns[fd].live = false
			unix.Close(fd)
		}
	}
	clear(s.ids)
	s.mu.Unlock()
	s.spare.close()
	unix.Close(s.epfd)
	unix.Close(s.wake)
	return nil
}
