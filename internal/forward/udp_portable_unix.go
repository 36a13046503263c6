//go:build unix && !linux

package forward

import (
	"sync"
	"syscall"
)

// replyBufs lend a 64 KiB buffer only while a datagram is being read, so
// thousands of idle sessions hold no buffer each.
var replyBufs = sync.Pool{New: func() any { b := make([]byte, 64<<10); return &b }}

// readDatagram waits (honouring the read deadline) for one datagram on a
// connected UDP socket and hands it to fn.
func readDatagram(raw syscall.RawConn, fn func([]byte)) error {
	var rerr error
	err := raw.Read(func(fd uintptr) bool {
		bp := replyBufs.Get().(*[]byte)
		defer replyBufs.Put(bp)
		n, err := syscall.Read(int(fd), *bp)
		switch {
		case err == syscall.EAGAIN || err == syscall.EINTR:
			return false
		case err != nil:
			rerr = err
		default:
			fn((*bp)[:n])
		}
		return true
	})
	if err != nil {
		return err
	}
	return rerr
}
