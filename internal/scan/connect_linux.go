package scan

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"sync"
	"time"

	"golang.org/x/sys/unix"

	"portolan/internal/portspec"
)

// Open starts a session: an epoll instance and the goroutine that waits on
// it.
func (ConnectProber) Open(ctx context.Context, report func(Reply)) (Session, error) {
	limit := raiseNoFile()
	epfd, err := unix.EpollCreate1(unix.EPOLL_CLOEXEC)
	if err != nil {
		return nil, fmt.Errorf("epoll: %w", err)
	}
	wake, err := unix.Eventfd(0, unix.EFD_CLOEXEC|unix.EFD_NONBLOCK)
	if err != nil {
		unix.Close(epfd)
		return nil, fmt.Errorf("eventfd: %w", err)
	}
	ev := unix.EpollEvent{Events: unix.EPOLLIN, Fd: int32(wake)}
	if err := unix.EpollCtl(epfd, unix.EPOLL_CTL_ADD, wake, &ev); err != nil {
		unix.Close(epfd)
		unix.Close(wake)
		return nil, fmt.Errorf("epoll add: %w", err)
	}
	s := &epollSession{
		epfd: epfd, wake: wake, report: report,
		limit:   limit,
		ids:     make(map[uint64]int32),
		zones:   make(map[string]uint32),
		done:    make(chan struct{}),
		closeC:  make(chan struct{}, 1),
		closerQ: make(chan struct{}),
		closerD: make(chan struct{}),
	}
	go s.poll()
	go s.closer()
	return s, nil
}

// raiseNoFile lifts the soft open-files limit to the hard one (Go does this
// at start-up too, but a parent may have lowered it since) and returns how
// many sockets a scan may hold, keeping some descriptors for everything
// else.
func raiseNoFile() int {
	var rl unix.Rlimit
	if err := unix.Getrlimit(unix.RLIMIT_NOFILE, &rl); err != nil {
		return 1024 - 64
	}
	if rl.Cur < rl.Max {
		want := rl
		want.Cur = rl.Max
		if unix.Setrlimit(unix.RLIMIT_NOFILE, &want) == nil {
			rl = want
		}
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

	mu     sync.Mutex
	conns  []conn // by file descriptor
	ids    map[uint64]int32
	closed bool
	done   chan struct{}

	// Sockets done with at once are closed by another goroutine: close
	// costs as much as connect, and this way the two run on two cores.
	cmu     sync.Mutex
	toClose []int
	closeC  chan struct{} // capacity 1: "toClose has some"
	closerQ chan struct{} // closed: the closer is to finish
	closerD chan struct{} // closed: the closer has finished
}

// maxToClose bounds the sockets waiting for the closer; past it Send
// closes them itself, so a stalled closer cannot run the process out of
// descriptors.
const maxToClose = 1024

func (s *epollSession) closeLater(fd int) {
	s.cmu.Lock()
	if len(s.toClose) >= maxToClose {
		s.cmu.Unlock()
		unix.Close(fd)
		return
	}
	s.toClose = append(s.toClose, fd)
	n := len(s.toClose)
	s.cmu.Unlock()
	// Wake the closer for batches, not for every socket: a wake-up costs
	// about what a close does. Stragglers wait for the next batch or Close,
	// harmless for sockets that have nothing left to send.
	if n == closeBatch {
		select {
		case s.closeC <- struct{}{}:
		default:
		}
	}
}

const closeBatch = 64

func (s *epollSession) closer() {
	defer close(s.closerD)
	var batch []int
	for {
		select {
		case <-s.closeC:
		case <-s.closerQ:
			s.cmu.Lock()
			for _, fd := range s.toClose {
				unix.Close(fd)
			}
			s.toClose = nil
			s.cmu.Unlock()
			return
		}
		s.cmu.Lock()
		batch, s.toClose = s.toClose, batch[:0]
		s.cmu.Unlock()
		for _, fd := range batch {
			unix.Close(fd)
		}
	}
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
	sa, family, err := s.sockaddr(dst)
	if err != nil {
		return err
	}
	fd, err := unix.Socket(family, unix.SOCK_STREAM|unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return sendErr("socket", err)
	}
	start := time.Now()
	err = unix.Connect(fd, sa)
	if err == unix.EINPROGRESS {
		// On loopback and veth the answer is often processed inside
		// connect itself: a reset is then already in SO_ERROR, and
		// asking costs less than an epoll registration and wake-up.
		if errno, gerr := unix.GetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_ERROR); gerr == nil && errno != 0 {
			err = unix.Errno(errno)
		}
	}
	if err != nil && err != unix.EINPROGRESS {
		errno, _ := err.(unix.Errno)
		st, reason, busy := verdict(errno)
		switch {
		case busy:
			unix.Close(fd)
			return sendErr("connect", err)
		case st == Unknown:
			unix.Close(fd)
			return fmt.Errorf("connect: %w", err)
		}
		s.report(Reply{ID: id, State: st, Reason: reason, RTT: time.Since(start)})
		s.closeLater(fd)
		return nil
	}
	// In progress (or, rarely, done at once): the event says which.
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

func (s *epollSession) sockaddr(dst netip.AddrPort) (unix.Sockaddr, int, error) {
	a := dst.Addr().Unmap()
	if a.Is4() {
		return &unix.SockaddrInet4{Port: int(dst.Port()), Addr: a.As4()}, unix.AF_INET, nil
	}
	sa := &unix.SockaddrInet6{Port: int(dst.Port()), Addr: a.As16()}
	if z := a.Zone(); z != "" {
		idx, ok := s.zones[z]
		if !ok {
			ifi, err := net.InterfaceByName(z)
			if err != nil {
				return nil, 0, fmt.Errorf("zone of %s: %w", a, err)
			}
			idx = uint32(ifi.Index)
			s.zones[z] = idx
		}
		sa.ZoneId = idx
	}
	return sa, unix.AF_INET6, nil
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
	close(s.closerQ)
	<-s.closerD
	unix.Close(s.epfd)
	unix.Close(s.wake)
	return nil
}
