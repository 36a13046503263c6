package forward

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"strconv"
	"sync/atomic"
	"syscall"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"
)

// On Linux each UDP listener is one event loop in one goroutine, as in
// nginx: an epoll set holds the listener socket, every session's
// connected upstream socket, an eventfd for drain and shutdown and a
// timerfd for expiry. A request/response exchange then costs the kernel's
// wake-ups of one thread and no hand-offs between goroutines through the
// runtime's poller. Only an idle loop waits there, the epoll set being one
// descriptor more to it (see waitIdle).

// udpBatch is how many datagrams one recvmmsg call may return, on a busy
// socket (see readMode): fewer calls under load.
const udpBatch = 8

// udpListener relays datagrams: one session per client address, each with
// its own connected upstream socket, so replies go back to the right client
// and the target sees one stable source port per client. Everything but mu
// and the fields it guards belongs to the loop goroutine.
type udpListener struct {
	s     *Server
	rs    atomic.Pointer[ruleState]
	local net.Addr
	fd    int // the listener socket, non-blocking
	loopCtl

	sessions   map[netip.AddrPort]*udpSession
	byFD       []*udpSession
	nextSweep  int64 // loop clock nanoseconds; check idle sessions from then
	nextFlush  int64 // loop clock: when the sessions' bytes are next added to the rule's counters (see bytesEvery)
	lastActive int64 // loop clock: when a datagram was last relayed (see heartbeat)
	events     [64]unix.EpollEvent
	bufs       []byte
	iovs       [udpBatch]unix.Iovec
	names      [udpBatch]unix.RawSockaddrInet6
	msgs       [udpBatch]unix.Mmsghdr
	upIovs     [udpBatch]unix.Iovec // datagrams of one client on their way to its target
	upMsgs     [udpBatch]unix.Mmsghdr
	replies    replyBatch
	turn       uint64        // turns of the loop so far
	reads      readMode      // how the listener socket is read
	last       *udpSession   // the session of the last datagram from a client
	gone       chan struct{} // closed with the socket
}

// readMode picks how a socket is read: one datagram (recvfrom) or a batch
// (recvmmsg). A batch read that finds one datagram costs the kernel a
// second look at an empty queue and the headers of a batch: 1-2% of a
// relayed exchange (bench/RESULTS.md, 2026-12-07). A socket read in two
// turns of the loop in a row, or whose last batch held more than one
// datagram, is busy and read in batches; others one datagram at a time
// (what is left is reported again by the level-triggered epoll set).
type readMode struct {
	turn uint64 // the loop turn of the last read
	many bool   // the last batch held more than one datagram
}

// batch reports whether to read a batch in this turn of the loop.
func (m *readMode) batch(turn uint64) bool {
	b := m.many || m.turn+1 == turn
	m.turn = turn
	return b
}

// replyBatch holds the replies to clients read in one turn of the loop,
// from any number of sessions, so that they leave the listener socket in
// one sendmmsg call: with many clients at once, one system call for what
// took one each.
type replyBatch struct {
	n    int
	sess [udpReplies]*udpSession
	iovs [udpReplies]unix.Iovec
	msgs [udpReplies]unix.Mmsghdr // each points at its iovec (see setup)
	buf  []byte                   // the replies' bytes; never grown past its capacity, so the iovecs stay valid
}

const (
	udpReplies    = 32        // replies held at most
	udpReplyBytes = 256 << 10 // bytes held at most (a datagram is at most 64 KiB)
)

type udpSession struct {
	rs       *ruleState // the rule version it started under
	client   netip.AddrPort
	src      netip.Addr // client address, unmapped, for limits and logs
	name     unix.RawSockaddrInet6
	nameLen  uint32
	fd       int // connected upstream socket
	target   string
	start    time.Time
	idle     int64 // nanoseconds
	last     int64 // loop clock of the last datagram either way
	toTarget int64
	toClient int64
	reads    readMode // how fd is read
	counted  [2]int64 // bytes each way already added to the rule's counters
	tgt      *target
}

