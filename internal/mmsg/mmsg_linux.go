package mmsg

import (
	"context"
	"errors"
	"os"
	"sync/atomic"
	"syscall"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"
)

// Reader waits on one socket. Its methods are for one goroutine at a time.
type Reader struct {
	dl      interface{ SetReadDeadline(time.Time) error }
	raw     syscall.RawConn
	expired atomic.Bool // the cancel hook set a read deadline in the past
}

// NewReader waits on raw; dl is the same socket's deadline setter (an
// *os.File or a netlink connection), which cancelling uses.
func NewReader(dl interface{ SetReadDeadline(time.Time) error }, raw syscall.RawConn) *Reader {
	return &Reader{dl: dl, raw: raw}
}

// Read waits until recv, called with the socket's descriptor, reads
// something, and returns what it returned: recv reads without waiting
// (Recv) and returns unix.EAGAIN or unix.EINTR when there was nothing.
// Other errors of recv are returned as they are. Once ctx is done Read
// returns ctx's error.
func (r *Reader) Read(ctx context.Context, recv func(fd uintptr) (int, error)) (int, error) {
	if err := ctx.Err(); err != nil {
		return 0, err
	}
	if r.expired.Swap(false) {
		r.dl.SetReadDeadline(time.Time{})
	}
	if ctx.Done() != nil {
		stop := context.AfterFunc(ctx, func() {
			r.expired.Store(true)
			r.dl.SetReadDeadline(time.Unix(1, 0))
		})
		defer stop()
	}
	for {
		var n int
		var rerr error
		err := r.raw.Read(func(fd uintptr) bool {
			n, rerr = recv(fd)
			return rerr != unix.EAGAIN && rerr != unix.EINTR
		})
		switch {
		case err != nil && ctx.Err() != nil:
			return 0, ctx.Err()
		case errors.Is(err, os.ErrDeadlineExceeded):
			// A cancel hook of an earlier, finished context fired late.
			r.expired.Store(false)
			r.dl.SetReadDeadline(time.Time{})
			continue
		case err != nil:
			return 0, err
		}
		return n, rerr
	}
}

// Recv is recvmmsg(2) into hdrs, without waiting.
func Recv(fd uintptr, hdrs []unix.Mmsghdr) (int, error) {
	n, _, e := unix.Syscall6(unix.SYS_RECVMMSG, fd, uintptr(unsafe.Pointer(&hdrs[0])), uintptr(len(hdrs)), unix.MSG_DONTWAIT, 0, 0)
	if e != 0 {
		return 0, e
	}
	return int(n), nil
}
