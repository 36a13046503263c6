package scan

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"math/rand/v2"
	"net/netip"
	"strconv"
	"time"

	"portolan/internal/portspec"
)

// Space is the set of (address, port, protocol) triples a scan visits,
// numbered [0, Size()). *target.Space implements it; the scanner needs
// nothing else from it, so tests can bring their own.
type Space interface {
	Size() uint64
	At(i uint64) (netip.Addr, portspec.Port, portspec.Proto)
}

// Defaults the zero values of Scanner stand for.
const (
	DefaultWindow         = 4096
	DefaultRetries        = 2
	DefaultMinTimeout     = 100 * time.Millisecond
	DefaultMaxTimeout     = 1250 * time.Millisecond
	DefaultInitialTimeout = time.Second // RFC 6298's initial RTO
	DefaultHostDownAfter  = 16
	DefaultBannerParallel = 64
	DefaultEvery          = time.Second // checkpoints and stats
)

// DefaultDiscoveryPorts are the TCP ports host discovery probes: nmap's
// 80 and 443, ssh, and the ports most often open where those are not
// (mail, file sharing, remote desktop, databases, alternative web ports).
var DefaultDiscoveryPorts = []portspec.Port{80, 443, 22, 21, 23, 25, 53, 110, 135, 139, 445, 3389, 3306, 8080, 8443}

// DefaultDiscoveryACKPorts are the ports host discovery sends a bare TCP
// ACK to, when the prober can (SYNProber): nmap's -PA80.
var DefaultDiscoveryACKPorts = []portspec.Port{80}

// slowStart is how many probes a host that has not answered yet may have in
// flight. It keeps the first wave, sent before any RTT is known, small: a
// dead host costs a few probes, and a live one is at full speed one RTT
// later.
const slowStart = 8

// maxHosts bounds the per-host table; idle hosts beyond it are forgotten
// (they start again from the scan-wide RTT), so memory stays flat however
// many addresses the space has.
const maxHosts = 1 << 18

// Scanner runs scans. The zero value is ready: a TCP connect scan at full
// speed with defaults for everything. A Scanner may run several scans, one
// after the other or at once; Run does not modify it.
type Scanner struct {
	// Prober does the I/O. Nil means ConnectProber{}.
	Prober Prober
	// Rate caps probes per second, retries included. 0 means no cap other
	// than Window.
	Rate float64
	// MinRate is the rate the scan never falls under while it has probes
	// to send (nmap's --min-rate): when it does, the soft limits give way
	// (Window, up to as many probes as MinRate for MaxTimeout needs, and a
	// new host's slow start) until it has caught up. Rate, the prober's own
	// limit on probes in flight, and host discovery still hold. 0 means no
	// floor.
	MinRate float64
	// Window caps the probes the scan holds at once (in flight, waiting for
	// a retry or for a banner). 0 means DefaultWindow. The connect prober
	// also stays under the open-files limit.
	Window int
	// Retries is how many more times a probe with no answer is sent. Only
	// unanswered probes are retried, and a host where dozens of retries
	// never drew an answer (it drops, it does not lose) gets one at most.
	// 0 means DefaultRetries; negative means none.
	Retries int
	// MinTimeout and MaxTimeout bound the wait for an answer, which is
	// otherwise derived per host from its measured RTT (SRTT + 4*RTTVAR).
	// 0 means DefaultMinTimeout and DefaultMaxTimeout.
	MinTimeout, MaxTimeout time.Duration
	// InitialTimeout is the wait before any RTT has been measured.
	// 0 means DefaultInitialTimeout.
	InitialTimeout time.Duration
	// HostDownAfter: once this many probes in a row to a host got no answer
	// (or as many as the host has ports, if fewer) and none of its ports
	// has ever answered, the host goes through discovery, as nmap's ping
	// scan: the DiscoveryPorts and Pinger are probed at once, and any
	// answer (even a reset) makes the host up, so a firewall that drops
	// all but a few ports does not hide them. Only if discovery draws no
	// answer either does the host count as down: its remaining ports are
	// reported filtered ("host-timeout") without probing. 0 means
	// DefaultHostDownAfter; negative means never (probe every port, as
	// nmap -Pn).
	HostDownAfter int
	// DiscoveryPorts are the TCP ports host discovery probes. Nil means
	// DefaultDiscoveryPorts.
	DiscoveryPorts []portspec.Port
	// DiscoveryACKPorts are the ports host discovery sends a TCP ACK to,
	// which a host answers with a reset whether the port listens or not,
	// and which stateless firewalls let through: only with a prober that
	// can send one (SYNProber). Nil means DefaultDiscoveryACKPorts.
	DiscoveryACKPorts []portspec.Port
	// Pinger, if set, adds ICMP to host discovery (EchoProber: an echo,
	// and with CAP_NET_RAW a timestamp request for IPv4). Nil means TCP
	// discovery only.
	Pinger Prober
	// HostTimeout gives up on a host this long after its first probe
	// (nmap's --host-timeout): its ports not probed by then are reported
	// filtered with ReasonHostTimeout, and nothing is sent to it again.
	// 0 means no limit.
	HostTimeout time.Duration
	// DiscoveryOnly runs host discovery and no port scan (nmap's -sn):
	// each address of the space gets one Result with Port 0, Open with
	// the reason of the first answer (the host is up) or Filtered with
	// ReasonHostTimeout (down). Give the space one port per address.
	DiscoveryOnly bool
	// Seed orders the permutation. 0 means a random seed, reported in
	// Summary.Seed; set one (NewSeed) before the run if it must be stored
	// for a resume.
	Seed uint64
	// Shard restricts the scan to one slice of the permuted space.
	// The zero value is the whole space.
	Shard Shard
	// StartAt resumes at this position of the permuted sequence (a
	// checkpoint). 0 means the start of the shard.
	StartAt uint64
	// Banners, if set, grabs a banner from every open port.
	Banners *Grabber
	// BannerParallel caps banner grabs at once. 0 means DefaultBannerParallel.
	BannerParallel int
	// ServiceName names the service on a port (the registry). Nil leaves
	// Result.Service empty unless a banner identifies the service.
	ServiceName func(portspec.Port, portspec.Proto) string
	// OnResult receives every result: every port of the space gets one
	// (open, closed, filtered...). It is called from one goroutine, never
	// after Run returns; a slow OnResult slows the scan.
	OnResult func(Result)
	// OnCheckpoint receives a position below which every result has been
	// passed to OnResult. Saving it lets a later run resume with StartAt set
	// to it, after a crash as well as after a cancel. Called from the same
	// goroutine as OnResult, every CheckpointEvery while the position moves,
	// and once at the end.
	OnCheckpoint func(pos uint64)
	// CheckpointEvery is how often OnCheckpoint is called. 0 means DefaultEvery.
	CheckpointEvery time.Duration
	// OnStats receives progress every StatsEvery, from the same goroutine.
	OnStats func(Stats)
	// StatsEvery is how often OnStats is called. 0 means DefaultEvery.
	StatsEvery time.Duration
	// Logger gets debug events (hosts declared down, resource limits).
	// Nil means discard.
	Logger *slog.Logger
	// Now is the clock. Nil means time.Now.
	Now func() time.Time
}

