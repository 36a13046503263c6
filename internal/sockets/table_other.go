//go:build !linux

package sockets

import (
	"context"
	"fmt"
)

func kernelError(code int32) error { return fmt.Errorf("kernel error %d", code) }

// List returns ErrNotSupported: the socket table needs Linux sock_diag.
func (t *Table) List(ctx context.Context, q Query) ([]Socket, error) {
	return nil, ErrNotSupported
}
