package forward

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"sync/atomic"
	"time"
)

// pool is a rule's targets with their health and the balancing cursor.
type pool struct {
	targets     []*target
	balance     Balance
	next        atomic.Uint32
	maxFails    int           // dial failures in a row that take a target out (0: never)
	failTimeout time.Duration // how long it stays out
}

type target struct {
	addr  string
	net   string      // "tcp" or "udp", for a port given by service name
	down  atomic.Bool // set by health checks only
	stats *targetStats

	// Passive ejection, as nginx's max_fails and fail_timeout: after
	// maxFails dial failures in a row a target is left out of the
	// rotation until ejectedTil (unix nanoseconds), so that a dead or
	// black-holed target stops costing clients a connect attempt each.
	fails      atomic.Int32
	ejectedTil atomic.Int64

	// A target named by host name keeps its last resolved address, so
	// that a listener's event loop never waits on DNS: the name is
	// resolved when the rule is loaded and again in the background once
	// the address is older than resolveTTL (or a second after a failed
	// lookup).
	ip        netip.AddrPort // the address when addr is not a name
	resolved  atomic.Pointer[resolution]
	resolving atomic.Bool
}

type resolution struct {
	ap  netip.AddrPort
	err error
	at  time.Time
}

// resolveTTL is how long a resolved target is used before it is
// looked up again (while the old address stays in use).
const resolveTTL = 30 * time.Second

// resolveTimeout bounds one lookup of a target's name.
const resolveTimeout = 5 * time.Second

func newPool(r *Rule, st *ruleStats) *pool {
	p := &pool{balance: r.Balance, maxFails: r.maxFails(), failTimeout: r.failTimeout()}
	for _, a := range r.Targets {
		t := &target{addr: a, net: r.Proto.String(), stats: st.target(a)}
		if ap, err := netip.ParseAddrPort(a); err == nil {
			t.ip = ap
		} else {
			t.resolve()
		}
		p.targets = append(p.targets, t)
	}
	return p
}

// resolve looks the target's name up and stores the answer (an address
// that resolved before is kept when a later lookup fails).
func (t *target) resolve() {
	ctx, cancel := context.WithTimeout(context.Background(), resolveTimeout)
	defer cancel()
	ua, err := resolveHostPort(ctx, t.net, t.addr)
	r := &resolution{ap: ua, err: err, at: time.Now()}
	if old := t.resolved.Load(); err != nil && old != nil && old.err == nil {
		r.ap, r.err = old.ap, nil
	}
	t.resolved.Store(r)
}

// dialAddr returns the address to connect a new connection or UDP session
// to without blocking: a literal address, or the name's last resolution,
// refreshed in the background when it is stale.
func (t *target) dialAddr() (netip.AddrPort, error) {
	if t.ip.IsValid() {
		return t.ip, nil
	}
	r := t.resolved.Load()
	stale := r == nil || time.Since(r.at) > resolveTTL || (r.err != nil && time.Since(r.at) > time.Second)
	if stale && t.resolving.CompareAndSwap(false, true) {
		go func() {
			defer t.resolving.Store(false)
			t.resolve()
		}()
	}
	if r == nil {
		return netip.AddrPort{}, fmt.Errorf("resolve %s: lookup in progress", t.addr)
	}
	return r.ap, r.err
}

// resolveHostPort resolves a host:port to one address, preferring IPv4
// for a name with both, as net.ResolveTCPAddr and ResolveUDPAddr do.
func resolveHostPort(ctx context.Context, network, hostport string) (netip.AddrPort, error) {
	host, port, err := net.SplitHostPort(hostport)
	if err != nil {
		return netip.AddrPort{}, err
	}
	pn, err := net.DefaultResolver.LookupPort(ctx, network, port)
	if err != nil {
		return netip.AddrPort{}, err
	}
	ips, err := net.DefaultResolver.LookupNetIP(ctx, "ip", host)
	if err != nil {
		return netip.AddrPort{}, err
	}
	best := ips[0]
	for _, ip := range ips {
		if ip.Unmap().Is4() {
			best = ip
			break
		}
	}
	return netip.AddrPortFrom(best.Unmap(), uint16(pn)), nil
}

// errNoHealthy is returned when health checks have marked every target down.
var errNoHealthy = errors.New("no healthy target")

