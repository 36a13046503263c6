package scan

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"sync"
	"time"

	"golang.org/x/sys/unix"

	"portolan/internal/portspec"
	"portolan/internal/udpprobe"
)

// udpSockets is how many sockets a UDP session opens per address family:
// each has its own receive buffer, which holds the replies and the queued
// ICMP errors until the reader gets to them.
const udpSockets = 4

// udpRcvBuf is the receive buffer asked for each socket (capped at
// net.core.rmem_max without CAP_NET_ADMIN).
const udpRcvBuf = 4 << 20

// udpSkbCost is what one queued error or reply is assumed to take of a
// receive buffer (the kernel charges an skb's truesize, a few hundred
// bytes to a few kilobytes): the in-flight limit keeps every answer of a
// full window within the buffers.
const udpSkbCost = 2048

// Pacing of hosts that rate-limit their ICMP errors (see UDPProber).
const (
	paceMinWait  = 5 * time.Millisecond   // between batches, at least
	paceMaxWait  = 4 * time.Second        // and at most (Linux refills once a second by default)
	paceInterval = 250 * time.Millisecond // the first guess at a host's refill interval (Linux: 1 s, less for some IPv6 routes), learned per host
	paceMaxBatch = 8                      // probes in one batch: sent within a fraction of a millisecond
	// proofWindow bounds the time the host may have taken from a silent
	// probe to the errors that prove it: its bucket must not have
	// refilled in between (Linux's per-destination limit refills one
	// token per net.ipv4.icmp_ratelimit, 1 s; its global one, once every
	// 20 ms at most). The bound is measured from before the probe's send
	// to the error's arrival (a kernel timestamp), less the host's
	// smallest round trip, so a scanner or target that was descheduled
	// in between makes no false proof, only a slower one.
	proofWindow = 500 * time.Microsecond
	// paceGiveUp ends the pacing of a host that has drawn no error for
	// this long although batches and canaries went out: its errors
	// stopped (a firewall changed, the host went away); silence then
	// counts as silence.
	paceGiveUp = 10 * time.Second
	// paceStall gives up pacing a host whose pacing has settled no probe
	// for this long (errors keep coming, proofs never): a bound on the
	// scan, whatever the host does.
	paceStall = 30 * time.Second
)

// Open makes the session's sockets in the calling thread's network
// namespace and starts the goroutine that reads them.
func (u UDPProber) Open(ctx context.Context, report func(Reply)) (Session, error) {
	epfd, wake, err := newEpollWake()
	if err != nil {
		return nil, err
	}
	s := &udpSession{
		u: u, ctx: ctx, report: report, epfd: epfd, wake: wake,
		byDst: make(map[netip.AddrPort]*udpProbe),
		byID:  make(map[uint64]*udpProbe),
		hosts: make(map[netip.Addr]*udpHost),
		erred: make(map[netip.Addr]uint16),
		done:  make(chan struct{}),
	}
	if err := checkLocal(u.Local, unix.SOCK_DGRAM); err != nil {
		s.closeFDs()
		return nil, fmt.Errorf("udp scan: %w", err)
	}
	n := udpSockets
	if u.Local.Port != 0 {
		n = 1 // one socket per family holds the port; replies to it come to it
	}
	for i, fam := range []int{unix.AF_INET, unix.AF_INET6} {
		if a := u.Local.Addr; a.IsValid() && a.Unmap().Is4() != (fam == unix.AF_INET) {
			s.famErr[i] = fmt.Errorf("source address %s: another address family", a)
			continue
		}
		for range n {
			fd, cap, err := udpSocket(fam, u.Local)
			if err != nil {
				s.famErr[i] = err
				break
			}
			s.socks[i] = append(s.socks[i], fd)
			s.capacity += cap
			ev := unix.EpollEvent{Events: unix.EPOLLIN, Fd: int32(fd)}
			if err := unix.EpollCtl(epfd, unix.EPOLL_CTL_ADD, fd, &ev); err != nil {
				s.closeFDs()
				return nil, fmt.Errorf("epoll add: %w", err)
			}
		}
	}
	if len(s.socks[0]) == 0 && len(s.socks[1]) == 0 {
		s.closeFDs()
		return nil, fmt.Errorf("udp socket: %w", errors.Join(s.famErr[0], s.famErr[1]))
	}
	go s.read()
	return s, nil
}

