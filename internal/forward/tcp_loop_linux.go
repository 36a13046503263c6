package forward

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"
)

// On Linux each TCP listener is served by an event loop (or several, see
// tcpLoops), each in one goroutine like the UDP relay: its epoll set holds
// the listening socket, both sockets of every connection it accepted
// (edge-triggered), an eventfd for drain and shutdown and a timerfd for
// the timeouts. A short connection then costs the kernel's wake-ups of one
// thread, no goroutines and no hand-offs through the runtime's poller, and
// only the system calls the relay needs: accept4 (the peer address comes
// with it; TCP_NODELAY and keep-alive are inherited from the listener),
// socket, connect and its options, reads and sends or splices, shutdown,
// close.
//
// Rules that accept a PROXY header from trusted peers hand their
// connections to the goroutine relay in tcp.go (reading the header would
// need a state of its own). Targets named by host name are resolved off
// the loop (see target.dialAddr).

// tcpLoop serves one listening socket. Everything but mu and the fields
// it guards belongs to the loop goroutine.
type tcpLoop struct {
	s      *Server
	rs     atomic.Pointer[ruleState]
	local  net.Addr
	fd     int       // listening socket, non-blocking; -1 once closed
	shared bool      // other loops wait on the same socket
	file   *unixFile // a unix listening socket's file, removed once it closes; nil: none
	queue  loopQueue // clients waiting for a slot (Rule.QueueTimeout)
	// accepted counts the connections this loop took (for tests of
	// how they spread over the loops).
	accepted atomic.Int64
	loopCtl

	byFD      []*loopConn // both sockets of each connection
	live      map[*loopConn]struct{}
	timed     map[*loopConn]struct{} // connecting, or with an idle timeout
	again     []*loopConn            // stopped on their budget with more to move
	toClose   []int                  // closed after the batch, so no stale event meets a reused number
	nextSweep int64
	nextFlush int64 // loop clock: when the live connections' bytes are next added to the rule's counters
	lnKA      time.Duration
	lnKASet   bool  // the listener's keep-alive timers are not the kernel's
	pausedTil int64 // accept paused (out of descriptors) until then; 0: accepting
	delay     time.Duration
	events    [128]unix.EpollEvent
	buf       [copyBuf]byte // small reads pass through here (see move)
}

// loopConn is one relayed connection.
type loopConn struct {
	rs       *ruleState
	cfd, sfd int // client and target sockets; sfd -1 while none
	up, down half

	connected bool
	watched   bool // its sockets are in the epoll set
	queued    bool // in again
	done      bool
	cr, cw    bool // client socket readable, writable (edge-triggered state)
	sr, sw    bool
	ce, se    bool // client, target socket reported its peer's end (or an error)
	cands     []*target
	candBuf   [4]*target
	next      int     // next candidate to try
	tgt       *target // the candidate being connected to, or connected
	dialErr   error
	deadline  int64 // loop clock: connect timeout
	idle      int64
	last      int64 // loop clock of the last byte either way
	start     time.Time
	client    netip.AddrPort
	local     netip.AddrPort
	target    string
	dialed    netip.AddrPort // the address being connected to
	hdr       []byte         // PROXY header bytes still to write
	counted   [2]int64       // bytes up and down already added to the rule's counters

	// SNI routes (sni_loop_linux.go): the ClientHello being read, then
	// the bytes read, to go to the target after any PROXY header.
	hello *helloRead
	pre   []byte
	sni   string
}

// half is one direction of a connection.
type half struct {
	p *splicePipe // holds bytes not yet passed on; nil when empty
	// spill holds what was read but did not fit in the pipe, to go into
	// it as it empties. Pipes are not all the size asked for: once a user
	// holds more pipe pages than fs.pipe-user-pages-soft (64 pipes of
	// 1 MiB by default), the kernel gives new pipes 8 KiB, less than the
	// copy buffer (as root, CAP_SYS_RESOURCE lifts the limit).
	spill []byte
	eof   bool // the source ended
	shut  bool // the end was passed on (or the connection ends)
	bulk  bool // a read filled the copy buffer: splice from now on
	n     int64
}

// epoll events for connection sockets: all readiness changes, edge-triggered.
const connEvents = unix.EPOLLIN | unix.EPOLLOUT | unix.EPOLLRDHUP | unix.EPOLLET

// spliceBudget is how many chunks one direction moves before the loop
// turns to other connections.
const spliceBudget = 4

// copyBuf is the loop's buffer for the small reads of a direction that
// has not been seen to carry bulk data.
const copyBuf = 16 << 10

