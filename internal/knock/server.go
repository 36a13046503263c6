package knock

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"portolan/internal/firewall"
	"portolan/internal/nflog"
	"portolan/internal/portspec"
)

// Reasons a request or knock is rejected, as logged and stored.
const (
	ReasonMalformed   = "malformed"
	ReasonUnknownKey  = "unknown key"
	ReasonBadSig      = "bad signature"
	ReasonStale       = "stale timestamp"
	ReasonReplayed    = "replayed nonce"
	ReasonAllowIP     = "allow-ip mismatch"
	ReasonPorts       = "ports not allowed"
	ReasonOpenFailed  = "open failed"
	ReasonReplayStore = "replay cache unavailable"
	// A sealed request that does not decrypt (or no server-key to try):
	// counted, not logged line by line, as junk is.
	ReasonUndecryptable = "undecryptable"
	ReasonUnsealed      = "not sealed" // sealed-only refuses it
	ReasonOneTime       = "one-time sequence not recorded"
)

// Event types.
const (
	EventOpened   = "opened"
	EventClosed   = "closed"
	EventRejected = "rejected"
)

// Event is something a door did: opened for a source, closed (its time
// ran out), or a request rejected.
type Event struct {
	Time    time.Time
	Type    string     // EventOpened, EventClosed, EventRejected
	Via     string     // "spa" or "sequence"
	Door    string     // sequences: the door; SPA: empty
	Src     netip.Addr // the packet's source
	Allow   netip.Addr // the address opened for (SPA may differ from Src with nat)
	Key     string     // SPA: the key's name, when known
	Ports   []DoorPort
	Until   time.Time     // opened: when the kernel closes it
	Reason  string        // rejected: why
	Latency time.Duration // opened: from the kernel's receipt of the last packet to the open
}

// ReplayStore keeps the nonces of accepted requests across restarts.
type ReplayStore interface {
	// AddNonce records nonce until expires and reports whether it was new.
	AddNonce(ctx context.Context, nonce []byte, expires time.Time) (bool, error)
}

// Server is the knock daemon: it reads the knock and SPA packets its doors'
// log rule sends to NFLOG (or, where NFLOG is missing, captures them with
// AF_PACKET) and opens doors through the firewall. Configure
// it with Apply, run it with Serve. The zero value with a Firewall works.
type Server struct {
	// Firewall opens the doors; it names the namespace.
	Firewall *firewall.Firewall
	// Logger gets opened, closed and rejected lines; nil discards.
	Logger *slog.Logger
	// Replay persists SPA nonces; nil keeps them in memory only.
	Replay ReplayStore
	// Events gets every event, from the packet loop: it must not block.
	// Nil: none.
	Events func(Event)
	// Now is the clock; nil means time.Now.
	Now func() time.Time
	// OpenDoor opens ports for src for d; nil means Firewall.OpenDoor.
	OpenDoor func(ctx context.Context, src netip.Addr, ports []DoorPort, d time.Duration) error
	// Capture says how knock packets are read: CaptureNFLOG (the doors'
	// log rule), CapturePacket (AF_PACKET with a BPF filter, needs
	// CAP_NET_RAW), or CaptureAuto, which is NFLOG unless it cannot be
	// opened (no nfnetlink_log) and AF_PACKET then. Empty means
	// CaptureAuto. It cannot change once Apply has run.
	Capture string

	// openNFLOG opens the NFLOG group; nil means nflog.Open. Tests make
	// it fail as a kernel without nfnetlink_log does.
	openNFLOG func(ctx context.Context, cfg nflog.Config) (capture, error)

	mu    sync.Mutex // cfg, keys, track, seen, closers
	cfg   *Config
	keys  map[KeyID]*Key
	track *tracker
	seen  map[[16]byte]time.Time // nonces seen, until when
	until map[closeKey]Event     // the opened event of each open door, for its closed event

	logLimit limiter
	m        metrics
	started  atomic.Bool
	packet   packetCapturer // the AF_PACKET capture, when that is the one
	mode     string         // the capture in use: CaptureNFLOG or CapturePacket
	fellBack error          // why NFLOG was not used in CaptureAuto
}

type closeKey struct {
	src  netip.Addr
	port DoorPort
}

func (s *Server) now() time.Time {
	if s.Now != nil {
		return s.Now()
	}
	return time.Now()
}

func (s *Server) log() *slog.Logger {
	if s.Logger != nil {
		return s.Logger
	}
	return slog.New(slog.DiscardHandler)
}