// Stats is the progress of a running scan.
type Stats struct {
	Elapsed  time.Duration `json:"elapsed_ns"`
	Total    uint64        `json:"total"`    // ports this run visits: its shard, less what a resume skips
	Done     uint64        `json:"done"`     // ports with a result
	Sent     uint64        `json:"sent"`     // probes sent, retries included
	Retries  uint64        `json:"retries"`  // probes sent again for lack of an answer
	Answered uint64        `json:"answered"` // probes that got an answer
	Open     uint64        `json:"open"`     // open ports found
	InFlight int           `json:"in_flight"`
	Banners  int           `json:"banners"` // open ports whose banner is being read or waits to be
	Rate     float64       `json:"rate"`    // probes sent per second lately
	Percent  float64       `json:"percent"` // Done as a share of Total, 0-100
	// ETA is the time left at the current rate, counting the retries
	// still to come as this scan has needed them so far.
	ETA time.Duration `json:"eta_ns"`
}

// Summary is what a finished (or stopped) run did.
type Summary struct {
	Stats
	Seed uint64 `json:"seed"`
	// SeedText is Seed in decimal: JSON readers that hold numbers as
	// doubles (jq, JavaScript) lose the low bits of a 64-bit seed.
	SeedText string `json:"seed_str"`
	Shard    Shard  `json:"shard"`
	// From and To are the positions this run covered: [From, To).
	From uint64 `json:"from"`
	To   uint64 `json:"to"`
	// Checkpoint is where to resume (Scanner.StartAt): every position below
	// it has a result. It equals To when the run is complete.
	Checkpoint uint64 `json:"checkpoint"`
	Complete   bool   `json:"complete"`
	// HostsDown counts hosts declared down (see Scanner.HostDownAfter).
	HostsDown int `json:"hosts_down"`
	// Ping is whether host discovery could send ICMP echoes (Scanner.Pinger).
	Ping bool `json:"ping"`
	// Completeness estimates the share of answering ports the scan found:
	// 1 - q^n, where q is the share of answered probes that needed a
	// retry (the loss on the path, as the scan saw it) and n the attempts
	// a port gets. 1 when no answer needed a retry.
	Completeness float64 `json:"completeness"`
	// Raw is what a raw prober (SYN) counted; nil for the others.
	Raw *RawStats `json:"raw,omitempty"`
}

// NewSeed returns a random non-zero permutation seed.
func NewSeed() uint64 {
	for {
		if s := rand.Uint64(); s != 0 {
			return s
		}
	}
}

