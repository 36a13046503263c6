//go:build !unix

package forward

import (
	"syscall"
)

// readDatagram reads one datagram with a buffer of its own: the pooled,
// wait-then-read path needs unix read(2).
func readDatagram(raw syscall.RawConn, fn func([]byte)) error {
	buf := make([]byte, 64<<10)
	var n int
	var rerr error
	err := raw.Read(func(fd uintptr) bool {
		n, rerr = syscall.Read(syscall.Handle(fd), buf)
		return true
	})
	if err != nil {
		return err
	}
	if rerr == nil {
		fn(buf[:n])
	}
	return rerr
}