// udpSocket opens a non-blocking UDP socket on an ephemeral port (or l's)
// that receives ICMP errors on its error queue, and returns how many
// answers its receive buffer holds.
func udpSocket(fam int, l Local) (int, int, error) {
	fd, err := unix.Socket(fam, unix.SOCK_DGRAM|unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC, unix.IPPROTO_UDP)
	if err != nil {
		return -1, 0, err
	}
	var local unix.Sockaddr = &unix.SockaddrInet4{}
	level, opt := unix.SOL_IP, unix.IP_RECVERR
	if fam == unix.AF_INET6 {
		local = &unix.SockaddrInet6{}
		level, opt = unix.SOL_IPV6, unix.IPV6_RECVERR
		if err := unix.SetsockoptInt(fd, unix.SOL_IPV6, unix.IPV6_V6ONLY, 1); err != nil {
			unix.Close(fd)
			return -1, 0, fmt.Errorf("IPV6_V6ONLY: %w", err)
		}
	}
	if err := unix.SetsockoptInt(fd, level, opt, 1); err != nil {
		unix.Close(fd)
		return -1, 0, fmt.Errorf("recverr: %w", err)
	}
	// Errors carry the time they arrived: the proof of a silence needs it.
	if err := unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_TIMESTAMPNS, 1); err != nil {
		unix.Close(fd)
		return -1, 0, fmt.Errorf("SO_TIMESTAMPNS: %w", err)
	}
	// SO_RCVBUFFORCE passes rmem_max with CAP_NET_ADMIN; else the cap.
	if unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_RCVBUFFORCE, udpRcvBuf) != nil {
		unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_RCVBUF, udpRcvBuf)
	}
	if !l.IsZero() {
		if err := bindLocal(fd, fam, l, l.Addr.Unmap()); err != nil {
			unix.Close(fd)
			return -1, 0, err
		}
	} else if err := unix.Bind(fd, local); err != nil {
		unix.Close(fd)
		return -1, 0, fmt.Errorf("bind: %w", err)
	}
	n, err := unix.GetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_RCVBUF)
	if err != nil {
		n = 208 << 10
	}
	return fd, max(16, n/udpSkbCost), nil
}

// udpSession is a UDPProber session. Send and Cancel run on the
// scheduler's goroutine, read on its own; mu guards the maps and hosts.
type udpSession struct {
	u        UDPProber
	ctx      context.Context
	report   func(Reply)
	epfd     int
	wake     int
	socks    [2][]int // AF_INET, AF_INET6
	famErr   [2]error // why a family has no sockets
	capacity int
	next     int // round robin over a family's sockets

	mu     sync.Mutex
	byDst  map[netip.AddrPort]*udpProbe
	byID   map[uint64]*udpProbe
	hosts  map[netip.Addr]*udpHost
	erred  map[netip.Addr]uint16 // hosts forgotten after they sent errors: a port that drew one
	closed bool
	done   chan struct{}

	tcp    Session // host discovery's TCP probes; opened on the first
	tcpErr error
}

// udpProbe is a probe in flight or held back, or a canary (not reported).
type udpProbe struct {
	id     uint64
	dst    netip.AddrPort
	host   *udpHost
	seq    uint64    // the host's send counter when it went out; 0: held back
	sent   time.Time // when it went out
	queued time.Time // when the scanner sent it to the session
	canary bool
	fd     int // a canary's socket: only an error on it is the canary's
	proofs int // errors that prove its silence (see udpHost)
}

