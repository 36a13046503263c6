package watch

import (
	"net/netip"
	"time"

	"portolan/internal/portspec"
)

// Thresholds say when a source is a scanner. A zero field takes the
// default written beside it; DefaultThresholds lists them. A source is
// detected when one of its counts reaches its threshold, so its score,
// the highest count divided by its threshold, reaches 1.
type Thresholds struct {
	// Window is the sliding window of Ports, Hosts and Odd. 0: 60s.
	Window time.Duration
	// Ports: distinct ports of one local address (a vertical scan).
	// 0: 12. A browser or a client retrying one service touches one or
	// two ports; nmap's default scan touches 1,000.
	Ports int
	// Hosts: distinct local addresses on one port (a horizontal sweep).
	// 0: 8.
	Hosts int
	// SlowWindow is the window of SlowPairs. 0: 1h.
	SlowWindow time.Duration
	// SlowPairs: distinct (address, port) pairs over SlowWindow (a slow
	// scan that stays under Ports a minute). 0: 30.
	SlowPairs int
	// Odd: FIN, NULL, Xmas and other SYN-less, ACK-less probes. No TCP
	// stack sends one of its own, so a few are enough. 0: 3.
	Odd int
	// Prefix4 and Prefix6 are the lengths sources are aggregated to,
	// for counting and for bans. 0: 32 and 64 (one IPv6 host usually
	// holds a whole /64 and can hop inside it).
	Prefix4, Prefix6 int
	// Forget: a source's offences older than this no longer escalate
	// its ban. 0: 24h.
	Forget time.Duration
	// MaxSources bounds the sources tracked at once; beyond it new
	// sources are counted (Detector.Untracked) but not followed until
	// idle ones are dropped. 0: 100,000.
	MaxSources int
}

// DefaultThresholds are the thresholds a zero Thresholds stands for.
var DefaultThresholds = Thresholds{
	Window: time.Minute, Ports: 12, Hosts: 8, SlowWindow: time.Hour, SlowPairs: 30, Odd: 3,
	Prefix4: 32, Prefix6: 64, Forget: 24 * time.Hour, MaxSources: 100_000,
}

// WithDefaults returns t with its zero fields set to the defaults.
func (t Thresholds) WithDefaults() Thresholds {
	d := DefaultThresholds
	set := func(p *int, v int) {
		if *p == 0 {
			*p = v
		}
	}
	setD := func(p *time.Duration, v time.Duration) {
		if *p == 0 {
			*p = v
		}
	}
	setD(&t.Window, d.Window)
	set(&t.Ports, d.Ports)
	set(&t.Hosts, d.Hosts)
	setD(&t.SlowWindow, d.SlowWindow)
	set(&t.SlowPairs, d.SlowPairs)
	set(&t.Odd, d.Odd)
	set(&t.Prefix4, d.Prefix4)
	set(&t.Prefix6, d.Prefix6)
	setD(&t.Forget, d.Forget)
	set(&t.MaxSources, d.MaxSources)
	return t
}

// Validate says whether t (with defaults) makes sense.
func (t Thresholds) Validate() error {
	t = t.WithDefaults()
	bad := func(what, msg string) error { return &ParseError{What: "threshold", Input: what, Msg: msg} }
	switch {
	case t.Window < 0 || t.SlowWindow < 0 || t.Forget < 0:
		return bad("window", "negative duration")
	case t.Ports < 0 || t.Hosts < 0 || t.SlowPairs < 0 || t.Odd < 0 || t.MaxSources < 0:
		return bad("count", "negative count")
	case t.Prefix4 < 1 || t.Prefix4 > 32:
		return bad("prefix4", "want 1-32")
	case t.Prefix6 < 1 || t.Prefix6 > 128:
		return bad("prefix6", "want 1-128")
	}
	return nil
}

// SourcePrefix is the prefix a source address counts and is banned
// under.
func (t Thresholds) SourcePrefix(a netip.Addr) netip.Prefix {
	t = t.WithDefaults()
	a = a.Unmap().WithZone("")
	bits := t.Prefix4
	if a.Is6() {
		bits = t.Prefix6
	}
	p, _ := a.Prefix(bits)
	return p
}

// protoPort is a protocol and port in one comparable value.
type protoPort uint32

func mkProtoPort(p portspec.Proto, n portspec.Port) protoPort {
	return protoPort(uint32(p)<<16 | uint32(n))
}

// distinct is a set of keys with the time each was last seen, pruned of
// keys older than the window when it grows to the threshold, so its size
// is the distinct count within the window whenever it matters.
type distinct[K comparable] struct {
	seen map[K]int64
}

// add records k at now and returns the distinct count within window.
// Pruning happens only when the count reaches the threshold, so it costs
// O(threshold) at most once per new key.
func (d *distinct[K]) add(k K, now, window int64, threshold int) int {
	if d.seen == nil {
		d.seen = make(map[K]int64, 4)
	}
	_, had := d.seen[k]
	d.seen[k] = now
	if !had && len(d.seen) >= threshold {
		for k, t := range d.seen {
			if t < now-window {
				delete(d.seen, k)
			}
		}
	}
	return len(d.seen)
}

// source is what the detector keeps of one source prefix.
type source struct {
	last  int64
	ports map[netip.Addr]*distinct[protoPort] // per local address
	hosts map[protoPort]*distinct[netip.Addr] // per port
	pairs distinct[pair]
	odd   []int64 // times of odd-flag probes within Window, oldest first
}

type pair struct {
	dst netip.Addr
	pp  protoPort
}

// offence is a source's detection history.
type offence struct {
	count int
	last  int64
}