func (s *Server) openUDP(ctx context.Context, r *Rule) (listener, error) {
	// The standard library resolves and binds (an empty host is dual
	// stack); the loop then works on its own copy of the descriptor, out
	// of the runtime's poller.
	var lc net.ListenConfig
	pc, err := lc.ListenPacket(ctx, "udp", r.Listen)
	if err != nil {
		return nil, err
	}
	local := pc.LocalAddr()
	fd, err := dupSocket(pc.(*net.UDPConn))
	pc.Close()
	if err != nil {
		return nil, err
	}
	l := &udpListener{s: s, local: local, fd: fd, sessions: map[netip.AddrPort]*udpSession{}, gone: make(chan struct{})}
	err = l.open(func(epfd int) error {
		return unix.EpollCtl(epfd, unix.EPOLL_CTL_ADD, fd, &unix.EpollEvent{Events: unix.EPOLLIN, Fd: int32(fd)})
	})
	if err != nil {
		unix.Close(fd)
		return nil, err
	}
	// A listener starts idle, in the runtime's poller (see waitIdle): its
	// epoll set goes there now, with its other descriptors, not later from
	// the loop's goroutine (should the runtime refuse it, the loop waits
	// in epoll_wait).
	l.openPoll()
	s.addLoop(l)
	return l, nil
}

// dupSocket returns a non-blocking, close-on-exec duplicate of c's socket.
func dupSocket(c syscall.Conn) (int, error) {
	raw, err := c.SyscallConn()
	if err != nil {
		return -1, err
	}
	fd := -1
	var derr error
	if err := raw.Control(func(f uintptr) {
		fd, derr = unix.FcntlInt(f, unix.F_DUPFD_CLOEXEC, 0)
	}); err != nil {
		return -1, err
	}
	if derr != nil {
		return -1, fmt.Errorf("dup socket: %w", derr)
	}
	if err := unix.SetNonblock(fd, true); err != nil {
		unix.Close(fd)
		return -1, fmt.Errorf("dup socket: %w", err)
	}
	return fd, nil
}

func (l *udpListener) state() *ruleState     { return l.rs.Load() }
func (l *udpListener) setState(r *ruleState) { l.rs.Store(r) }
func (l *udpListener) addr() net.Addr        { return l.local }

// drain stops new sessions; the socket stays open for the live ones and
// closes when the last one expires (before drain returns if there are
// none).
func (l *udpListener) drain() { l.loopCtl.drain(l.closeLocked) }

// closeLocked closes the sockets; l.mu is held.
func (l *udpListener) closeLocked() {
	unix.Close(l.fd)
	l.closeCtlLocked()
	l.s.removeLoop(l)
	close(l.gone)
}

// done is closed once the listener's socket is.
func (l *udpListener) done() <-chan struct{} { return l.gone }

func (l *udpListener) serve() {
	if !l.begin() {
		return
	}
	// Locked to its thread only while active (see threadPin).
	defer l.pin.set(false)
	l.nextSweep = 1<<63 - 1
	// Idle until the first datagram: a listener nobody uses waits in the
	// runtime's poller, holding no P (see waitIdle).
	l.lastActive = -int64(activeFor)
	l.setup()
	l.loop()
}

// setup makes the loop's buffers and points each message header at its
// iovec, once.
func (l *udpListener) setup() {
	l.bufs = make([]byte, udpBatch*maxDatagram)
	for i := range l.msgs {
		l.iovs[i].Base = &l.bufs[i*maxDatagram]
		l.iovs[i].SetLen(maxDatagram)
		l.msgs[i].Hdr.Iov = &l.iovs[i]
		l.msgs[i].Hdr.SetIovlen(1)
		l.upMsgs[i].Hdr.Iov = &l.upIovs[i]
		l.upMsgs[i].Hdr.SetIovlen(1)
	}
	l.replies.setup()
}

func (r *replyBatch) setup() {
	r.buf = make([]byte, 0, udpReplyBytes)
	for i := range r.msgs {
		r.msgs[i].Hdr.Iov = &r.iovs[i]
		r.msgs[i].Hdr.SetIovlen(1)
	}
}

// maxDatagram is the largest UDP payload (IPv4, and IPv6 without jumbograms).
const maxDatagram = 64 << 10