// candidates returns the targets to try, in order: round-robin rotates
// over the live targets only (not over all of them, skipping the dead,
// which gave the target after a dead one its share too). Targets taken
// out passively are tried last, so that a client is not refused while
// one might answer; targets a health check marked down are not tried.
func (p *pool) candidates(buf []*target) []*target {
	var now int64
	live := 0
	for _, t := range p.targets {
		if t.available(&now) {
			live++
		}
	}
	start := 0
	if p.balance == RoundRobin && live > 1 {
		start = int(p.next.Add(1)-1) % live
	}
	// The live targets from the start-th on, then those before it.
	first := len(buf)
	i := 0
	for _, t := range p.targets {
		if t.available(&now) {
			if i >= start {
				buf = append(buf, t)
			}
			i++
		}
	}
	i = 0
	for _, t := range p.targets {
		if t.available(&now) {
			if i < start {
				buf = append(buf, t)
			}
			i++
		}
	}
	if len(buf)-first < len(p.targets) {
		for _, t := range p.targets {
			if !t.down.Load() && !t.available(&now) {
				buf = append(buf, t)
			}
		}
	}
	return buf
}

// available says whether t is in the rotation: not marked down by a
// health check, nor taken out after failures. now is read once, and only
// when a target was taken out.
func (t *target) available(now *int64) bool {
	if t.down.Load() {
		return false
	}
	til := t.ejectedTil.Load()
	if til == 0 {
		return true
	}
	if *now == 0 {
		*now = time.Now().UnixNano()
	}
	return *now >= til
}

// dialed records the outcome of a connect to t: failures in a row take it
// out for the pool's fail timeout; a success puts it back.
func (p *pool) dialed(t *target, err error) {
	if err == nil {
		if t.fails.Load() != 0 {
			t.fails.Store(0)
			t.ejectedTil.Store(0)
		}
		t.stats.total.Add(1)
		return
	}
	t.stats.dialErrs.Add(1)
	if p.maxFails > 0 && int(t.fails.Add(1)) >= p.maxFails {
		t.ejectedTil.Store(time.Now().Add(p.failTimeout).UnixNano())
	}
}

// dialEach calls dial with the address of each candidate in turn until
// one succeeds, and returns that target; on failure, the last one tried
// and its error (t nil if none was). It stops early when dial says so
// (stop).
func (p *pool) dialEach(dial func(netip.AddrPort) (stop bool, err error)) (*target, error) {
	var arr [8]*target
	var last *target
	err := error(errNoHealthy)
	for _, t := range p.candidates(arr[:0]) {
		last = t
		ap, e := t.dialAddr()
		stop := false
		if e == nil {
			stop, e = dial(ap)
			if !stop {
				p.dialed(t, e)
			}
		}
		if err = e; err == nil || stop {
			break
		}
	}
	return last, err
}

// dialTCP connects to the first candidate that answers.
func (p *pool) dialTCP(ctx context.Context, d *net.Dialer) (*net.TCPConn, *target, error) {
	var c net.Conn
	t, err := p.dialEach(func(ap netip.AddrPort) (bool, error) {
		var err error
		c, err = d.DialContext(ctx, "tcp", ap.String())
		return ctx.Err() != nil, err
	})
	if err != nil {
		return nil, t, err
	}
	return c.(*net.TCPConn), t, nil
}

// check runs active TCP connect checks every interval until ctx ends.
func (p *pool) check(ctx context.Context, rule string, interval, timeout time.Duration, log *slog.Logger) {
	if timeout > interval {
		timeout = interval
	}
	d := net.Dialer{Timeout: timeout, KeepAlive: -1}
	tick := time.NewTicker(interval)
	defer tick.Stop()
	for {
		for _, t := range p.targets {
			network, addr := checkNet(t.addr)
			c, err := d.DialContext(ctx, network, addr)
			if ctx.Err() != nil {
				return
			}
			if err == nil {
				if tc, ok := c.(*net.TCPConn); ok {
					tc.SetLinger(0) // no TIME_WAIT per check
				}
				c.Close()
			}
			wasDown := t.down.Swap(err != nil)
			if err == nil {
				// Up by a check: back in the rotation at once.
				t.fails.Store(0)
				t.ejectedTil.Store(0)
			}
			switch {
			case err != nil && !wasDown:
				log.Warn("target down", "rule", rule, "target", t.addr, "err", err)
			case err == nil && wasDown:
				log.Info("target up", "rule", rule, "target", t.addr)
			}
		}
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
	}
}