// Detector scores sources from the attempts it is shown. It is clocked
// by the attempts' times. It is not safe for concurrent use: one
// goroutine (the capture loop) feeds it.
type Detector struct {
	T Thresholds

	sources   map[netip.Prefix]*source
	offences  map[netip.Prefix]offence
	quiet     map[netip.Prefix]int64 // no new detection before this time
	lastSweep int64
	untracked uint64
}

// NewDetector returns a detector with thresholds t (zero fields: the
// defaults).
func NewDetector(t Thresholds) *Detector {
	return &Detector{T: t.WithDefaults(), sources: map[netip.Prefix]*source{}, offences: map[netip.Prefix]offence{}, quiet: map[netip.Prefix]int64{}}
}

// Untracked is how many attempts came from sources beyond MaxSources.
func (d *Detector) Untracked() uint64 { return d.untracked }

// Sources is how many sources are tracked now.
func (d *Detector) Sources() int { return len(d.sources) }

// Observe counts a and returns a detection when a's source crosses a
// threshold with it. After a detection the source is quiet for Window
// (or as Quiet says): its attempts are not counted, since a scan's
// probes already on their way (captured before a ban took hold) are the
// same offence. Then its counts start again from zero, so a scanner that
// goes on (in a dry run, from behind a never-block entry, or after its
// ban) is detected again, one more offence each time.
func (d *Detector) Observe(a Attempt) (Detection, bool) {
	t := &d.T
	now := a.Time.UnixNano()
	d.sweep(now)
	key := t.SourcePrefix(a.Src)
	if until, ok := d.quiet[key]; ok {
		if now < until {
			return Detection{}, false
		}
		delete(d.quiet, key)
	}
	s := d.sources[key]
	if s == nil {
		if len(d.sources) >= t.MaxSources {
			d.untracked++
			return Detection{}, false
		}
		s = &source{ports: map[netip.Addr]*distinct[protoPort]{}, hosts: map[protoPort]*distinct[netip.Addr]{}}
		d.sources[key] = s
	}
	s.last = now
	win, slow := int64(t.Window), int64(t.SlowWindow)
	dst := a.Dst.Unmap().WithZone("")
	pp := mkProtoPort(a.Proto, a.Port)

	ps := s.ports[dst]
	if ps == nil {
		ps = &distinct[protoPort]{}
		s.ports[dst] = ps
	}
	nPorts := ps.add(pp, now, win, t.Ports)
	hs := s.hosts[pp]
	if hs == nil {
		hs = &distinct[netip.Addr]{}
		s.hosts[pp] = hs
	}
	nHosts := hs.add(dst, now, win, t.Hosts)
	nPairs := s.pairs.add(pair{dst, pp}, now, slow, t.SlowPairs)
	nOdd := 0
	if a.Kind.OddFlags() {
		i := 0
		for i < len(s.odd) && s.odd[i] < now-win {
			i++
		}
		s.odd = append(s.odd[i:], now)
		nOdd = len(s.odd)
	} else if len(s.odd) > 0 {
		nOdd = len(s.odd)
	}

	det := Detection{Time: a.Time, Source: key, Ports: nPorts, Hosts: nHosts, Pairs: nPairs, Odd: nOdd, Trigger: a}
	type cand struct {
		kind  ScanKind
		score float64
	}
	cands := []cand{
		{Vertical, float64(nPorts) / float64(t.Ports)},
		{Horizontal, float64(nHosts) / float64(t.Hosts)},
		{Slow, float64(nPairs) / float64(t.SlowPairs)},
		{OddProbe, float64(nOdd) / float64(t.Odd)},
	}
	best := cands[0]
	for _, c := range cands[1:] {
		if c.score > best.score {
			best = c
		}
	}
	if best.score < 1 {
		return Detection{}, false
	}
	det.Kind, det.Score = best.kind, best.score
	o := d.offences[key]
	if o.count > 0 && now-o.last > int64(t.Forget) {
		o.count = 0
	}
	o.count++
	o.last = now
	d.offences[key] = o
	det.Offence = o.count
	delete(d.sources, key) // start counting again
	d.quiet[key] = now + int64(t.Window)
	return det, true
}

// Quiet keeps the detector from detecting source p again before until
// (a ban's end: the source's packets captured before the ban took hold
// are not a new offence). An earlier time than the default Window after
// the detection does not shorten it.
func (d *Detector) Quiet(p netip.Prefix, until time.Time) {
	if u := until.UnixNano(); u > d.quiet[p] {
		d.quiet[p] = u
	}
}

// Score returns the current score of the source prefix holding addr (0
// when it is not tracked), for the live view.
func (d *Detector) Score(addr netip.Addr) float64 {
	s := d.sources[d.T.SourcePrefix(addr)]
	if s == nil {
		return 0
	}
	var best float64
	for _, p := range s.ports {
		best = max(best, float64(len(p.seen))/float64(d.T.Ports))
	}
	for _, h := range s.hosts {
		best = max(best, float64(len(h.seen))/float64(d.T.Hosts))
	}
	best = max(best, float64(len(s.pairs.seen))/float64(d.T.SlowPairs), float64(len(s.odd))/float64(d.T.Odd))
	return best
}

// sweep drops sources idle for longer than SlowWindow and offences older
// than Forget, at most once per Window.
func (d *Detector) sweep(now int64) {
	if now-d.lastSweep < int64(d.T.Window) {
		return
	}
	d.lastSweep = now
	for k, s := range d.sources {
		if now-s.last > int64(d.T.SlowWindow) {
			delete(d.sources, k)
		}
	}
	for k, o := range d.offences {
		if now-o.last > int64(d.T.Forget) {
			delete(d.offences, k)
		}
	}
	for k, u := range d.quiet {
		if u <= now {
			delete(d.quiet, k)
		}
	}
}
