//go:build !linux

package sockets

import "context"

// ListUnix returns ErrNotSupported: the socket table needs Linux sock_diag.
func (t *Table) ListUnix(ctx context.Context, q UnixQuery) ([]UnixSocket, error) {
	return nil, ErrNotSupported
}
