package scan

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"sync"
	"time"

	"golang.org/x/sys/unix"

	"portolan/internal/portspec"
)

// Open makes an ICMP socket per address family, in the calling thread's
// network namespace, and a goroutine reading each. A family without one
// (no IPv6, say) has its probes reported filtered at once.
func (EchoProber) Open(ctx context.Context, report func(Reply)) (Session, error) {
	s := &echoSession{report: report, live: map[uint64]echoProbe{}}
	var errs []error
	for i, fam := range []int{unix.AF_INET, unix.AF_INET6} {
		sock, err := openEcho(fam)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		s.socks[i] = sock
		s.wg.Add(1)
		go s.read(sock)
	}
	if s.socks[0] == nil && s.socks[1] == nil {
		return nil, errors.Join(errs...)
	}
	// Timestamps need a raw socket: without CAP_NET_RAW, echo alone.
	if ts, err := openTimestamp(); err == nil {
		s.ts = ts
		s.wg.Add(1)
		go s.read(ts)
	}
	return s, nil
}

// openTimestamp opens a raw ICMP socket that receives timestamp replies
// only (ICMP_FILTER), so that the reader is not woken by every ICMP
// error a scan draws.
func openTimestamp() (*echoSock, error) {
	fd, err := unix.Socket(unix.AF_INET, unix.SOCK_RAW|unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC, unix.IPPROTO_ICMP)
	if err != nil {
		return nil, fmt.Errorf("icmp socket: %w", err)
	}
	// ICMP_FILTER (1) at SOL_RAW: the types to drop, as a bit mask.
	if err := unix.SetsockoptInt(fd, unix.SOL_RAW, 1, int(^uint32(1<<icmpTimestampReply))); err != nil {
		unix.Close(fd)
		return nil, fmt.Errorf("icmp socket filter: %w", err)
	}
	return &echoSock{f: os.NewFile(uintptr(fd), "icmp-timestamp"), ipHeader: true, timestamp: true}, nil
}

// PingKinds is echo, and for IPv4 a timestamp request when a raw socket
// could be opened.
func (s *echoSession) PingKinds(a netip.Addr) []PingKind {
	if a.Unmap().Is4() && s.ts != nil {
		return []PingKind{PingEcho, PingTimestamp}
	}
	return []PingKind{PingEcho}
}

// echoSock is one ICMP socket.
type echoSock struct {
	f        *os.File // nonblocking, so the runtime's poller wakes the reader and Close stops it
	v6       bool
	ipHeader bool // a raw IPv4 socket: reads start with the IP header
	// timestamp: the raw socket for ICMP timestamps (echoSession.ts)
	timestamp bool
}

// openEcho opens an unprivileged ping socket, or failing that a raw one.
func openEcho(fam int) (*echoSock, error) {
	proto, name := unix.IPPROTO_ICMP, "icmp"
	if fam == unix.AF_INET6 {
		proto, name = unix.IPPROTO_ICMPV6, "icmpv6"
	}
	raw := false
	fd, err := unix.Socket(fam, unix.SOCK_DGRAM|unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC, proto)
	if err != nil {
		var rerr error
		fd, rerr = unix.Socket(fam, unix.SOCK_RAW|unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC, proto)
		if rerr != nil {
			return nil, fmt.Errorf("%s socket: %w (ping socket: not in net.ipv4.ping_group_range: %v; raw socket needs CAP_NET_RAW)", name, rerr, err)
		}
		raw = true
	}
	return &echoSock{f: os.NewFile(uintptr(fd), name), v6: fam == unix.AF_INET6, ipHeader: raw && fam == unix.AF_INET}, nil
}

type echoProbe struct {
	dst   netip.Addr
	sent  time.Time
	token uint32 // a timestamp request's; 0 for an echo
}

type echoSession struct {
	report func(Reply)
	socks  [2]*echoSock // IPv4, IPv6
	ts     *echoSock    // raw IPv4, for timestamps; nil without CAP_NET_RAW
	wg     sync.WaitGroup

	mu     sync.Mutex
	live   map[uint64]echoProbe
	tokens map[uint32]uint64 // timestamp requests in flight: their probe IDs
	token  uint32
	seq    uint16
	buf    []byte
}