func (s *Server) openTCP(ctx context.Context, r *Rule) (listener, error) {
	// The standard library resolves and binds (an empty host is dual
	// stack); the loops then work on their own copies of the descriptor.
	var fd int
	var local net.Addr
	var file *unixFile // a unix socket's file, removed when the listener closes
	if _, ok := unixPath(r.Listen); ok {
		var err error
		if fd, local, file, err = listenUnix(r); err != nil {
			return nil, err
		}
	} else {
		lc := net.ListenConfig{KeepAlive: -1}
		ln, err := lc.Listen(ctx, "tcp", r.Listen)
		if err != nil {
			return nil, err
		}
		local = ln.Addr()
		fd, err = dupSocket(ln.(*net.TCPListener))
		ln.Close()
		if err != nil {
			return nil, err
		}
		// Accepted sockets inherit these: no option calls per connection.
		setInt(fd, unix.IPPROTO_TCP, unix.TCP_NODELAY, 1)
	}
	var err error
	n := min(max(s.Loops, 1), maxLoops)
	loops := make(tcpLoops, 0, n)
	for i := range n {
		lfd := fd
		if i > 0 {
			if lfd, err = unix.FcntlInt(uintptr(fd), unix.F_DUPFD_CLOEXEC, 0); err != nil {
				err = fmt.Errorf("dup listener: %w", err)
			}
		}
		var l *tcpLoop
		if err == nil {
			l, err = s.newTCPLoop(r, local, lfd, n > 1)
		}
		if err != nil {
			loops.drain() // none started: closes their sockets
			if len(loops) == 0 {
				file.remove()
			}
			return nil, err
		}
		l.file = file
		loops = append(loops, l)
	}
	if n == 1 {
		return loops[0], nil
	}
	return loops, nil
}

// maxLoops caps the loops of one listener.
const maxLoops = 64

// newTCPLoop makes a loop for a listening socket; shared says that other
// loops wait on the same socket. It takes fd: closed on error.
func (s *Server) newTCPLoop(r *Rule, local net.Addr, fd int, shared bool) (*tcpLoop, error) {
	l := &tcpLoop{s: s, local: local, fd: fd, shared: shared, live: map[*loopConn]struct{}{}, timed: map[*loopConn]struct{}{}}
	l.setListenerKeepAlive(r.KeepAlive)
	if err := l.open(l.watchListener); err != nil {
		unix.Close(fd)
		return nil, err
	}
	s.addLoop(l)
	return l, nil
}

// watchListener adds the listening socket to the epoll set epfd. A
// socket shared by several loops is watched with EPOLLEXCLUSIVE: a new
// client wakes one loop, not all of them.
func (l *tcpLoop) watchListener(epfd int) error {
	ev := unix.EpollEvent{Events: unix.EPOLLIN, Fd: int32(l.fd)}
	if l.shared {
		ev.Events |= unix.EPOLLEXCLUSIVE
	}
	return unix.EpollCtl(epfd, unix.EPOLL_CTL_ADD, l.fd, &ev)
}

// tcpLoops serve one listening socket with several loops (Server.Loops):
// every loop waits on the socket and keeps the connections it accepted,
// so a listener relays on several cores (as nginx's workers do) while the
// port is bound once, unlike SO_REUSEPORT, which would let a second
// process bind it too.
type tcpLoops []*tcpLoop

func (m tcpLoops) state() *ruleState { return m[0].state() }
func (m tcpLoops) addr() net.Addr    { return m[0].addr() }

func (m tcpLoops) setState(r *ruleState) {
	for _, l := range m {
		l.setState(r)
	}
}

func (m tcpLoops) serve() {
	var wg sync.WaitGroup
	for _, l := range m {
		wg.Go(l.serve)
	}
	wg.Wait()
}

// drain drains every loop; the socket is closed when the last one has
// closed its copy, before drain returns.
func (m tcpLoops) drain() {
	var wg sync.WaitGroup
	for _, l := range m {
		wg.Go(l.drain)
	}
	wg.Wait()
}

func (l *tcpLoop) state() *ruleState     { return l.rs.Load() }
func (l *tcpLoop) setState(r *ruleState) { l.rs.Store(r) }
func (l *tcpLoop) addr() net.Addr        { return l.local }

// drain closes the listening socket (before it returns) and lets the live
// connections finish; the loop ends with the last one.
func (l *tcpLoop) drain() { l.loopCtl.drain(l.closeLocked) }

// closeLocked closes the loop's own descriptors (its copy of the
// listening socket too, if still open); l.mu is held.
func (l *tcpLoop) closeLocked() {
	if l.fd >= 0 {
		unix.Close(l.fd)
		l.fd = -1
	}
	l.file.remove()
	l.closeCtlLocked()
	l.s.removeLoop(l)
}

func (l *tcpLoop) serve() {
	if !l.begin() {
		return
	}
	// Not locked to its thread: a TCP loop is one per listener, and a
	// locked goroutine's yield costs three wake-ups where an unlocked
	// one's costs one (see threadPin, which measured the UDP loop's case).
	l.nextSweep = 1<<63 - 1
	l.loop()
}

