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
	targets []*target
	balance Balance
	next    atomic.Uint32
}

type target struct {
	addr string
	net  string      // "tcp" or "udp", for a port given by service name
	down atomic.Bool // set by health checks only

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

func newPool(r *Rule) *pool {
	p := &pool{balance: r.Balance}
	for _, a := range r.Targets {
		t := &target{addr: a, net: r.Proto.String()}
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

// candidates returns the healthy targets in the order to try them.
func (p *pool) candidates(buf []*target) []*target {
	n := len(p.targets)
	start := 0
	if p.balance == RoundRobin && n > 1 {
		start = int(p.next.Add(1)-1) % n
	}
	for i := range n {
		t := p.targets[(start+i)%n]
		if !t.down.Load() {
			buf = append(buf, t)
		}
	}
	return buf
}

// dialEach calls dial with the address of each healthy target in turn
// until one succeeds, and returns that target; on failure, the last one
// tried and its error. It stops early when dial says so (stop).
func (p *pool) dialEach(dial func(netip.AddrPort) (stop bool, err error)) (string, error) {
	var arr [8]*target
	name, err := "", error(errNoHealthy)
	for _, t := range p.candidates(arr[:0]) {
		name = t.addr
		ap, e := t.dialAddr()
		stop := false
		if e == nil {
			stop, e = dial(ap)
		}
		if err = e; err == nil || stop {
			break
		}
	}
	return name, err
}

// dialTCP connects to the first candidate that answers.
func (p *pool) dialTCP(ctx context.Context, d *net.Dialer) (*net.TCPConn, string, error) {
	var c net.Conn
	name, err := p.dialEach(func(ap netip.AddrPort) (bool, error) {
		var err error
		c, err = d.DialContext(ctx, "tcp", ap.String())
		return ctx.Err() != nil, err
	})
	if err != nil {
		return nil, name, err
	}
	return c.(*net.TCPConn), name, nil
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
			c, err := d.DialContext(ctx, "tcp", t.addr)
			if ctx.Err() != nil {
				return
			}
			if err == nil {
				c.(*net.TCPConn).SetLinger(0) // no TIME_WAIT per check
				c.Close()
			}
			wasDown := t.down.Swap(err != nil)
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
