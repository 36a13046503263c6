package nflog

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/mdlayher/netlink"
	"golang.org/x/sys/unix"

	"portolan/internal/mmsg"
)

// Configuration attributes and commands, linux/netfilter/nfnetlink_log.h.
const (
	cfgCmd     = 1 // NFULA_CFG_CMD
	cfgMode    = 2 // NFULA_CFG_MODE
	cfgTimeout = 4 // NFULA_CFG_TIMEOUT, in 1/100 s
	cfgQthresh = 5 // NFULA_CFG_QTHRESH
	cfgFlags   = 6 // NFULA_CFG_FLAGS

	cmdBind    = 1 // NFULNL_CFG_CMD_BIND
	copyPacket = 2 // NFULNL_COPY_PACKET
	flagSeq    = 1 // NFULNL_CFG_F_SEQ: number the group's messages
)

// Reader reads the packets of one NFLOG group. Read is not safe for
// concurrent use; Stats and Close are.
type Reader struct {
	group uint16
	conn  *netlink.Conn
	wait  *mmsg.Reader

	bufs [][]byte
	iovs []unix.Iovec
	hdrs []unix.Mmsghdr
	in   interner

	// The unread part of the last read: datagram slot, offset in it.
	got, slot, off int

	seqNext  uint32
	seqKnown bool

	packets, lost, overruns, truncated, malformed atomic.Uint64

	closeOnce sync.Once
	closeErr  error
}

// Open binds cfg.Group in copy-packet mode, numbered messages and cfg's
// queue threshold, and returns its Reader. It needs CAP_NET_ADMIN in the
// namespace.
func Open(ctx context.Context, cfg Config) (*Reader, error) {
	cfg = cfg.withDefaults()
	wrap := func(err error) error { return fmt.Errorf("open nflog group %d: %w", cfg.Group, err) }
	c, err := netlink.Dial(unix.NETLINK_NETFILTER, &netlink.Config{NetNS: cfg.NetNS})
	if err != nil {
		return nil, wrap(err)
	}
	r := &Reader{group: cfg.Group, conn: c, in: interner{}}
	if err := r.setup(ctx, cfg); err != nil {
		c.Close()
		return nil, wrap(err)
	}
	return r, nil
}

func (r *Reader) setup(ctx context.Context, cfg Config) error {
	raw, err := r.conn.SyscallConn()
	if err != nil {
		return err
	}
	r.wait = mmsg.NewReader(r.conn, raw)
	var serr error
	if err := raw.Control(func(fd uintptr) {
		if e := unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_RCVBUFFORCE, cfg.ReadBuffer); e != nil {
			e = unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_RCVBUF, cfg.ReadBuffer)
			serr = errors.Join(serr, e)
		}
		// Any socket asking for timestamps makes the kernel stamp every
		// received packet, which is what fills NFULA_TIMESTAMP.
		serr = errors.Join(serr, unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_TIMESTAMP, 1))
	}); err != nil {
		return err
	}
	if serr != nil {
		return fmt.Errorf("set socket options: %w", serr)
	}
	size := cfg.slotSize()
	r.bufs = make([][]byte, cfg.Batch)
	r.iovs = make([]unix.Iovec, cfg.Batch)
	r.hdrs = make([]unix.Mmsghdr, cfg.Batch)
	for i := range r.bufs {
		r.bufs[i] = make([]byte, size)
		r.iovs[i].Base = &r.bufs[i][0]
		r.iovs[i].SetLen(size)
		r.hdrs[i].Hdr.Iov = &r.iovs[i]
		r.hdrs[i].Hdr.SetIovlen(1)
	}

	// One message binds and configures, so no packet can come before the
	// group is in copy-packet mode with numbered messages.
	ae := netlink.NewAttributeEncoder()
	ae.ByteOrder = binary.BigEndian
	ae.Bytes(cfgCmd, []byte{cmdBind})
	ae.Bytes(cfgMode, append(binary.BigEndian.AppendUint32(nil, uint32(cfg.CopyRange)), copyPacket, 0))
	ae.Uint32(cfgQthresh, cfg.QueueThreshold)
	ae.Uint16(cfgFlags, flagSeq)
	if cfg.FlushTimeout > 0 {
		ae.Uint32(cfgTimeout, uint32(max(1, cfg.FlushTimeout/(10*time.Millisecond))))
	}
	attrs, err := ae.Encode()
	if err != nil {
		return err
	}
	req, err := r.conn.Send(netlink.Message{
		Header: netlink.Header{Type: netlink.HeaderType(subsysULOG<<8 | msgConfig), Flags: netlink.Request | netlink.Acknowledge},
		Data:   append([]byte{unix.AF_UNSPEC, unix.NFNETLINK_V0, byte(cfg.Group >> 8), byte(cfg.Group)}, attrs...),
	})
	if err != nil {
		return fmt.Errorf("send configuration: %w", err)
	}
	return r.awaitAck(ctx, req.Header.Sequence)
}

