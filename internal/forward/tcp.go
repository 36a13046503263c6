package forward

import (
	"context"
	"errors"
	"log/slog"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"
)

type tcpListener struct {
	s  *Server
	ln *net.TCPListener
	rs atomic.Pointer[ruleState]
}

func (s *Server) openTCP(ctx context.Context, r *Rule) (listener, error) {
	// Keep-alive is set per connection from the rule in force, so a reload
	// can change it; KeepAlive -1 stops the listener from setting its own.
	lc := net.ListenConfig{KeepAlive: -1}
	ln, err := lc.Listen(ctx, "tcp", r.Listen)
	if err != nil {
		return nil, err
	}
	return &tcpListener{s: s, ln: ln.(*net.TCPListener)}, nil
}

func (l *tcpListener) state() *ruleState     { return l.rs.Load() }
func (l *tcpListener) setState(r *ruleState) { l.rs.Store(r) }
func (l *tcpListener) addr() net.Addr        { return l.ln.Addr() }
func (l *tcpListener) drain()                { l.ln.Close() }

func (l *tcpListener) serve() {
	var delay time.Duration
	for {
		c, err := l.ln.AcceptTCP()
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return
			}
			// Out of file descriptors and the like: back off, never die.
			delay = min(max(2*delay, 5*time.Millisecond), time.Second)
			l.s.logger().Error("accept", "addr", l.ln.Addr().String(), "err", err)
			time.Sleep(delay)
			continue
		}
		delay = 0
		rs := l.rs.Load()
		tc := &tcpConn{client: c}
		if !l.s.track(tc) {
			reset(c)
			continue
		}
		go l.s.handleTCP(rs, tc)
	}
}

// track registers a connection so Shutdown can wait for it or cut it.
func (s *Server) track(c *tcpConn) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return false
	}
	s.wg.Add(1)
	s.conns[c] = struct{}{}
	return true
}

func (s *Server) untrack(c *tcpConn) {
	s.mu.Lock()
	delete(s.conns, c)
	s.mu.Unlock()
	s.wg.Done()
}

// tcpConn is one relayed connection.
type tcpConn struct {
	client *net.TCPConn
	mu     sync.Mutex
	server *net.TCPConn
	reason string // why it ended, first cause wins
}

// end records the first reason and reports whether it was the first.
func (c *tcpConn) end(reason string) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.reason != "" {
		return false
	}
	c.reason = reason
	return true
}

// abort closes both sockets; the relay goroutines return.
func (c *tcpConn) abort(reason string) {
	c.end(reason)
	c.mu.Lock()
	srv := c.server
	c.mu.Unlock()
	c.client.Close()
	if srv != nil {
		srv.Close()
	}
}

// reset closes c with an RST instead of a FIN (SO_LINGER 0), so a client
// learns at once that there is nothing behind the port.
func reset(c *net.TCPConn) {
	c.SetLinger(0)
	c.Close()
}