// udpHost is what the session knows about one destination's ICMP errors,
// and its pacing.
//
// A probe's silence is proven when two probes sent to the host after it,
// within proofWindow, drew ICMP errors: the host's token bucket then held
// at least two tokens less what refilled in that fraction of a
// millisecond, so more than one, when it saw our probe, and would have
// answered it had the port been closed. (One later error is not enough:
// the bucket may have crossed from empty to one token in between.) An
// unproven silence is no verdict: the probe goes again, paced.
//
// A paced host gets probes in batches that the session sends itself,
// back to back, followed by two canaries to a port known to draw errors:
// if both come back, every silent probe of the batch is proven. The wait
// before the next batch adapts to the host's refill rate: it shrinks
// after a batch that proved its silent probes and grows after one that
// found the bucket empty.
type udpHost struct {
	addr  netip.Addr
	seq   uint64 // probes and canaries sent to it
	errs  int    // ICMP errors seen
	errAt time.Time
	sent  [64]*udpProbe // the latest probes sent, a ring: the ones an error may prove
	nsent int
	refs  int    // probes in byID
	bad   uint16 // a port that draws ICMP errors: the canaries' target
	rtt   time.Duration
	toEst time.Duration // the scanner's timeout for this host, as seen in Cancel

	paced    bool
	gaveUp   bool
	pacedAt  time.Time
	held     []*udpProbe
	quiet    map[netip.AddrPort]bool // ports whose probes went unproven: likely silent
	progress time.Time               // when the pacing last settled a probe
	minRTT   time.Duration

	out       bool // a batch is out, its canaries not settled
	batchLo   uint64
	batchHi   uint64 // seqs of the batch's probes: (batchLo, batchHi]
	batchErr  bool   // a probe of the batch drew an error
	canary    *udpProbe
	canaryGot int
	batches   int
	size      int
	wait      time.Duration // the next wait after a batch that found no token
	interval  time.Duration // the host's refill interval, as estimated
	emptyAt   time.Time     // when a batch last emptied the bucket
	need      int           // tokens the next batch needs: 2 to prove silent probes
	batchAt   time.Time
	nextBatch time.Time
	timer     *time.Timer
}

func (s *udpSession) InFlightLimit() int { return max(64, s.capacity) }

// udpMaxHosts bounds the hosts a session keeps; idle ones beyond it are
// forgotten, all but whether they sent errors, so memory stays flat
// however many addresses a scan has.
var udpMaxHosts = 4096 // a variable for tests

// newHost adds the state for a; mu is held.
func (s *udpSession) newHost(a netip.Addr) *udpHost {
	if len(s.hosts) >= udpMaxHosts {
		for k, h := range s.hosts {
			if h.refs > 0 || h.out || len(h.held) > 0 {
				continue
			}
			if h.errs > 0 {
				s.erred[k] = h.bad // its silences still need proof
			}
			if h.timer != nil {
				h.timer.Stop()
			}
			delete(s.hosts, k)
			if len(s.hosts) < udpMaxHosts*3/4 {
				break
			}
		}
	}
	h := &udpHost{addr: a, size: 1, wait: paceMinWait, interval: paceInterval}
	if bad, ok := s.erred[a]; ok {
		h.errs, h.bad = 1, bad
		delete(s.erred, a)
	}
	s.hosts[a] = h
	return h
}

