package forward

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"reflect"
	"sync"
	"sync/atomic"
	"time"
)

// Server runs a set of rules. The zero value is ready: call Apply to start
// or reload, Shutdown to stop.
type Server struct {
	// Logger gets one Info line per finished connection or UDP session,
	// warnings for targets going down, and errors that are not a
	// client's. Nil: discard.
	Logger *slog.Logger

	// Loops is how many event loops serve each TCP listener on Linux
	// (0 or 1: one). More use more cores for many busy connections; one
	// is the cheapest for short connections (measured on 2 cores on
	// 2026-12-06: 125 against 175 us of CPU per connection with two, and
	// no more throughput). Read when a listener opens.
	Loops int

	// DrainTimeout bounds how long a UDP listener whose rule a reload
	// removed keeps relaying for its live sessions (a chatty client
	// would keep one open for ever); a rule added again meanwhile takes
	// the port over at once. Zero: DefaultDrainTimeout.
	DrainTimeout time.Duration

	mu        sync.Mutex
	listeners map[string]listener // by Rule.key
	stats     map[string]*ruleStats
	conns     map[*tcpConn]struct{}
	loopMu    sync.Mutex                  // guards loops; separate so a socket can close while mu is held
	loops     map[stopper]struct{}        // TCP event loops and UDP listeners, draining ones too
	wg        sync.WaitGroup              // connections and UDP sessions
	lines     connLog                     // their log lines
	handoffs  atomic.Int64                // PROXY headers being read (see maxPendingHeaders)
	retiring  map[string]datagramListener // UDP listeners of removed rules, by Rule.key, until their sockets close
	closed    bool
}

// stopper is an event loop or UDP listener that Shutdown can tell to end
// its connections or sessions now.
type stopper interface{ stop() }

func (s *Server) addLoop(l stopper) {
	s.loopMu.Lock()
	defer s.loopMu.Unlock()
	if s.loops == nil {
		s.loops = map[stopper]struct{}{}
	}
	s.loops[l] = struct{}{}
}

func (s *Server) removeLoop(l stopper) {
	s.loopMu.Lock()
	defer s.loopMu.Unlock()
	delete(s.loops, l)
}

// DefaultDrainTimeout is how long the live sessions of a removed UDP
// rule go on being relayed (see Server.DrainTimeout).
const DefaultDrainTimeout = 30 * time.Second

// datagramListener is a UDP listener: there is no connection to wait for,
// so Shutdown ends its sessions at once, and one whose rule was removed
// ends them after the drain time.
type datagramListener interface {
	listener
	stopper
	done() <-chan struct{} // closed once the socket is
}

// listener is a TCP or UDP front socket.
type listener interface {
	state() *ruleState
	setState(*ruleState)
	addr() net.Addr
	serve()
	drain() // stop taking new clients; the socket closes once it is idle
}

// ruleState is one version of a rule as applied; connections keep the one
// they started under across reloads.
type ruleState struct {
	Rule
	name   string
	stats  *ruleStats
	pool   *pool
	cancel context.CancelFunc // stops health checks
	sni    *sniRouter         // nil: no SNI routes
}

// ErrClosed is returned by Apply after Shutdown.
var ErrClosed = errors.New("forward server closed")

func (s *Server) logger() *slog.Logger {
	if s.Logger == nil {
		return slog.New(slog.DiscardHandler)
	}
	return s.Logger
}

