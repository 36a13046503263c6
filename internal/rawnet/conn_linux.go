package rawnet

import (
	"errors"
	"fmt"
	"net/netip"
	"sync"
	"unsafe"

	"golang.org/x/net/bpf"
	"golang.org/x/sys/unix"
)

func htons(v uint16) uint16 { return v<<8 | v>>8 }

// Sender sends packets in batches of one sendmmsg call, from a fixed set
// of slots that callers fill in place. It sends one family to one
// interface: through AF_PACKET with the packets' own Ethernet headers, or
// through a raw IP socket (IP_HDRINCL; IPPROTO_RAW for IPv6) where the
// interface has no link layer. Its methods allocate nothing; it is not
// safe for concurrent use of the same slot.
type Sender struct {
	fd    int
	link  bool
	v6    bool
	ll    unix.RawSockaddrLinklayer
	buf   []byte
	iovs  []unix.Iovec
	msgs  []unix.Mmsghdr
	name4 []unix.RawSockaddrInet4
	name6 []unix.RawSockaddrInet6
}

// OpenSender opens a sender with n slots for route r's interface and
// family v6. It needs CAP_NET_RAW.
func OpenSender(r Route, v6 bool, n int) (*Sender, error) {
	s := &Sender{link: r.Link(), v6: v6}
	var err error
	switch {
	case s.link:
		// Protocol 0: this socket sends only, and no received packet is
		// ever queued to it.
		s.fd, err = unix.Socket(unix.AF_PACKET, unix.SOCK_RAW|unix.SOCK_CLOEXEC, 0)
		if err != nil {
			return nil, fmt.Errorf("packet socket: %w", err)
		}
		proto := uint16(EtherTypeIPv4)
		if v6 {
			proto = EtherTypeIPv6
		}
		s.ll = unix.RawSockaddrLinklayer{Family: unix.AF_PACKET, Protocol: htons(proto), Ifindex: int32(r.Ifindex), Halen: 6}
		// Straight to the driver: our packets need no queueing discipline,
		// and a full device queue is then an error we count, not a silent
		// drop.
		_ = unix.SetsockoptInt(s.fd, unix.SOL_PACKET, unix.PACKET_QDISC_BYPASS, 1)
	case v6:
		s.fd, err = unix.Socket(unix.AF_INET6, unix.SOCK_RAW|unix.SOCK_CLOEXEC, unix.IPPROTO_RAW)
		if err != nil {
			return nil, fmt.Errorf("raw ipv6 socket: %w", err)
		}
	default:
		s.fd, err = unix.Socket(unix.AF_INET, unix.SOCK_RAW|unix.SOCK_CLOEXEC, unix.IPPROTO_RAW)
		if err == nil {
			err = unix.SetsockoptInt(s.fd, unix.IPPROTO_IP, unix.IP_HDRINCL, 1)
		}
		if err != nil {
			if s.fd > 0 {
				unix.Close(s.fd)
			}
			return nil, fmt.Errorf("raw ipv4 socket: %w", err)
		}
	}
	if !s.link && r.Ifindex != 0 {
		if err := unix.SetsockoptInt(s.fd, unix.SOL_SOCKET, unix.SO_BINDTOIFINDEX, r.Ifindex); err != nil {
			unix.Close(s.fd)
			return nil, fmt.Errorf("bind raw socket to %s: %w", r.Ifname, err)
		}
	}
	_ = unix.SetsockoptInt(s.fd, unix.SOL_SOCKET, unix.SO_SNDBUFFORCE, 4<<20)
	s.buf = make([]byte, n*MaxSYNLen)
	s.iovs = make([]unix.Iovec, n)
	s.msgs = make([]unix.Mmsghdr, n)
	if !s.link {
		if v6 {
			s.name6 = make([]unix.RawSockaddrInet6, n)
		} else {
			s.name4 = make([]unix.RawSockaddrInet4, n)
		}
	}
	for i := range n {
		s.iovs[i].Base = &s.buf[i*MaxSYNLen]
		h := &s.msgs[i].Hdr
		h.Iov = &s.iovs[i]
		h.Iovlen = 1
		switch {
		case s.link:
			h.Name = (*byte)(unsafe.Pointer(&s.ll))
			h.Namelen = unix.SizeofSockaddrLinklayer
		case v6:
			s.name6[i].Family = unix.AF_INET6
			h.Name = (*byte)(unsafe.Pointer(&s.name6[i]))
			h.Namelen = unix.SizeofSockaddrInet6
		default:
			s.name4[i].Family = unix.AF_INET
			h.Name = (*byte)(unsafe.Pointer(&s.name4[i]))
			h.Namelen = unix.SizeofSockaddrInet4
		}
	}
	return s, nil
}

