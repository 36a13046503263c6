package scan

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net"
	"net/netip"
	"slices"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"portolan/internal/portspec"
	"portolan/internal/rawnet"
)

const (
	synSlots      = 4096    // send queue per interface and family
	synTableSize  = 1 << 17 // probes in flight: InFlightLimit is half
	synTableStart = 1 << 12 // the table's first size; it doubles as needed
	synPorts      = 1024    // source ports per scan
	synStartRate  = 100_000 // packets per second before AIMD has spoken
	synAIMDPeriod = 10 * time.Millisecond
	synResolve    = 3 * time.Second       // a next hop's address resolution gives up
	synQueueTime  = 40 * time.Millisecond // the longest a SYN waits in the send queue
	// A canary verdict waits synCanaryRTTs of the slowest answer seen
	// from its host, between synCanaryMin and synCanaryWait, the wait
	// while nothing has answered, from when the canaries left the send
	// queue; at least synCanaryQueued (above synQueueTime, which a canary
	// may spend queued) from when they were queued, if their leaving was
	// not seen.
	synCanaryWait   = 500 * time.Millisecond
	synCanaryMin    = 25 * time.Millisecond
	synCanaryQueued = 100 * time.Millisecond
	synCanaryRTTs   = 20
	synRecvLinger   = 200 * time.Microsecond // between reads while replies come
	synCanaryCheck  = 5 * time.Millisecond   // how often pending canary verdicts are looked at
	canaryBit       = 1 << 63                // in a canary probe's ID
)

// synDestState is where a destination is in route and neighbour lookup.
type synDestState uint8

const (
	destResolving synDestState = iota
	destOK
	destUnreach
)

type canaryVerdict uint8

const (
	canaryPending canaryVerdict = iota
	canaryNormal
	canaryTarpit
)

// synDest is what the session knows about one destination address.
// route and q are the Send goroutine's, set before state leaves
// Resolving; tmpl and the canary fields are under synSession.mu.
type synDest struct {
	addr      netip.Addr
	state     atomic.Uint32 // a synDestState: Resolving turns into OK or Unreach in the receiver goroutine
	reason    string        // destUnreach's
	route     rawnet.Route
	tmpl      *rawnet.Template
	q         *synQueue
	solicited time.Time
	waiting   []synWaiting // probes sent while the next hop is resolved; under mu

	canaried     atomic.Bool // canaries sent (or being sent), by whichever goroutine came first
	canarySent   int64       // session nanoseconds; 0: none sent
	canaryPos    uint64      // q.sent once the last canary has left
	canaryLeft   int64       // session nanoseconds when the sender saw them leave; 0: not yet
	canaries     []synKey
	canaryOpen   int
	canaryClosed int
	verdict      canaryVerdict
	held         []Reply // open answers waiting for the verdict
	maxRTT       int64   // nanoseconds: the slowest answer from addr so far
}

// synWaiting is a probe waiting for its next hop's MAC address.
type synWaiting struct {
	id           uint64
	dport, sport uint16
	ack          bool // an ACK (SendACK), not a SYN
}

// synQueue is one interface's and family's send ring.
type synQueue struct {
	snd          *rawnet.Sender
	head, queued int    // under synSession.mu
	sent         uint64 // packets sent from it so far; under synSession.mu
	// The destinations whose canaries wait in it, in the order they were
	// queued, and so by canaryPos; under synSession.mu.
	leaving []*synDest
}

type synSession struct {
	p        SYNProber
	log      *slog.Logger
	report   func(Reply)
	cookie   rawnet.Cookie
	lo, hi   uint16
	nports   uint16 // hi-lo+1: synPorts, or 1 with Local.Port
	rx       *rawnet.Receiver
	guard    *rawnet.Guard
	nl       *rawnet.Neighbors
	guardMsg string
	rng      *rand.Rand
	start    time.Time
	canaries int

	// The Send goroutine's.
	dests  map[netip.Addr]*synDest
	last   *synDest
	queues map[[2]int]*synQueue // by interface index and IPv6

	mu        sync.Mutex
	table     synTable
	bySlot    []synKey // each engine slot's key in flight, for Cancel
	qs        []*synQueue
	tarpits   []netip.Addr
	pending   []*synDest // canary verdicts not given yet
	resolving []*synDest // next hops being resolved
	// recent are the last replies reported, for a Cancel that races one.
	recent  [1024]Reply
	nrecent uint64
	closed  bool

	wake     chan struct{}
	flushReq atomic.Bool // Flush asks for the batch gathered so far
	done     chan struct{}
	wg       sync.WaitGroup

	drops, sendErrs, forged atomic.Uint64
	rate, minRate           atomic.Uint64 // float64 bits
	flush                   []Reply       // released by decide, under mu
	flushing                []Reply       // being reported by the receiver goroutine
}