func (l *tcpLoop) loop() {
	var acks []chan struct{}
	draining := false
	now := l.now()
	for {
		timeout := -1
		if len(l.again) > 0 {
			timeout = 0
		}
		l.setTimer(l.nextTimer(), now)
		n, err := unix.EpollWait(l.epfd, l.events[:], timeout)
		if err != nil && err != unix.EINTR {
			// Only a bug gets here (a bad descriptor): end cleanly
			// rather than spin.
			l.s.logger().Error("tcp epoll", "addr", l.local.String(), "err", err)
			l.endAll("error")
			l.closeSockets()
			l.exit(acks, l.closeLocked)
			return
		}
		now = l.now()
		l.pass(now)
		// Control and new connections first, then the connections'
		// sockets: a batch often holds the end of one connection and the
		// start of the next, and the client waits on the start.
		for i := range max(n, 0) {
			switch fd := int(l.events[i].Fd); fd {
			case l.timer:
				l.timerFired()
			case l.wake:
				var stopping bool
				draining, stopping, acks = l.requests(acks)
				if draining && l.fd >= 0 {
					// Closing leaves the epoll set; clients see a refusal
					// from now on.
					l.mu.Lock()
					unix.Close(l.fd)
					l.fd = -1
					l.file.remove()
					l.mu.Unlock()
				}
				if stopping {
					l.endAll("shutdown")
				}
				l.serveGranted(now)
			case l.fd:
				if !draining {
					l.accept(now)
				}
			}
		}
		for i := range max(n, 0) {
			fd := int(l.events[i].Fd)
			if fd != l.wake && fd != l.timer && fd != l.fd && fd < len(l.byFD) && l.byFD[fd] != nil {
				l.event(l.byFD[fd], fd, l.events[i].Events, now)
			}
		}
		if len(l.again) > 0 {
			again := l.again
			l.again = nil
			for _, c := range again {
				c.queued = false
				if !c.done {
					l.pump(c, now)
				}
			}
		}
		if l.pausedTil != 0 && now >= l.pausedTil && l.fd >= 0 {
			l.pausedTil = 0
			l.watchListener(l.epfd)
		}
		if now >= l.nextSweep {
			l.sweep(now)
		}
		if len(l.queue.waiting) > 0 && now >= l.queue.next {
			l.expireWaiting(now)
		}
		if now >= l.nextFlush {
			l.flushBytes(now)
		}
		l.closeSockets()
		if draining && len(l.live) == 0 && len(l.queue.waiting) == 0 {
			l.exit(acks, l.closeLocked)
			return
		}
		// Drain returns once the listening socket is closed.
		acks = answer(acks)
	}
}

func (l *tcpLoop) nextTimer() int64 {
	next := l.nextSweep
	if l.pausedTil != 0 {
		next = min(next, l.pausedTil)
	}
	if len(l.live) > 0 {
		next = min(next, l.nextFlush)
	}
	if len(l.queue.waiting) > 0 {
		next = min(next, l.queue.next)
	}
	return next
}

// bytesEvery is how often the bytes of live connections reach the
// rule's counters, so that a long tunnel's traffic shows in the metrics
// as it moves rather than when it ends.
const bytesEvery = time.Second

// flushBytes adds what the live connections moved since the last time to
// the rule's counters.
func (l *tcpLoop) flushBytes(now int64) {
	for c := range l.live {
		c.countBytes()
	}
	l.nextFlush = now + int64(bytesEvery)
}

func (c *loopConn) countBytes() {
	st := c.rs.stats
	st.toTarget.Add(uint64(c.up.n - c.counted[0]))
	st.toClient.Add(uint64(c.down.n - c.counted[1]))
	c.counted = [2]int64{c.up.n, c.down.n}
}

// closeSockets closes the sockets of the connections ended in this batch.
func (l *tcpLoop) closeSockets() {
	for _, fd := range l.toClose {
		rawClose(fd)
	}
	l.toClose = l.toClose[:0]
}

// accept takes one connection per readiness report (the listener is
// level-triggered): with clients arriving one by one that saves the call
// that would only say there is no other.
func (l *tcpLoop) accept(now int64) {
	// Room for a unix socket's address too; its clients have no IP
	// address (client stays invalid) and are logged by the listener's path.
	var rsa unix.RawSockaddrAny
	fd, err := accept4(l.fd, &rsa)
	switch {
	case err == unix.EAGAIN || err == unix.EINTR || err == unix.ECONNABORTED:
		return
	case err != 0:
		// Out of descriptors and the like: pause accepting, never die.
		l.delay = min(max(2*l.delay, 5*time.Millisecond), time.Second)
		l.s.logger().Error("accept", "addr", l.local.String(), "err", os.NewSyscallError("accept4", err))
		l.pausedTil = now + int64(l.delay)
		unix.EpollCtl(l.epfd, unix.EPOLL_CTL_DEL, l.fd, nil)
		return
	}
	l.delay = 0
	l.accepted.Add(1)
	rs := l.rs.Load()
	if rs.KeepAlive != l.lnKA {
		// A reload changed it: the listener gets the new setting for the
		// next clients, this one too.
		l.setListenerKeepAlive(rs.KeepAlive)
		setKeepAliveFD(fd, rs.KeepAlive, true)
	}
	client, _ := sockaddrPort((*unix.RawSockaddrInet6)(unsafe.Pointer(&rsa)), unix.SizeofSockaddrInet6)
	client = unmapPort(client)
	st := rs.stats
	if len(rs.TrustedProxies) > 0 && rs.trusts(client.Addr()) {
		// A PROXY header to read: off the loop (the handler may take
		// l.s.mu, which drain holds while it waits for this loop), with
		// the number of headers being read at once bounded before a
		// goroutine starts.
		if !l.s.startHandoff() {
			st.limited.Add(1)
			resetFD(fd)
			l.s.logLoopConn(&loopConn{rs: rs, start: time.Now(), client: client}, slog.LevelWarn, "limit: proxy headers pending")
			return
		}
		go l.s.handoffTCP(rs, fd, client)
		return
	}
	c := &loopConn{rs: rs, cfd: fd, sfd: -1, start: time.Now(), client: client}
	if !rs.permits(client.Addr()) {
		st.denied.Add(1)
		resetFD(fd)
		l.s.logLoopConn(c, slog.LevelInfo, "denied")
		return
	}
	if rs.QueueTimeout > 0 {
		if !l.admit(c, now) {
			return // waiting, or refused
		}
	} else if !st.acquire(client.Addr(), rs.MaxConns, rs.MaxConnsPerSource) {
		st.limited.Add(1)
		resetFD(fd)
		l.s.logLoopConn(c, slog.LevelWarn, "limit")
		return
	}
	l.startConn(c, now, false)
}