// Apply starts the rules, or replaces the running set with them. New
// listeners are opened before anything changes; if one cannot be opened,
// the running set is left as it was and the error names the rule.
// Listeners whose protocol and address stay the same keep their socket;
// connections in progress keep the version of the rule they started
// under; listeners of removed rules stop accepting and close once their
// connections or sessions have finished.
func (s *Server) Apply(ctx context.Context, rules []Rule) error {
	keys := map[string]string{}
	names := map[string]bool{}
	for i := range rules {
		r := &rules[i]
		if err := r.Validate(); err != nil {
			return fmt.Errorf("rule %s: %w", r.DisplayName(), err)
		}
		if other, dup := keys[r.key()]; dup {
			return fmt.Errorf("rule %s: listen: %s %s is also used by rule %s", r.DisplayName(), r.Proto, r.Listen, other)
		}
		for j := range i {
			if o := &rules[j]; listenConflict(o, r) {
				return fmt.Errorf("rule %s: listen: %s %s overlaps %s of rule %s", r.DisplayName(), r.Proto, r.Listen, o.Listen, o.DisplayName())
			}
		}
		keys[r.key()] = r.DisplayName()
		if names[r.DisplayName()] {
			return fmt.Errorf("rule %s: name: used twice", r.DisplayName())
		}
		names[r.DisplayName()] = true
	}

	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return ErrClosed
	}
	if s.listeners == nil {
		s.listeners = map[string]listener{}
		s.stats = map[string]*ruleStats{}
		s.conns = map[*tcpConn]struct{}{}
	}

	// Open the new sockets first so a failure changes nothing.
	opened := map[string]listener{}
	for i := range rules {
		r := &rules[i]
		if _, ok := s.listeners[r.key()]; ok {
			continue
		}
		if old := s.retiring[r.key()]; old != nil {
			// A removed UDP rule comes back: its sessions end now and
			// the new listener takes the port.
			old.stop()
			select {
			case <-old.done():
			case <-ctx.Done():
				return fmt.Errorf("rule %s: listen %s: %w", r.DisplayName(), r.Listen, ctx.Err())
			}
			delete(s.retiring, r.key())
		}
		l, err := s.open(ctx, r)
		if err != nil {
			for _, o := range opened {
				o.drain()
			}
			return fmt.Errorf("rule %s: listen %s: %w", r.DisplayName(), r.Listen, err)
		}
		opened[r.key()] = l
	}

	for i := range rules {
		r := rules[i]
		if l, ok := s.listeners[r.key()]; ok {
			old := l.state()
			if reflect.DeepEqual(old.Rule, r) {
				continue
			}
			l.setState(s.newState(r))
			old.cancel()
			continue
		}
		l := opened[r.key()]
		l.setState(s.newState(r))
		s.listeners[r.key()] = l
		go l.serve()
	}
	for k, l := range s.listeners {
		if _, keep := keys[k]; !keep {
			l.state().cancel()
			l.drain()
			delete(s.listeners, k)
			if d, ok := l.(datagramListener); ok {
				s.retire(k, d)
			}
		}
	}
	return nil
}

// retire ends a removed UDP listener's sessions after the drain time,
// unless they all ended before. s.mu is held.
func (s *Server) retire(key string, d datagramListener) {
	if s.retiring == nil {
		s.retiring = map[string]datagramListener{}
	}
	s.retiring[key] = d
	wait := s.DrainTimeout
	if wait <= 0 {
		wait = DefaultDrainTimeout
	}
	go func() {
		t := time.NewTimer(wait)
		defer t.Stop()
		select {
		case <-d.done():
		case <-t.C:
			d.stop()
			<-d.done()
		}
		s.mu.Lock()
		if s.retiring[key] == d {
			delete(s.retiring, key)
		}
		s.mu.Unlock()
	}()
}

func (s *Server) newState(r Rule) *ruleState {
	name := r.DisplayName()
	st := s.stats[name]
	if st == nil || st.proto != r.Proto {
		st = &ruleStats{name: name, proto: r.Proto, perSrc: map[netip.Addr]int{}}
		s.stats[name] = st
	}
	ctx, cancel := context.WithCancel(context.Background())
	rs := &ruleState{Rule: r, name: name, stats: st, pool: newPool(&r, st), cancel: cancel}
	if r.HealthInterval > 0 {
		go rs.pool.check(ctx, name, newHealthCheck(&r), s.logger())
	}
	rs.sni = newSNIRouter(ctx, &r, name, st, s.logger())
	return rs
}

func (s *Server) open(ctx context.Context, r *Rule) (listener, error) {
	if r.Proto == UDP {
		return s.openUDP(ctx, r)
	}
	return s.openTCP(ctx, r)
}

// Addr returns the bound address of the rule with this display name (useful
// with port 0), or nil.
func (s *Server) Addr(name string) net.Addr {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, l := range s.listeners {
		if l.state().name == name {
			return l.addr()
		}
	}
	return nil
}

// Shutdown stops accepting, waits for connections and sessions to finish
// until ctx is done, then closes the rest. It returns ctx's error if it had
// to cut connections.
func (s *Server) Shutdown(ctx context.Context) error {
	s.mu.Lock()
	s.closed = true
	for k, l := range s.listeners {
		l.state().cancel()
		l.drain()
		delete(s.listeners, k)
		if d, ok := l.(datagramListener); ok {
			// UDP has no connection to wait for: its sessions end now,
			// each logged, rather than when idle.
			d.stop()
		}
	}
	for _, d := range s.retiring {
		d.stop()
	}
	s.mu.Unlock()
	done := make(chan struct{})
	go func() { s.wg.Wait(); close(done) }()
	// Every line is written when Shutdown returns.
	defer s.lines.flush()
	select {
	case <-done:
		return nil
	case <-ctx.Done():
	}
	s.mu.Lock()
	for c := range s.conns {
		c.abort("shutdown")
	}
	s.mu.Unlock()
	s.loopMu.Lock()
	loops := make([]stopper, 0, len(s.loops))
	for l := range s.loops {
		loops = append(loops, l)
	}
	s.loopMu.Unlock()
	for _, l := range loops {
		l.stop()
	}
	<-done
	return ctx.Err()
}