// Open opens the sockets, installs the RST guard if it may, and starts
// the sender and receiver goroutines.
func (p SYNProber) Open(ctx context.Context, report func(Reply)) (Session, error) {
	if p.MaxRate <= 0 {
		p.MaxRate = DefaultSYNMaxRate
	}
	p.MinRate = min(p.MinRate, p.MaxRate)
	s := &synSession{
		p: p, log: p.Logger, report: report,
		rng:      rand.New(rand.NewPCG(rand.Uint64(), rand.Uint64())),
		cookie:   rawnet.NewCookie(rand.Uint64(), rand.Uint64()),
		start:    time.Now(),
		canaries: p.Canaries,
		dests:    make(map[netip.Addr]*synDest),
		queues:   make(map[[2]int]*synQueue),
		table:    newSynTable(synTableStart, synTableSize),
		wake:     make(chan struct{}, 1),
		done:     make(chan struct{}),
	}
	if s.log == nil {
		s.log = slog.New(slog.DiscardHandler)
	}
	if s.canaries == 0 {
		s.canaries = DefaultCanaries
	}
	// Source ports above the ephemeral range (32768-60999 by default),
	// so that the guard's rule hides no connection of the system's.
	s.lo = 61000 + uint16(s.rng.IntN((65535-61000+1)/synPorts))*synPorts
	s.nports = synPorts
	if p.Local.Iface != "" {
		if _, err := net.InterfaceByName(p.Local.Iface); err != nil {
			return nil, fmt.Errorf("syn scan: interface %s: %w", p.Local.Iface, err)
		}
	}
	switch {
	case p.Local.Port != 0:
		// nmap's --source-port: every SYN from this one port. The cookie
		// in each SYN's sequence number still tells the replies apart.
		s.lo, s.nports = p.Local.Port, 1
	case p.SourcePort != 0:
		if p.SourcePort > 65535-synPorts+1 {
			return nil, fmt.Errorf("syn scan: source ports %d-%d: past 65535", p.SourcePort, int(p.SourcePort)+synPorts-1)
		}
		s.lo = p.SourcePort
	}
	s.hi = s.lo + s.nports - 1
	var err error
	if s.nl, err = rawnet.OpenNeighbors(); err != nil {
		return nil, fmt.Errorf("syn scan: %w", err)
	}
	if s.rx, err = rawnet.OpenReceiver(s.lo, s.hi, synBatch, 5); err != nil {
		s.nl.Close()
		return nil, fmt.Errorf("syn scan: %w", err)
	}
	if s.guard, err = rawnet.GuardPorts(s.lo, s.hi); err != nil {
		s.guardMsg = "none (" + err.Error() + "): the kernel resets the connections replies open"
		s.log.Debug("no nftables guard for the scan's source ports", "err", err)
	} else {
		s.guardMsg = fmt.Sprintf("nftables (table of its own, ports %d-%d)", s.lo, s.hi)
	}
	s.setRate(min(max(synStartRate, p.MinRate), p.MaxRate))
	s.minRate.Store(s.rate.Load())
	s.wg.Add(2)
	go s.sendLoop()
	go s.recvLoop()
	return s, nil
}

func (s *synSession) now() int64 { return int64(time.Since(s.start)) }

func (s *synSession) setRate(r float64) {
	s.rate.Store(floatBits(r))
	if r < bitsFloat(s.minRate.Load()) {
		s.minRate.Store(floatBits(r))
	}
}

// SeesICMP reports true: ICMP errors come through the packet socket.
func (s *synSession) SeesICMP() bool { return true }

// InFlightLimit keeps the scanner's window within the probe table.
func (s *synSession) InFlightLimit() int { return synTableSize/2 - 64 }

func (s *synSession) Send(id uint64, dst netip.AddrPort, proto portspec.Proto) error {
	if proto != portspec.TCP {
		return fmt.Errorf("syn probe over %s: %w", proto, ErrUnsupported)
	}
	return s.send(id, dst, false)
}

// SendACK sends a bare ACK to dst: host discovery's probe (nmap's -PA),
// which a host answers with a reset (reported Closed, ReasonReset) whether
// or not the port listens.
func (s *synSession) SendACK(id uint64, dst netip.AddrPort) error { return s.send(id, dst, true) }

