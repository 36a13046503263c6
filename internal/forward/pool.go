package forward

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"net"
	"net/netip"
	"os"
	"slices"
	"sync"
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
	addr   string      // host:port
	weight int         // its share in round-robin, least-conn and source-hash; at least 1
	net    string      // "tcp" or "udp", for a port given by service name
	down   atomic.Bool // set by health checks only
	stats  *targetStats

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
	for _, spec := range r.Targets {
		a, w, err := parseTarget(spec)
		if err != nil {
			// Validate refused it before: keep the text as the address.
			a, w = spec, 1
		}
		t := &target{addr: a, weight: w, net: r.Proto.String(), stats: st.target(a)}
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

// candidates returns the targets to try for a client, in order: the
// balancing strategy's choice first, then the other live targets (for
// failover), then targets taken out passively (tried last, so that a
// client is not refused while one might answer). Targets a health check
// marked down are not tried. Round-robin rotates over the live targets
// only (rotating over all of them, skipping the dead, gave the target
// after a dead one its share too), in proportion to their weights.
func (p *pool) candidates(buf []*target, client netip.Addr) []*target {
	var now int64
	first := len(buf)
	for _, t := range p.targets {
		if t.available(&now) {
			buf = append(buf, t)
		}
	}
	live := buf[first:]
	if len(live) > 1 {
		switch p.balance {
		case RoundRobin:
			p.rotate(live)
		case LeastConn:
			p.rotate(live) // ties go round
			best := 0
			for i, t := range live {
				// fewer connections per unit of weight: a/wa < b/wb
				if t.stats.active.Load()*int64(live[best].weight) < live[best].stats.active.Load()*int64(t.weight) {
					best = i
				}
			}
			live[0], live[best] = live[best], live[0]
		case SourceHash:
			sortByScore(live, client)
		}
	}
	if len(live) < len(p.targets) {
		for _, t := range p.targets {
			if !t.down.Load() && !t.available(&now) {
				buf = append(buf, t)
			}
		}
	}
	return buf
}

// rotate puts the next target in the weighted rotation first, the others
// after it in list order. With weights w1..wn the rotation gives target i
// wi of every w1+...+wn connections.
func (p *pool) rotate(live []*target) {
	sum := 0
	for _, t := range live {
		sum += t.weight
	}
	k := int(p.next.Add(1)-1) % sum
	start := 0
	for i, t := range live {
		if k < t.weight {
			start = i
			break
		}
		k -= t.weight
	}
	slices.Reverse(live[:start])
	slices.Reverse(live[start:])
	slices.Reverse(live)
}

// sortByScore orders targets by their weighted rendezvous score for the
// client, highest first: each client's order depends only on the client
// and the targets themselves, so a target that goes or comes moves only
// its own clients.
func sortByScore(live []*target, client netip.Addr) {
	a := client.Unmap().As16()
	var arr [8]float64
	scores := arr[:0]
	for _, t := range live {
		// FNV-1a of the client's address and the target's: no
		// allocation per connection.
		h := uint64(14695981039346656037)
		for _, b := range a {
			h = (h ^ uint64(b)) * 1099511628211
		}
		for i := 0; i < len(t.addr); i++ {
			h = (h ^ uint64(t.addr[i])) * 1099511628211
		}
		// Mixed (murmur3's finalizer), so that neighbouring client
		// addresses score independently.
		h ^= h >> 33
		h *= 0xff51afd7ed558ccd
		h ^= h >> 33
		h *= 0xc4ceb9fe1a85ec53
		h ^= h >> 33
		// A uniform value in (0,1) from the hash, then weight / -ln(u):
		// the largest wins with probability proportional to the weight.
		u := (float64(h>>11) + 0.5) / (1 << 53)
		scores = append(scores, float64(t.weight)/-math.Log(u))
	}
	// Few targets: insertion sort, keeping scores beside them.
	for i := 1; i < len(live); i++ {
		for j := i; j > 0 && scores[j] > scores[j-1]; j-- {
			scores[j], scores[j-1] = scores[j-1], scores[j]
			live[j], live[j-1] = live[j-1], live[j]
		}
	}
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
func (p *pool) dialEach(client netip.Addr, dial func(netip.AddrPort) (stop bool, err error)) (*target, error) {
	var arr [8]*target
	var last *target
	err := error(errNoHealthy)
	for _, t := range p.candidates(arr[:0], client) {
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
func (p *pool) dialTCP(ctx context.Context, d *net.Dialer, client netip.Addr) (*net.TCPConn, *target, error) {
	var c net.Conn
	t, err := p.dialEach(client, func(ap netip.AddrPort) (bool, error) {
		var err error
		c, err = d.DialContext(ctx, "tcp", ap.String())
		return ctx.Err() != nil, err
	})
	if err != nil {
		return nil, t, err
	}
	return c.(*net.TCPConn), t, nil
}

// healthCheck is how a pool checks its targets.
type healthCheck struct {
	interval, timeout time.Duration
	rise, fall        int
	send, expect      []byte
	proto             Proto
}

func newHealthCheck(r *Rule) healthCheck {
	hc := healthCheck{interval: r.HealthInterval, timeout: min(r.connectTimeout(), r.HealthInterval),
		rise: r.HealthRise, fall: r.HealthFall, send: []byte(r.HealthSend), expect: []byte(r.HealthExpect), proto: r.Proto}
	if hc.rise == 0 {
		hc.rise = DefaultHealthRise
	}
	if hc.fall == 0 {
		hc.fall = DefaultHealthFall
	}
	return hc
}

// check runs the health checks every interval until ctx ends: every
// target at once, each check bounded by the timeout. A target goes down
// after fall failed checks in a row and comes back after rise good ones.
func (p *pool) check(ctx context.Context, rule string, hc healthCheck, log *slog.Logger) {
	streak := make([]int, len(p.targets)) // >0: good checks in a row, <0: failed ones
	errs := make([]error, len(p.targets))
	tick := time.NewTicker(hc.interval)
	defer tick.Stop()
	var wg sync.WaitGroup
	for {
		for i, t := range p.targets {
			wg.Go(func() { errs[i] = hc.probe(ctx, t) })
		}
		wg.Wait()
		if ctx.Err() != nil {
			return
		}
		for i, t := range p.targets {
			err := errs[i]
			switch {
			case err == nil && streak[i] < 0, err != nil && streak[i] > 0:
				streak[i] = 0
			}
			if err == nil {
				streak[i]++
			} else {
				streak[i]--
			}
			down := t.down.Load()
			switch {
			case down && streak[i] >= hc.rise:
				t.down.Store(false)
				// Up by the checks: back in the rotation at once.
				t.fails.Store(0)
				t.ejectedTil.Store(0)
				log.Info("target up", "rule", rule, "target", t.addr, "checks", streak[i])
			case !down && -streak[i] >= hc.fall:
				t.down.Store(true)
				log.Warn("target down", "rule", rule, "target", t.addr, "checks", -streak[i], "err", err)
			}
		}
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
	}
}

// probe checks one target once.
func (hc healthCheck) probe(ctx context.Context, t *target) error {
	network, addr := checkNet(t.addr)
	if network != "unix" {
		ap, err := t.dialAddr()
		if err != nil {
			return err
		}
		network, addr = hc.proto.String(), ap.String()
	}
	ctx, cancel := context.WithTimeout(ctx, hc.timeout)
	defer cancel()
	d := net.Dialer{KeepAlive: -1}
	c, err := d.DialContext(ctx, network, addr)
	if err != nil {
		return err
	}
	defer c.Close()
	if tc, ok := c.(*net.TCPConn); ok {
		tc.SetLinger(0) // no TIME_WAIT per check
	}
	if hc.proto == TCP && len(hc.send) == 0 && len(hc.expect) == 0 {
		return nil // a connect is the check (a TCP or unix socket target)
	}
	deadline, _ := ctx.Deadline()
	c.SetDeadline(deadline)
	if len(hc.send) > 0 || hc.proto == UDP {
		if _, err := c.Write(hc.send); err != nil {
			return fmt.Errorf("health check send: %w", err)
		}
	}
	buf := make([]byte, max(len(hc.expect), 512))
	n, err := readAtLeast(c, buf, len(hc.expect), hc.proto)
	switch {
	case err != nil && hc.proto == UDP && len(hc.expect) == 0 && errors.Is(err, os.ErrDeadlineExceeded):
		// Silence from a UDP service: nothing says it is down.
		return nil
	case err != nil:
		return fmt.Errorf("health check answer: %w", err)
	case !bytes.Contains(buf[:n], hc.expect):
		return fmt.Errorf("health check answer %q lacks %q", buf[:min(n, 64)], hc.expect)
	}
	return nil
}

// readAtLeast reads until n bytes came (TCP) or one datagram (UDP).
func readAtLeast(c net.Conn, buf []byte, n int, proto Proto) (int, error) {
	if proto == UDP {
		return c.Read(buf)
	}
	got := 0
	for got < max(n, 1) {
		k, err := c.Read(buf[got:])
		got += k
		if err != nil {
			return got, err
		}
	}
	return got, nil
}
