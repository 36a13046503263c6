package sockets

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"runtime"
	"sync"
	"sync/atomic"
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
	n := 0 // keep what matches, moving only what must move
	for i := range out {
		if out[i].Family != 0 && q.match(&out[i]) { // Family 0: room a failed parse left empty
			if i != n {
				out[n] = out[i]
			}
			n++
		}
	}
	clear(out[n:])
	out = out[:n]
	if err := t.nameInterfaces(out); err != nil {
		t.logger().Debug("interface names", "err", err)
	}
	return out, nil
}

// largeTable is the size from which a whole-table dump is shared among
// threads.
var largeTable = 4096 // a variable for tests

// dumpAll runs the dumps q needs and returns what the kernel sent, filtered
// by the kernel only; entries left zero (Family 0) by a failed parse are for
// the caller to drop. A large table is read by several threads at once,
// each with its own netlink socket, all parsing into one array sized from
// /proc/net/sockstat: no socket is copied on the way.
func (t *Table) dumpAll(ctx context.Context, q *Query) ([]Socket, error) {
	hint := 0
	if len(q.Ports) == 0 && len(q.RemotePorts) == 0 && !q.Local.IsValid() && !q.Remote.IsValid() {
		// A whole table. Unused room costs address space only: fresh pages
		// are not touched until written.
		s4, _ := os.ReadFile("/proc/net/sockstat")
		s6, _ := os.ReadFile("/proc/net/sockstat6")
		hint = sizeHint(s4, s6, q.Proto)
	}
	workers := 1
	if hint >= largeTable {
		workers = min(runtime.GOMAXPROCS(0), 4)
	}
	reqs := planDumps(q)
	workers = min(workers, len(reqs))

	fds := make([]int, 0, workers)
	defer func() {
		for _, fd := range fds {
			unix.Close(fd)
		}
	}()
	err := t.inNetns(func() error {
		for range workers {
			fd, err := unix.Socket(unix.AF_NETLINK, unix.SOCK_RAW|unix.SOCK_CLOEXEC, unix.NETLINK_SOCK_DIAG)
			if err != nil {
				return err
			}
			fds = append(fds, fd)
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("open sock_diag netlink socket: %w", err)
	}

	col := &collector{buf: make([]Socket, hint)}
	spills := make([][]Socket, workers)
	errs := make([]error, workers)
	var next atomic.Int32
	var wg sync.WaitGroup
	for w, fd := range fds {
		wg.Go(func() {
			// The reads bypass the scheduler (see recvTrunc); a timeout
			// bounds them should the kernel ever not answer.
			if err := unix.SetsockoptTimeval(fd, unix.SOL_SOCKET, unix.SO_RCVTIMEO, &unix.Timeval{Sec: 10}); err != nil {
				errs[w] = fmt.Errorf("set sock_diag read timeout: %w", err)
				return
			}
			buf := make([]byte, recvBufSize)
			for seq := uint32(1); ; seq++ {
				i := int(next.Add(1)) - 1
				if i >= len(reqs) || ctx.Err() != nil {
					return
				}
				r := reqs[i]
				before := col.used() + len(spills[w])
				if err := dump(ctx, fd, buf, diagRequest(seq, r.proto, r.fam, r.states, r.bc), r.proto, col, &spills[w]); err != nil {
					errs[w] = fmt.Errorf("sock_diag dump %s/%s: %w", r.proto, r.fam, err)
					next.Store(int32(len(reqs))) // stop the others
					return
				}
				t.logger().Debug("sock_diag dump", "proto", r.proto, "family", r.fam, "states", r.states,
					"bytecode", len(r.bc), "sockets", col.used()+len(spills[w])-before)
			}
		})
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	out := col.buf[:col.used()]
	for _, sp := range spills {
		out = append(out, sp...)
	}
	return out, nil
}

// collector hands out room in one preallocated array to the threads of a
// dump; what does not fit goes to each thread's own spill slice.
type collector struct {
	buf  []Socket
	next atomic.Int64
}

// used is how much of buf has been handed out.
func (c *collector) used() int { return int(min(c.next.Load(), int64(len(c.buf)))) }

// take returns an empty slice with room for n sockets in buf, or false
// when buf has no room left.
func (c *collector) take(n int) ([]Socket, bool) {
	if end := int(c.next.Add(int64(n))); end <= len(c.buf) {
		return c.buf[end-n : end-n : end], true
	}
	return nil, false
}

// dump sends one request and reads its reply to the end, parsing each read
// into room taken from col.
func dump(ctx context.Context, fd int, buf, req []byte, proto portspec.Proto, col *collector, spill *[]Socket) error {
	if err := rawSend(fd, req); err != nil {
		return err
	}
	for {
		if err := ctx.Err(); err != nil {
			return err
		}
		n, err := recvTrunc(fd, buf)
		if err == unix.EINTR {
			continue
		}
		if err == unix.EAGAIN {
			return fmt.Errorf("no reply from the kernel in 10s: %w", err)
		}
		if err != nil {
			return err
		}
		if n > len(buf) {
			return fmt.Errorf("reply of %d bytes does not fit the %d-byte buffer", n, len(buf))
		}
		var done bool
		if room, ok := col.take(countDiag(buf[:n])); ok {
			_, done, err = parseDiag(buf[:n], proto, room) // in place: room holds them all
		} else {
			*spill, done, err = parseDiag(buf[:n], proto, *spill)
		}
		if err != nil || done {
			return err
		}
	}
}

// recvTrunc reads one message; with MSG_TRUNC the kernel returns its real
// length, so a message cut short by the buffer is noticed. No address is
// asked for, so nothing is allocated.
//
// The kernel builds the next part of a dump inside the call that takes the
// part before (a few hundred microseconds for a full 32 KiB), so a read
// rarely waits. It is tried first as a raw, non-blocking call, which keeps
// the Go scheduler out: a plain call hands the processor to another thread
// at every read of a long dump, a context switch each time. Only when
// nothing is queued does the read block, and then as a plain system call,
// so the runtime knows: a raw call blocked for up to SO_RCVTIMEO would
// hold up every stop-the-world pause of the garbage collector meanwhile.
func recvTrunc(fd int, buf []byte) (int, error) {
	n, _, errno := unix.RawSyscall6(unix.SYS_RECVFROM, uintptr(fd), uintptr(unsafe.Pointer(&buf[0])), uintptr(len(buf)), unix.MSG_TRUNC|unix.MSG_DONTWAIT, 0, 0)
	if errno == unix.EAGAIN {
		n, _, errno = unix.Syscall6(unix.SYS_RECVFROM, uintptr(fd), uintptr(unsafe.Pointer(&buf[0])), uintptr(len(buf)), unix.MSG_TRUNC, 0, 0)
	}
	if errno != 0 {
		return 0, errno
	}
	return int(n), nil
}

// rawSend sends a request to the kernel (the zero address) as recvTrunc
// reads: the kernel fills the first part of the dump during the call.
func rawSend(fd int, req []byte) error {
	var sa unix.RawSockaddrNetlink
	sa.Family = unix.AF_NETLINK
	_, _, errno := unix.RawSyscall6(unix.SYS_SENDTO, uintptr(fd), uintptr(unsafe.Pointer(&req[0])), uintptr(len(req)), 0,
		uintptr(unsafe.Pointer(&sa)), unsafe.Sizeof(sa))
	if errno != 0 {
		return errno
	}
	return nil
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