func (s *synSession) send(id uint64, dst netip.AddrPort, ack bool) error {
	d := s.dest(dst.Addr())
	// The source port follows the engine's slot, not the attempt: a late
	// answer to a first attempt then matches the retry.
	sport := s.lo + uint16(id&0xffffffff%uint64(s.nports))
	switch synDestState(d.state.Load()) {
	case destResolving:
		s.mu.Lock()
		if synDestState(d.state.Load()) == destResolving {
			// Waits for the MAC address, without holding up the scan.
			d.waiting = append(d.waiting, synWaiting{id, dst.Port(), sport, ack})
			s.setSlot(id, synKey{d.addr, dst.Port(), sport})
			s.mu.Unlock()
			return nil
		}
		s.mu.Unlock()
		return s.send(id, dst, ack)
	case destUnreach:
		s.report(Reply{ID: id, State: Filtered, Reason: d.reason})
		return nil
	}
	if s.canaries > 0 && d.canaried.CompareAndSwap(false, true) {
		s.sendCanaries(d)
	}
	return s.enqueue(d, id, dst.Port(), sport, ack)
}

// enqueue puts a SYN (or an ACK) in d's send queue and its probe in the
// table.
func (s *synSession) enqueue(d *synDest, id uint64, dport, sport uint16, ack bool) error {
	seq := s.cookie.SYN(d.route.Src, d.addr, sport, dport)
	k := synKey{d.addr, dport, sport}
	s.mu.Lock()
	q := d.q
	n := q.snd.Slots()
	// At most synQueueTime of packets wait at the current rate: a probe
	// must not time out in our own queue (the shortest timeout is 100 ms
	// unless --min-timeout says less). A queue too short for the engine's
	// burst costs more: ErrBusy lowers its in-flight limit to what is in
	// flight, and only answers raise it again, so against a host that
	// drops most ports (1,000 of 4,096 at the start rate with 10 ms) the
	// rest waited for the first ones' timeouts.
	if q.queued >= min(n, max(synBatch, int(bitsFloat(s.rate.Load())*synQueueTime.Seconds()))) || s.table.full() {
		s.mu.Unlock()
		return fmt.Errorf("syn send queue: %w", ErrBusy)
	}
	i := (q.head + q.queued) % n
	var pkt []byte
	if ack {
		// The cookie is the acknowledgement, which the reset returns as
		// its sequence number; the sequence is any.
		pkt = d.tmpl.FillACK(q.snd.Slot(i), d.addr, sport, dport, ^seq, seq)
	} else {
		pkt = d.tmpl.Fill(q.snd.Slot(i), d.addr, sport, dport, seq)
	}
	q.snd.Ready(i, len(pkt), d.addr)
	s.table.put(synEntry{key: k, id: id, sent: s.now(), d: d})
	s.setSlot(id, k)
	q.queued++
	batch := q.queued >= synBatch
	s.mu.Unlock()
	if batch {
		s.kick()
	}
	return nil
}

// kick wakes the sender goroutine. Probes are sent when a batch has
// gathered, when the scanner flushes (it has nothing more to send for
// now), or on the sender's tick: waking it for every probe sent batches
// of one or two, a system call and a context switch each.
func (s *synSession) kick() {
	select {
	case s.wake <- struct{}{}:
	default:
	}
}

// Flush sends the probes gathered so far: the scanner calls it when it
// stops sending for the moment.
func (s *synSession) Flush() {
	s.mu.Lock()
	n := 0
	for _, q := range s.qs {
		n += q.queued
	}
	s.mu.Unlock()
	if n > 0 {
		s.flushReq.Store(true)
		s.kick()
	}
}

// resetLocked queues a reset for the half-open connection a SYN-ACK opened
// on the target, as the kernel would have (the guard keeps it from doing
// so): the target forgets it, and a later scan from the same port is not
// answered with that connection's stale numbers. Without room in the
// queue it is skipped. Under mu.
func (s *synSession) resetLocked(d *synDest, k synKey, ack uint32) {
	q := d.q
	if q == nil || d.tmpl == nil || q.queued == q.snd.Slots() {
		return
	}
	i := (q.head + q.queued) % q.snd.Slots()
	pkt := d.tmpl.FillRST(q.snd.Slot(i), d.addr, k.sport, k.dport, ack)
	q.snd.Ready(i, len(pkt), d.addr)
	q.queued++
	s.kick()
}

