package knock

import (
	"context"
	"fmt"
	"os"
	"sync"
	"syscall"
	"time"
	"unsafe"

	"golang.org/x/net/bpf"
	"golang.org/x/sys/unix"

	"portolan/internal/mmsg"
	"portolan/internal/nflog"
	"portolan/internal/sockets"
)

// packetCapture reads knock packets from a cooked AF_PACKET socket bound
// to every interface of a namespace (also those that appear later),
// through a classic BPF filter that passes only the watched ports. A
// packet socket sees packets before netfilter, so the doors' chain can
// drop them without a log rule. It needs CAP_NET_RAW.
type packetCapture struct {
	f   *os.File
	raw syscall.RawConn

	bufs [][]byte
	oobs [][]byte
	iovs []unix.Iovec
	hdrs []unix.Mmsghdr
	got  int
	next int

	wait  *mmsg.Reader
	mu    sync.Mutex // drops
	drops uint64
}

const captureBatch = 16

// openPacketCapture opens the capture in the namespace nsfd (0: this
// thread's) for the watched ports.
func openPacketCapture(nsfd int, watch []DoorPort) (packetCapturer, error) {
	wrap := func(err error) error { return fmt.Errorf("open af_packet capture: %w", err) }
	var fd int
	open := func() (err error) {
		// Protocol 0 until the filter is on: nothing unfiltered is queued.
		fd, err = unix.Socket(unix.AF_PACKET, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC|unix.SOCK_NONBLOCK, 0)
		return err
	}
	var err error
	if nsfd > 0 {
		err = sockets.InNetns(fmt.Sprintf("/proc/self/fd/%d", nsfd), open)
	} else {
		err = open()
	}
	if err != nil {
		return nil, wrap(err)
	}
	c := &packetCapture{f: os.NewFile(uintptr(fd), "af_packet")}
	fail := func(err error) (packetCapturer, error) {
		c.f.Close()
		return nil, wrap(err)
	}
	if c.raw, err = c.f.SyscallConn(); err != nil {
		return fail(err)
	}
	c.wait = mmsg.NewReader(c.f, c.raw)
	if err := c.SetWatch(watch); err != nil {
		return fail(err)
	}
	var serr error
	c.raw.Control(func(fd uintptr) {
		if e := unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_RCVBUFFORCE, 4<<20); e != nil {
			_ = unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_RCVBUF, 4<<20)
		}
		// The kernel's receive time, for the knock-to-open latency.
		serr = unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_TIMESTAMPNS, 1)
		if serr == nil {
			serr = unix.Bind(int(fd), &unix.SockaddrLinklayer{Protocol: htons(unix.ETH_P_ALL)})
		}
	})
	if serr != nil {
		return fail(serr)
	}
	oob := unix.CmsgSpace(int(unsafe.Sizeof(unix.Timespec{})))
	c.bufs, c.oobs = make([][]byte, captureBatch), make([][]byte, captureBatch)
	c.iovs, c.hdrs = make([]unix.Iovec, captureBatch), make([]unix.Mmsghdr, captureBatch)
	for i := range c.bufs {
		c.bufs[i], c.oobs[i] = make([]byte, captureSnap), make([]byte, oob)
		c.iovs[i].Base = &c.bufs[i][0]
		c.iovs[i].SetLen(captureSnap)
		c.hdrs[i].Hdr.Iov = &c.iovs[i]
		c.hdrs[i].Hdr.SetIovlen(1)
	}
	return c, nil
}

// SetWatch replaces the filter with one for watch; the kernel swaps it
// atomically, so a reload loses no knock to a port watched before and
// after.
func (c *packetCapture) SetWatch(watch []DoorPort) error {
	prog, err := captureFilter(watch)
	if err != nil {
		return err
	}
	raw, err := bpf.Assemble(prog)
	if err != nil {
		return fmt.Errorf("assemble bpf filter: %w", err)
	}
	ins := make([]unix.SockFilter, len(raw))
	for i, r := range raw {
		ins[i] = unix.SockFilter{Code: r.Op, Jt: r.Jt, Jf: r.Jf, K: r.K}
	}
	var serr error
	if err := c.raw.Control(func(fd uintptr) {
		serr = unix.SetsockoptSockFprog(int(fd), unix.SOL_SOCKET, unix.SO_ATTACH_FILTER, &unix.SockFprog{Len: uint16(len(ins)), Filter: &ins[0]})
	}); err != nil {
		return err
	}
	if serr != nil {
		return fmt.Errorf("attach bpf filter: %w", serr)
	}
	return nil
}

// Read waits for packets and stores up to len(pkts) of them in pkts; their
// Payload is valid until the next Read.
func (c *packetCapture) Read(ctx context.Context, pkts []nflog.Packet) (int, error) {
	if len(pkts) == 0 {
		return 0, nil
	}
	if c.next >= c.got {
		if err := c.fill(ctx); err != nil {
			return 0, fmt.Errorf("read af_packet capture: %w", err)
		}
	}
	n := 0
	for ; c.next < c.got && n < len(pkts); c.next++ {
		h := &c.hdrs[c.next]
		pkts[n] = nflog.Packet{Payload: c.bufs[c.next][:min(int(h.Len), captureSnap)], Timestamp: cmsgTime(c.oobs[c.next][:h.Hdr.Controllen])}
		n++
	}
	return n, nil
}

// fill waits for datagrams and reads as many as are queued, up to the
// batch size.
func (c *packetCapture) fill(ctx context.Context) error {
	c.next, c.got = 0, 0
	n, err := c.wait.Read(ctx, func(fd uintptr) (int, error) {
		for i := range c.hdrs {
			c.hdrs[i].Hdr.Flags = 0
			c.hdrs[i].Hdr.Control = &c.oobs[i][0]
			c.hdrs[i].Hdr.SetControllen(len(c.oobs[i]))
		}
		return mmsg.Recv(fd, c.hdrs)
	})
	c.got = n
	return err
}

// cmsgTime finds SCM_TIMESTAMPNS in a control message buffer; zero when
// absent.
func cmsgTime(oob []byte) time.Time {
	for len(oob) >= unix.SizeofCmsghdr {
		h := (*unix.Cmsghdr)(unsafe.Pointer(&oob[0]))
		l := int(h.Len)
		if l < unix.SizeofCmsghdr || l > len(oob) {
			break
		}
		data := oob[unix.CmsgLen(0):l]
		if h.Level == unix.SOL_SOCKET && h.Type == unix.SCM_TIMESTAMPNS && len(data) >= int(unsafe.Sizeof(unix.Timespec{})) {
			ts := (*unix.Timespec)(unsafe.Pointer(&data[0]))
			return time.Unix(ts.Unix())
		}
		next := unix.CmsgSpace(l - unix.CmsgLen(0))
		if next > len(oob) {
			break
		}
		oob = oob[next:]
	}
	return time.Time{}
}

// Lost returns how many packets passed the filter but found the socket's
// buffer full. The kernel resets its count on each read; Lost adds them up.
func (c *packetCapture) Lost() uint64 {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.raw.Control(func(fd uintptr) {
		if st, err := unix.GetsockoptTpacketStats(int(fd), unix.SOL_PACKET, unix.PACKET_STATISTICS); err == nil {
			c.drops += uint64(st.Drops)
		}
	})
	return c.drops
}

// Close closes the socket and ends a Read in progress.
func (c *packetCapture) Close() error { return c.f.Close() }

func htons(v uint16) uint16 { return v<<8 | v>>8 }