func (l *udpListener) loop() {
	var acks []chan struct{}
	draining := false
	now := l.now()
	for {
		// The scheduler's turn comes after the datagrams of the last turn
		// went out, never between a datagram and its relaying: a yield
		// may wake another thread and move the loop to it.
		l.pass(now)
		hb := l.heartbeat(now, l.lastActive)
		next := min(l.nextSweep, hb)
		if len(l.sessions) > 0 {
			next = min(next, l.nextFlush)
		}
		l.moveTimer(next, now)
		var n int
		var err error
		l.pin.set(hb != noTimer)
		if hb == noTimer {
			n, err = l.waitIdle(l.events[:])
		} else {
			n, err = unix.EpollWait(l.epfd, l.events[:], -1)
		}
		if err != nil && err != unix.EINTR {
			// Only a bug gets here (a bad descriptor): end cleanly
			// rather than spin.
			l.s.logger().Error("udp epoll", "addr", l.local.String(), "err", err)
			l.endAll("error")
			l.exit(acks, l.closeLocked)
			return
		}
		now = l.now()
		l.turn++
		relayed := l.lastActive
		for i := range max(n, 0) {
			switch fd := int(l.events[i].Fd); fd {
			case l.timer:
				l.timerFired()
			case l.wake:
				var stopping bool
				draining, stopping, acks = l.requests(acks)
				if stopping {
					l.replies.flush(l.fd)
					l.endAll("shutdown")
				}
			case l.fd:
				l.fromClients(now, draining)
				l.lastActive = now
			default:
				if fd < len(l.byFD) && l.byFD[fd] != nil {
					l.fromTarget(l.byFD[fd], now)
					l.lastActive = now
				}
			}
		}
		if l.lastActive != relayed {
			l.worked++
		}
		// The replies read in this turn go out before any session ends.
		l.replies.flush(l.fd)
		if now >= l.nextSweep {
			l.sweep(now)
		}
		if now >= l.nextFlush {
			for _, sess := range l.sessions {
				sess.countBytes()
			}
			l.nextFlush = now + int64(bytesEvery)
		}
		if draining && len(l.sessions) == 0 {
			l.exit(acks, l.closeLocked)
			return
		}
		// Drain returns once the loop makes no more sessions.
		acks = answer(acks)
	}
}

// recvmmsg reads up to len(msgs) datagrams without waiting.
func recvmmsg(fd int, msgs []unix.Mmsghdr) (int, error) {
	n, _, e := unix.RawSyscall6(unix.SYS_RECVMMSG, uintptr(fd), uintptr(unsafe.Pointer(&msgs[0])), uintptr(len(msgs)), unix.MSG_DONTWAIT, 0, 0)
	if e != 0 {
		return 0, e
	}
	return int(n), nil
}

// read reads what waits on fd into l.msgs, a batch or one datagram as m
// says, and records what it got in m.
func (l *udpListener) read(fd int, m *readMode, names bool) (int, error) {
	k := 1
	if m.batch(l.turn) {
		k = len(l.msgs)
	}
	for i := range k {
		h := &l.msgs[i].Hdr
		if names {
			h.Name = (*byte)(unsafe.Pointer(&l.names[i]))
			h.Namelen = unix.SizeofSockaddrInet6
		} else {
			h.Name, h.Namelen = nil, 0
		}
	}
	var n int
	var err error
	if k == 1 {
		n, err = recvOne(fd, &l.msgs[0])
	} else {
		n, err = recvmmsg(fd, l.msgs[:])
	}
	m.many = n > 1
	return n, err
}

// recvOne reads one datagram without waiting, into msg's buffer and name,
// setting their lengths as recvmmsg would.
func recvOne(fd int, msg *unix.Mmsghdr) (int, error) {
	h := &msg.Hdr
	var namelen *uint32
	if h.Name != nil {
		namelen = &h.Namelen
	}
	n, _, e := unix.RawSyscall6(unix.SYS_RECVFROM, uintptr(fd), uintptr(unsafe.Pointer(h.Iov.Base)), uintptr(h.Iov.Len), unix.MSG_DONTWAIT, uintptr(unsafe.Pointer(h.Name)), uintptr(unsafe.Pointer(namelen)))
	if e != 0 {
		return 0, e
	}
	msg.Len = uint32(n)
	return 1, nil
}