func (s *udpSession) Send(id uint64, dst netip.AddrPort, proto portspec.Proto) error {
	if proto == portspec.TCP {
		return s.sendTCP(id, dst)
	}
	if proto != portspec.UDP {
		return fmt.Errorf("udp probe over %s: %w", proto, ErrUnsupported)
	}
	dst = netip.AddrPortFrom(dst.Addr().Unmap(), dst.Port())
	fam := famOf(dst.Addr())
	if len(s.socks[fam]) == 0 {
		return fmt.Errorf("udp probe %s: %w", dst, s.famErr[fam])
	}
	now := time.Now()
	s.mu.Lock()
	h := s.hosts[dst.Addr()]
	if h == nil {
		h = s.newHost(dst.Addr())
	}
	if old := s.byDst[dst]; old != nil && old.canary {
		s.forget(old) // a canary to a port that is probed again: the probe wins
	}
	p := &udpProbe{id: id, dst: dst, host: h, queued: now}
	s.byID[id] = p
	h.refs++
	if h.paced {
		h.held = append(h.held, p)
		if !h.out {
			// Let the scanner's burst gather, then send a batch.
			s.arm(h, max(h.nextBatch.Sub(now), 200*time.Microsecond))
		}
		s.mu.Unlock()
		return nil
	}
	s.byDst[dst] = p
	h.seq++
	p.seq, p.sent = h.seq, now
	h.sentOne(p)
	s.mu.Unlock()

	err := s.write(s.pick(fam), dst, s.u.payloads(dst.Port()))
	if err == nil {
		return nil
	}
	s.mu.Lock()
	s.forget(p)
	s.mu.Unlock()
	var errno unix.Errno
	if errors.As(err, &errno) {
		st, reason, busy := verdict(errno)
		if busy {
			return sendErr("sendto", errno)
		}
		if st != Unknown {
			s.report(Reply{ID: id, State: st, Reason: reason, RTT: time.Since(now)})
			return nil
		}
	}
	return fmt.Errorf("udp probe %s: %w", dst, err)
}

func famOf(a netip.Addr) int {
	if a.Is4() {
		return 0
	}
	return 1
}

// pick returns the next socket of a family, round robin. Only Send calls it.
func (s *udpSession) pick(fam int) int {
	socks := s.socks[fam]
	s.next++
	return socks[s.next%len(socks)]
}

// proven reports whether p's silence is proven (see udpHost); mu is held.
func (h *udpHost) proven(p *udpProbe) bool {
	// A host that sends no errors: silence is all there is.
	return h.errs == 0 || h.gaveUp || p.proofs >= 2
}

// sentOne notes p as sent; mu is held.
func (h *udpHost) sentOne(p *udpProbe) {
	h.sent[h.nsent%len(h.sent)] = p
	h.nsent++
}

// recordErr notes an error drawn by the probe sent at seq, at sent, that
// arrived at rx, and counts it as proof for the probes sent before it
// within proofWindow of host time; mu is held.
func (h *udpHost) recordErr(seq uint64, sent, rx time.Time) {
	h.errs++
	h.errAt = rx
	if d := rx.Sub(sent); d >= 0 && (h.minRTT == 0 || d < h.minRTT) {
		h.minRTT = d
	}
	for _, q := range h.sent {
		if q != nil && q.seq < seq && rx.Sub(q.sent)-h.minRTT <= proofWindow {
			q.proofs++
		}
	}
}

// canaryWait is how long to wait for a canary's error.
func canaryWait(h *udpHost) time.Duration {
	return min(max(4*h.rtt+time.Millisecond, time.Millisecond), 500*time.Millisecond)
}

// arm sets h's timer to fire in d; mu is held.
func (s *udpSession) arm(h *udpHost, d time.Duration) {
	if h.timer == nil {
		h.timer = time.AfterFunc(d, func() { s.tick(h) })
		return
	}
	h.timer.Reset(d)
}

// tick moves h's pacing on: it settles a batch whose canaries are late,
// and sends the next batch when its time has come.
func (s *udpSession) tick(h *udpHost) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return
	}
	now := time.Now()
	if h.out {
		if d := h.canary.sent.Add(canaryWait(h)).Sub(now); d > 0 {
			s.arm(h, d)
			return
		}
		s.settle(h, now)
	}
	if len(h.held) == 0 {
		return
	}
	if d := h.nextBatch.Sub(now); d > 0 {
		s.arm(h, d)
		return
	}
	s.sendBatch(h, now)
}