// Slots is the number of slots.
func (s *Sender) Slots() int { return len(s.msgs) }

// Slot is slot i's buffer, MaxSYNLen bytes, to fill in place.
func (s *Sender) Slot(i int) []byte { return s.buf[i*MaxSYNLen : (i+1)*MaxSYNLen] }

// Ready marks slot i as holding a packet of n bytes to dst.
func (s *Sender) Ready(i, n int, dst netip.Addr) {
	s.iovs[i].SetLen(n)
	switch {
	case s.link:
	case s.v6:
		s.name6[i].Addr = dst.As16()
	default:
		s.name4[i].Addr = dst.As4()
	}
}

// Send sends slots [from, from+n) in one system call and returns how many
// went out. A full device or socket buffer (ENOBUFS, EAGAIN) is returned
// as is, for the caller to count as drops and slow down.
func (s *Sender) Send(from, n int) (int, error) {
	if n == 0 {
		return 0, nil
	}
	for {
		r, _, e := unix.Syscall6(unix.SYS_SENDMMSG, uintptr(s.fd), uintptr(unsafe.Pointer(&s.msgs[from])), uintptr(n), 0, 0, 0)
		if e == unix.EINTR {
			continue
		}
		if e != 0 {
			return 0, e
		}
		return int(r), nil
	}
}

// Close closes the socket.
func (s *Sender) Close() error { return unix.Close(s.fd) }

// Receiver reads packets in batches (recvmmsg) from a cooked AF_PACKET
// socket on every interface, through Filter.
type Receiver struct {
	fd      int
	bufs    []byte
	iovs    []unix.Iovec
	msgs    []unix.Mmsghdr
	timeout int // milliseconds
	pfd     [1]unix.PollFd
	rmu     sync.Mutex // held while packets leave the socket and are handled
	mu      sync.Mutex // guards the counters
	packets uint64
	drops   uint64
}

// OpenReceiver opens a receiver for TCP to ports [lo, hi] and ICMP errors,
// reading up to batch packets per call; Recv returns within about timeout
// milliseconds when nothing comes. It needs CAP_NET_RAW.
func OpenReceiver(lo, hi uint16, batch, timeoutMillis int) (*Receiver, error) {
	prog, err := Filter(lo, hi)
	if err != nil {
		return nil, err
	}
	raw, err := bpf.Assemble(prog)
	if err != nil {
		return nil, fmt.Errorf("assemble bpf filter: %w", err)
	}
	// Protocol 0 until the filter is on: nothing unfiltered is queued.
	fd, err := unix.Socket(unix.AF_PACKET, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("packet socket: %w", err)
	}
	fail := func(what string, err error) (*Receiver, error) {
		unix.Close(fd)
		return nil, fmt.Errorf("%s: %w", what, err)
	}
	ins := make([]unix.SockFilter, len(raw))
	for i, r := range raw {
		ins[i] = unix.SockFilter{Code: r.Op, Jt: r.Jt, Jf: r.Jf, K: r.K}
	}
	if err := unix.SetsockoptSockFprog(fd, unix.SOL_SOCKET, unix.SO_ATTACH_FILTER, &unix.SockFprog{Len: uint16(len(ins)), Filter: &ins[0]}); err != nil {
		return fail("attach bpf filter", err)
	}
	if err := unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_RCVBUFFORCE, 16<<20); err != nil {
		_ = unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_RCVBUF, 16<<20)
	}
	if err := unix.Bind(fd, &unix.SockaddrLinklayer{Protocol: htons(unix.ETH_P_ALL)}); err != nil {
		return fail("bind packet socket", err)
	}
	r := &Receiver{fd: fd, timeout: timeoutMillis}
	r.bufs, r.iovs, r.msgs = recvBuffers(batch)
	return r, nil
}