// Apply validates cfg and makes it the running configuration: it writes
// the doors to the firewall (what is open stays open) and resets sequence
// progress. keys are the authorized keys (nil: no SPA). The first Apply
// opens the capture (see Capture) before it touches the firewall: with
// NFLOG, a second daemon then fails (nflog.ErrGroupBusy) without changing
// the first one's doors; the group cannot change afterwards. With
// AF_PACKET, each Apply sets the capture's filter to the watched ports.
func (s *Server) Apply(ctx context.Context, cfg *Config, keys map[KeyID]*Key) error {
	s.m.init()
	if err := cfg.Validate(); err != nil {
		return err
	}
	s.mu.Lock()
	old := s.cfg
	s.mu.Unlock()
	if old != nil && s.started.Load() && old.group() != cfg.group() {
		return fmt.Errorf("nflog group %d: cannot change from %d while running; restart", cfg.group(), old.group())
	}
	fw := &firewall.Doors{Group: cfg.group(), Prefix: "portolan knock"}
	seenPort := map[DoorPort]bool{}
	for _, d := range cfg.Doors {
		for _, p := range d.Protect {
			if !seenPort[p] {
				seenPort[p] = true
				fw.Protect = append(fw.Protect, p)
			}
		}
		for _, k := range d.knockPorts() {
			if !seenPort[k] {
				seenPort[k] = true
				fw.Watch = append(fw.Watch, k)
			}
		}
	}
	if len(keys) > 0 {
		fw.Watch = append(fw.Watch, DoorPort{Proto: portspec.UDP, Port: portspec.Port(cfg.spaPort())})
	}
	if !s.started.Load() {
		if err := s.listen(ctx, cfg.group(), fw.Watch); err != nil {
			return err
		}
	} else if s.packet != nil {
		if err := s.packet.SetWatch(fw.Watch); err != nil {
			return err
		}
	}
	fw.NoLog = s.packet != nil
	if err := s.Firewall.SetDoors(ctx, fw); err != nil {
		return err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.cfg, s.keys = cfg, keys
	// The tracker's doors are a copy: one-time sequences move on in it.
	s.track = newTracker(slices.Clone(cfg.Doors), 1<<16)
	if s.seen == nil {
		s.seen = map[[16]byte]time.Time{}
		s.until = map[closeKey]Event{}
	}
	return nil
}

// Listen makes sure the capture of the applied configuration is open, so
// that knocks are queued from now on; Serve reads them. Apply opens it
// already: Listen only says whether that was done.
func (s *Server) Listen(ctx context.Context) error {
	if s.started.Load() {
		return nil
	}
	return errors.New("knockd: listen before apply")
}

// listen opens the capture.
func (s *Server) listen(ctx context.Context, group uint16, watch []DoorPort) error {
	mode, err := ParseCapture(s.Capture)
	if err != nil {
		return err
	}
	var c capture
	if mode != CapturePacket {
		open := s.openNFLOG
		if open == nil {
			open = func(ctx context.Context, cfg nflog.Config) (capture, error) {
				r, err := nflog.Open(ctx, cfg)
				if err != nil {
					return nil, err
				}
				return nflogCapture{r}, nil
			}
		}
		c, err = open(ctx, nflog.Config{Group: group, NetNS: s.Firewall.NetNS, CopyRange: captureSnap})
		if err == nil {
			s.mode = CaptureNFLOG
		} else if mode == CaptureNFLOG || !fallBack(err) {
			return err
		}
	}
	if c == nil {
		p, perr := openPacketCapture(s.Firewall.NetNS, watch)
		if perr != nil {
			return errors.Join(err, perr)
		}
		c, s.packet, s.mode, s.fellBack = p, p, CapturePacket, err
	}
	s.m.cap.Store(&captureRef{c})
	s.started.Store(true)
	return nil
}

// Capturing says which capture reads the knocks, CaptureNFLOG or
// CapturePacket ("" before Apply), and, when CaptureAuto fell back to
// AF_PACKET, why NFLOG could not be used.
func (s *Server) Capturing() (mode string, fellBack error) {
	if !s.started.Load() {
		return "", nil
	}
	return s.mode, s.fellBack
}

// Serve reads knock and SPA packets until ctx ends; then it returns nil.
// It calls Listen first if that has not been done. Doors stay as they are
// when it returns: open ones close on their kernel timeouts, and protected
// ports stay closed (the firewall keeps the doors' chain).
func (s *Server) Serve(ctx context.Context) error {
	if s.m.cap.Load() == nil {
		if err := s.Listen(ctx); err != nil {
			return err
		}
	}
	r := s.m.cap.Load().c
	defer r.Close()
	// Closed events and forgetting come on time, packets or not.
	hctx, stop := context.WithCancel(ctx)
	var wg sync.WaitGroup
	defer wg.Wait()
	defer stop()
	wg.Go(func() {
		hk := time.NewTicker(250 * time.Millisecond)
		defer hk.Stop()
		for {
			select {
			case <-hctx.Done():
				return
			case <-hk.C:
				s.housekeep(s.now())
			}
		}
	})
	pkts := make([]nflog.Packet, 64)
	for {
		n, err := r.Read(ctx, pkts)
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			return err
		}
		for i := range pkts[:n] {
			s.handle(ctx, &pkts[i])
		}
	}
}

