package sockets

import (
	"context"
	"fmt"

	"golang.org/x/sys/unix"
)

// ListUnix returns the unix domain sockets q selects, in the table's
// network namespace (abstract names belong to one; path names are files,
// but a socket is still listed where it was made), ordered by name, then
// inode.
func (t *Table) ListUnix(ctx context.Context, q UnixQuery) ([]UnixSocket, error) {
	var fd int
	err := t.inNetns(func() (err error) {
		fd, err = unix.Socket(unix.AF_NETLINK, unix.SOCK_RAW|unix.SOCK_CLOEXEC, unix.NETLINK_SOCK_DIAG)
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("open sock_diag netlink socket: %w", err)
	}
	defer unix.Close(fd)
	if err := unix.SetsockoptTimeval(fd, unix.SOL_SOCKET, unix.SO_RCVTIMEO, &unix.Timeval{Sec: 10}); err != nil {
		return nil, fmt.Errorf("set sock_diag read timeout: %w", err)
	}
	if err := rawSend(fd, unixDiagRequest(1, q.States)); err != nil {
		return nil, fmt.Errorf("sock_diag dump unix: %w", err)
	}
	buf := make([]byte, recvBufSize)
	var all []UnixSocket
	for {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		n, err := recvTrunc(fd, buf)
		if err == unix.EINTR {
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("sock_diag dump unix: %w", err)
		}
		if n > len(buf) {
			return nil, fmt.Errorf("sock_diag dump unix: reply of %d bytes does not fit the %d-byte buffer", n, len(buf))
		}
		var done bool
		all, done, err = parseUnixDiag(buf[:n], all)
		if err != nil {
			return nil, fmt.Errorf("sock_diag dump unix: %w", err)
		}
		if done {
			break
		}
	}
	linkUnixPeers(all)
	out := all[:0]
	for i := range all {
		if q.match(&all[i]) {
			out = append(out, all[i])
		}
	}
	sortUnix(out)
	return out, nil
}
