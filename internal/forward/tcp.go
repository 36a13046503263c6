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

	// Set before the relay starts, read when it ends.
	rs         *ruleState
	start      time.Time
	clientAddr netip.AddrPort
	target     string
	tgt        *target // nil until connected

	// The relay: two directions, the last one to end closes the
	// connection and logs it, so neither waits for the other.
	left               atomic.Int32
	toTarget, toClient int64
	idleUp, idleDown   atomic.Bool

	sni string // the ClientHello's server name, on a rule with SNI routes
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

// log writes the connection's line if the level is enabled.
func (s *Server) logConn(tc *tcpConn, level slog.Level, up, down int64, reason string) {
	s.logConnLineSNI(tc.rs, "tcp", level, tc.clientAddr, tc.target, tc.sni, up, down, tc.start, reason)
}

// handleTCP checks, connects and starts relaying one accepted connection.
// Once the relay runs, its last direction to end finishes the connection
// (endTCP); before that, every return here finishes it.
func (s *Server) handleTCP(rs *ruleState, tc *tcpConn) {
	relaying := false
	defer func() {
		if !relaying {
			s.untrack(tc)
		}
	}()
	tc.rs = rs
	tc.start = time.Now()
	c := tc.client
	st := rs.stats
	if !tc.clientAddr.IsValid() {
		// A socket reset before this point has no remote address left.
		ra, ok := c.RemoteAddr().(*net.TCPAddr)
		if !ok {
			c.Close()
			s.logConn(tc, slog.LevelInfo, 0, 0, "client gone")
			return
		}
		tc.clientAddr = unmapPort(ra.AddrPort())
	}
	local := netip.AddrPort{}
	if rs.ProxyProtocol != 0 || len(rs.TrustedProxies) > 0 {
		if la, ok := c.LocalAddr().(*net.TCPAddr); ok {
			local = unmapPort(la.AddrPort())
		}
	}

	if len(rs.TrustedProxies) > 0 && rs.trusts(tc.clientAddr.Addr()) {
		c.SetReadDeadline(tc.start.Add(rs.connectTimeout()))
		h, err := ReadProxyHeader(c)
		c.SetReadDeadline(time.Time{})
		if err != nil {
			st.proxyErrs.Add(1)
			reset(c)
			s.logConn(tc, slog.LevelWarn, 0, 0, "proxy header: "+err.Error())
			return
		}
		if !h.Local {
			tc.clientAddr, local = h.Src, h.Dst
		}
	}
	if !rs.permits(tc.clientAddr.Addr()) {
		st.denied.Add(1)
		reset(c)
		s.logConn(tc, slog.LevelInfo, 0, 0, "denied")
		return
	}
	if !st.acquire(tc.clientAddr.Addr(), rs.MaxConns, rs.MaxConnsPerSource) {
		st.limited.Add(1)
		reset(c)
		s.logConn(tc, slog.LevelWarn, 0, 0, "limit")
		return
	}
	defer func() {
		if !relaying {
			st.release(tc.clientAddr.Addr(), rs.MaxConnsPerSource > 0)
		}
	}()
	pool := rs.pool
	var hello []byte // read to find the SNI route: the target gets it first
	if rs.sni != nil {
		var ok bool
		if pool, hello, ok = s.routeSNI(rs, tc); !ok {
			return
		}
	}
	d := net.Dialer{Timeout: rs.connectTimeout(), KeepAlive: -1}
	up, tgt, err := pool.dialTCP(context.Background(), &d, tc.clientAddr.Addr())
	if tgt != nil {
		tc.target = tgt.addr
	}
	if err != nil {
		st.dialErrs.Add(1)
		reset(c)
		s.logConn(tc, slog.LevelWarn, 0, 0, "dial: "+err.Error())
		return
	}
	st.observeDial(time.Since(tc.start))
	st.total.Add(1)
	tc.tgt = tgt
	tgt.stats.active.Add(1)
	defer func() {
		if !relaying {
			tgt.stats.active.Add(-1)
		}
	}()
	if ka := rs.keepAlive(); ka.Enable {
		setKeepAlive(c, ka)
		setKeepAlive(up, ka)
	}
	tc.mu.Lock()
	tc.server = up
	aborted := tc.reason != ""
	tc.mu.Unlock()
	if aborted {
		c.Close()
		up.Close()
		s.logConn(tc, slog.LevelInfo, 0, 0, tc.reason)
		return
	}
	if rs.ProxyProtocol != 0 {
		h := ProxyHeader{Proto: TCP, Src: tc.clientAddr, Dst: local}
		var b []byte
		if rs.ProxyProtocol == 1 {
			b = h.AppendV1(nil)
		} else {
			b = h.AppendV2(nil)
		}
		if _, err := up.Write(b); err != nil {
			reset(c)
			up.Close()
			s.logConn(tc, slog.LevelWarn, 0, 0, "proxy header: "+err.Error())
			return
		}
	}
	if len(hello) > 0 {
		if _, err := up.Write(hello); err != nil {
			reset(c)
			up.Close()
			s.logConn(tc, slog.LevelWarn, 0, 0, "sni: write ClientHello: "+err.Error())
			return
		}
		st.toTarget.Add(uint64(len(hello)))
		tc.toTarget = int64(len(hello))
	}
	relaying = true
	tc.left.Store(2)
	go s.pipeToTarget(tc)
	n, err := pipe(c, up, rs.tcpIdle(), &tc.idleDown, &tc.idleUp, &st.toClient)
	tc.toClient = n
	s.endDirection(tc, c, err, "target")
}