// recvBuffers makes n packet buffers of SnapLen bytes for recvmmsg.
func recvBuffers(n int) ([]byte, []unix.Iovec, []unix.Mmsghdr) {
	bufs, iovs, msgs := make([]byte, n*SnapLen), make([]unix.Iovec, n), make([]unix.Mmsghdr, n)
	for i := range n {
		iovs[i].Base = &bufs[i*SnapLen]
		iovs[i].SetLen(SnapLen)
		msgs[i].Hdr.Iov = &iovs[i]
		msgs[i].Hdr.Iovlen = 1
	}
	return bufs, iovs, msgs
}

// Recv waits for packets (up to the timeout) and passes each, from its IP
// header on, to fn; the slice is valid only during the call. It returns
// the number of packets; 0 with a nil error is a timeout. Packets leave
// the socket only while fn may run, under the lock TryRecv takes too, so
// a TryRecv that finds nothing knows that nothing has arrived unseen.
func (r *Receiver) Recv(fn func([]byte)) (int, error) {
	r.pfd[0] = unix.PollFd{Fd: int32(r.fd), Events: unix.POLLIN}
	n, err := unix.Poll(r.pfd[:], r.timeout)
	if err != nil && err != unix.EINTR {
		return 0, fmt.Errorf("wait for packets: %w", err)
	}
	if n <= 0 {
		return 0, nil
	}
	return r.TryRecv(fn)
}

// TryRecv reads what is queued on the socket without waiting; fn is as
// for Recv. It may run while Recv waits in another goroutine: it is for a
// caller that must know whether an answer has arrived before giving up on
// it.
func (r *Receiver) TryRecv(fn func([]byte)) (int, error) {
	r.rmu.Lock()
	defer r.rmu.Unlock()
	total := 0
	for {
		n, _, e := unix.Syscall6(unix.SYS_RECVMMSG, uintptr(r.fd), uintptr(unsafe.Pointer(&r.msgs[0])), uintptr(len(r.msgs)), unix.MSG_DONTWAIT, 0, 0)
		switch e {
		case 0:
		case unix.EAGAIN, unix.EINTR:
			return total, nil
		default:
			return total, fmt.Errorf("receive packets: %w", e)
		}
		for i := range int(n) {
			l := min(int(r.msgs[i].Len), SnapLen)
			fn(r.bufs[i*SnapLen : i*SnapLen+l])
		}
		total += int(n)
		if int(n) < len(r.msgs) {
			return total, nil
		}
	}
}

// Stats returns what the socket counted since it opened. The kernel resets
// its counters on each read; Stats adds them up.
func (r *Receiver) Stats() (Stats, error) {
	st, err := unix.GetsockoptTpacketStats(r.fd, unix.SOL_PACKET, unix.PACKET_STATISTICS)
	r.mu.Lock()
	defer r.mu.Unlock()
	if err != nil {
		return Stats{r.packets, r.drops}, fmt.Errorf("packet statistics: %w", err)
	}
	r.packets += uint64(st.Packets)
	r.drops += uint64(st.Drops)
	return Stats{r.packets, r.drops}, nil
}

// Close closes the socket. Call it after the last Recv has returned.
func (r *Receiver) Close() error { return unix.Close(r.fd) }

// IsPermission reports whether err is the kernel refusing a raw socket for
// lack of CAP_NET_RAW (or CAP_NET_ADMIN).
func IsPermission(err error) bool {
	return errors.Is(err, unix.EPERM) || errors.Is(err, unix.EACCES)
}

// Allowed reports whether this process may open raw sockets: whether
// CAP_NET_RAW is in its effective set (root has it unless dropped).
func Allowed() bool {
	hdr := unix.CapUserHeader{Version: unix.LINUX_CAPABILITY_VERSION_3}
	var data [2]unix.CapUserData
	if err := unix.Capget(&hdr, &data[0]); err != nil {
		return false
	}
	return data[unix.CAP_NET_RAW/32].Effective&(1<<(unix.CAP_NET_RAW%32)) != 0
}
