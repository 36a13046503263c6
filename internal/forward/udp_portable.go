//go:build !linux

package forward

import (
	"context"
	"errors"
	"net"
	"net/netip"
	"os"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

// udpListener relays datagrams: one session per client address, each with
// its own connected upstream socket, so replies go back to the right client
// and the target sees one stable source port per client.
type udpListener struct {
	s  *Server
	pc *net.UDPConn
	rs atomic.Pointer[ruleState]

	mu       sync.Mutex
	sessions map[netip.AddrPort]*udpSession
	draining bool
	closed   bool
	gone     chan struct{} // closed with the socket
}

type udpSession struct {
	l        *udpListener
	rs       *ruleState // the rule version it started under
	client   netip.AddrPort
	src      netip.Addr // client address, unmapped, for limits and logs
	up       *net.UDPConn
	raw      syscall.RawConn
	target   string
	start    time.Time
	last     atomic.Int64 // unix nanoseconds of the last datagram either way
	toTarget atomic.Int64
	toClient atomic.Int64
	reason   atomic.Pointer[string]
	tgt      *target
}

func (s *Server) openUDP(ctx context.Context, r *Rule) (listener, error) {
	var lc net.ListenConfig
	pc, err := lc.ListenPacket(ctx, "udp", r.Listen)
	if err != nil {
		return nil, err
	}
	l := &udpListener{s: s, pc: pc.(*net.UDPConn), sessions: map[netip.AddrPort]*udpSession{}, gone: make(chan struct{})}
	s.addLoop(l)
	return l, nil
}

func (l *udpListener) state() *ruleState     { return l.rs.Load() }
func (l *udpListener) setState(r *ruleState) { l.rs.Store(r) }
func (l *udpListener) addr() net.Addr        { return l.pc.LocalAddr() }

// drain stops new sessions; the socket stays open for the live ones and
// closes when the last one expires.
func (l *udpListener) drain() {
	l.mu.Lock()
	l.draining = true
	idle := len(l.sessions) == 0
	l.mu.Unlock()
	if idle {
		l.close()
	}
}

func (l *udpListener) close() {
	l.mu.Lock()
	if l.closed {
		l.mu.Unlock()
		return
	}
	l.closed = true
	l.mu.Unlock()
	l.pc.Close()
	l.s.removeLoop(l)
	close(l.gone)
}

// done is closed once the listener's socket is.
func (l *udpListener) done() <-chan struct{} { return l.gone }

func (l *udpListener) serve() {
	buf := make([]byte, 64<<10)
	for {
		n, from, err := l.pc.ReadFromUDPAddrPort(buf)
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return
			}
			// ICMP errors and the like are about one peer: keep serving.
			l.s.logger().Debug("udp read", "addr", l.pc.LocalAddr().String(), "err", err)
			continue
		}
		l.mu.Lock()
		sess := l.sessions[from]
		l.mu.Unlock()
		if sess == nil {
			if sess = l.newSession(from); sess == nil {
				continue
			}
		}
		sess.last.Store(time.Now().UnixNano())
		if _, err := sess.up.Write(buf[:n]); err == nil {
			sess.toTarget.Add(int64(n))
			sess.rs.stats.toTarget.Add(uint64(n))
		}
	}
}

// newSession opens a session for a new client, or returns nil if the client
// is refused or no target can be reached.
func (l *udpListener) newSession(from netip.AddrPort) *udpSession {
	rs := l.rs.Load()
	st := rs.stats
	src := from.Addr().Unmap()
	l.mu.Lock()
	draining := l.draining
	l.mu.Unlock()
	if draining || !rs.admitUDP(src) {
		return nil
	}
	var up *net.UDPConn
	tgt, err := rs.pool.dialEach(src, func(ap netip.AddrPort) (bool, error) {
		var err error
		up, err = net.DialUDP("udp", nil, net.UDPAddrFromAddrPort(ap))
		return false, err
	})
	if err != nil {
		st.release(src, rs.MaxConnsPerSource > 0)
		st.dialErrs.Add(1)
		l.s.logger().Warn("udp session", "rule", rs.name, "client", from.String(), "reason", "dial: "+err.Error())
		return nil
	}
	raw, err := up.SyscallConn()
	if err != nil {
		up.Close()
		st.release(src, rs.MaxConnsPerSource > 0)
		return nil
	}
	sess := &udpSession{l: l, rs: rs, client: from, src: src, up: up, raw: raw, target: tgt.addr, tgt: tgt, start: time.Now()}
	sess.last.Store(sess.start.UnixNano())
	l.s.mu.Lock()
	if l.s.closed {
		l.s.mu.Unlock()
		up.Close()
		st.release(src, rs.MaxConnsPerSource > 0)
		return nil
	}
	l.s.wg.Add(1)
	l.s.mu.Unlock()
	l.mu.Lock()
	l.sessions[from] = sess
	l.mu.Unlock()
	st.total.Add(1)
	tgt.stats.active.Add(1)
	go sess.replies()
	return sess
}

// replies relays the target's datagrams back to the client until the
// session has been idle for the rule's idle time.
func (s *udpSession) replies() {
	idle := s.rs.udpIdle()
	pc := s.l.pc
	send := func(b []byte) {
		if _, err := pc.WriteToUDPAddrPort(b, s.client); err == nil {
			s.toClient.Add(int64(len(b)))
			s.rs.stats.toClient.Add(uint64(len(b)))
		}
	}
	reason := "closed"
	// The deadline is re-armed only when it fires, from the last datagram
	// either way: one timer change per idle period, not per datagram.
	s.up.SetReadDeadline(time.Unix(0, s.last.Load()).Add(idle))
	for {
		err := readDatagram(s.raw, send)
		switch {
		case err == nil:
			s.last.Store(time.Now().UnixNano())
			continue
		case errors.Is(err, os.ErrDeadlineExceeded):
			if last := time.Unix(0, s.last.Load()); time.Since(last) < idle {
				s.up.SetReadDeadline(last.Add(idle))
				continue
			}
			reason = "idle"
		case errors.Is(err, syscall.ECONNREFUSED):
			continue // the target's port is closed for now; the client may retry
		}
		if r := s.reason.Load(); r != nil {
			reason = *r
		}
		break
	}
	s.end(reason)
}

func (s *udpSession) end(reason string) {
	l := s.l
	l.mu.Lock()
	delete(l.sessions, s.client)
	last := l.draining && len(l.sessions) == 0
	l.mu.Unlock()
	s.up.Close()
	s.tgt.stats.active.Add(-1)
	l.s.endUDP(s.rs, s.src, s.client, s.target, s.toTarget.Load(), s.toClient.Load(), s.start, reason)
	if last {
		l.close()
	}
	l.s.wg.Done()
}

// stop ends every session now (Shutdown past its deadline).
func (l *udpListener) stop() {
	why := "shutdown"
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, sess := range l.sessions {
		sess.reason.Store(&why)
		sess.up.Close()
	}
}
