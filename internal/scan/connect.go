package scan

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"sync"
	"syscall"
	"time"

	"portolan/internal/portspec"
)

// ConnectProber probes TCP ports with the system's connect(), as nmap -sT
// does: open when the handshake completes, closed on a reset, filtered on
// silence or an ICMP error. It needs no privileges. Connections close with
// a reset (SO_LINGER 0), so a scan leaves no TIME_WAIT behind to exhaust
// ephemeral ports.
//
// On Linux it drives non-blocking sockets itself: answers already known
// when connect returns (loopback, veth) are read at once, and a refused
// socket, bound to a port of its own and to the source address the route
// gives, is reused for the next probe; the rest wait in one epoll loop.
// Probes are issued from the calling goroutine and one helper thread per
// further core (which take more than their share, since the calling
// goroutine also schedules), all in the caller's network namespace. It raises the
// open-files limit to its hard maximum. Elsewhere it is DialProber.
// The zero value is ready.
type ConnectProber struct {
	// Local binds the probe sockets to an interface, a source address and
	// a source port (Linux only). The zero value leaves them to the
	// kernel.
	Local Local
}

// inFlightLimiter is implemented by sessions that can only hold so many
// probes at once (sockets under the open-files limit); the scanner keeps
// its window under it.
type inFlightLimiter interface {
	InFlightLimit() int
}

// verdict turns a connect error into a port state. busy reports a local
// shortage, after which the probe is simply sent again later.
func verdict(errno syscall.Errno) (st State, reason string, busy bool) {
	switch errno {
	case 0:
		return Open, ReasonSynAck, false
	case syscall.ECONNREFUSED:
		return Closed, ReasonConnRefused, false
	case syscall.ECONNRESET:
		return Closed, ReasonReset, false
	case syscall.ETIMEDOUT:
		return Filtered, ReasonNoResponse, false
	case syscall.EHOSTUNREACH, syscall.EHOSTDOWN:
		return Filtered, ReasonHostUnreach, false
	case syscall.ENETUNREACH, syscall.ENETDOWN, syscall.EINVAL:
		// EINVAL: a blackhole route.
		return Filtered, ReasonNetUnreach, false
	case syscall.EACCES, syscall.EPERM:
		return Filtered, ReasonAdminProhibited, false
	case syscall.EMFILE, syscall.ENFILE, syscall.ENOBUFS, syscall.ENOMEM,
		syscall.EADDRNOTAVAIL, syscall.EAGAIN, syscall.EADDRINUSE:
		return Unknown, "", true
	}
	return Unknown, "", false
}

// DialProber is the portable connect prober: one goroutine and net.Dialer
// per probe. ConnectProber is faster on Linux; DialProber runs everywhere.
type DialProber struct {
	// Dialer dials; nil means a zero net.Dialer.
	Dialer *net.Dialer
	// Local must be zero: the portable prober binds nothing (set
	// Dialer.LocalAddr instead). It is here so that ProberByName can say so.
	Local Local
}

// Open starts a session.
func (d DialProber) Open(ctx context.Context, report func(Reply)) (Session, error) {
	if !d.Local.IsZero() {
		return nil, fmt.Errorf("dial prober from an interface, source address or port: %w (the connect prober does it)", ErrUnsupported)
	}
	dl := d.Dialer
	if dl == nil {
		dl = &net.Dialer{}
	}
	ctx, cancel := context.WithCancel(ctx)
	return &dialSession{dialer: dl, ctx: ctx, cancelAll: cancel, report: report,
		cancels: make(map[uint64]context.CancelFunc)}, nil
}

type dialSession struct {
	dialer    *net.Dialer
	ctx       context.Context
	cancelAll context.CancelFunc
	report    func(Reply)
	wg        sync.WaitGroup
	mu        sync.Mutex
	cancels   map[uint64]context.CancelFunc
}

func (s *dialSession) Send(id uint64, dst netip.AddrPort, proto portspec.Proto) error {
	if proto != portspec.TCP {
		return fmt.Errorf("connect probe over %s: %w", proto, ErrUnsupported)
	}
	ctx, cancel := context.WithCancel(s.ctx)
	s.mu.Lock()
	s.cancels[id] = cancel
	s.mu.Unlock()
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		defer s.forget(id)
		start := time.Now()
		c, err := s.dialer.DialContext(ctx, "tcp", dst.String())
		rtt := time.Since(start)
		if ctx.Err() != nil {
			if c != nil {
				c.Close()
			}
			return // cancelled: the scheduler has moved on
		}
		r := Reply{ID: id, RTT: rtt}
		if err == nil {
			r.State, r.Reason = Open, ReasonSynAck
			if c.LocalAddr().String() == c.RemoteAddr().String() {
				r.State, r.Reason = Unknown, "" // self-connect: nothing listens
			}
			if tc, ok := c.(*net.TCPConn); ok {
				tc.SetLinger(0)
			}
			c.Close()
		} else {
			var errno syscall.Errno
			if !errors.As(err, &errno) {
				r.State, r.Reason = Filtered, ReasonNoResponse
			} else if st, reason, _ := verdict(errno); st != Unknown {
				r.State, r.Reason = st, reason
			}
		}
		s.report(r)
	}()
	return nil
}

func (s *dialSession) forget(id uint64) {
	s.mu.Lock()
	if c := s.cancels[id]; c != nil {
		c()
		delete(s.cancels, id)
	}
	s.mu.Unlock()
}

func (s *dialSession) Cancel(id uint64) (Reply, bool) {
	s.forget(id)
	return Reply{}, false
}

func (s *dialSession) Close() error {
	s.cancelAll()
	s.wg.Wait()
	return nil
}