// startConn connects a client that holds a slot; counted says Shutdown's
// wait group counts it already (it waited in the queue).
func (l *tcpLoop) startConn(c *loopConn, now int64, counted bool) {
	rs, fd := c.rs, c.cfd
	if rs.ProxyProtocol != 0 {
		var lsa unix.RawSockaddrInet6
		n := uint32(unix.SizeofSockaddrInet6)
		if _, _, e := unix.RawSyscall(unix.SYS_GETSOCKNAME, uintptr(fd), uintptr(unsafe.Pointer(&lsa)), uintptr(unsafe.Pointer(&n))); e == 0 {
			c.local, _ = sockaddrPort(&lsa, n)
			c.local = unmapPort(c.local)
		}
	}
	// Drain waits for the loop before Shutdown waits for the group, so
	// this Add never races with that Wait.
	if !counted {
		l.s.wg.Add(1)
	}
	l.live[c] = struct{}{}
	l.track(c, fd)
	if rs.sni != nil {
		l.acceptHello(c, now) // see sni_loop_linux.go
		return
	}
	c.cands = rs.pool.candidates(c.candBuf[:0], c.client.Addr())
	if len(c.cands) == 0 {
		c.dialErr = errNoHealthy
	}
	// The sockets join the epoll set after the first bytes went on
	// (see watch): about 3 us off the client's way.
	l.dial(c, now)
	if !c.done {
		l.watch(c)
	}
}

// track lets the loop find c by one of its sockets.
func (l *tcpLoop) track(c *loopConn, fd int) {
	for fd >= len(l.byFD) {
		l.byFD = append(l.byFD, nil)
	}
	l.byFD[fd] = c
}

// register adds a connection's socket to the epoll set.
func (l *tcpLoop) register(c *loopConn, fd int) error {
	ev := unix.EpollEvent{Events: connEvents, Fd: int32(fd)}
	if _, _, e := unix.RawSyscall6(unix.SYS_EPOLL_CTL, uintptr(l.epfd), unix.EPOLL_CTL_ADD, uintptr(fd), uintptr(unsafe.Pointer(&ev)), 0, 0); e != 0 {
		return fmt.Errorf("epoll add: %w", e)
	}
	l.track(c, fd)
	return nil
}

// watch adds a new connection's sockets to the epoll set and sets the
// target socket's keep-alive, once accept and dial have passed on what
// the client had sent. Nothing is missed meanwhile: adding an
// edge-triggered socket reports the readiness it already has.
func (l *tcpLoop) watch(c *loopConn) {
	err := l.register(c, c.cfd)
	if err == nil && c.sfd >= 0 {
		if err = l.register(c, c.sfd); err == nil && c.rs.KeepAlive >= 0 {
			setKeepAliveFD(c.sfd, c.rs.KeepAlive, false)
		}
	}
	c.watched = err == nil
	if err != nil {
		l.s.logger().Error("tcp conn", "rule", c.rs.name, "client", c.client.String(), "err", err)
		l.finish(c, slog.LevelWarn, "epoll: "+err.Error(), true)
	}
}

// dial starts a non-blocking connect to the next candidate; when none is
// left the client gets a reset.
func (l *tcpLoop) dial(c *loopConn, now int64) {
	rs := c.rs
	for c.next < len(c.cands) {
		t := c.cands[c.next]
		c.next++
		c.target = t.addr
		c.tgt = t
		var fd int
		var done bool
		var err error
		if path, ok := unixPath(t.addr); ok {
			c.dialed = netip.AddrPort{}
			fd, done, err = connectUnix(path)
		} else {
			ap, aerr := t.dialAddr()
			if aerr != nil {
				c.dialErr = aerr
				rs.pool.dialed(t, aerr)
				continue
			}
			c.dialed = ap
			fd, done, err = connectTCP(ap)
		}
		switch {
		case err != nil:
		case !c.watched:
			l.track(c, fd) // watch registers it
		default:
			if err = l.register(c, fd); err != nil {
				rawClose(fd)
			} else if rs.KeepAlive >= 0 {
				setKeepAliveFD(fd, rs.KeepAlive, false)
			}
		}
		if err != nil {
			c.dialErr = dialError(t.addr, c.dialed, err)
			rs.pool.dialed(t, err)
			continue
		}
		c.sfd = fd
		if done {
			// Connected already (a target on this host): relay what the
			// client has sent without waiting for the loop to say so.
			// The reads may find nothing; the sockets are (or are about
			// to be, see watch) in the epoll set edge-triggered, which
			// reports what they have, so no readiness is lost either way.
			l.connected(c, now)
			c.sw, c.cr = true, true
			l.pump(c, now)
			return
		}
		c.deadline = now + int64(rs.connectTimeout())
		l.addTimer(c, c.deadline, now)
		return
	}
	rs.stats.dialErrs.Add(1)
	l.finish(c, slog.LevelWarn, "dial: "+c.dialErr.Error(), true)
}