// setSlot records the key of probe id for Cancel. Under mu.
func (s *synSession) setSlot(id uint64, k synKey) {
	if id&canaryBit != 0 {
		return
	}
	slot := int(id & 0xffffffff)
	for slot >= len(s.bySlot) {
		s.bySlot = append(s.bySlot, synKey{})
	}
	s.bySlot[slot] = k
}

// sendCanaries probes random high ports of d. A port answered open there
// is almost surely not a service.
func (s *synSession) sendCanaries(d *synDest) {
	keys := make([]synKey, s.canaries)
	for k := range keys {
		// Random to anyone without the scan's key; no shared generator,
		// so any goroutine may send them.
		h := s.cookie.SYN(d.addr, d.addr, uint16(k), 0)
		keys[k] = synKey{d.addr, uint16(1024 + h%(65536-1024)), s.lo + uint16(h>>16)%s.nports}
	}
	// The keys are known before any canary leaves: an answer that comes
	// back at once is then judged against all of them.
	s.mu.Lock()
	d.canarySent = max(s.now(), 1)
	d.canaries = keys
	s.pending = append(s.pending, d)
	s.mu.Unlock()
	for k, key := range keys {
		if s.enqueue(d, canaryBit|uint64(k), key.dport, key.sport, false) != nil {
			s.mu.Lock()
			d.canaries = slices.DeleteFunc(d.canaries, func(c synKey) bool { return c == key })
			s.mu.Unlock()
		}
	}
	// Everything queued by now has left once the queue's count of sent
	// packets reaches this (later probes queued by other goroutines make
	// it later, never earlier).
	s.mu.Lock()
	d.canaryPos = d.q.sent + uint64(d.q.queued)
	if d.canaryPos <= d.q.sent {
		d.canaryLeft = max(s.now(), 1) // the sender was quicker
	} else {
		d.q.leaving = append(d.q.leaving, d)
	}
	s.mu.Unlock()
}

// sentLocked counts m packets sent from q and stamps the destinations
// whose canaries have now left it. Under mu. It runs for every batch sent,
// so it looks only at the front of q.leaving: a sweep of many hosts has
// thousands of verdicts pending at once.
func (s *synSession) sentLocked(q *synQueue, m int) {
	q.sent += uint64(m)
	i := 0
	for ; i < len(q.leaving) && q.leaving[i].canaryPos <= q.sent; i++ {
		q.leaving[i].canaryLeft = max(s.now(), 1)
	}
	clear(q.leaving[:i])
	q.leaving = q.leaving[i:]
}

// dest returns what is known of a, looking up its route the first time
// and, on a link with MAC addresses, starting the resolution of its next
// hop, which the receiver goroutine watches (resolve).
func (s *synSession) dest(a netip.Addr) *synDest {
	a = a.Unmap()
	d := s.last
	if d == nil || d.addr != a {
		if d = s.dests[a]; d == nil {
			d = &synDest{addr: a}
			s.dests[a] = d
			s.lookup(d)
		}
		s.last = d
	}
	return d
}

// lookup finds d's route; an unusable one makes d unreachable with the
// reason a connect() would give.
func (s *synSession) lookup(d *synDest) {
	unreach := func(reason string) { d.reason = reason; d.state.Store(uint32(destUnreach)) }
	r, err := rawnet.LookupRouteVia(d.addr, s.p.Local.Iface)
	if err != nil {
		// Unreachable, prohibit and blackhole routes: what connect says.
		reason := ReasonNetUnreach
		var errno syscall.Errno
		if errors.As(err, &errno) {
			if v, why, _ := verdict(errno); v == Filtered {
				reason = why
			}
		}
		unreach(reason)
		return
	}
	if a := s.p.Local.Addr; a.IsValid() {
		// nmap's -S: the SYNs carry this address, ours or not; the
		// answers come back only if it is routed to this host.
		r.Src = a.Unmap()
	}
	if r.Src.Is4() != d.addr.Is4() {
		unreach(ReasonNetUnreach)
		return
	}
	d.route = r
	if err := s.queue(d); err != nil {
		s.log.Debug("raw sender", "addr", d.addr, "err", err)
		unreach(ReasonNetUnreach)
		return
	}
	if !r.Link() {
		s.ready(d, nil)
		return
	}
	d.state.Store(uint32(destResolving))
	d.solicited = time.Now()
	if mac, err := s.nl.Lookup(r.Ifindex, r.NextHop); err == nil && mac != nil {
		s.ready(d, mac)
		return
	}
	// The kernel resolves the address for a datagram of its own; the
	// receiver goroutine watches the neighbour table.
	if err := rawnet.SolicitVia(r.NextHop, s.p.Local.Iface); err != nil {
		s.log.Debug("address resolution", "addr", r.NextHop, "err", err)
	}
	s.mu.Lock()
	s.resolving = append(s.resolving, d)
	s.mu.Unlock()
}