// settle ends h's batch: the canaries' outcome sets the next one's time
// and size; mu is held.
func (s *udpSession) settle(h *udpHost, now time.Time) {
	h.out = false
	s.forget(h.canary)
	if h.canaryGot >= 2 {
		// Tokens to spare after the batch: go on at once, with more.
		h.size = min(2*h.size, paceMaxBatch)
		h.need, h.wait = 1, paceMinWait
		h.emptyAt = time.Time{} // not empty: no refill to time
		h.nextBatch = now
		return
	}
	if h.canaryGot == 0 && !h.batchErr {
		// No token yet: look again soon, with one probe, a little later
		// each time.
		h.size = 1
		h.nextBatch = now.Add(h.wait)
		h.wait = min(h.wait+max(h.interval/8, paceMinWait), paceMaxWait)
		return
	}
	// The batch took the last token. The time since the bucket was last
	// emptied is a sample of the refill interval (an upper bound: the
	// token came between the last look and this one).
	if !h.emptyAt.IsZero() {
		e := h.batchAt.Sub(h.emptyAt) / time.Duration(max(h.need, 1))
		if e < h.interval {
			h.interval = e
		} else {
			h.interval += (e - h.interval) / 4
		}
		h.interval = min(max(h.interval, paceMinWait), paceMaxWait)
	}
	h.emptyAt = h.batchAt
	h.need = 1
	if h.canaryGot == 1 && !h.batchErr {
		// One token, taken by a canary: the batch's silent probes need
		// two. Wait for both.
		h.need = 2
	}
	h.wait = max(h.interval/8, paceMinWait)
	h.nextBatch = h.emptyAt.Add(time.Duration(h.need) * h.interval * 15 / 16)
}

// sendBatch sends up to a batch of h's held probes back to back, then two
// canaries; mu is held.
func (s *udpSession) sendBatch(h *udpHost, now time.Time) {
	if h.paced && now.Sub(h.errAt) > paceGiveUp && now.Sub(h.pacedAt) > paceGiveUp {
		// Batches and canaries drew no error for seconds: the errors
		// stopped. Silence counts as silence again.
		h.paced, h.gaveUp = false, true
	}
	// Each batch goes from the next socket: a late error for an earlier
	// batch's canary lands on another socket than this one's.
	socks := s.socks[famOf(h.addr)]
	h.batches++
	fd := socks[h.batches%len(socks)]
	h.batchLo, h.batchErr, h.canaryGot, h.batchAt = h.seq, false, 0, now
	// Ports that were silent before (quiet) likely are again: a batch of
	// them costs the two canaries' tokens whatever its size. So they go
	// together, when the bucket has had time for two tokens, and after
	// the others (likely closed: one token each) otherwise.
	limit := h.size
	if h.paced && len(h.quiet) > 0 {
		two := h.need >= 2
		slices.SortStableFunc(h.held, func(a, b *udpProbe) int {
			qa, qb := h.quiet[a.dst] == two, h.quiet[b.dst] == two
			switch {
			case qa && !qb:
				return -1
			case qb && !qa:
				return 1
			}
			return 0
		})
		if two {
			limit = paceMaxBatch
		}
	}
	n := 0
	keep := h.held[:0]
	for i, p := range h.held {
		if s.byID[p.id] != p {
			continue // cancelled while held
		}
		if h.paced && n >= limit {
			keep = append(keep, h.held[i:]...)
			break
		}
		if cw := canaryWait(h); h.toEst > 4*cw && now.Sub(p.queued) > h.toEst-2*cw {
			// Its deadline is too near for the canaries' answer: Cancel
			// gives it back. (Only where the scanner's timeout is long
			// beside the canaries' wait, or nothing would ever go.)
			continue
		}
		h.seq++
		p.seq, p.sent = h.seq, time.Now()
		h.sentOne(p)
		s.byDst[p.dst] = p
		if err := s.write(fd, p.dst, s.u.payloads(p.dst.Port())); err != nil {
			p.seq = 0 // as if held: Cancel gives it back
			delete(s.byDst, p.dst)
		}
		n++
	}
	clear(h.held[len(keep):])
	h.held = keep
	h.batchHi = h.seq
	if !h.paced || n == 0 {
		return
	}
	c := &udpProbe{host: h, canary: true, dst: netip.AddrPortFrom(h.addr, h.bad), fd: fd}
	if old := s.byDst[c.dst]; old != nil {
		// That port is being probed: its own answer decides. Unlikely:
		// it drew an error before, so it is settled.
		h.nextBatch = now.Add(h.wait)
		s.arm(h, h.wait)
		return
	}
	h.seq += 2
	c.seq, c.sent = h.seq-1, time.Now()
	s.byDst[c.dst] = c
	sa := sockaddrOf(c.dst)
	sendto(fd, nil, sa) // a failed canary is one that drew nothing
	sendto(fd, nil, sa)
	h.canary, h.out = c, true
	s.arm(h, canaryWait(h))
}