// fromClients relays the datagrams waiting on the listener socket. A few
// batches at most: the socket is level-triggered, so what is left is
// reported again after the sessions' replies had their turn.
func (l *udpListener) fromClients(now int64, draining bool) {
	for range 4 {
		n, err := l.read(l.fd, &l.reads, true)
		if err != nil {
			if err != unix.EAGAIN && err != unix.EINTR {
				l.s.logger().Debug("udp read", "addr", l.local.String(), "err", err)
			}
			return
		}
		// Consecutive datagrams of one client go on in one sendmmsg.
		var run *udpSession
		k := 0
		for i := range n {
			from, ok := sockaddrPort(&l.names[i], l.msgs[i].Hdr.Namelen)
			if !ok {
				continue
			}
			// A client's datagrams tend to come one after another: its
			// session is tried before the map.
			sess := l.last
			if sess == nil || sess.client != from {
				sess = l.sessions[from]
			}
			if sess == nil {
				if draining {
					continue
				}
				if sess = l.newSession(from, &l.names[i], l.msgs[i].Hdr.Namelen, now); sess == nil {
					continue
				}
			}
			l.last = sess
			if sess != run {
				l.toTarget(run, k)
				run, k = sess, 0
			}
			sess.last = now
			l.upIovs[k].Base = &l.bufs[i*maxDatagram]
			l.upIovs[k].SetLen(int(l.msgs[i].Len))
			k++
		}
		l.toTarget(run, k)
		if n < len(l.msgs) {
			return
		}
	}
}

// toTarget sends the first k datagrams in l.upIovs on sess's socket.
func (l *udpListener) toTarget(sess *udpSession, k int) {
	switch {
	case sess == nil || k == 0:
	case k == 1:
		b := unsafe.Slice(l.upIovs[0].Base, l.upIovs[0].Len)
		err := send(sess.fd, b)
		if err == unix.ECONNREFUSED {
			// An ICMP error left over from an earlier datagram; it is
			// cleared now, so this one can go.
			err = send(sess.fd, b)
		}
		if err == nil {
			sess.toTarget += int64(len(b))
		}
	default:
		sendmmsgAll(sess.fd, l.upMsgs[:k], func(i int) { sess.toTarget += int64(l.upIovs[i].Len) })
	}
}

// sendmmsgAll sends msgs on fd, going on past a datagram that fails (as
// sendto would fail it alone), and calls sent with the index of each one
// that went. A full socket buffer drops the rest, as it would drop them
// one by one; an ICMP error left from earlier (ECONNREFUSED) is cleared by
// its report, so that datagram is tried again.
func sendmmsgAll(fd int, msgs []unix.Mmsghdr, sent func(i int)) {
	retried := -1
	for i := 0; i < len(msgs); {
		k, _, e := unix.RawSyscall6(unix.SYS_SENDMMSG, uintptr(fd), uintptr(unsafe.Pointer(&msgs[i])), uintptr(len(msgs)-i), unix.MSG_DONTWAIT, 0, 0)
		switch {
		case e == unix.EINTR:
		case e == unix.EAGAIN:
			return
		case e == unix.ECONNREFUSED && retried != i:
			retried = i
		case e != 0:
			i++ // sendmmsg reports the first failure; that datagram is lost
		default:
			for j := i; j < i+int(k); j++ {
				sent(j)
			}
			i += int(k)
		}
	}
}

// fromTarget relays a session's replies to its client.
func (l *udpListener) fromTarget(sess *udpSession, now int64) {
	for range 4 {
		n, err := l.read(sess.fd, &sess.reads, false)
		if err == unix.ECONNREFUSED {
			if l.failover(sess, err) {
				return
			}
			continue // the target's port is closed for now; the client may retry
		}
		if err != nil {
			return
		}
		sess.last = now
		for i := range n {
			l.replies.add(l.fd, sess, l.bufs[i*maxDatagram:i*maxDatagram+int(l.msgs[i].Len)])
		}
		if n < len(l.msgs) {
			return
		}
	}
}