// Send sends the probe of kind PingKind(dst.Port()) to dst's address.
func (s *echoSession) Send(id uint64, dst netip.AddrPort, _ portspec.Proto) error {
	a := dst.Addr().Unmap()
	kind := PingKind(dst.Port())
	sock := s.socks[0]
	switch {
	case kind == PingTimestamp && a.Is4():
		sock = s.ts
	case kind != PingEcho:
		return fmt.Errorf("ICMP %s to %s: %w", kind, a, ErrUnsupported)
	case a.Is6():
		sock = s.socks[1]
	}
	if sock == nil {
		s.report(Reply{ID: id, State: Filtered, Reason: ReasonNoResponse})
		return nil
	}
	s.mu.Lock()
	var token uint32
	if sock.timestamp {
		if s.token++; s.token == 0 {
			s.token++
		}
		token = s.token
		if s.tokens == nil {
			s.tokens = map[uint32]uint64{}
		}
		s.tokens[s.token] = id
		now := time.Now().UTC()
		ms := now.Sub(now.Truncate(24 * time.Hour)).Milliseconds()
		s.buf = timestampRequest(s.buf, s.token, uint32(ms))
	} else {
		s.seq++
		s.buf = echoRequest(s.buf, sock.v6, s.seq, id)
	}
	s.live[id] = echoProbe{a, time.Now(), token}
	msg := s.buf
	s.mu.Unlock()

	var sa unix.Sockaddr
	if a.Is4() {
		sa = &unix.SockaddrInet4{Addr: a.As4()}
	} else {
		sa = &unix.SockaddrInet6{Addr: a.As16()}
	}
	rc, err := sock.f.SyscallConn()
	if err != nil {
		return fmt.Errorf("ping %s: %w", a, err)
	}
	var serr error
	if err := rc.Write(func(fd uintptr) bool {
		serr = unix.Sendto(int(fd), msg, 0, sa)
		return serr != unix.EAGAIN
	}); err != nil {
		serr = err
	}
	switch {
	case serr == nil:
		return nil
	case errors.Is(serr, unix.ENOBUFS), errors.Is(serr, unix.EAGAIN):
		s.forget(id)
		return fmt.Errorf("ping %s: %w: %w", a, ErrBusy, serr)
	default:
		// No route, a local firewall...: no answer from the host.
		s.forget(id)
		reason := ReasonNetUnreach
		var errno unix.Errno
		if errors.As(serr, &errno) {
			if st, r, _ := verdict(errno); st == Filtered {
				reason = r
			}
		}
		s.report(Reply{ID: id, State: Filtered, Reason: reason})
		return nil
	}
}

func (s *echoSession) forget(id uint64) {
	s.mu.Lock()
	s.forgetLocked(id)
	s.mu.Unlock()
}

// forgetLocked drops probe id and, if it is a timestamp request, its token.
// Under mu.
func (s *echoSession) forgetLocked(id uint64) {
	if p, ok := s.live[id]; ok && p.token != 0 {
		delete(s.tokens, p.token)
	}
	delete(s.live, id)
}

// read reports the replies that come to sock until it is closed.
func (s *echoSession) read(sock *echoSock) {
	defer s.wg.Done()
	rc, err := sock.f.SyscallConn()
	if err != nil {
		return
	}
	buf := make([]byte, 1500)
	for {
		var n int
		var from unix.Sockaddr
		var rerr error
		err := rc.Read(func(fd uintptr) bool {
			n, from, rerr = unix.Recvfrom(int(fd), buf, 0)
			return rerr != unix.EAGAIN
		})
		if err != nil {
			return // closed
		}
		if rerr != nil {
			continue
		}
		var id uint64
		reason := ReasonEchoReply
		if sock.timestamp {
			token, _, err := parseTimestampReply(buf[:n], true)
			if err != nil {
				continue
			}
			s.mu.Lock()
			id = s.tokens[token]
			s.mu.Unlock()
			reason = ReasonTimestampReply
		} else if id, err = parseEchoReply(buf[:n], sock.v6, sock.ipHeader); err != nil {
			continue // someone else's ICMP
		}
		var src netip.Addr
		switch sa := from.(type) {
		case *unix.SockaddrInet4:
			src = netip.AddrFrom4(sa.Addr)
		case *unix.SockaddrInet6:
			src = netip.AddrFrom16(sa.Addr)
		}
		s.mu.Lock()
		p, ok := s.live[id]
		if ok && p.dst == src {
			s.forgetLocked(id)
		}
		s.mu.Unlock()
		if ok && p.dst == src {
			s.report(Reply{ID: id, State: Open, Reason: reason, RTT: time.Since(p.sent)})
		}
	}
}

func (s *echoSession) Cancel(id uint64) (Reply, bool) {
	s.forget(id)
	return Reply{}, false
}

func (s *echoSession) Close() error {
	for _, sock := range []*echoSock{s.socks[0], s.socks[1], s.ts} {
		if sock != nil {
			sock.f.Close()
		}
	}
	s.wg.Wait()
	return nil
}