// connectTCP opens a non-blocking socket and starts connecting it; done
// reports that the connection is already established.
func connectTCP(ap netip.AddrPort) (fd int, done bool, err error) {
	ip := ap.Addr().Unmap()
	family := unix.AF_INET
	if !ip.Is4() {
		family = unix.AF_INET6
	}
	r, _, e := unix.RawSyscall(unix.SYS_SOCKET, uintptr(family), unix.SOCK_STREAM|unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC, 0)
	if e != 0 {
		return -1, false, os.NewSyscallError("socket", e)
	}
	fd = int(r)
	setInt(fd, unix.IPPROTO_TCP, unix.TCP_NODELAY, 1)
	var sa unix.RawSockaddrInet6
	n := uintptr(unix.SizeofSockaddrInet6)
	port := ap.Port()
	if family == unix.AF_INET {
		sa4 := (*unix.RawSockaddrInet4)(unsafe.Pointer(&sa))
		sa4.Family = unix.AF_INET
		sa4.Port = port>>8 | port<<8
		sa4.Addr = ip.As4()
		n = unix.SizeofSockaddrInet4
	} else {
		sa.Family = unix.AF_INET6
		sa.Port = port>>8 | port<<8
		sa.Addr = ip.As16()
		if z := ip.Zone(); z != "" {
			if i, err := net.InterfaceByName(z); err == nil {
				sa.Scope_id = uint32(i.Index)
			} else if id, err := strconv.ParseUint(z, 10, 32); err == nil {
				sa.Scope_id = uint32(id)
			}
		}
	}
	_, _, e = unix.RawSyscall(unix.SYS_CONNECT, uintptr(fd), uintptr(unsafe.Pointer(&sa)), n)
	if e == unix.EINPROGRESS {
		// To a target on this host the handshake is usually over by the
		// time connect returns: a second connect says so (EISCONN), or
		// gives its error (say ECONNREFUSED) at once, which spares a
		// turn of the loop on the client's way.
		_, _, e = unix.RawSyscall(unix.SYS_CONNECT, uintptr(fd), uintptr(unsafe.Pointer(&sa)), n)
		switch e {
		case unix.EISCONN:
			return fd, true, nil
		case unix.EALREADY, unix.EINPROGRESS:
			return fd, false, nil
		}
	}
	switch e {
	case 0:
		return fd, true, nil
	case unix.EINTR:
		return fd, false, nil // still in progress: the epoll set reports the outcome
	}
	rawClose(fd)
	return -1, false, os.NewSyscallError("connect", e)
}

// event handles readiness of one of a connection's sockets.
func (l *tcpLoop) event(c *loopConn, fd int, ev uint32, now int64) {
	in := ev&(unix.EPOLLIN|unix.EPOLLRDHUP|unix.EPOLLHUP|unix.EPOLLERR) != 0
	out := ev&(unix.EPOLLOUT|unix.EPOLLHUP|unix.EPOLLERR) != 0
	end := ev&(unix.EPOLLRDHUP|unix.EPOLLHUP|unix.EPOLLERR) != 0
	if fd == c.cfd {
		c.cr = c.cr || in
		c.cw = c.cw || out
		c.ce = c.ce || end
		if c.hello != nil {
			l.readHello(c, now)
			return
		}
		if !c.connected {
			return // read once connected: the flags keep the news
		}
	} else {
		c.sr = c.sr || in
		c.sw = c.sw || out
		c.se = c.se || end
		if !c.connected {
			switch {
			case ev&(unix.EPOLLERR|unix.EPOLLHUP) != 0:
				l.connectFailed(c, now, os.NewSyscallError("connect", soError(fd)))
				return
			case ev&unix.EPOLLOUT == 0:
				return
			}
			l.connected(c, now)
		}
	}
	l.pump(c, now)
}

func soError(fd int) error {
	v, err := unix.GetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_ERROR)
	if err != nil {
		return err
	}
	if v == 0 {
		return unix.ECONNREFUSED // reported as hung up without an error
	}
	return syscall.Errno(v)
}

// connectFailed drops the target socket and tries the next candidate.
func (l *tcpLoop) connectFailed(c *loopConn, now int64, err error) {
	l.byFD[c.sfd] = nil
	l.toClose = append(l.toClose, c.sfd)
	c.sfd = -1
	c.sr, c.sw, c.se = false, false, false
	c.dialErr = dialError(c.target, c.dialed, err)
	c.rs.pool.dialed(c.tgt, err)
	l.dial(c, now)
}