// Run scans sp and returns what it did. It returns when every position of
// the run has a result, when the prober fails, or when ctx is done: then
// probes in flight are abandoned, and the Summary's Checkpoint says where
// to resume; the error is ctx's.
func (s *Scanner) Run(ctx context.Context, sp Space) (Summary, error) {
	e, err := s.newEngine(sp)
	if err != nil {
		return Summary{}, err
	}
	prober := s.Prober
	if prober == nil {
		prober = ConnectProber{}
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	e.ctx = ctx
	sess, err := prober.Open(ctx, e.inbox.report)
	if err != nil {
		return e.summary(), fmt.Errorf("open prober: %w", err)
	}
	e.sess = sess
	if _, ok := sess.(ackSender); !ok {
		e.ackPorts = nil
	}
	e.flusher, _ = sess.(flusher)
	if is, ok := sess.(icmpSeer); ok {
		e.seesICMP = is.SeesICMP()
	}
	if l, ok := sess.(inFlightLimiter); ok {
		e.fdLimit = max(1, l.InFlightLimit())
		e.sockLimit = min(e.sockLimit, e.fdLimit)
		e.floorLive = min(e.floorLive, e.fdLimit)
	}
	if s.Pinger != nil && e.downAfter > 0 {
		if e.pingSess, err = s.Pinger.Open(ctx, e.inbox.report); err != nil {
			// Discovery still has TCP: say so and go on.
			e.log.Debug("no ICMP echo for host discovery", "err", err)
			e.pingErr, e.pingSess = err, nil
		}
	}
	err = e.loop()
	cancel() // banner grabs in flight stop now
	e.abandon()
	if cerr := sess.Close(); err == nil && cerr != nil {
		err = fmt.Errorf("close prober: %w", cerr)
	}
	if e.pingSess != nil {
		if cerr := e.pingSess.Close(); err == nil && cerr != nil {
			err = fmt.Errorf("close pinger: %w", cerr)
		}
	}
	return e.summary(), err
}

// engine is the state of one Run. Everything but inbox and the banner
// goroutines lives on the goroutine running loop.
type engine struct {
	s        *Scanner
	ctx      context.Context
	sp       Space
	perm     *Permutation
	sess     Session
	pingSess Session // nil: no ICMP in discovery
	pingErr  error   // why there is none, when the Scanner asked for it
	flusher  flusher // sess, when it gathers probes into batches
	log      *slog.Logger
	now      func() time.Time
	inbox    inbox
	replies  []Reply // the batch being handled
	seed     uint64
	lo, hi   uint64 // the run covers positions [lo, hi)
	next     uint64 // first position not yet taken
	begin    time.Time
	clock    time.Time // now, as of this turn of the loop: result timestamps

	window, sockLimit int  // caps on live probes and on probes in flight
	fdLimit           int  // the prober's own cap on probes in flight
	seesICMP          bool // the prober reports ICMP errors itself (icmpSeer)
	retries           int
	minTO, maxTO, iTO time.Duration
	downAfter         int
	discPorts         []portspec.Port
	ackPorts          []portspec.Port // nil when the prober sends no ACK
	bucket            bucket
	floor             bucket    // Scanner.MinRate's
	floorLive         int       // live probes (and probes in flight) allowed while behind the floor
	busyUntil         time.Time // after ErrBusy with nothing in flight

	slots    []*probe // by slot number, for Reply.ID lookups
	free     []*probe
	live     int    // probes created and not yet released
	head     *probe // live probes in position order: head.pos is the checkpoint
	tail     *probe
	timeouts probeHeap // in flight, by deadline
	ready    deque     // to (re)send
	hosts    map[netip.Addr]*host
	global   rttEst
	down     int
	// silentWatch holds hosts by the time their first probe went out, for
	// watchSilent: oldest first, so a pop from the front finds the due ones.
	silentWatch []silentWatch

	portAnswered, retryAnswered uint64 // port probes answered open or closed; of them, on a retry

	bannerPar  int
	banners    int // grabs running
	bannerQ    deque
	bannerDone chan bannerOutcome

	st        Stats
	lastCP    uint64
	nextCP    time.Time
	nextStats time.Time
	rateMark  struct {
		at   time.Time
		sent uint64
	}
}

type phase uint8

const (
	phaseReady    phase = iota // in ready or parked, to be sent
	phaseInFlight              // sent, in timeouts
	phaseBanner                // open, banner being grabbed or queued
)

// probe is one position of the space from the moment it is taken until its
// result is out.
type probe struct {
	pos      uint64
	addr     netip.Addr
	port     portspec.Port
	proto    portspec.Proto
	host     *host
	slot     uint32
	gen      uint32
	id       uint64 // current attempt's ID while in flight
	attempts int
	phase    phase
	sentAt   time.Time
	deadline time.Time
	hidx     int // index in timeouts
	prev     *probe
	next     *probe
	res      Result // while a banner is grabbed
	kind     probeKind
	trickle  bool // held, checked or re-probed one at a time for rate-limited errors (host.rl)
	check    bool // sent as the rate-limit check
}

// probeKind tells a position's probe from host discovery's.
type probeKind uint8

const (
	kindPort probeKind = iota // a position of the space
	kindDisc                  // a TCP discovery probe: no position, no result
	kindPing                  // an ICMP probe for discovery, through the Pinger; port is its PingKind
	kindAck                   // a TCP ACK for discovery, through the prober's ackSender
)

// ackSender is implemented by sessions that can send a bare TCP ACK for
// host discovery (the SYN prober's): a reset answers it, reported Closed.
type ackSender interface {
	SendACK(id uint64, dst netip.AddrPort) error
}

// flusher is implemented by sessions that gather probes into batches
// (SYNProber): Flush sends what has gathered. The engine calls it whenever
// it stops sending for the moment, before it waits.
type flusher interface{ Flush() }

// discState is where a host is in discovery.
type discState uint8

const (
	discNone    discState = iota // not needed (yet)
	discRunning                  // probes out; the host's own probes wait
	discAlive                    // something answered
)

// host is what the scan knows about one address.
type host struct {
	rtt      rttEst
	refs     int // live probes for this host
	inFlight int
	answered int // probes answered open or closed
	silent   int // unanswered attempts in a row
	retried  int // probes sent again for lack of an answer
	// retryAnswered counts probes answered on a retry: proof that the
	// path loses packets and retries pay.
	retryAnswered int
	down          bool
	parked        []*probe // waiting for the slow-start limit
	early         []earlyProbe
	disc          discState
	discLeft      int      // discovery probes not yet settled
	waiting       []*probe // timed out during discovery: retried or settled when it ends
	// closed counts ports answered closed (connect: a refusal may be an
	// ICMP port unreachable) or, for a prober that sees ICMP errors
	// itself (icmpSeer), rejected with one. A host with such ports whose
	// other ports go unanswered may be rejecting them with ICMP errors
	// that it rate-limits (Linux: a burst of 6, then 1/s per destination).
	// A few of them are probed again and waited for past the kernel's SYN
	// retransmission (a second later, when the bucket has refilled): if
	// one is answered, the others are re-probed one at a time (trickle)
	// until the answers stop coming.
	closed       int
	rl           rlState
	checks       int      // check probes in flight
	trickle      []*probe // unanswered after their retries: the check's outcome decides
	trickling    bool     // a trickle probe is in flight
	trickleSince time.Time
	firstSent    time.Time // for Scanner.HostTimeout
}

// expired reports whether h has used up Scanner.HostTimeout.
func (e *engine) expired(h *host) bool {
	return e.s.HostTimeout > 0 && !h.firstSent.IsZero() && e.clock.Sub(h.firstSent) > e.s.HostTimeout
}

// rlState is where a host is in the check for rate-limited ICMP errors.
type rlState uint8

const (
	rlNone     rlState = iota
	rlChecking         // one probe waits for the bucket to refill
	rlOn               // answers came after the refill: trickle
	rlOver             // no answer after a refill, or none lately: filtered
)

// earlyProbe is a probe sent before the host's first RTT sample, with the
// attempt it was; its deadline came from a guess and shrinks when the first
// sample arrives.
type earlyProbe struct {
	p  *probe
	id uint64
}

func (h *host) canSend() bool {
	return h.disc != discRunning && (h.rtt.ok || h.inFlight < slowStart)
}

func orDefault[T int | time.Duration](v, d T) T {
	if v == 0 {
		return d
	}
	return v
}

// Results is how many results a run over sp reports, one per position:
// from StartAt, or the shard's first position, to the shard's end. Zero
// for a shard that is not valid.
func (s *Scanner) Results(sp Space) uint64 {
	if s.Shard.Validate() != nil {
		return 0
	}
	lo, hi := s.Shard.Range(sp.Size())
	if s.StartAt > lo && s.StartAt <= hi {
		lo = s.StartAt
	}
	return hi - lo
}

func (s *Scanner) newEngine(sp Space) (*engine, error) {
	if err := s.Shard.Validate(); err != nil {
		return nil, err
	}
	n := sp.Size()
	lo, hi := s.Shard.Range(n)
	start := lo
	if s.StartAt != 0 {
		if s.StartAt < lo || s.StartAt > hi {
			return nil, fmt.Errorf("resume position %d: outside the shard's positions [%d, %d)", s.StartAt, lo, hi)
		}
		start = s.StartAt
	}
	seed := s.Seed
	if seed == 0 {
		seed = NewSeed()
	}
	e := &engine{
		s: s, sp: sp, seed: seed, lo: start, hi: hi, next: start,
		perm:      NewPermutation(n, seed),
		log:       s.Logger,
		now:       s.Now,
		window:    orDefault(s.Window, DefaultWindow),
		retries:   orDefault(s.Retries, DefaultRetries),
		minTO:     orDefault(s.MinTimeout, DefaultMinTimeout),
		maxTO:     orDefault(s.MaxTimeout, DefaultMaxTimeout),
		iTO:       orDefault(s.InitialTimeout, DefaultInitialTimeout),
		downAfter: orDefault(s.HostDownAfter, DefaultHostDownAfter),
		bannerPar: orDefault(s.BannerParallel, DefaultBannerParallel),
		hosts:     make(map[netip.Addr]*host),
		lastCP:    start,
	}
	if e.log == nil {
		e.log = slog.New(slog.DiscardHandler)
	}
	if e.now == nil {
		e.now = time.Now
	}
	if e.retries < 0 {
		e.retries = 0
	}
	if e.window < 1 {
		e.window = 1
	}
	if e.maxTO < e.minTO {
		e.maxTO = e.minTO
	}
	if pc, ok := sp.(interface{ PortCount() int }); ok && e.downAfter > 0 && pc.PortCount() > 0 {
		// A host with fewer ports than downAfter goes through discovery
		// before its last port is settled, so every host's status is known.
		e.downAfter = min(e.downAfter, pc.PortCount())
	}
	e.discPorts = s.DiscoveryPorts
	if e.discPorts == nil {
		e.discPorts = DefaultDiscoveryPorts
	}
	e.ackPorts = s.DiscoveryACKPorts
	if e.ackPorts == nil {
		e.ackPorts = DefaultDiscoveryACKPorts
	}
	e.sockLimit = e.window
	e.fdLimit = e.window
	e.bannerDone = make(chan bannerOutcome, e.bannerPar)
	e.inbox.signal = make(chan struct{}, 1)
	e.begin = e.now()
	e.bucket = newBucket(s.Rate, e.begin)
	if s.MinRate > 0 {
		e.floor = newBucket(s.MinRate, e.begin)
		e.floorLive = max(1, int(min(s.MinRate*e.maxTO.Seconds(), 1<<20)))
	}
	e.st.Total = hi - start
	e.rateMark.at = e.begin
	e.nextCP = e.begin.Add(orDefault(s.CheckpointEvery, DefaultEvery))
	e.nextStats = e.begin.Add(orDefault(s.StatsEvery, DefaultEvery))
	return e, nil
}

func (e *engine) loop() error {
	timer := time.NewTimer(time.Hour)
	defer timer.Stop()
	for {
		// Checked on every turn, not only when the loop waits: a loop
		// that always has replies to take or probes to send never waits.
		if err := e.ctx.Err(); err != nil {
			return err
		}
		now := e.now()
		e.clock = now
		e.takeReplies()
		if len(e.timeouts) > 0 && !e.timeouts[0].deadline.After(now) {
			// Replies that came in meanwhile beat the deadline.
			e.takeReplies()
		}
		for len(e.timeouts) > 0 && !e.timeouts[0].deadline.After(now) {
			e.onTimeout(e.timeouts[0])
		}
		e.watchSilent(now)
		err := e.dispatch(now)
		if e.flusher != nil {
			e.flusher.Flush()
		}
		if err != nil {
			return err
		}
		e.progress(now)
		if e.next >= e.hi && e.live == 0 {
			return nil
		}

		wake := now.Add(time.Hour)
		if len(e.timeouts) > 0 {
			wake = e.timeouts[0].deadline
		}
		if len(e.silentWatch) > 0 && e.silentWatch[0].at.Before(wake) {
			wake = e.silentWatch[0].at
		}
		if len(e.timeouts) < e.sockLimit && (e.ready.len() > 0 || (e.next < e.hi && e.live < e.window)) {
			// Blocked on a token or on resources, not on the network.
			if at := e.bucket.next(now); at.After(now) && at.Before(wake) {
				wake = at
			}
			if e.busyUntil.After(now) && e.busyUntil.Before(wake) {
				wake = e.busyUntil
			}
		} else if e.floorLive > 0 && len(e.timeouts) < e.floorLive && (e.ready.len() > 0 || e.next < e.hi && e.live < e.floorLive) {
			// Held by the soft limits: under --min-rate they give way when
			// the floor's next token comes (or the rate cap's, or a busy
			// prober's).
			at := now.Add(100 * time.Microsecond)
			for _, t := range []time.Time{e.floor.next(now), e.bucket.next(now), e.busyUntil} {
				if t.After(at) {
					at = t
				}
			}
			if at.Before(wake) {
				wake = at
			}
		}

		if e.s.OnStats != nil && e.nextStats.Before(wake) {
			wake = e.nextStats
		}
		if e.s.OnCheckpoint != nil && e.nextCP.Before(wake) {
			wake = e.nextCP
		}
		timer.Reset(max(wake.Sub(e.now()), 0))
		select {
		case <-e.inbox.signal:
		case <-timer.C:
		case b := <-e.bannerDone:
			e.onBanner(b)
		case <-e.ctx.Done():
			return e.ctx.Err()
		}
	}
}

// dispatch sends what it may: ready probes first (retries, unparked), then
// new positions, within the window, the rate and the prober's resources.
func (e *engine) dispatch(now time.Time) error {
	if e.busyUntil.After(now) {
		return nil
	}
	sent := 0
	for len(e.timeouts) < e.sockLimit || e.behind(now) && len(e.timeouts) < e.floorLive {
		p := e.nextSendable()
		if p == nil {
			return nil
		}
		if !e.bucket.take(now) {
			e.ready.pushFront(p)
			return nil
		}
		if err := e.send(p, now); err != nil {
			if !errors.Is(err, ErrBusy) {
				return err
			}
			e.bucket.giveBack()
			e.ready.pushFront(p)
			if n := len(e.timeouts); n > 0 {
				if n < e.sockLimit {
					e.log.Debug("prober out of resources; lowering in-flight limit", "limit", n, "err", err)
				}
				e.sockLimit = n
			} else {
				e.busyUntil = now.Add(10 * time.Millisecond)
			}
			return nil
		}
		e.floor.spend(now)
		if sent++; sent%64 == 0 {
			// Long bursts move the clock on: deadlines must not start in
			// the past. And they take the answers that came meanwhile (on
			// loopback and veth most come within Send): the probes in
			// hand and the deadline heap stay small, and the results
			// flow during the burst.
			now = e.now()
			e.clock = now
			e.takeReplies()
			if sent >= maxBurst {
				return nil // the loop has timeouts, progress and cancellation to see to
			}
		}
	}
	return nil
}

// behind reports whether the scan has fallen under Scanner.MinRate.
func (e *engine) behind(now time.Time) bool { return e.floorLive > 0 && e.floor.behind(now) }

// maxBurst is the most probes one dispatch sends before it returns to the
// loop.
const maxBurst = 4096

// takeReplies handles the replies reported since the last call.
func (e *engine) takeReplies() {
	e.replies = e.inbox.take(e.replies)
	for _, r := range e.replies {
		e.onReply(r)
	}
}

// nextSendable returns the next probe to send, settling on the way the
// probes that need no sending (their host is down) or cannot go yet (their
// host is in slow start).
func (e *engine) nextSendable() *probe {
	for {
		var p *probe
		switch {
		case e.ready.len() > 0:
			p = e.ready.popFront()
		case e.next < e.hi && (e.live < e.window || e.live < e.floorLive && e.behind(e.clock)):
			p = e.take(e.next)
			e.next++
		default:
			return nil
		}
		h := p.host
		if e.s.DiscoveryOnly && p.kind == kindPort {
			// The position stands for its host: discovery answers for it.
			switch {
			case h.down:
				e.complete(p, e.result(p, Filtered, ReasonHostTimeout, 0))
			case h.disc == discAlive:
				e.complete(p, e.result(p, Open, "discovery", 0))
			default:
				h.waiting = append(h.waiting, p)
				if h.disc == discNone {
					e.discover(p.addr, h)
				}
			}
			continue
		}
		if p.kind != kindPort {
			if h.disc != discRunning {
				e.releaseDisc(p) // discovery ended while it waited
				continue
			}
			return p
		}
		switch {
		case h.down || e.expired(h):
			st, reason := Filtered, ReasonHostTimeout
			if p.attempts > 0 {
				st, reason = silent(p.proto), ReasonNoResponse
			}
			e.complete(p, e.result(p, st, reason, 0))
		case !h.canSend() && !(h.disc != discRunning && e.behind(e.clock)):
			h.parked = append(h.parked, p)
		default:
			return p
		}
	}
}

// alloc returns a free probe set up for addr.
func (e *engine) alloc(addr netip.Addr, port portspec.Port, proto portspec.Proto, kind probeKind) *probe {
	var p *probe
	if n := len(e.free); n > 0 {
		p = e.free[n-1]
		e.free = e.free[:n-1]
	} else {
		p = &probe{slot: uint32(len(e.slots))}
		e.slots = append(e.slots, p)
	}
	p.addr, p.port, p.proto, p.kind = addr, port, proto, kind
	p.attempts, p.phase, p.id = 0, phaseReady, 0
	p.host = e.host(addr)
	p.host.refs++
	return p
}

// take creates the probe for position pos.
func (e *engine) take(pos uint64) *probe {
	addr, port, proto := e.sp.At(e.perm.At(pos))
	p := e.alloc(addr, port, proto, kindPort)
	p.pos = pos
	p.prev, p.next = e.tail, nil
	if e.tail != nil {
		e.tail.next = p
	} else {
		e.head = p
	}
	e.tail = p
	e.live++
	return p
}

func (e *engine) host(a netip.Addr) *host {
	if h := e.hosts[a]; h != nil {
		return h
	}
	if len(e.hosts) >= maxHosts {
		for k, h := range e.hosts {
			if h.refs == 0 {
				delete(e.hosts, k)
				if len(e.hosts) < maxHosts*3/4 {
					break
				}
			}
		}
	}
	h := &host{}
	e.hosts[a] = h
	return h
}

func (e *engine) send(p *probe, now time.Time) error {
	h := p.host
	p.gen++
	p.id = uint64(p.gen)<<32 | uint64(p.slot)
	var err error
	if p.kind == kindAck {
		err = e.sess.(ackSender).SendACK(p.id, netip.AddrPortFrom(p.addr, uint16(p.port)))
	} else {
		err = e.sessFor(p).Send(p.id, netip.AddrPortFrom(p.addr, uint16(p.port)), p.proto)
	}
	if err != nil {
		p.id = 0
		if errors.Is(err, ErrBusy) {
			return err
		}
		return fmt.Errorf("probe %s: %w", netip.AddrPortFrom(p.addr, uint16(p.port)), err)
	}
	p.attempts++
	p.phase = phaseInFlight
	p.sentAt = now
	to := e.timeout(h)
	switch {
	case p.check:
		to = rlCheckTimeout
	case p.trickle:
		// A fresh SYN at short intervals takes a token of the host's ICMP
		// bucket as soon as it refills, without waiting for the kernel's
		// retransmission a second later.
		to = max(e.minTO, min(to, trickleTimeout))
	}
	p.deadline = now.Add(to)
	e.timeouts.push(p)
	h.inFlight++
	if !h.rtt.ok {
		if len(h.early) >= 2*slowStart { // a host that never answers: keep what is in flight
			kept := h.early[:0]
			for _, ep := range h.early {
				if ep.p.id == ep.id && ep.p.phase == phaseInFlight {
					kept = append(kept, ep)
				}
			}
			h.early = kept
		}
		h.early = append(h.early, earlyProbe{p, p.id})
	}
	if h.firstSent.IsZero() {
		h.firstSent = now
		if e.downAfter > 0 && h.disc == discNone {
			e.silentWatch = append(e.silentWatch, silentWatch{p.addr, h, now.Add(e.iTO / silentAfterDiv)})
		}
	}
	e.st.Sent++
	if p.attempts > 1 {
		e.st.Retries++
	}
	return nil
}

// sessFor is the session that sends p.
func (e *engine) sessFor(p *probe) Session {
	if p.kind == kindPing {
		return e.pingSess
	}
	return e.sess
}

// timeout is the RTT-derived wait for an answer from h.
func (e *engine) timeout(h *host) time.Duration {
	t := e.iTO
	switch {
	case h.rtt.ok:
		t = h.rtt.rto()
	case e.global.ok:
		t = e.global.rto()
	}
	return min(max(t, e.minTO), e.maxTO)
}

// landed takes p out of flight; it reports false for a stale ID.
func (e *engine) landed(id uint64) *probe {
	slot := id & 0xffffffff
	if slot >= uint64(len(e.slots)) {
		return nil
	}
	p := e.slots[slot]
	if p.id != id || p.phase != phaseInFlight {
		return nil
	}
	e.timeouts.remove(p)
	p.id = 0
	p.phase = phaseReady
	p.host.inFlight--
	return p
}

func (e *engine) onReply(r Reply) {
	p := e.landed(r.ID)
	if p == nil {
		return // late: cancelled, or a duplicate
	}
	h := p.host
	if r.State == Unknown {
		p.attempts-- // no verdict; the same attempt again
		if p.kind != kindPort {
			e.ready.pushFront(p)
			return
		}
		e.ready.pushBack(p)
		e.unpark(h)
		return
	}
	e.st.Answered++
	if p.kind != kindPort {
		e.onDiscReply(p, r)
		return
	}
	if e.sockLimit < e.window && e.sockLimit < e.fdLimit {
		e.sockLimit++ // recover from ErrBusy, additively
	}
	trickle := p.trickle
	if trickle {
		answered := r.State == Closed || r.State == Open || e.icmpRejected(r)
		if p.check {
			h.checks--
		} else {
			h.trickling = false
		}
		p.trickle, p.check = false, false
		switch {
		case h.rl == rlChecking && answered:
			h.rl = rlOn
			h.trickleSince = e.clock
			e.log.Debug("ICMP errors rate-limited: re-probing one at a time", "addr", p.addr, "ports", len(h.trickle))
		case h.rl == rlChecking && h.checks == 0:
			e.rlOver(h)
		case answered:
			h.trickleSince = e.clock // an answer: the host's bucket refilled
		}
		defer e.nextTrickle(h)
	}
	if e.icmpRejected(r) || (!e.seesICMP && r.State == Closed) {
		h.closed++
	}
	if r.fromHost() {
		first := !h.rtt.ok
		if !trickle {
			// A trickle answer may come from the kernel's own SYN
			// retransmission a second later: not a round trip.
			h.rtt.sample(r.RTT)
			e.global.sample(r.RTT)
		}
		h.answered++
		h.silent = 0
		if p.attempts > 1 {
			h.retryAnswered++
			e.retryAnswered++
		}
		e.portAnswered++
		if first {
			e.shrinkEarly(h)
		}
		e.alive(h, r)
	} else {
		// An ICMP error is not the host answering: a dead host on a LAN
		// says host-unreach through its router.
		h.silent++
		e.checkDown(p.addr, h)
	}
	e.unpark(h)
	res := e.result(p, r.State, r.Reason, r.RTT)
	if r.Service != "" {
		res.Service = r.Service
	}
	res.Banner = r.Banner
	e.finish(p, res)
}

// icmpRejected reports whether r is an ICMP error a raw prober saw: a
// rejection whose kind hosts rate-limit, as connect's refusals may be
// (where the kernel turns an ICMP port unreachable into ECONNREFUSED).
func (e *engine) icmpRejected(r Reply) bool {
	return e.seesICMP && r.State == Filtered && r.Reason != ReasonNoResponse && r.Reason != ReasonTarpit
}

// shrinkEarly moves the deadlines of probes sent before h's first RTT
// sample to what the sample says, so that a dropped port in the first wave
// waits an RTT-derived time, not the initial guess.
func (e *engine) shrinkEarly(h *host) {
	to := e.timeout(h)
	for _, ep := range h.early {
		p := ep.p
		if p.id != ep.id || p.phase != phaseInFlight {
			continue
		}
		if d := p.sentAt.Add(to); d.Before(p.deadline) {
			p.deadline = d
			e.timeouts.fix(p)
		}
	}
	h.early = nil
}

func (e *engine) onTimeout(p *probe) {
	if r, ok := e.sessFor(p).Cancel(p.id); ok {
		r.ID = p.id
		e.onReply(r) // it had answered after all
		return
	}
	p = e.landed(p.id)
	h := p.host
	if p.kind != kindPort {
		if p.attempts <= e.retries && h.disc == discRunning {
			e.ready.pushFront(p)
			return
		}
		e.discMiss(p)
		return
	}
	if p.trickle {
		if p.check {
			p.check = false
			h.checks--
		} else {
			h.trickling = false
		}
		h.trickle = append(h.trickle, p)
		if h.rl == rlChecking && h.checks == 0 {
			// Nothing even after the refill: dropped, not rate-limited.
			e.rlOver(h)
			return
		}
		e.nextTrickle(h)
		return
	}
	h.silent++
	e.checkDown(p.addr, h)
	e.unpark(h)
	if h.disc == discRunning {
		h.waiting = append(h.waiting, p) // discovery says whether to retry it
		return
	}
	if p.attempts <= e.retriesFor(h) && !h.down && !e.expired(h) {
		h.retried++
		e.ready.pushBack(p)
		return
	}
	// The trickle is for TCP: a UDP prober proves silence itself
	// (UDPProber), since a UDP probe draws no retransmission to wait for.
	if p.proto == portspec.TCP && h.closed > 0 && !h.down && !e.expired(h) && h.rl != rlOver {
		p.trickle = true
		if h.rl == rlNone {
			h.rl = rlChecking
			if e.seesICMP {
				// A raw probe has no kernel retransmission to draw a
				// second ICMP error a second later: re-probe one at a
				// time from the start, taking tokens as they refill.
				h.rl, h.trickleSince = rlOn, e.clock
			}
		}
		if h.rl == rlChecking && h.checks < rlChecks {
			p.check = true
			h.checks++
			e.ready.pushFront(p)
			return
		}
		h.trickle = append(h.trickle, p)
		e.nextTrickle(h)
		return
	}
	e.finish(p, e.result(p, silent(p.proto), ReasonNoResponse, 0))
}

// silent is the state of a port that never answered: filtered for TCP,
// open|filtered for UDP, where an open service may well say nothing.
func silent(proto portspec.Proto) State {
	if proto == portspec.UDP {
		return OpenFiltered
	}
	return Filtered
}

// trickleQuiet is how long a host's trickle goes without an answer before
// its remaining ports count as filtered: three times the refill time of
// Linux's ICMP rate limit (net.ipv4.icmp_ratelimit, 1 s), so a host that
// drops (rather than rate-limits) costs that much once. Twice was too
// close: a run of dropped ports between two tokens, on a busy machine,
// passed it and left rejected ports filtered (seen in CI).
const trickleQuiet = 3 * time.Second

// trickleTimeout bounds the wait for a trickle probe's answer.
const trickleTimeout = 250 * time.Millisecond

// rlCheckTimeout is the wait for the rate-limit check's answer: past the
// kernel's first SYN retransmission (1 s), by when a bucket has refilled.
const rlCheckTimeout = 1500 * time.Millisecond

// rlChecks is how many unanswered ports of a host the check probes: any
// of them may be dropped rather than rejected.
const rlChecks = 8

// nextTrickle sends h's next held probe: the check, or one trickle probe
// at a time, each taking a token of the host's ICMP bucket as soon as it
// refills. Once no answer came for trickleQuiet, the rest are filtered:
// dropped, not rate-limited.
func (e *engine) nextTrickle(h *host) {
	if h.rl != rlOn || h.trickling || len(h.trickle) == 0 {
		return
	}
	if h.down || (h.rl == rlOn && e.clock.Sub(h.trickleSince) > trickleQuiet) {
		e.rlOver(h)
		return
	}
	p := h.trickle[0]
	h.trickle = h.trickle[1:]
	h.trickling = true
	e.ready.pushFront(p)
}

// rlOver ends h's re-probing: what is held is filtered.
func (e *engine) rlOver(h *host) {
	h.rl = rlOver
	for _, p := range h.trickle {
		p.trickle = false
		e.finish(p, e.result(p, Filtered, ReasonNoResponse, 0))
	}
	h.trickle = nil
}

// retriesFor is how many retries h's probes get. Like nmap, once many
// probes to a host were retried and no retry ever drew an answer, the host
// drops rather than loses packets, and one retry is enough; an answer to
// a retry restores them all.
func (e *engine) retriesFor(h *host) int {
	if h.retried >= 32 && h.retryAnswered == 0 {
		return min(e.retries, 1)
	}
	return e.retries
}

// silentAfterDiv: a host silent for the initial timeout over this since its
// first probe goes through discovery then, not when its first probes time
// out (see watchSilent). A tenth (100 ms by default): until its first
// answer a host has at most slowStart probes out, so its own probes lose
// nothing while discovery runs, and any answer ends it; a host farther
// away than that costs a few discovery packets, nmap's ping for every
// host. A quarter made a firewalled host whose first slowStart probes all
// went to dropped ports (about half the scans of one with 9% of its ports
// open) wait 250 ms for its RTT (bench/RESULTS.md, 2026-12-08).
const silentAfterDiv = 10

// silentWatch is a host whose first probe went out at at-iTO/silentAfterDiv.
type silentWatch struct {
	addr netip.Addr
	h    *host
	at   time.Time
}

// watchSilent starts discovery on the hosts that have answered nothing
// for a tenth of the initial timeout and have at least downAfter probes
// in flight or waiting. Before any RTT is known, a probe
// waits the whole initial timeout (1 s) and is retried once: a firewalled
// host whose first probes all go to dropped ports cost 2 s before
// discovery found an open port and its RTT (nmap pings first). An answer
// to discovery gives the RTT, which shortens the first probes' waits
// (shrinkEarly). A host that answers within the watch costs nothing more.
func (e *engine) watchSilent(now time.Time) {
	i := 0
	for ; i < len(e.silentWatch) && !e.silentWatch[i].at.After(now); i++ {
		w := e.silentWatch[i]
		// Only a host with downAfter probes out or waiting: one with
		// fewer would not have gone through discovery.
		h := w.h
		if e.hosts[w.addr] == h && h.answered == 0 && !h.down && h.disc == discNone && h.inFlight > 0 && h.inFlight+len(h.parked) >= e.downAfter {
			e.discover(w.addr, h)
		}
	}
	// Popped from the front; the space is taken back when the backing
	// array is reused (append after it fills) or all are gone.
	clear(e.silentWatch[:i])
	e.silentWatch = e.silentWatch[i:]
	if len(e.silentWatch) == 0 {
		e.silentWatch = nil
	}
}

// checkDown starts discovery on a host that has not answered its first
// downAfter probes.
func (e *engine) checkDown(a netip.Addr, h *host) {
	if e.downAfter > 0 && !h.down && h.disc == discNone && h.answered == 0 && h.silent >= e.downAfter {
		e.discover(a, h)
	}
}

// discover sends h's discovery probes, ahead of everything else waiting:
// its own probes wait for the verdict.
func (e *engine) discover(a netip.Addr, h *host) {
	h.disc = discRunning
	for _, port := range e.discPorts {
		e.ready.pushFront(e.alloc(a, port, portspec.TCP, kindDisc))
		h.discLeft++
	}
	for _, port := range e.ackPorts {
		e.ready.pushFront(e.alloc(a, port, portspec.TCP, kindAck))
		h.discLeft++
	}
	if e.pingSess != nil {
		kinds := []PingKind{PingEcho}
		if pk, ok := e.pingSess.(pingKinder); ok {
			kinds = pk.PingKinds(a)
		}
		for _, k := range kinds {
			e.ready.pushFront(e.alloc(a, portspec.Port(k), portspec.TCP, kindPing))
			h.discLeft++
		}
	}
	e.log.Debug("host discovery: no answer yet", "addr", a, "probes", h.silent)
	if h.discLeft == 0 {
		e.hostDown(a, h)
	}
}

// onDiscReply takes an answer to a discovery probe.
func (e *engine) onDiscReply(p *probe, r Reply) {
	h := p.host
	if !r.fromHost() {
		// An ICMP error may come from a router for a host that is not
		// there: not an answer from the host.
		e.discMiss(p)
		return
	}
	first := !h.rtt.ok
	h.rtt.sample(r.RTT)
	e.global.sample(r.RTT)
	if first {
		e.shrinkEarly(h)
	}
	if h.disc == discRunning {
		e.log.Debug("host up: discovery answered", "addr", p.addr, "port", p.port, "kind", p.kind, "reason", r.Reason)
	}
	e.alive(h, r)
	e.releaseDisc(p)
}

// discMiss settles a discovery probe that drew no answer; the last one of
// a host that never answered makes it down.
func (e *engine) discMiss(p *probe) {
	h, a := p.host, p.addr
	e.releaseDisc(p)
	if h.disc != discRunning {
		return
	}
	if h.discLeft--; h.discLeft == 0 {
		e.hostDown(a, h)
	}
}

// alive ends h's discovery, if it runs, with the host up: the probes that
// waited for it go on.
func (e *engine) alive(h *host, r Reply) {
	if h.disc == discAlive {
		return
	}
	running := h.disc == discRunning
	h.disc = discAlive
	if !running {
		return
	}
	for _, p := range h.waiting {
		if e.s.DiscoveryOnly {
			e.complete(p, e.result(p, Open, r.Reason, r.RTT))
			continue
		}
		if p.attempts <= e.retriesFor(h) {
			h.retried++
			e.ready.pushBack(p)
		} else {
			e.finish(p, e.result(p, silent(p.proto), ReasonNoResponse, 0))
		}
	}
	h.waiting = nil
	e.unpark(h)
}

// hostDown gives up on h: neither its ports nor discovery drew an answer.
// The probes that waited for discovery, and every port not probed yet,
// are reported filtered with ReasonHostTimeout.
func (e *engine) hostDown(a netip.Addr, h *host) {
	h.disc = discNone
	h.down = true
	h.early = nil // nothing more is sent to it: let its probes go (memory of silent networks)
	e.down++
	e.log.Debug("host down: no answer to the scan or to discovery", "addr", a, "probes", h.silent)
	for _, p := range h.waiting {
		e.complete(p, e.result(p, Filtered, ReasonHostTimeout, 0))
	}
	h.waiting = nil
	e.unpark(h)
}

// releaseDisc frees a discovery probe.
func (e *engine) releaseDisc(p *probe) {
	p.host.refs--
	p.host = nil
	p.kind = kindPort
	e.free = append(e.free, p)
}

// unpark moves h's parked probes to the ready queue as far as its
// slow-start limit allows (down hosts: all, to be settled).
func (e *engine) unpark(h *host) {
	room := slowStart - h.inFlight
	for len(h.parked) > 0 && (h.down || h.rtt.ok || room > 0) {
		e.ready.pushBack(h.parked[0])
		h.parked = h.parked[1:]
		room--
	}
	if len(h.parked) == 0 {
		h.parked = nil
	}
}

func (e *engine) result(p *probe, st State, reason string, rtt time.Duration) Result {
	r := Result{
		Addr: p.addr, Port: p.port, Proto: p.proto, State: st, Reason: reason,
		RTT: rtt, Time: e.clock, Pos: p.pos,
	}
	if e.s.DiscoveryOnly {
		r.Port = 0 // the host, not a port
		return r
	}
	if e.s.ServiceName != nil {
		r.Service = e.s.ServiceName(p.port, p.proto)
	}
	return r
}

// finish hands an open port to the banner grabber, or completes p.
func (e *engine) finish(p *probe, r Result) {
	if r.State == Open && r.Proto == portspec.TCP && e.s.Banners != nil && e.ctx.Err() == nil {
		p.phase = phaseBanner
		p.res = r
		if e.banners < e.bannerPar {
			e.startBanner(p)
		} else {
			e.bannerQ.pushBack(p)
		}
		return
	}
	e.complete(p, r)
}

// complete emits p's result and releases it.
func (e *engine) complete(p *probe, r Result) {
	e.st.Done++
	if r.State == Open {
		e.st.Open++
	}
	if e.s.OnResult != nil {
		e.s.OnResult(r)
	}
	e.release(p)
}

func (e *engine) release(p *probe) {
	if p.prev != nil {
		p.prev.next = p.next
	} else {
		e.head = p.next
	}
	if p.next != nil {
		p.next.prev = p.prev
	} else {
		e.tail = p.prev
	}
	p.prev, p.next = nil, nil
	p.host.refs--
	p.host = nil
	p.res = Result{}
	e.live--
	e.free = append(e.free, p)
}

type bannerOutcome struct {
	p *probe
	b Banner
}

func (e *engine) startBanner(p *probe) {
	e.banners++
	g, ctx, ap := e.s.Banners, e.ctx, netip.AddrPortFrom(p.addr, uint16(p.port))
	go func() {
		b, _ := g.Grab(ctx, ap) // no banner is an answer too
		e.bannerDone <- bannerOutcome{p, b}
	}()
}

func (e *engine) onBanner(b bannerOutcome) {
	e.banners--
	if e.ctx.Err() == nil {
		r := b.p.res
		r.Banner = b.b.Text
		if b.b.Service != "" {
			r.Service = b.b.Service
		}
		e.complete(b.p, r)
	}
	for e.banners < e.bannerPar && e.bannerQ.len() > 0 {
		e.startBanner(e.bannerQ.popFront())
	}
}

// checkpoint is the first position without a result.
func (e *engine) checkpoint() uint64 {
	if e.head != nil {
		return e.head.pos
	}
	return e.next
}

func (e *engine) progress(now time.Time) {
	if e.s.OnCheckpoint != nil && !now.Before(e.nextCP) {
		e.nextCP = now.Add(orDefault(e.s.CheckpointEvery, DefaultEvery))
		if cp := e.checkpoint(); cp > e.lastCP {
			e.lastCP = cp
			e.s.OnCheckpoint(cp)
		}
	}
	if e.s.OnStats != nil && !now.Before(e.nextStats) {
		e.nextStats = now.Add(orDefault(e.s.StatsEvery, DefaultEvery))
		e.s.OnStats(e.stats(now))
	}
}

func (e *engine) stats(now time.Time) Stats {
	st := e.st
	st.Elapsed = now.Sub(e.begin)
	st.InFlight = len(e.timeouts)
	st.Banners = e.banners + e.bannerQ.len()
	if dt := now.Sub(e.rateMark.at).Seconds(); dt > 0 {
		st.Rate = float64(st.Sent-e.rateMark.sent) / dt
	}
	e.rateMark.at, e.rateMark.sent = now, st.Sent
	if st.Total > 0 {
		st.Percent = 100 * float64(st.Done) / float64(st.Total)
	} else {
		st.Percent = 100
	}
	if st.Rate > 0 && st.Done > 0 {
		perPort := max(1, float64(st.Sent)/float64(st.Done+uint64(st.InFlight)))
		left := float64(st.Total-st.Done)*perPort - float64(st.InFlight)
		st.ETA = time.Duration(max(0, left) / st.Rate * float64(time.Second))
	}
	return st
}

// abandon drops what is still in flight after the loop ended: cancelled
// probes, banner grabs (their context is done, so they return promptly).
func (e *engine) abandon() {
	for _, p := range e.timeouts {
		e.sessFor(p).Cancel(p.id)
	}
	for ; e.banners > 0; e.banners-- {
		<-e.bannerDone
	}
	now := e.now()
	if e.s.OnCheckpoint != nil {
		if cp := e.checkpoint(); cp > e.lastCP {
			e.lastCP = cp
			e.s.OnCheckpoint(cp)
		}
	}
	e.st = e.stats(now)
	e.st.Rate = float64(e.st.Sent) / max(e.st.Elapsed.Seconds(), 1e-9)
	e.st.ETA = 0
}

func (e *engine) summary() Summary {
	cp := e.checkpoint()
	sum := Summary{
		Stats: e.st, Seed: e.seed, SeedText: strconv.FormatUint(e.seed, 10), Shard: e.s.Shard,
		From: e.hi - e.st.Total, To: e.hi,
		Checkpoint: cp, Complete: cp == e.hi, HostsDown: e.down, Ping: e.pingSess != nil,
		Completeness: 1,
	}
	if e.portAnswered > 0 {
		q := float64(e.retryAnswered) / float64(e.portAnswered)
		sum.Completeness = 1 - math.Pow(q, float64(1+e.retries))
	}
	if rs, ok := e.sess.(rawStatser); ok {
		st := rs.RawStats()
		sum.Raw = &st
	}
	return sum
}