// queue finds (or opens) d's send queue. Sockets are opened here, in the
// Send goroutine, which is in the scan's network namespace.
func (s *synSession) queue(d *synDest) error {
	v6 := 0
	if d.addr.Is6() {
		v6 = 1
	}
	qk := [2]int{d.route.Ifindex, v6}
	if d.route.Link() {
		qk[1] += 2
	}
	q := s.queues[qk]
	if q == nil {
		snd, err := rawnet.OpenSender(d.route, v6 == 1, synSlots)
		if err != nil {
			return fmt.Errorf("syn scan: %w", err)
		}
		q = &synQueue{snd: snd}
		s.queues[qk] = q
		s.mu.Lock()
		s.qs = append(s.qs, q)
		s.mu.Unlock()
	}
	d.q = q
	return nil
}

// ready builds d's template for next-hop MAC mac (nil without a link
// layer) and sends what waited for it, canaries first.
func (s *synSession) ready(d *synDest, mac []byte) {
	tmpl, err := rawnet.NewTemplate(d.route.Src, d.route.SrcMAC, mac)
	s.mu.Lock()
	waiting := d.waiting
	d.waiting = nil
	if err != nil {
		d.reason = ReasonNetUnreach
		d.state.Store(uint32(destUnreach))
	} else {
		d.tmpl = tmpl
		d.state.Store(uint32(destOK))
	}
	s.mu.Unlock()
	if err != nil {
		s.log.Debug("syn template", "addr", d.addr, "err", err)
	}
	s.release(d, waiting)
}

// release sends (or, for an unreachable d, answers) the probes that
// waited for d's next hop. A probe the queue has no room for is left to
// time out and be sent again.
func (s *synSession) release(d *synDest, waiting []synWaiting) {
	if len(waiting) == 0 {
		return
	}
	if synDestState(d.state.Load()) == destUnreach {
		for _, w := range waiting {
			s.report(Reply{ID: w.id, State: Filtered, Reason: d.reason})
		}
		return
	}
	if s.canaries > 0 && d.canaried.CompareAndSwap(false, true) {
		s.sendCanaries(d)
	}
	for _, w := range waiting {
		_ = s.enqueue(d, w.id, w.dport, w.sport, w.ack)
	}
	s.Flush()
}

// resolve checks the next hops being resolved: found ones release their
// probes, failed ones (or silent past synResolve) answer them host-unreach.
// The receiver goroutine's.
func (s *synSession) resolve() {
	s.mu.Lock()
	ds := slices.Clone(s.resolving)
	s.mu.Unlock()
	if len(ds) == 0 {
		return
	}
	done := map[*synDest]bool{}
	for _, d := range ds {
		mac, err := s.nl.Lookup(d.route.Ifindex, d.route.NextHop)
		switch {
		case mac != nil:
			s.ready(d, mac)
		case errors.Is(err, rawnet.ErrNoNeighbor) || time.Since(d.solicited) > synResolve:
			s.mu.Lock()
			waiting := d.waiting
			d.waiting = nil
			d.reason = ReasonHostUnreach
			d.state.Store(uint32(destUnreach))
			s.mu.Unlock()
			s.release(d, waiting)
		default:
			continue
		}
		done[d] = true
	}
	s.mu.Lock()
	s.resolving = slices.DeleteFunc(s.resolving, func(d *synDest) bool { return done[d] })
	s.mu.Unlock()
}