func (l *tcpLoop) connected(c *loopConn, now int64) {
	c.connected = true
	rs := c.rs
	rs.stats.observeDial(time.Since(c.start))
	rs.stats.total.Add(1)
	rs.pool.dialed(c.tgt, nil)
	c.tgt.stats.active.Add(1)
	c.last = now
	c.idle = int64(rs.tcpIdle())
	if c.idle > 0 {
		l.addTimer(c, now+c.idle, now)
	} else {
		delete(l.timed, c)
	}
	if rs.ProxyProtocol != 0 {
		h := ProxyHeader{Proto: TCP, Src: c.client, Dst: c.local}
		if rs.ProxyProtocol == 1 {
			c.hdr = h.AppendV1(nil)
		} else {
			c.hdr = h.AppendV2(nil)
		}
	}
	if len(c.pre) > 0 {
		c.hdr = append(c.hdr, c.pre...) // the ClientHello read for SNI routing
		c.up.n += int64(len(c.pre))
		c.pre = nil
	}
}

func (l *tcpLoop) addTimer(c *loopConn, at, now int64) {
	l.timed[c] = struct{}{}
	if at < l.nextSweep {
		// Not sooner than 5 ms from now: connections started over time
		// must not cost a sweep each.
		l.nextSweep = max(at, now+int64(5*time.Millisecond))
	}
}

// sweep ends connections whose connect or idle time ran out, and sets
// when to look again.
func (l *tcpLoop) sweep(now int64) {
	const never = 1<<63 - 1
	dial, idle := int64(never), int64(never)
	slack := int64(time.Second)
	for c := range l.timed {
		if c.hello != nil {
			if !l.helloTimedOut(c, now) {
				dial = min(dial, c.deadline)
			}
			continue
		}
		if !c.connected {
			if c.deadline <= now {
				l.connectFailed(c, now, os.ErrDeadlineExceeded)
			}
			if !c.done && !c.connected {
				dial = min(dial, c.deadline)
			}
			continue
		}
		if dl := c.last + c.idle; dl <= now {
			l.abort(c, "idle")
		} else {
			idle = min(idle, dl)
			slack = min(slack, c.idle/10)
		}
	}
	// Connect timeouts are kept to the millisecond; idle connections are
	// looked at a tenth of the shortest idle time apart at most (the
	// documented bound is twice the time), so that connections that
	// moved bytes since do not cost a sweep each. Never sooner than 5 ms.
	floor := now + int64(5*time.Millisecond)
	l.nextSweep = min(max(dial, floor), max(idle, now+max(slack, int64(5*time.Millisecond))))
}

// pump moves what it can in both directions, and finishes the connection
// when both have ended.
func (l *tcpLoop) pump(c *loopConn, now int64) {
	if len(c.hdr) > 0 && c.sw {
		n, err := sendRaw(c.sfd, c.hdr)
		switch {
		case err == unix.EAGAIN:
			c.sw = false
		case err != 0:
			l.finish(c, slog.LevelWarn, "proxy header: "+os.NewSyscallError("write", err).Error(), true)
			return
		default:
			c.hdr = c.hdr[n:]
		}
	}
	busy := false
	if len(c.hdr) == 0 {
		more, err := l.move(c, &c.up, &c.down, c.cfd, c.sfd, &c.cr, &c.sw, c.ce, now)
		if err != nil {
			l.abort(c, "client: "+err.Error())
			return
		}
		busy = more
	}
	more, err := l.move(c, &c.down, &c.up, c.sfd, c.cfd, &c.sr, &c.cw, c.se, now)
	if err != nil {
		l.abort(c, "target: "+err.Error())
		return
	}
	if c.up.shut && c.down.shut {
		l.finish(c, slog.LevelInfo, "eof", false)
		return
	}
	if (busy || more) && !c.queued {
		c.queued = true
		l.again = append(l.again, c)
	}
}