// add holds a reply to sess's client, sending what is held first if it
// is full. sess must outlive the next flush.
func (r *replyBatch) add(fd int, sess *udpSession, b []byte) {
	if r.n == udpReplies || len(r.buf)+len(b) > cap(r.buf) {
		r.flush(fd)
	}
	off := len(r.buf)
	r.buf = append(r.buf, b...)
	i := r.n
	r.n++
	r.sess[i] = sess
	if len(b) > 0 {
		r.iovs[i].Base = &r.buf[off]
	} else {
		r.iovs[i].Base = nil
	}
	r.iovs[i].SetLen(len(b))
	r.msgs[i].Hdr.Name = (*byte)(unsafe.Pointer(&sess.name))
	r.msgs[i].Hdr.Namelen = sess.nameLen
}

// flush sends the held replies on the listener socket fd: one sendto for
// one reply, sendmmsg for more. As with any UDP send, a reply the socket
// cannot take (its buffer full) is dropped; the bytes counted are those
// sent.
func (r *replyBatch) flush(fd int) {
	switch r.n {
	case 0:
		return
	case 1:
		sess := r.sess[0]
		if sendto(fd, r.buf, &sess.name, sess.nameLen) == nil {
			sess.toClient += int64(len(r.buf))
		}
	default:
		sendmmsgAll(fd, r.msgs[:r.n], func(i int) { r.sess[i].toClient += int64(r.iovs[i].Len) })
	}
	clear(r.sess[:r.n])
	r.n = 0
	r.buf = r.buf[:0]
}

// send writes a datagram on a connected socket.
func send(fd int, b []byte) error {
	var p unsafe.Pointer
	if len(b) > 0 {
		p = unsafe.Pointer(&b[0])
	}
	_, _, e := unix.RawSyscall6(unix.SYS_SENDTO, uintptr(fd), uintptr(p), uintptr(len(b)), unix.MSG_DONTWAIT, 0, 0)
	if e != 0 {
		return e
	}
	return nil
}

// sendto sends without building a unix.Sockaddr per datagram.
func sendto(fd int, b []byte, name *unix.RawSockaddrInet6, nameLen uint32) error {
	var p unsafe.Pointer
	if len(b) > 0 {
		p = unsafe.Pointer(&b[0])
	}
	_, _, e := unix.RawSyscall6(unix.SYS_SENDTO, uintptr(fd), uintptr(p), uintptr(len(b)), unix.MSG_DONTWAIT, uintptr(unsafe.Pointer(name)), uintptr(nameLen))
	if e != 0 {
		return e
	}
	return nil
}

// sockaddrPort reads a received source address without allocating.
func sockaddrPort(rsa *unix.RawSockaddrInet6, n uint32) (netip.AddrPort, bool) {
	switch {
	case rsa.Family == unix.AF_INET && n >= unix.SizeofSockaddrInet4:
		sa := (*unix.RawSockaddrInet4)(unsafe.Pointer(rsa))
		return netip.AddrPortFrom(netip.AddrFrom4(sa.Addr), ntohs(sa.Port)), true
	case rsa.Family == unix.AF_INET6 && n >= unix.SizeofSockaddrInet6:
		a := netip.AddrFrom16(rsa.Addr)
		if rsa.Scope_id != 0 {
			// Link-local clients on different links are different
			// clients (this allocates, for them only).
			a = a.WithZone(strconv.FormatUint(uint64(rsa.Scope_id), 10))
		}
		return netip.AddrPortFrom(a, ntohs(rsa.Port)), true
	}
	return netip.AddrPort{}, false
}

func ntohs(p uint16) uint16 {
	b := (*[2]byte)(unsafe.Pointer(&p))
	return uint16(b[0])<<8 | uint16(b[1])
}