// sendLoop drains the send queues at the AIMD rate.
func (s *synSession) sendLoop() {
	defer s.wg.Done()
	tokens := float64(synBatch)
	last := time.Now()
	period := last
	var sentPeriod, limited int
	var lastDrops uint64
	tick := time.NewTicker(synAIMDPeriod)
	defer tick.Stop()
	for {
		// partial: send batches short of synBatch too (the scanner
		// flushed, or a tick came); otherwise wait for a full one.
		partial := false
		select {
		case <-s.wake:
		case <-tick.C:
			partial = true
		case <-s.done:
			s.drain()
			return
		}
		for {
			if s.flushReq.Swap(false) {
				partial = true
			}
			now := time.Now()
			rate := bitsFloat(s.rate.Load())
			tokens = min(tokens+rate*now.Sub(last).Seconds(), max(rate/1000, synBatch))
			last = now
			if now.Sub(period) >= synAIMDPeriod {
				drops := s.countDrops()
				if next := aimd(rate, s.p.MinRate, s.p.MaxRate, drops-lastDrops, limited > 0, drops == 0); next != rate {
					s.setRate(next)
					if next < rate {
						s.log.Debug("drops: halving the send rate", "drops", drops-lastDrops, "rate", next)
					}
				}
				lastDrops, period, sentPeriod, limited = drops, now, 0, 0
			}
			// short: the tokens a batch held back by the rate still needs.
			sent, short := 0, 0.0
			s.mu.Lock()
			qs := s.qs
			s.mu.Unlock()
			for _, q := range qs {
				s.mu.Lock()
				h, n := q.head, q.queued
				s.mu.Unlock()
				k, need := batchOf(n, q.snd.Slots()-h, tokens, partial)
				if need > 0 {
					limited++ // AIMD: the rate is what limits
					short = max(short, need)
				}
				if k == 0 {
					continue
				}
				m, err := q.snd.Send(h, k)
				if err != nil {
					if errors.Is(err, syscall.ENOBUFS) || errors.Is(err, syscall.EAGAIN) {
						s.sendErrs.Add(1)
						time.Sleep(100 * time.Microsecond)
						continue
					}
					// Any other error loses this batch; its probes time
					// out and are sent again.
					s.log.Debug("send", "err", err)
					s.sendErrs.Add(uint64(k))
					m = k
				}
				tokens -= float64(m)
				sent += m
				s.mu.Lock()
				q.head = (h + m) % q.snd.Slots()
				q.queued -= m
				s.sentLocked(q, m)
				s.mu.Unlock()
			}
			sentPeriod += sent
			if short > 0 {
				// Wait for the held batch's tokens, not a whole tick.
				time.Sleep(time.Duration(float64(time.Second) * short / rate))
				continue
			}
			// What was gathered when the flush came is out; later probes
			// wait for a batch, or the next flush.
			partial = false
			if sent == 0 {
				break
			}
		}
	}
}

// drain sends what is still queued when the session closes: the resets
// for the last SYN-ACKs (resetLocked) wait for a batch or a flush like any
// packet, and one left unsent leaves the target a half-open connection
// that answers the next scan from that source port with stale numbers.
func (s *synSession) drain() {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, q := range s.qs {
		for q.queued > 0 {
			k := min(q.queued, q.snd.Slots()-q.head, synBatch)
			m, err := q.snd.Send(q.head, k)
			if err != nil || m == 0 {
				break
			}
			q.head = (q.head + m) % q.snd.Slots()
			q.queued -= m
			s.sentLocked(q, m)
		}
	}
}

// countDrops is the loss in our own kernel so far: receive-buffer drops
// and refused sends.
func (s *synSession) countDrops() uint64 {
	if st, err := s.rx.Stats(); err == nil {
		s.drops.Store(st.Drops)
	}
	return s.drops.Load() + s.sendErrs.Load()
}

// recvLoop reads replies until the session closes.
func (s *synSession) recvLoop() {
	defer s.wg.Done()
	var lastCheck int64
	handle := s.handle
	for {
		select {
		case <-s.done:
			return
		default:
		}
		n, err := s.rx.Recv(handle)
		if err != nil {
			s.log.Debug("receive", "err", err)
			time.Sleep(time.Millisecond)
		}
		if now := s.now(); now-lastCheck > int64(synCanaryCheck) {
			lastCheck = now
			s.checkCanaries(handle)
		}
		s.resolve()
		s.flushHeld()
		if n > 0 {
			// Replies come in bursts (a batch of SYNs draws a batch of
			// answers): waking for each packet of one costs a context
			// switch per few packets, the sweep's largest overhead after
			// the packets themselves. Let the socket gather a burst.
			time.Sleep(synRecvLinger)
		}
	}
}

// handle reports what a packet answers. The receiver goroutine's.
func (s *synSession) handle(b []byte) {
	if r, ok := s.onPacket(b); ok {
		s.report(r)
	}
}