// write sends the payloads to dst from fd, or one empty datagram if there
// are none.
func (s *udpSession) write(fd int, dst netip.AddrPort, payloads [][]byte) error {
	sa := sockaddrOf(dst)
	if len(payloads) == 0 {
		return sendto(fd, nil, sa)
	}
	for _, b := range payloads {
		if err := sendto(fd, b, sa); err != nil {
			return err
		}
	}
	return nil
}

// sendto sends b. With IP_RECVERR an ICMP error for an earlier datagram
// also sets the socket's pending error, which the next send returns (and
// clears) instead of sending: such an error is about another probe, so
// the send is tried again, and only an error that repeats is this one's
// (no route, a local firewall).
func sendto(fd int, b []byte, sa unix.Sockaddr) error {
	var err error
	for range 8 {
		prev := err
		err = unix.Sendto(fd, b, 0, sa)
		if err == nil || err == prev && err != unix.ECONNREFUSED {
			return err // ECONNREFUSED is never about the datagram being sent
		}
	}
	return err
}

// sockaddrOf converts dst (unmapped) to a socket address.
func sockaddrOf(dst netip.AddrPort) unix.Sockaddr {
	if dst.Addr().Is4() {
		return &unix.SockaddrInet4{Port: int(dst.Port()), Addr: dst.Addr().As4()}
	}
	return &unix.SockaddrInet6{Port: int(dst.Port()), Addr: dst.Addr().As16()}
}

// forget drops p from the maps; mu is held.
func (s *udpSession) forget(p *udpProbe) {
	if s.byDst[p.dst] == p {
		delete(s.byDst, p.dst)
	}
	if !p.canary && s.byID[p.id] == p {
		delete(s.byID, p.id)
		p.host.refs--
	}
}

// sendTCP sends a TCP probe (host discovery) through a connect session.
func (s *udpSession) sendTCP(id uint64, dst netip.AddrPort) error {
	if s.tcp == nil && s.tcpErr == nil {
		s.tcp, s.tcpErr = ConnectProber{Local: s.u.Local}.Open(s.ctx, s.report)
	}
	if s.tcpErr != nil {
		return fmt.Errorf("tcp probe %s: %w", dst, s.tcpErr)
	}
	return s.tcp.Send(id, dst, portspec.TCP)
}

func (s *udpSession) Cancel(id uint64) (Reply, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	p := s.byID[id]
	if p == nil {
		if s.tcp != nil {
			return s.tcp.Cancel(id)
		}
		return Reply{}, false
	}
	s.forget(p)
	h := p.host
	now := time.Now()
	h.toEst = now.Sub(p.queued)
	switch {
	case p.seq == 0:
		return Reply{ID: id}, true // held back by the pacing: never sent
	case h.proven(p):
		h.progress = now
		return Reply{}, false
	case h.paced && now.Sub(h.progress) > paceStall:
		h.gaveUp = true // taken as it is, to bound the scan
		return Reply{}, false
	}
	// No proof that the host had a token for it: its silence may be the
	// rate limit. It goes again, paced.
	if h.quiet == nil {
		h.quiet = make(map[netip.AddrPort]bool)
	}
	h.quiet[p.dst] = true
	if !h.paced {
		h.paced, h.pacedAt, h.progress = true, now, now
		h.size, h.wait, h.nextBatch = 1, paceMinWait, now
	}
	return Reply{ID: id}, true
}

