//go:build !unix

package freeport

import (
	"context"
	"fmt"
	"runtime"

	"portolan/internal/sockets"
)

// lockRegistry needs flock, which this system lacks.
func lockRegistry(ctx context.Context, dir string, exclusive bool) (func(), error) {
	return nil, fmt.Errorf("port reservations: not supported on %s", runtime.GOOS)
}

// holderAlive cannot tell here; a holder is presumed alive until expiry.
func holderAlive(pid int, start uint64) bool { return true }