// onPacket handles one packet that passed the filter, and returns the
// reply to report, if any. Canary answers give their host's verdict, and
// open answers wait for it; what the verdict releases goes to s.flush.
func (s *synSession) onPacket(b []byte) (Reply, bool) {
	p, err := rawnet.Parse(b)
	if err != nil {
		return Reply{}, false
	}
	var k synKey
	var valid bool
	r := Reply{}
	if p.ICMP {
		// The quoted SYN: from us to the target, with our cookie.
		k = synKey{p.Dst, p.DstPort, p.SrcPort}
		valid = p.Seq == s.cookie.SYN(p.Src, p.Dst, p.SrcPort, p.DstPort)
		r.State, r.Reason = Filtered, icmpReason(p.Type == rawnet.ICMP6Unreach && p.Dst.Is6(), p.Code)
	} else {
		k = synKey{p.Src, p.SrcPort, p.DstPort}
		cookie := s.cookie.SYN(p.Dst, p.Src, p.DstPort, p.SrcPort)
		valid = p.Flags&rawnet.FlagACK != 0 && p.Ack-1 == cookie
		if p.Flags&(rawnet.FlagRST|rawnet.FlagACK) == rawnet.FlagRST {
			// The answer to an ACK (SendACK): the reset's sequence number
			// is the ACK's acknowledgement, the cookie.
			valid = p.Seq == cookie
		}
		switch {
		case p.Flags&rawnet.FlagRST != 0:
			r.State, r.Reason = Closed, ReasonReset
		case p.Flags&(rawnet.FlagSYN|rawnet.FlagACK) == rawnet.FlagSYN|rawnet.FlagACK:
			r.State, r.Reason = Open, ReasonSynAck
		default:
			return Reply{}, false
		}
	}
	if !valid {
		s.forged.Add(1)
		return Reply{}, false
	}
	now := s.now()
	s.mu.Lock()
	e, ok := s.table.take(k)
	if !ok {
		s.mu.Unlock()
		return Reply{}, false // a duplicate, or an answer after Cancel
	}
	r.ID, r.RTT = e.id, time.Duration(now-e.sent)
	d := e.d
	d.maxRTT = max(d.maxRTT, now-e.sent)
	if r.State == Open {
		s.resetLocked(d, k, p.Ack)
	}
	if e.id&canaryBit != 0 {
		switch r.State {
		case Open:
			d.canaryOpen++
		default:
			d.canaryClosed++
		}
		s.decide(d, now)
		s.mu.Unlock()
		return Reply{}, false
	}
	if r.State == Open {
		switch d.verdict {
		case canaryPending:
			if d.canarySent != 0 {
				d.held = append(d.held, r)
				s.mu.Unlock()
				return Reply{}, false
			}
		case canaryTarpit:
			r.State, r.Reason = Filtered, ReasonTarpit
		}
	}
	s.recent[s.nrecent%uint64(len(s.recent))] = r
	s.nrecent++
	s.mu.Unlock()
	return r, true
}

// decide gives d's canary verdict once it is known: normal as soon as a
// canary is answered other than open, a tarpit once all are answered open
// (or at least two of them when the wait is over: canaryWait). Under mu;
// the held answers go to s.flush for flushHeld.
func (s *synSession) decide(d *synDest, now int64) {
	if d.verdict != canaryPending {
		return
	}
	n := len(d.canaries)
	switch {
	case d.canaryClosed > 0:
		d.verdict = canaryNormal
	case d.canaryOpen == n && n > 0:
		d.verdict = canaryTarpit
	case d.waited(now):
		d.verdict = canaryNormal
		if d.canaryOpen >= 2 {
			d.verdict = canaryTarpit
		}
	default:
		return
	}
	for _, k := range d.canaries {
		if i := s.table.find(k); i >= 0 && s.table.e[i].id&canaryBit != 0 {
			s.table.del(uint64(i))
		}
	}
	if d.verdict == canaryTarpit {
		s.tarpits = append(s.tarpits, d.addr)
		s.log.Debug("host answers canary ports: its open ports are reported filtered", "addr", d.addr)
	}
	for _, r := range d.held {
		if d.verdict == canaryTarpit {
			r.State, r.Reason = Filtered, ReasonTarpit
		}
		s.flush = append(s.flush, r)
	}
	d.held = nil
}

// canaryWait is how long d's canaries may take to answer. A tarpit
// answers them as fast as the ports it fakes, so a few of d's round trips
// say enough; a firewalled host never answers them, and its open ports
// are held until then (a fixed 500 ms was most of such a host's scan).
func (d *synDest) canaryWait() time.Duration {
	if d.maxRTT == 0 {
		return synCanaryWait
	}
	return min(synCanaryWait, max(synCanaryMin, synCanaryRTTs*time.Duration(d.maxRTT)))
}

// waited reports whether d's canaries have had their time at now (session
// nanoseconds): canaryWait since they left the send queue, or if that was
// not seen, also synCanaryQueued since they were queued.
func (d *synDest) waited(now int64) bool {
	if d.canaryLeft != 0 {
		return now-d.canaryLeft > int64(d.canaryWait())
	}
	return now-d.canarySent > int64(max(d.canaryWait(), synCanaryQueued))
}

