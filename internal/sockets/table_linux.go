package sockets

import (
	"context"
	"fmt"
	"net"
	"syscall"
	"unsafe"

	"golang.org/x/sys/unix"

	"portolan/internal/portspec"
)

// recvBufSize is the read buffer for dump replies. The kernel fills at most
// 32 KiB per read of a dump, sized by the reader's buffer, so one read
// brings a few hundred sockets.
const recvBufSize = 64 << 10

func kernelError(code int32) error { return syscall.Errno(code) }

// List returns the sockets q selects. Filters run in the kernel: a
// question about one port reads a message or two whatever the size of the
// table.
func (t *Table) List(ctx context.Context, q Query) ([]Socket, error) {
	out, err := t.dumpAll(ctx, &q)
	if err != nil {
		return nil, err
	}
	kept := out[:0]
	for i := range out {
		if q.match(&out[i]) {
			kept = append(kept, out[i])
		}
	}
	out = kept
	if err := t.nameInterfaces(out); err != nil {
		t.logger().Debug("interface names", "err", err)
	}
	return out, nil
}

// dumpAll runs the dumps q needs (one per protocol and family) and returns
// what the kernel sent, filtered by the kernel only.
func (t *Table) dumpAll(ctx context.Context, q *Query) ([]Socket, error) {
	var fd int
	err := t.inNetns(func() (err error) {
		fd, err = unix.Socket(unix.AF_NETLINK, unix.SOCK_RAW|unix.SOCK_CLOEXEC, unix.NETLINK_SOCK_DIAG)
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("open sock_diag netlink socket: %w", err)
	}
	defer unix.Close(fd)

	bc := compileFilter(q)
	buf := make([]byte, recvBufSize)
	var out []Socket
	var seq uint32
	for _, proto := range []portspec.Proto{portspec.TCP, portspec.UDP} {
		if q.Proto != 0 && q.Proto != proto {
			continue
		}
		for _, fam := range []Family{IPv4, IPv6} {
			if !q.wantsFamily(fam) {
				continue
			}
			seq++
			n := len(out)
			out, err = dump(ctx, fd, buf, diagRequest(seq, proto, fam, q.States.mask(), bc), proto, out)
			if err != nil {
				return nil, fmt.Errorf("sock_diag dump %s/%s: %w", proto, fam, err)
			}
			t.logger().Debug("sock_diag dump", "proto", proto, "family", fam, "sockets", len(out)-n, "bytecode", len(bc))
		}
	}
	return out, nil
}

// dump sends one request and reads its reply to the end.
func dump(ctx context.Context, fd int, buf, req []byte, proto portspec.Proto, out []Socket) ([]Socket, error) {
	if err := unix.Sendto(fd, req, 0, &unix.SockaddrNetlink{Family: unix.AF_NETLINK}); err != nil {
		return out, err
	}
	for {
		if err := ctx.Err(); err != nil {
			return out, err
		}
		n, err := recvTrunc(fd, buf)
		if err == unix.EINTR {
			continue
		}
		if err != nil {
			return out, err
		}
		if n > len(buf) {
			return out, fmt.Errorf("reply of %d bytes does not fit the %d-byte buffer", n, len(buf))
		}
		var done bool
		out, done, err = parseDiag(buf[:n], proto, out)
		if err != nil || done {
			return out, err
		}
	}
}

// recvTrunc reads one message; with MSG_TRUNC the kernel returns its real
// length, so a message cut short by the buffer is noticed. No address is
// asked for, so nothing is allocated.
func recvTrunc(fd int, buf []byte) (int, error) {
	n, _, errno := unix.Syscall6(unix.SYS_RECVFROM, uintptr(fd), uintptr(unsafe.Pointer(&buf[0])), uintptr(len(buf)), unix.MSG_TRUNC, 0, 0)
	if errno != 0 {
		return 0, errno
	}
	return int(n), nil
}

// nameInterfaces fills Interface for sockets bound to one, reading the
// interface list of the table's namespace once.
func (t *Table) nameInterfaces(socks []Socket) error {
	need := false
	for i := range socks {
		need = need || socks[i].IfIndex != 0
	}
	if !need {
		return nil
	}
	var ifs []net.Interface
	err := t.inNetns(func() (err error) {
		ifs, err = net.Interfaces()
		return err
	})
	if err != nil {
		return err
	}
	names := make(map[uint32]string, len(ifs))
	for _, ifc := range ifs {
		names[uint32(ifc.Index)] = ifc.Name
	}
	for i := range socks {
		if socks[i].IfIndex != 0 {
			socks[i].Interface = names[socks[i].IfIndex]
		}
	}
	return nil
}