func (s *udpSession) Close() error {
	s.mu.Lock()
	s.closed = true
	for _, h := range s.hosts {
		if h.timer != nil {
			h.timer.Stop()
		}
	}
	s.mu.Unlock()
	unix.Write(s.wake, []byte{1, 0, 0, 0, 0, 0, 0, 0})
	<-s.done
	s.closeFDs()
	if s.tcp != nil {
		return s.tcp.Close()
	}
	return nil
}

func (s *udpSession) closeFDs() {
	for _, socks := range s.socks {
		for _, fd := range socks {
			unix.Close(fd)
		}
	}
	unix.Close(s.epfd)
	unix.Close(s.wake)
}

// read waits for answers on every socket and reports them.
func (s *udpSession) read() {
	defer close(s.done)
	events := make([]unix.EpollEvent, 16)
	buf := make([]byte, 64<<10)
	oob := make([]byte, 512)
	for {
		n, err := unix.EpollWait(s.epfd, events, -1)
		if err != nil {
			if errors.Is(err, unix.EINTR) {
				continue
			}
			return
		}
		for _, ev := range events[:n] {
			fd := int(ev.Fd)
			if fd == s.wake {
				return // Close
			}
			s.drain(fd, buf, oob)
		}
	}
}

// drain reads fd's queued errors and replies until it has none.
func (s *udpSession) drain(fd int, buf, oob []byte) {
	for {
		_, oobn, _, from, err := unix.Recvmsg(fd, buf, oob, unix.MSG_ERRQUEUE|unix.MSG_DONTWAIT)
		if err != nil {
			break
		}
		s.onError(fd, from, oob[:oobn])
	}
	for {
		n, _, _, from, err := unix.Recvmsg(fd, buf, nil, unix.MSG_DONTWAIT)
		if err != nil {
			return
		}
		s.onDatagram(from, buf[:n])
	}
}

// sockAddrPort converts a socket address.
func sockAddrPort(sa unix.Sockaddr) (netip.AddrPort, bool) {
	switch a := sa.(type) {
	case *unix.SockaddrInet4:
		return netip.AddrPortFrom(netip.AddrFrom4(a.Addr), uint16(a.Port)), true
	case *unix.SockaddrInet6:
		return netip.AddrPortFrom(netip.AddrFrom16(a.Addr).Unmap(), uint16(a.Port)), true
	}
	return netip.AddrPort{}, false
}

// onError takes an ICMP error from the error queue: from is the original
// destination of the datagram that drew it.
func (s *udpSession) onError(fd int, from unix.Sockaddr, oob []byte) {
	dst, ok := sockAddrPort(from)
	if !ok {
		return
	}
	ee, rx, ok := parseRecvErr(oob)
	if !ok {
		return
	}
	var st State
	var reason string
	switch ee.Origin {
	case unix.SO_EE_ORIGIN_ICMP:
		st, reason, ok = icmpVerdict(false, ee.Type, ee.Code)
	case unix.SO_EE_ORIGIN_ICMP6:
		st, reason, ok = icmpVerdict(true, ee.Type, ee.Code)
	default:
		return // a local error (a too-big datagram): nothing about the port
	}
	now := time.Now()
	if rx.IsZero() || rx.After(now) {
		rx = now
	}
	s.mu.Lock()
	p := s.byDst[dst]
	if p == nil || p.canary && p.fd != fd {
		s.mu.Unlock()
		return
	}
	h := p.host
	h.bad = dst.Port()
	s.sampleRTT(h, now.Sub(p.sent))
	if p.canary {
		// Which of the two drew it does not matter: both went after
		// the batch.
		h.recordErr(p.seq+uint64(h.canaryGot&1), p.sent, rx)
		if h.canaryGot++; h.canaryGot >= 2 && h.canary == p && h.out {
			s.settle(h, now)
			if len(h.held) > 0 {
				s.sendBatch(h, now)
			}
		}
		s.mu.Unlock()
		return
	}
	h.recordErr(p.seq, p.sent, rx)
	h.progress = now
	delete(h.quiet, p.dst)
	if h.out && p.seq > h.batchLo && p.seq <= h.batchHi {
		h.batchErr = true
	}
	s.forget(p)
	s.mu.Unlock()
	if !ok {
		// An error that says nothing about the port (fragmentation
		// needed): the timeout decides.
		return
	}
	s.report(Reply{ID: p.id, State: st, Reason: reason, RTT: now.Sub(p.sent)})
}