// move passes bytes from src to dst until src has no more, dst takes no
// more (the bytes wait in the pipe and src is not read: backpressure) or
// the budget is spent (more: call again).
//
// Bytes go through a pipe with splice(2), never entering user space,
// once the direction has carried bulk data (a read filled the loop's
// buffer). Until then they are read into that buffer and sent on: for a
// few hundred bytes that is cheaper than splicing (a socket's small
// segments are copied into fresh pages for the pipe, then sent as page
// fragments), about 5 us less CPU per short connection. What dst does not
// take goes into the pipe, and waits there like spliced bytes.
//
// A read that filled the pipe with fewer bytes than it has buffers did
// not stop on a full pipe, so it took all the socket had: the socket
// counts as drained without a read that only says so, and new bytes
// report it ready again (edge-triggered). Not once the peer's end was
// reported, which reports nothing more: then src is read until EOF.
func (l *tcpLoop) move(c *loopConn, h, other *half, src, dst int, readable, writable *bool, ended bool, now int64) (more bool, err error) {
	budget := spliceBudget
	for {
		if len(h.spill) > 0 {
			if err := h.fillPipe(); err != nil {
				return false, err
			}
		}
		if h.p != nil && h.p.n > 0 {
			if !*writable {
				return false, nil
			}
			n, errno := splice(h.p.r, dst, h.p.n)
			switch {
			case errno == unix.EAGAIN:
				*writable = false
				return false, nil
			case errno == unix.EINTR:
				continue
			case errno != 0:
				return false, os.NewSyscallError("splice", errno)
			case n == 0:
				return false, os.NewSyscallError("splice", unix.EIO)
			}
			h.p.n -= n
			h.n += int64(n)
			c.last = now
			continue
		}
		if h.p != nil {
			// Empty: back to the pool, so that waiting connections hold
			// no pipe.
			pipes.Put(h.p)
			h.p = nil
		}
		if h.shut {
			return false, nil
		}
		if h.eof {
			h.shut = true
			// The last direction to end closes both sockets, which
			// sends the FIN itself.
			if !other.shut {
				unix.RawSyscall(unix.SYS_SHUTDOWN, uintptr(dst), unix.SHUT_WR, 0)
			}
			return false, nil
		}
		if !*readable {
			return false, nil
		}
		if budget == 0 {
			return true, nil
		}
		budget--
		if h.p == nil && *writable && !h.bulk {
			n, errno := recvRaw(src, l.buf[:])
			switch {
			case errno == unix.EAGAIN:
				*readable = false
				continue
			case errno == unix.EINTR:
				continue
			case errno != 0:
				return false, os.NewSyscallError("recv", errno)
			case n == 0:
				h.eof = true
				continue
			case n == len(l.buf):
				h.bulk = true
			case !ended:
				*readable = false // a short read took all there was
			}
			if err := l.sendOn(c, h, dst, l.buf[:n], writable, now); err != nil {
				return false, err
			}
			continue
		}
		if h.p == nil {
			if h.p, _ = pipes.Get().(*splicePipe); h.p == nil {
				return false, errNoPipe
			}
		}
		n, errno := splice(src, h.p.w, pipeSize)
		switch {
		case errno == unix.EAGAIN:
			*readable = false
		case errno == unix.EINTR:
		case errno != 0:
			return false, os.NewSyscallError("splice", errno)
		case n == 0:
			h.eof = true
		default:
			h.p.n += n
			if n < h.p.slots && !ended {
				*readable = false
			}
		}
	}
}

// sendOn sends b, just read for h, to dst; what dst does not take now
// goes into h's pipe (empty, and larger than b) to wait for dst.
func (l *tcpLoop) sendOn(c *loopConn, h *half, dst int, b []byte, writable *bool, now int64) error {
	w, errno := sendRaw(dst, b)
	switch errno {
	case 0, unix.EAGAIN:
	default:
		return os.NewSyscallError("send", errno)
	}
	h.n += int64(w)
	c.last = now
	if w == len(b) {
		return nil
	}
	*writable = false
	if h.p, _ = pipes.Get().(*splicePipe); h.p == nil {
		return errNoPipe
	}
	h.spill = b[w:]
	if err := h.fillPipe(); err != nil {
		return err
	}
	if len(h.spill) > 0 {
		// A small pipe (see spill): keep the rest, b is the loop's buffer.
		h.spill = append([]byte(nil), h.spill...)
	}
	return nil
}

// fillPipe moves what it can of h.spill into h's pipe.
func (h *half) fillPipe() error {
	b := h.spill
	r, _, errno := unix.RawSyscall(unix.SYS_WRITE, uintptr(h.p.w), uintptr(unsafe.Pointer(&b[0])), uintptr(len(b)))
	switch errno {
	case 0:
		h.p.n += int(r)
		h.spill = b[r:]
	case unix.EAGAIN:
	default:
		return os.NewSyscallError("write pipe", errno)
	}
	if len(h.spill) == 0 {
		h.spill = nil
	}
	return nil
}

// dropPipe closes a pipe that may still hold a connection's bytes.
func dropPipe(h *half) {
	h.spill = nil
	if h.p == nil {
		return
	}
	if h.p.n == 0 {
		pipes.Put(h.p)
	} else {
		h.p.cleanup.Stop()
		unix.Close(h.p.r)
		unix.Close(h.p.w)
	}
	h.p = nil
}

func (l *tcpLoop) abort(c *loopConn, reason string) {
	l.finish(c, slog.LevelInfo, reason, false)
}

// finish ends a connection: its sockets close after this batch (with a
// reset to the client if asked), the counters and limits are updated and
// the line logged.
func (l *tcpLoop) finish(c *loopConn, level slog.Level, reason string, rst bool) {
	if c.done {
		return
	}
	c.done = true
	l.endHello(c)
	if rst {
		setLinger0(c.cfd)
	}
	l.byFD[c.cfd] = nil
	l.toClose = append(l.toClose, c.cfd)
	if c.sfd >= 0 {
		l.byFD[c.sfd] = nil
		l.toClose = append(l.toClose, c.sfd)
	}
	dropPipe(&c.up)
	dropPipe(&c.down)
	delete(l.timed, c)
	delete(l.live, c)
	rs := c.rs
	st := rs.stats
	c.countBytes()
	if c.connected {
		c.tgt.stats.active.Add(-1)
	}
	l.s.logLoopConn(c, level, reason)
	st.release(c.client.Addr(), rs.MaxConnsPerSource > 0)
	l.s.wg.Done()
}

func (l *tcpLoop) endAll(reason string) {
	for c := range l.live {
		l.abort(c, reason)
	}
	l.dropWaiting(reason)
}

func (s *Server) logLoopConn(c *loopConn, level slog.Level, reason string) {
	s.logConnLineSNI(c.rs, "tcp", level, c.client, c.target, c.sni, c.up.n, c.down.n, c.start, reason)
}

