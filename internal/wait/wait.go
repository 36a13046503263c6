package wait

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net"
	"net/netip"
	"strings"
	"sync"
	"time"

	"portolan/internal/sockets"
)

// Options tune a wait. The zero value waits for targets to accept, trying
// every 250ms at first and backing off to every 2s.
type Options struct {
	// Interval is the pause after the first failed attempt; each later pause
	// doubles, up to MaxInterval, with ±25% jitter so that many waiters do
	// not knock in step. Zero means 250ms.
	Interval time.Duration
	// MaxInterval caps the pause. Zero means 2s (or Interval, if larger).
	MaxInterval time.Duration
	// AttemptTimeout bounds one attempt on one target: a connect, a TLS
	// handshake and an HTTP request, so a silent endpoint does not use up
	// the whole wait. Zero means 5s. The overall deadline is the context's.
	AttemptTimeout time.Duration
	// Free reverses the wait: a target is ready when nothing listens on it
	// any more (on any family, for a local address), or its unix socket is
	// gone or refuses.
	Free bool
	// StatusMin and StatusMax bound the HTTP statuses that count as ready.
	// Zero means 200-399; redirects are not followed.
	StatusMin, StatusMax int
	// TLS configures HTTPS requests. Nil means the system's roots, with
	// verification. ServerName is set from the target.
	TLS *tls.Config
	// Resolver resolves host names. Nil means net.DefaultResolver.
	Resolver *net.Resolver
	// OnAttempt, when set, is called after every attempt with the target's
	// index and status (its last call for a target says Ready, unless the
	// wait ended first); from several goroutines at once. The CLI draws its
	// progress line with it.
	OnAttempt func(i int, s Status)
	// Logger receives a debug record per attempt. Nil discards.
	Logger *slog.Logger
	// Netns is the network namespace to connect (and, with Free, bind)
	// from: a name under /run/netns or a path. Empty means the caller's.
	// Names still resolve in the caller's.
	Netns string

	// bind is a seam for tests of Free; nil means freeport.ProbeBind.
	bind bindFunc
}

// Status is what is known about one target.
type Status struct {
	Target   Target        `json:"target"`
	Ready    bool          `json:"ready"`
	Attempts int           `json:"attempts"`
	Elapsed  time.Duration `json:"elapsed"` // until ready, or until the wait ended
	// Reason says why the target is not ready, from the last attempt:
	// "connection refused", "listening on 127.0.0.1 only, you asked for
	// ::1", "accepting but HTTP 503 Service Unavailable". Empty when ready.
	Reason string `json:"reason,omitempty"`
	// Addrs holds what the last attempt saw at each address tried.
	Addrs []Observation `json:"addrs,omitempty"`
}

// Observation is the outcome of one attempt at one address.
type Observation struct {
	Addr   string `json:"addr"` // "127.0.0.1:8080", "[::1]:8080", "/run/app.sock"
	OK     bool   `json:"ok"`
	Result string `json:"result"` // "accepting", "HTTP 200 OK", "connection refused", ...
}

// Wait waits for all targets at once until each is ready or ctx ends, and
// returns their statuses in the order of targets. The error is nil when all
// are ready; otherwise it says how many are not and wraps ctx's error.
func Wait(ctx context.Context, targets []Target, opts Options) ([]Status, error) {
	w := newWaiter(opts)
	start := time.Now()
	out := make([]Status, len(targets))
	var wg sync.WaitGroup
	for i, t := range targets {
		out[i].Target = t
		wg.Go(func() { w.run(ctx, i, &out[i], start) })
	}
	wg.Wait()
	var notReady []string
	for _, s := range out {
		if !s.Ready {
			notReady = append(notReady, s.Target.Raw)
		}
	}
	if len(notReady) > 0 {
		err := ctx.Err()
		if err == nil {
			// The deadline passed a moment before ctx says so.
			err = context.DeadlineExceeded
		}
		return out, fmt.Errorf("%d of %d targets not ready (%s): %w", len(notReady), len(out), strings.Join(notReady, ", "), err)
	}
	return out, nil
}

// waiter holds what all targets of one Wait share.
type waiter struct {
	opts       Options
	log        *slog.Logger
	localAddrs func() map[netip.Addr]bool
}

func newWaiter(o Options) *waiter {
	if o.Interval <= 0 {
		o.Interval = 250 * time.Millisecond
	}
	if o.MaxInterval <= 0 {
		o.MaxInterval = 2 * time.Second
	}
	o.MaxInterval = max(o.MaxInterval, o.Interval)
	if o.AttemptTimeout <= 0 {
		o.AttemptTimeout = 5 * time.Second
	}
	if o.StatusMin == 0 && o.StatusMax == 0 {
		o.StatusMin, o.StatusMax = 200, 399
	}
	if o.Resolver == nil {
		o.Resolver = net.DefaultResolver
	}
	if o.bind == nil {
		o.bind = probeBind
	}
	log := o.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &waiter{opts: o, log: log, localAddrs: sync.OnceValue(func() map[netip.Addr]bool {
		var m map[netip.Addr]bool
		sockets.InNetns(o.Netns, func() error { m = interfaceAddrs(); return nil })
		return m
	})}
}