// awaitAck reads until the kernel acknowledges message seq. A packet that
// comes in between is dropped: the caller has not asked for any yet.
func (r *Reader) awaitAck(ctx context.Context, seq uint32) error {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	for {
		if err := r.fill(ctx); err != nil {
			return fmt.Errorf("await acknowledgement: %w", err)
		}
		for ; r.slot < r.got; r.slot, r.off = r.slot+1, 0 {
			b := r.bufs[r.slot][:r.hdrs[r.slot].Len]
			for off := 0; off+nlmsgHdrLen <= len(b); {
				l := int(binary.NativeEndian.Uint32(b[off:]))
				typ := binary.NativeEndian.Uint16(b[off+4:])
				s := binary.NativeEndian.Uint32(b[off+8:])
				if l < nlmsgHdrLen || l > len(b)-off {
					break
				}
				if typ == nlmsgError && s == seq && l >= nlmsgHdrLen+4 {
					code := int32(binary.NativeEndian.Uint32(b[off+nlmsgHdrLen:]))
					switch {
					case code == 0:
						r.slot, r.got = 0, 0
						return nil
					case syscall.Errno(-code) == unix.EPERM && hasNetAdmin():
						// The kernel says EPERM both to a caller without
						// CAP_NET_ADMIN and for a group another socket holds.
						return ErrGroupBusy
					default:
						return syscall.Errno(-code)
					}
				}
				off += (l + 3) &^ 3
			}
		}
	}
}

// Read waits for packets and stores up to len(pkts) of them in pkts. Their
// byte slices stay valid until the next Read. It returns ctx.Err() when ctx
// ends first.
func (r *Reader) Read(ctx context.Context, pkts []Packet) (int, error) {
	if len(pkts) == 0 {
		return 0, nil
	}
	for {
		if n := r.drain(pkts); n > 0 {
			r.packets.Add(uint64(n))
			return n, nil
		}
		if err := r.fill(ctx); err != nil {
			return 0, fmt.Errorf("read nflog group %d: %w", r.group, err)
		}
	}
}

// drain parses the messages left from the last fill into pkts.
func (r *Reader) drain(pkts []Packet) int {
	n := 0
	for ; r.slot < r.got; r.slot, r.off = r.slot+1, 0 {
		h := &r.hdrs[r.slot]
		if h.Hdr.Flags&unix.MSG_TRUNC != 0 {
			r.truncated.Add(1)
			continue
		}
		b := r.bufs[r.slot][:h.Len]
		for r.off+nlmsgHdrLen <= len(b) {
			if n == len(pkts) {
				return n
			}
			l := int(binary.NativeEndian.Uint32(b[r.off:]))
			typ := binary.NativeEndian.Uint16(b[r.off+4:])
			if l < nlmsgHdrLen || l > len(b)-r.off {
				r.malformed.Add(1)
				break
			}
			msg := b[r.off+nlmsgHdrLen : r.off+l]
			r.off += (l + 3) &^ 3
			if typ != subsysULOG<<8|msgPacket {
				continue // an acknowledgement or NLMSG_DONE
			}
			p := &pkts[n]
			if err := parsePacket(msg, p, r.in); err != nil {
				r.malformed.Add(1)
				continue
			}
			if p.HasSeq {
				if r.seqKnown && p.Seq != r.seqNext {
					r.lost.Add(uint64(p.Seq - r.seqNext))
				}
				r.seqNext, r.seqKnown = p.Seq+1, true
			}
			n++
		}
	}
	return n
}

// fill waits for datagrams and reads as many as are queued, up to the
// batch size, into the slots.
func (r *Reader) fill(ctx context.Context) error {
	r.slot, r.off, r.got = 0, 0, 0
	for {
		n, err := r.wait.Read(ctx, func(fd uintptr) (int, error) {
			for i := range r.hdrs {
				r.hdrs[i].Hdr.Flags = 0
			}
			return mmsg.Recv(fd, r.hdrs)
		})
		if err == unix.ENOBUFS {
			// The kernel dropped messages; the gap in their numbers
			// says how many.
			r.overruns.Add(1)
			continue
		}
		if err != nil {
			return err
		}
		r.got = n
		return nil
	}
}

// hasNetAdmin reports whether the process has CAP_NET_ADMIN in effect.
func hasNetAdmin() bool {
	hdr := unix.CapUserHeader{Version: unix.LINUX_CAPABILITY_VERSION_3}
	var data [2]unix.CapUserData
	if err := unix.Capget(&hdr, &data[0]); err != nil {
		return false
	}
	return data[0].Effective&(1<<unix.CAP_NET_ADMIN) != 0
}

// Stats returns the counts so far.
func (r *Reader) Stats() Stats {
	return Stats{
		Packets:   r.packets.Load(),
		Lost:      r.lost.Load(),
		Overruns:  r.overruns.Load(),
		Truncated: r.truncated.Load(),
		Malformed: r.malformed.Load(),
	}
}

// Close unbinds the group (the kernel drops a closed socket's groups) and
// ends a Read in progress.
func (r *Reader) Close() error {
	r.closeOnce.Do(func() { r.closeErr = r.conn.Close() })
	return r.closeErr
}