// pipeToTarget relays the client's bytes to the target.
func (s *Server) pipeToTarget(tc *tcpConn) {
	n, err := pipe(tc.server, tc.client, tc.rs.tcpIdle(), &tc.idleUp, &tc.idleDown, &tc.rs.stats.toTarget)
	tc.toTarget += n // after the ClientHello of an SNI route, if any
	s.endDirection(tc, tc.server, err, "client")
}

// endDirection ends one direction: a clean EOF is passed on as a
// half-close, an error ends the whole connection. The last direction to
// end closes both sockets and finishes the connection.
func (s *Server) endDirection(tc *tcpConn, dst *net.TCPConn, err error, from string) {
	last := tc.left.Add(-1) == 0
	switch {
	case err == nil:
		// After both EOFs the close below sends the FIN.
		if !last {
			closeWrite(dst)
		}
	case errors.Is(err, errIdle):
		tc.abort("idle")
	case errors.Is(err, net.ErrClosed):
		tc.abort("closed")
	default:
		tc.abort(from + ": " + err.Error())
	}
	if !last {
		return
	}
	tc.client.Close()
	tc.server.Close()
	st := tc.rs.stats
	tc.tgt.stats.active.Add(-1)
	tc.end("eof")
	s.logConn(tc, slog.LevelInfo, tc.toTarget, tc.toClient, tc.reason)
	st.release(tc.clientAddr.Addr(), tc.rs.MaxConnsPerSource > 0)
	s.untrack(tc)
}

func unmapPort(a netip.AddrPort) netip.AddrPort {
	return netip.AddrPortFrom(a.Addr().Unmap(), a.Port())
}

// maxPendingHeaders bounds the PROXY headers being read at once, each by
// a goroutine: a flood of connections from a trusted peer that send
// nothing costs this many goroutines at most, each for the connect
// timeout at most, before any other limit can be taken.
const maxPendingHeaders = 1024

func (s *Server) startHandoff() bool {
	if s.handoffs.Add(1) > maxPendingHeaders {
		s.handoffs.Add(-1)
		return false
	}
	return true
}

func (s *Server) endHandoff() { s.handoffs.Add(-1) }

// errIdle ends a pipe when neither direction moved a byte for the idle time.
var errIdle = errors.New("idle")