// handoffTCP relays an accepted connection with the goroutine relay. The
// client's address is the one accept returned: a connection reset
// meanwhile has none left to ask the socket for.
func (s *Server) handoffTCP(rs *ruleState, fd int, client netip.AddrPort) {
	defer s.endHandoff()
	f := os.NewFile(uintptr(fd), "")
	nc, err := net.FileConn(f)
	f.Close()
	if err != nil {
		// A socket reset before the hand-off: nothing to relay.
		s.logConnLine(rs, "tcp", slog.LevelInfo, client, "", 0, 0, time.Now(), "client gone: "+err.Error())
		return
	}
	c := nc.(*net.TCPConn)
	// FileConn turned on its own keep-alive; the rule's applies.
	if raw, err := c.SyscallConn(); err == nil {
		raw.Control(func(fd uintptr) { setKeepAliveFD(int(fd), rs.KeepAlive, true) })
	}
	tc := &tcpConn{client: c, clientAddr: client}
	if !s.track(tc) {
		reset(c)
		return
	}
	s.handleTCP(rs, tc)
}

// setListenerKeepAlive sets the keep-alive the accepted sockets inherit.
func (l *tcpLoop) setListenerKeepAlive(d time.Duration) {
	setKeepAliveFD(l.fd, d, l.lnKASet)
	l.lnKA = d
	l.lnKASet = d > 0
}

// setKeepAliveFD applies a rule's KeepAlive to a socket: negative off,
// zero on with the kernel's timers, positive on with that idle time and
// interval. custom says the socket may carry other timers, which zero
// then puts back to the kernel's.
func setKeepAliveFD(fd int, d time.Duration, custom bool) {
	if d < 0 {
		setInt(fd, unix.SOL_SOCKET, unix.SO_KEEPALIVE, 0)
		return
	}
	setInt(fd, unix.SOL_SOCKET, unix.SO_KEEPALIVE, 1)
	idle, intvl := 0, 0
	switch {
	case d > 0:
		secs := int((d + time.Second - 1) / time.Second)
		idle, intvl = secs, secs
	case custom:
		idle, intvl = kernelKeepAlive()
	}
	if idle > 0 {
		setInt(fd, unix.IPPROTO_TCP, unix.TCP_KEEPIDLE, idle)
	}
	if intvl > 0 {
		setInt(fd, unix.IPPROTO_TCP, unix.TCP_KEEPINTVL, intvl)
	}
}

// kernelKeepAlive reads the kernel's keep-alive idle time and interval
// (seconds; 0 when unknown).
var kernelKeepAlive = sync.OnceValues(func() (int, int) {
	read := func(name string) int {
		b, err := os.ReadFile("/proc/sys/net/ipv4/" + name)
		if err != nil {
			return 0
		}
		n, _ := strconv.Atoi(strings.TrimSpace(string(b)))
		return n
	}
	return read("tcp_keepalive_time"), read("tcp_keepalive_intvl")
})

func setInt(fd, level, opt, v int) {
	v32 := int32(v)
	unix.RawSyscall6(unix.SYS_SETSOCKOPT, uintptr(fd), uintptr(level), uintptr(opt), uintptr(unsafe.Pointer(&v32)), 4, 0)
}

func setLinger0(fd int) {
	l := unix.Linger{Onoff: 1}
	unix.RawSyscall6(unix.SYS_SETSOCKOPT, uintptr(fd), unix.SOL_SOCKET, unix.SO_LINGER, uintptr(unsafe.Pointer(&l)), unsafe.Sizeof(l), 0)
}

// resetFD closes a socket with an RST (see reset).
func resetFD(fd int) {
	setLinger0(fd)
	rawClose(fd)
}

func rawClose(fd int) { unix.RawSyscall(unix.SYS_CLOSE, uintptr(fd), 0, 0) }

// accept4 takes a connection as a non-blocking, close-on-exec socket.
func accept4(fd int, rsa *unix.RawSockaddrAny) (int, syscall.Errno) {
	n := uint32(unix.SizeofSockaddrAny)
	r, _, e := unix.RawSyscall6(unix.SYS_ACCEPT4, uintptr(fd), uintptr(unsafe.Pointer(rsa)), uintptr(unsafe.Pointer(&n)), unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC, 0, 0)
	if e != 0 {
		return -1, e
	}
	return int(r), 0
}

// recvRaw reads what the socket has, up to len(b), without waiting.
func recvRaw(fd int, b []byte) (int, syscall.Errno) {
	r, _, e := unix.RawSyscall6(unix.SYS_RECVFROM, uintptr(fd), uintptr(unsafe.Pointer(&b[0])), uintptr(len(b)), unix.MSG_DONTWAIT, 0, 0)
	if e != 0 {
		return 0, e
	}
	return int(r), 0
}

// sendRaw writes what the socket takes of b without waiting.
func sendRaw(fd int, b []byte) (int, syscall.Errno) {
	r, _, e := unix.RawSyscall6(unix.SYS_SENDTO, uintptr(fd), uintptr(unsafe.Pointer(&b[0])), uintptr(len(b)), unix.MSG_DONTWAIT|unix.MSG_NOSIGNAL, 0, 0)
	if e != 0 {
		return 0, e
	}
	return int(r), 0
}