// run attempts target i until it is ready or ctx ends.
func (w *waiter) run(ctx context.Context, i int, st *Status, start time.Time) {
	pause := w.opts.Interval
	for {
		actx, cancel := context.WithTimeout(ctx, w.opts.AttemptTimeout)
		res := w.attempt(actx, st.Target)
		cancel()
		st.Attempts++
		st.Elapsed = time.Since(start)
		w.log.Debug("wait attempt", "target", st.Target.Raw, "ready", res.ready, "reason", res.reason)
		if res.ready {
			st.Ready, st.Reason, st.Addrs = true, "", res.addrs
			if w.opts.OnAttempt != nil {
				w.opts.OnAttempt(i, *st)
			}
			return
		}
		// An attempt cut short by the end of the whole wait says only
		// that; the attempt before it knew more. The deadline is checked
		// too: a dial can time out on it before ctx reports it.
		over := ctx.Err() != nil
		if d, ok := ctx.Deadline(); ok && !time.Now().Before(d) {
			over = true
		}
		if !over || st.Reason == "" {
			st.Reason, st.Addrs = res.reason, res.addrs
		}
		if over {
			return
		}
		if w.opts.OnAttempt != nil {
			w.opts.OnAttempt(i, *st)
		}
		d := time.Duration(float64(pause) * (0.75 + 0.5*rand.Float64()))
		t := time.NewTimer(d)
		select {
		case <-ctx.Done():
			t.Stop()
			return
		case <-t.C:
		}
		pause = min(2*pause, w.opts.MaxInterval)
	}
}

// result is the outcome of one attempt on one target.
type result struct {
	ready  bool
	reason string
	addrs  []Observation
}

// attempt tries target t once.
func (w *waiter) attempt(ctx context.Context, t Target) result {
	switch {
	case t.Kind == Unix && w.opts.Free:
		return w.unixFree(ctx, t)
	case t.Kind == Unix:
		return w.unix(ctx, t)
	case w.opts.Free:
		return w.free(ctx, t)
	}
	addrs, err := w.resolve(ctx, t.Host)
	if err != nil {
		return result{reason: err.Error()}
	}
	obs := make([]Observation, len(addrs))
	var wg sync.WaitGroup
	for i, a := range addrs {
		ap := netip.AddrPortFrom(a, uint16(t.Port))
		wg.Go(func() {
			if t.Kind == HTTP {
				obs[i] = w.httpAt(ctx, t, ap)
			} else {
				obs[i] = w.tcpAt(ctx, ap)
			}
		})
	}
	wg.Wait()
	for _, o := range obs {
		if o.OK {
			return result{ready: true, addrs: obs}
		}
	}
	return result{reason: w.explain(ctx, t, addrs, obs), addrs: obs}
}

// resolve returns the addresses to try for host. localhost (and any name
// under .localhost, RFC 6761) always means both loopbacks, whatever
// /etc/hosts says: that is where servers listen, one family or both.
func (w *waiter) resolve(ctx context.Context, host string) ([]netip.Addr, error) {
	if a, err := netip.ParseAddr(host); err == nil {
		return []netip.Addr{a}, nil
	}
	h := strings.ToLower(strings.TrimSuffix(host, "."))
	if h == "localhost" || strings.HasSuffix(h, ".localhost") {
		return []netip.Addr{netip.AddrFrom4([4]byte{127, 0, 0, 1}), netip.IPv6Loopback()}, nil
	}
	addrs, err := w.opts.Resolver.LookupNetIP(ctx, "ip", host)
	if err != nil {
		var dnsErr *net.DNSError
		if errors.As(err, &dnsErr) && dnsErr.IsNotFound {
			return nil, fmt.Errorf("cannot resolve %s: no such host", host)
		}
		return nil, fmt.Errorf("cannot resolve %s: %w", host, err)
	}
	seen := map[netip.Addr]bool{}
	var out []netip.Addr
	for _, a := range addrs {
		a = a.Unmap()
		if !seen[a] {
			seen[a] = true
			out = append(out, a)
		}
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("cannot resolve %s: no addresses", host)
	}
	return out, nil
}

// interfaceAddrs returns this machine's addresses, to tell a local target
// (which can be checked with a bind) from a remote one.
func interfaceAddrs() map[netip.Addr]bool {
	m := map[netip.Addr]bool{}
	as, err := net.InterfaceAddrs()
	if err != nil {
		return m
	}
	for _, a := range as {
		if p, err := netip.ParsePrefix(a.String()); err == nil {
			m[p.Addr().Unmap()] = true
		}
	}
	return m
}

// isLocal reports whether a is an address of this machine.
func (w *waiter) isLocal(a netip.Addr) bool {
	return a.IsLoopback() || a.IsUnspecified() || w.localAddrs()[a]
}