func (s *udpSession) sampleRTT(h *udpHost, d time.Duration) {
	if h.rtt == 0 {
		h.rtt = d
		return
	}
	h.rtt += (d - h.rtt) / 8
}

// onDatagram takes a reply from a port.
func (s *udpSession) onDatagram(from unix.Sockaddr, b []byte) {
	src, ok := sockAddrPort(from)
	if !ok {
		return
	}
	now := time.Now()
	s.mu.Lock()
	var p *udpProbe
	var r Reply
	// Some servers answer from a port of their own (TFTP's transfer
	// ID, any ephemeral port, maybe one being probed too): a reply that
	// parses as the answer to such a probe in flight to that host is
	// that probe's.
	for _, port := range udpprobe.OtherPortReplies() {
		q := s.byDst[netip.AddrPortFrom(src.Addr(), port)]
		if q == nil || q.canary || port == src.Port() {
			continue
		}
		if m, ok := udpprobe.RecognizeOn(port, b); ok {
			p, r.Service, r.Banner = q, m.Service, m.Info
			break
		}
	}
	if p == nil {
		p = s.byDst[src]
	}
	if p == nil || p.canary {
		s.mu.Unlock()
		return
	}
	s.sampleRTT(p.host, now.Sub(p.sent))
	delete(p.host.quiet, p.dst)
	s.forget(p)
	s.mu.Unlock()
	r.ID, r.State, r.Reason, r.RTT = p.id, Open, ReasonUDPResponse, now.Sub(p.sent)
	if r.Service == "" {
		if svc, info, ok := s.u.recognize(src.Port(), b); ok {
			r.Service, r.Banner = svc, info
		}
	}
	s.report(r)
}

// recvErr is the part of struct sock_extended_err a verdict needs.
type recvErr struct {
	Origin     uint8
	Type, Code uint8
}

// parseRecvErr finds the IP_RECVERR / IPV6_RECVERR message in oob, and
// the arrival time (SO_TIMESTAMPNS; zero if absent).
func parseRecvErr(oob []byte) (recvErr, time.Time, bool) {
	msgs, err := unix.ParseSocketControlMessage(oob)
	if err != nil {
		return recvErr{}, time.Time{}, false
	}
	var ee recvErr
	var rx time.Time
	found := false
	for _, m := range msgs {
		switch {
		case m.Header.Level == unix.SOL_SOCKET && m.Header.Type == unix.SCM_TIMESTAMPNS && len(m.Data) >= 16:
			sec := int64(binary.NativeEndian.Uint64(m.Data))
			nsec := int64(binary.NativeEndian.Uint64(m.Data[8:]))
			rx = time.Unix(sec, nsec)
		case (m.Header.Level == unix.SOL_IP && m.Header.Type == unix.IP_RECVERR ||
			m.Header.Level == unix.SOL_IPV6 && m.Header.Type == unix.IPV6_RECVERR) && len(m.Data) >= 16:
			// struct sock_extended_err: ee_errno (4 bytes), ee_origin,
			// ee_type, ee_code, ...
			ee = recvErr{Origin: m.Data[4], Type: m.Data[5], Code: m.Data[6]}
			found = true
		}
	}
	return ee, rx, found
}