// handle takes one logged packet. Nothing in it may stop the loop: every
// outcome is a count, a log line or an event.
func (s *Server) handle(ctx context.Context, p *nflog.Packet) {
	f, err := p.Flow()
	if err != nil || f.Fragment {
		s.m.junk.Inc()
		return
	}
	at := p.Timestamp
	if at.IsZero() {
		at = s.now()
	}
	s.mu.Lock()
	cfg := s.cfg
	s.mu.Unlock()
	src := f.Src.Addr().Unmap()
	switch {
	case f.Proto == nflog.ProtoUDP && f.Dst.Port() == cfg.spaPort():
		s.m.packets.WithLabelValues("spa").Inc()
		s.spa(ctx, cfg, at, src, f.Data)
	case f.Proto == nflog.ProtoTCP:
		if f.TCPFlags&(nflog.TCPSyn|nflog.TCPAck) != nflog.TCPSyn {
			s.m.junk.Inc()
			return
		}
		s.m.packets.WithLabelValues("knock").Inc()
		s.knock(ctx, at, src, f.Src.Port(), DoorPort{Proto: portspec.TCP, Port: portspec.Port(f.Dst.Port())})
	case f.Proto == nflog.ProtoUDP:
		s.m.packets.WithLabelValues("knock").Inc()
		s.knock(ctx, at, src, f.Src.Port(), DoorPort{Proto: portspec.UDP, Port: portspec.Port(f.Dst.Port())})
	default:
		s.m.junk.Inc()
	}
}

func (s *Server) knock(ctx context.Context, at time.Time, src netip.Addr, sport uint16, k DoorPort) {
	s.mu.Lock()
	opened, full := s.track.knock(at, src, sport, k)
	cfg := s.cfg
	s.mu.Unlock()
	if full {
		s.m.junk.Inc()
	}
	for _, i := range opened {
		d := &cfg.Doors[i]
		ev := Event{Via: "sequence", Door: d.Name, Src: src, Allow: src, Ports: d.Protect}
		if d.OneTime != "" {
			// Used before it opens: a sequence that cannot be marked used
			// must not open twice.
			if err := s.useOneTime(d, i); err != nil {
				s.reject(ev, ReasonOneTime, "err", err)
				continue
			}
		}
		s.open(ctx, ev, at, d.openFor())
	}
}

// useOneTime marks the one-time sequence door i just completed used in its
// file and moves the door on to the next.
func (s *Server) useOneTime(d *Door, i int) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if i >= len(s.track.doors) || s.track.doors[i].OneTime != d.OneTime {
		return fmt.Errorf("door %s: changed by a reload meanwhile", d.Name)
	}
	td := &s.track.doors[i]
	ot := td.oneTime
	if ot == nil || len(ot.Seqs) == 0 {
		return fmt.Errorf("door %s: no one-time sequence left", d.Name)
	}
	if err := markUsed(d.OneTime, ot.Lines[0], ot.Seqs[0], s.now()); err != nil {
		return err
	}
	td.oneTime = &OneTime{Seqs: ot.Seqs[1:], Lines: ot.Lines[1:]}
	td.Sequence = nil
	if len(td.oneTime.Seqs) > 0 {
		td.Sequence = td.oneTime.Seqs[0]
	} else {
		s.log().Warn("one-time sequences used up: the door opens by SPA only now, if at all", "door", d.Name, "file", d.OneTime)
	}
	s.track.forget(i)
	return nil
}