func (s *Server) handleTCP(rs *ruleState, tc *tcpConn) {
	defer s.untrack(tc)
	start := time.Now()
	c := tc.client
	st := rs.stats
	client := unmapPort(c.RemoteAddr().(*net.TCPAddr).AddrPort())
	local := unmapPort(c.LocalAddr().(*net.TCPAddr).AddrPort())
	log := func(level slog.Level, target string, up, down int64, reason string) {
		l := s.logger()
		if !l.Enabled(context.Background(), level) {
			return
		}
		l.LogAttrs(context.Background(), level, "conn",
			slog.String("rule", rs.name), slog.String("proto", "tcp"),
			slog.String("client", client.String()), slog.String("target", target),
			slog.Int64("bytes_to_target", up), slog.Int64("bytes_to_client", down),
			slog.Duration("duration", time.Since(start)), slog.String("reason", reason))
	}

	if len(rs.TrustedProxies) > 0 && rs.trusts(client.Addr()) {
		c.SetReadDeadline(start.Add(rs.connectTimeout()))
		h, err := ReadProxyHeader(c)
		c.SetReadDeadline(time.Time{})
		if err != nil {
			reset(c)
			log(slog.LevelWarn, "", 0, 0, "proxy header: "+err.Error())
			return
		}
		if !h.Local {
			client, local = h.Src, h.Dst
		}
	}
	if !rs.permits(client.Addr()) {
		st.denied.Add(1)
		reset(c)
		log(slog.LevelInfo, "", 0, 0, "denied")
		return
	}
	if !st.acquire(client.Addr(), rs.MaxConns, rs.MaxConnsPerSource) {
		st.limited.Add(1)
		reset(c)
		log(slog.LevelWarn, "", 0, 0, "limit")
		return
	}
	defer st.release(client.Addr(), rs.MaxConnsPerSource > 0)
	st.total.Add(1)

	ka := rs.keepAlive()
	d := net.Dialer{Timeout: rs.connectTimeout(), KeepAlive: -1}
	up, target, err := rs.pool.dialTCP(context.Background(), &d)
	if err != nil {
		st.dialErrs.Add(1)
		reset(c)
		log(slog.LevelWarn, target, 0, 0, "dial: "+err.Error())
		return
	}
	st.observeDial(time.Since(start))
	if ka.Enable {
		c.SetKeepAliveConfig(ka)
		up.SetKeepAliveConfig(ka)
	}
	tc.mu.Lock()
	tc.server = up
	aborted := tc.reason != ""
	tc.mu.Unlock()
	if aborted {
		c.Close()
		up.Close()
		log(slog.LevelInfo, target, 0, 0, tc.reason)
		return
	}
	if rs.ProxyProtocol != 0 {
		h := ProxyHeader{Proto: TCP, Src: client, Dst: local}
		var b []byte
		if rs.ProxyProtocol == 1 {
			b = h.AppendV1(nil)
		} else {
			b = h.AppendV2(nil)
		}
		if _, err := up.Write(b); err != nil {
			reset(c)
			up.Close()
			log(slog.LevelWarn, target, 0, 0, "proxy header: "+err.Error())
			return
		}
	}
	toTarget, toClient := relay(tc, up, rs.IdleTimeout)
	st.toTarget.Add(uint64(toTarget))
	st.toClient.Add(uint64(toClient))
	tc.end("eof")
	log(slog.LevelInfo, target, toTarget, toClient, tc.reason)
}

func unmapPort(a netip.AddrPort) netip.AddrPort {
	return netip.AddrPortFrom(a.Addr().Unmap(), a.Port())
}

// errIdle ends a pipe when neither direction moved a byte for the idle time.
var errIdle = errors.New("idle")

// relay copies both ways until both directions have ended, passing each
// half-close on, and returns the bytes sent each way.
func relay(tc *tcpConn, server *net.TCPConn, idle time.Duration) (toTarget, toClient int64) {
	client := tc.client
	var idleUp, idleDown atomic.Bool
	done := make(chan int64, 1)
	go func() {
		n, err := pipe(server, client, idle, &idleUp, &idleDown)
		finish(tc, server, err, "client")
		done <- n
	}()
	toClient, err := pipe(client, server, idle, &idleDown, &idleUp)
	finish(tc, client, err, "target")
	toTarget = <-done
	client.Close()
	server.Close()
	return toTarget, toClient
}

// finish ends one direction: a clean EOF is passed on as a half-close, an
// error ends the whole connection.
func finish(tc *tcpConn, dst *net.TCPConn, err error, from string) {
	switch {
	case err == nil:
		dst.CloseWrite()
	case errors.Is(err, errIdle):
		tc.abort("idle")
	case errors.Is(err, net.ErrClosed):
		tc.abort("closed")
	default:
		tc.abort(from + ": " + err.Error())
	}
}