// newSession opens a session for a new client, or returns nil if the client
// is refused or no target can be reached.
func (l *udpListener) newSession(from netip.AddrPort, name *unix.RawSockaddrInet6, nameLen uint32, now int64) *udpSession {
	rs := l.rs.Load()
	src := from.Addr().Unmap()
	if !rs.admitUDP(src) {
		return nil
	}
	fd := -1
	tgt, err := rs.pool.dialEach(src, func(ap netip.AddrPort) (bool, error) {
		var err error
		fd, err = dialUDP(ap)
		return false, err
	})
	if err != nil {
		rs.stats.release(src, rs.MaxConnsPerSource > 0)
		rs.stats.dialErrs.Add(1)
		l.s.logger().Warn("udp session", "rule", rs.name, "client", unmapPort(from).String(), "reason", "dial: "+err.Error())
		return nil
	}
	ev := unix.EpollEvent{Events: unix.EPOLLIN, Fd: int32(fd)}
	if err := unix.EpollCtl(l.epfd, unix.EPOLL_CTL_ADD, fd, &ev); err != nil {
		unix.Close(fd)
		rs.stats.release(src, rs.MaxConnsPerSource > 0)
		l.s.logger().Error("udp session", "rule", rs.name, "client", unmapPort(from).String(), "err", fmt.Errorf("epoll add: %w", err))
		return nil
	}
	sess := &udpSession{rs: rs, client: from, src: src, name: *name, nameLen: nameLen, fd: fd, target: tgt.addr, tgt: tgt,
		start: time.Now(), idle: int64(rs.udpIdle()), last: now}
	// Drain waits for the loop before Shutdown waits for the group, so
	// this Add never races with that Wait.
	l.s.wg.Add(1)
	l.sessions[from] = sess
	for fd >= len(l.byFD) {
		l.byFD = append(l.byFD, nil)
	}
	l.byFD[fd] = sess
	l.nextSweep = min(l.nextSweep, now+sess.idle)
	rs.stats.total.Add(1)
	tgt.stats.active.Add(1)
	return sess
}

// dialUDP opens a non-blocking UDP socket connected to ap.
func dialUDP(ap netip.AddrPort) (int, error) {
	ip := ap.Addr().Unmap()
	var sa unix.Sockaddr
	family := unix.AF_INET
	if ip.Is4() {
		sa = &unix.SockaddrInet4{Port: int(ap.Port()), Addr: ip.As4()}
	} else {
		family = unix.AF_INET6
		sa = &unix.SockaddrInet6{Port: int(ap.Port()), Addr: ip.As16()}
	}
	fd, err := unix.Socket(family, unix.SOCK_DGRAM|unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return -1, fmt.Errorf("socket: %w", err)
	}
	if err := unix.Connect(fd, sa); err != nil {
		unix.Close(fd)
		return -1, fmt.Errorf("dial udp %s: %w", ap, err)
	}
	return fd, nil
}

// sweep ends the sessions idle for their rule's idle time and sets when
// to look again.
func (l *udpListener) sweep(now int64) {
	next := int64(1<<63 - 1)
	slack := int64(time.Second)
	for _, sess := range l.sessions {
		if dl := sess.last + sess.idle; dl <= now {
			l.end(sess, "idle")
		} else {
			next = min(next, dl)
			slack = min(slack, sess.idle/10)
		}
	}
	// Not more often than a tenth of the shortest idle time (at least
	// 5 ms): sessions started over time must not cost a sweep each.
	l.nextSweep = max(next, now+max(slack, int64(5*time.Millisecond)))
}

// countBytes adds what the session moved since the last time to its
// rule's counters.
func (sess *udpSession) countBytes() {
	st := sess.rs.stats
	st.toTarget.Add(uint64(sess.toTarget - sess.counted[0]))
	st.toClient.Add(uint64(sess.toClient - sess.counted[1]))
	sess.counted = [2]int64{sess.toTarget, sess.toClient}
}

// failover ends a session whose target refused a datagram (ICMP port
// unreachable) when the rule has other targets: the refusal counts as a
// dial failure (so the target leaves the rotation, see Rule.MaxFails) and
// the client's next datagram opens a session with another target.
func (l *udpListener) failover(sess *udpSession, err error) bool {
	p := sess.rs.pool
	p.dialed(sess.tgt, err)
	if len(p.targets) < 2 {
		return false
	}
	l.end(sess, "target refused: failover")
	return true
}

func (l *udpListener) endAll(reason string) {
	for _, sess := range l.sessions {
		l.end(sess, reason)
	}
}

func (l *udpListener) end(sess *udpSession, reason string) {
	if l.last == sess {
		l.last = nil
	}
	delete(l.sessions, sess.client)
	l.byFD[sess.fd] = nil
	unix.Close(sess.fd) // also leaves the epoll set
	sess.countBytes()
	sess.tgt.stats.active.Add(-1)
	l.s.endUDP(sess.rs, sess.src, sess.client, sess.target, sess.toTarget, sess.toClient, sess.start, reason)
	l.s.wg.Done()
}