func (s *Server) spa(ctx context.Context, cfg *Config, at time.Time, src netip.Addr, data []byte) {
	ev := Event{Via: "spa", Src: src}
	sealed := IsSealed(data)
	if sealed {
		var err error
		if cfg.ServerPrivate == nil {
			err = errors.New("no server-key to open sealed requests with")
		} else {
			data, err = Unseal(data, cfg.ServerPrivate)
		}
		if err != nil {
			s.m.rejects.WithLabelValues(ReasonUndecryptable).Inc()
			s.log().Debug("sealed spa datagram not opened", "src", src, "err", err)
			return
		}
	}
	req, signed, auth, err := ParseSPA(data)
	if err != nil {
		// Junk on the SPA port is counted, not logged line by line.
		s.m.rejects.WithLabelValues(ReasonMalformed).Inc()
		s.log().Debug("spa datagram not understood", "src", src, "err", err)
		return
	}
	if cfg.SealedOnly && !sealed {
		s.reject(ev, ReasonUnsealed)
		return
	}
	s.mu.Lock()
	k := s.keys[req.KeyID]
	s.mu.Unlock()
	if k == nil {
		s.reject(ev, ReasonUnknownKey, "key_id", req.KeyID.String())
		return
	}
	ev.Key = k.Name
	if k.Alg != req.Alg || !k.verify(signed, auth) {
		s.reject(ev, ReasonBadSig)
		return
	}
	now := s.now()
	if skew := now.Sub(req.Time); skew > cfg.window() || skew < -cfg.window() {
		s.reject(ev, ReasonStale, "skew", skew.Round(time.Millisecond).String())
		return
	}
	ev.Allow, ev.Ports = req.AllowIP.Unmap(), req.Ports
	if ev.Allow != src && !k.NAT {
		s.reject(ev, ReasonAllowIP)
		return
	}
	openFor, ok := cfg.spaDoorsFor(req.Ports)
	if ok && k.Ports != nil {
		for _, p := range req.Ports {
			if !k.Ports.Has(p.Proto, p.Port) {
				ok = false
			}
		}
	}
	if !ok {
		s.reject(ev, ReasonPorts)
		return
	}
	if req.Duration > 0 && req.Duration < openFor {
		openFor = req.Duration
	}
	if k.Max > 0 && openFor > k.Max {
		openFor = k.Max
	}
	// The nonce is recorded only for authentic requests, so junk cannot
	// fill the cache; it is kept while its timestamp is acceptable.
	expires := req.Time.Add(cfg.window())
	s.mu.Lock()
	_, replay := s.seen[req.Nonce]
	if !replay {
		s.seen[req.Nonce] = expires
	}
	s.mu.Unlock()
	if !replay && s.Replay != nil {
		isNew, err := s.Replay.AddNonce(ctx, req.Nonce[:], expires)
		if err != nil {
			s.reject(ev, ReasonReplayStore, "err", err)
			return
		}
		replay = !isNew
	}
	if replay {
		s.reject(ev, ReasonReplayed)
		return
	}
	s.open(ctx, ev, at, openFor)
}

// open opens ev's ports for ev.Allow for d and reports it.
func (s *Server) open(ctx context.Context, ev Event, at time.Time, d time.Duration) {
	open := s.OpenDoor
	if open == nil {
		open = s.Firewall.OpenDoor
	}
	if err := open(ctx, ev.Allow, ev.Ports, d); err != nil {
		s.reject(ev, ReasonOpenFailed, "err", err)
		return
	}
	now := s.now()
	ev.Time, ev.Type, ev.Until, ev.Latency = now, EventOpened, now.Add(d), now.Sub(at)
	s.m.opens.WithLabelValues(ev.Via).Inc()
	s.m.latency.Observe(ev.Latency.Seconds())
	s.mu.Lock()
	for _, p := range ev.Ports {
		s.until[closeKey{ev.Allow, p}] = ev
	}
	s.mu.Unlock()
	s.log().Info("door opened", "via", ev.Via, "door", ev.Door, "key", ev.Key, "src", ev.Src, "allow", ev.Allow,
		"ports", portsString(ev.Ports), "for", d.String(), "latency", ev.Latency.String())
	s.emit(ev)
}

func (s *Server) reject(ev Event, reason string, attrs ...any) {
	ev.Time, ev.Type, ev.Reason = s.now(), EventRejected, reason
	s.m.rejects.WithLabelValues(reason).Inc()
	if suppressed, ok := s.logLimit.allow(ev.Time); ok {
		args := append([]any{"via", ev.Via, "reason", reason, "src", ev.Src, "key", ev.Key}, attrs...)
		if suppressed > 0 {
			args = append(args, "suppressed", suppressed)
		}
		s.log().Warn("request rejected", args...)
	}
	s.emit(ev)
}

func (s *Server) emit(ev Event) {
	if s.Events != nil {
		s.Events(ev)
	}
}