// checkCanaries gives the verdicts whose wait is over. An answer already
// in the socket decides before the wait does: it is read first (handle is
// the receiver's), so a receiver that lagged on a loaded machine does not
// turn a tarpit's late-read answers into a verdict of normal.
func (s *synSession) checkCanaries(handle func([]byte)) {
	s.mu.Lock()
	due, now := false, s.now()
	for _, d := range s.pending {
		due = due || d.waited(now)
	}
	s.mu.Unlock()
	if !due {
		return
	}
	if _, err := s.rx.TryRecv(handle); err != nil {
		s.log.Debug("receive", "err", err)
	}
	now = s.now()
	s.mu.Lock()
	kept := s.pending[:0]
	for _, d := range s.pending {
		s.decide(d, now)
		if d.verdict == canaryPending {
			kept = append(kept, d)
		}
	}
	clear(s.pending[len(kept):])
	s.pending = kept
	s.mu.Unlock()
}

// flushHeld reports the answers decide released. Receiver goroutine only.
func (s *synSession) flushHeld() {
	s.mu.Lock()
	s.flush, s.flushing = s.flushing[:0], s.flush
	s.mu.Unlock()
	for _, r := range s.flushing {
		s.report(r)
	}
}

func (s *synSession) Cancel(id uint64) (Reply, bool) {
	slot := int(id & 0xffffffff)
	s.mu.Lock()
	if slot >= len(s.bySlot) {
		s.mu.Unlock()
		return Reply{}, false
	}
	k := s.bySlot[slot]
	i := s.table.find(k)
	waiting := i >= 0 && s.table.e[i].id == id
	s.mu.Unlock()
	if waiting {
		// The answer may be in the socket, not read yet: the receiver
		// goroutine lags on a loaded machine. Read what is there first.
		var got Reply
		var found bool
		s.rx.TryRecv(func(b []byte) {
			if r, ok := s.onPacket(b); ok {
				if r.ID == id {
					got, found = r, true
				} else {
					s.report(r)
				}
			}
		})
		if found {
			return got, true
		}
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if i := s.table.find(k); i >= 0 && s.table.e[i].id == id {
		s.table.del(uint64(i))
		return Reply{}, false
	}
	if d := s.dests[k.addr]; d != nil {
		for i, w := range d.waiting {
			if w.id == id {
				d.waiting = slices.Delete(d.waiting, i, i+1)
				return Reply{}, false
			}
		}
	}
	// Answered meanwhile: reported, but the scanner has not taken it yet.
	for _, r := range s.recent {
		if r.ID == id && r.State != Unknown {
			return r, true
		}
	}
	// An open answer held for the canaries' verdict is not lost: the
	// verdict is late, so the host is not answering canaries at once.
	if d := s.dests[k.addr]; d != nil {
		for i, r := range d.held {
			if r.ID == id {
				d.held = append(d.held[:i], d.held[i+1:]...)
				return r, true
			}
		}
	}
	return Reply{}, false
}

func (s *synSession) Close() error {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return nil
	}
	s.closed = true
	s.mu.Unlock()
	close(s.done)
	s.wg.Wait()
	s.countDrops()
	// Each packet socket's close waits for an RCU grace period
	// (synchronize_net in the kernel), as does the guard's netlink socket:
	// 7-12 ms each one after the other, the largest part of a sweep's end
	// (bench/RESULTS.md, 2026-12-08). At once, the waits overlap.
	closers := []func() error{s.rx.Close, s.nl.Close}
	for _, q := range s.qs {
		closers = append(closers, q.snd.Close)
	}
	if s.guard != nil {
		closers = append(closers, s.guard.Close)
	}
	errs := make([]error, len(closers))
	var wg sync.WaitGroup
	for i, c := range closers {
		wg.Go(func() { errs[i] = c() })
	}
	wg.Wait()
	return errors.Join(errs...)
}

// RawStats reports the session's counters; it works after Close.
func (s *synSession) RawStats() RawStats {
	s.mu.Lock()
	defer s.mu.Unlock()
	return RawStats{
		Drops: s.drops.Load() + s.sendErrs.Load(), Forged: s.forged.Load(),
		Rate: bitsFloat(s.rate.Load()), MinRate: bitsFloat(s.minRate.Load()),
		Tarpits: append([]netip.Addr(nil), s.tarpits...), RSTGuard: s.guardMsg,
	}
}