// housekeep forgets expired nonces and progress, and reports doors whose
// time ran out as closed.
func (s *Server) housekeep(now time.Time) {
	var closed []Event
	s.mu.Lock()
	for n, exp := range s.seen {
		if now.After(exp) {
			delete(s.seen, n)
		}
	}
	s.track.sweep(now)
	for k, o := range s.until {
		if !now.Before(o.Until) {
			delete(s.until, k)
			closed = append(closed, Event{Time: o.Until, Type: EventClosed, Via: o.Via, Door: o.Door, Key: o.Key,
				Src: o.Src, Allow: k.src, Ports: []DoorPort{k.port}})
		}
	}
	s.mu.Unlock()
	for _, ev := range closed {
		s.m.closes.Inc()
		s.log().Info("door closed", "via", ev.Via, "door", ev.Door, "key", ev.Key, "allow", ev.Allow, "ports", portsString(ev.Ports))
		s.emit(ev)
	}
}

func portsString(ps []DoorPort) string {
	set := &portspec.Set{}
	for _, p := range ps {
		set.Add(p.Proto, p.Port)
	}
	return set.String()
}

// limiter lets a few rejected lines a second through and counts the rest,
// so a flood of bad requests is counted, not logged line by line.
type limiter struct {
	mu         sync.Mutex
	second     int64
	n          int
	suppressed int
}

const logsPerSecond = 10

func (l *limiter) allow(now time.Time) (suppressed int, ok bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if sec := now.Unix(); sec != l.second {
		l.second, l.n = sec, 0
	}
	if l.n >= logsPerSecond {
		l.suppressed++
		return 0, false
	}
	l.n++
	suppressed, l.suppressed = l.suppressed, 0
	return suppressed, true
}

// metrics are the daemon's Prometheus metrics.
type metrics struct {
	once    sync.Once
	packets *prometheus.CounterVec
	opens   *prometheus.CounterVec
	rejects *prometheus.CounterVec
	closes  prometheus.Counter
	junk    prometheus.Counter
	latency prometheus.Histogram
	cap     atomic.Pointer[captureRef]
	lost    *prometheus.Desc
	plost   *prometheus.Desc
}

type captureRef struct{ c capture }

func (m *metrics) init() {
	m.once.Do(func() {
		m.packets = prometheus.NewCounterVec(prometheus.CounterOpts{Name: "portolan_knock_packets_total", Help: "Knock and SPA packets seen."}, []string{"kind"})
		m.opens = prometheus.NewCounterVec(prometheus.CounterOpts{Name: "portolan_knock_opens_total", Help: "Doors opened."}, []string{"via"})
		m.rejects = prometheus.NewCounterVec(prometheus.CounterOpts{Name: "portolan_knock_rejects_total", Help: "Requests rejected, by reason."}, []string{"reason"})
		m.closes = prometheus.NewCounter(prometheus.CounterOpts{Name: "portolan_knock_closes_total", Help: "Open doors whose time ran out."})
		m.junk = prometheus.NewCounter(prometheus.CounterOpts{Name: "portolan_knock_junk_total", Help: "Logged packets that were no knock (not a SYN, undecodable, over the source limit)."})
		m.latency = prometheus.NewHistogram(prometheus.HistogramOpts{Name: "portolan_knock_open_latency_seconds", Help: "From the kernel's receipt of the last knock or the SPA datagram to the door open.",
			Buckets: prometheus.ExponentialBuckets(0.0001, 2, 14)})
		m.lost = prometheus.NewDesc("portolan_knock_nflog_lost_total", "Logged packets the kernel dropped before knockd read them.", nil, nil)
		m.plost = prometheus.NewDesc("portolan_knock_packet_lost_total", "Knock packets the AF_PACKET capture's full buffer dropped.", nil, nil)
	})
}

// Describe implements prometheus.Collector.
func (s *Server) Describe(ch chan<- *prometheus.Desc) {
	s.m.init()
	s.m.packets.Describe(ch)
	s.m.opens.Describe(ch)
	s.m.rejects.Describe(ch)
	s.m.closes.Describe(ch)
	s.m.junk.Describe(ch)
	s.m.latency.Describe(ch)
	ch <- s.m.lost
	ch <- s.m.plost
}

// Collect implements prometheus.Collector.
func (s *Server) Collect(ch chan<- prometheus.Metric) {
	s.m.init()
	s.m.packets.Collect(ch)
	s.m.opens.Collect(ch)
	s.m.rejects.Collect(ch)
	s.m.closes.Collect(ch)
	s.m.junk.Collect(ch)
	s.m.latency.Collect(ch)
	// Only the capture in use has a lost count.
	desc, lost := s.m.lost, uint64(0)
	if r := s.m.cap.Load(); r != nil {
		lost = r.c.Lost()
		if _, ok := r.c.(packetCapturer); ok {
			desc = s.m.plost
		}
	}
	ch <- prometheus.MustNewConstMetric(desc, prometheus.CounterValue, float64(lost))
}
