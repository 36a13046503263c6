//go:build !linux

package owners

import (
	"context"
	"errors"
	"runtime"
)

// ErrNotSupported is returned where owners cannot be found: off Linux.
var ErrNotSupported = errors.New("socket owners: not supported on " + runtime.GOOS + " (needs Linux /proc)")

// Find returns ErrNotSupported, with every result Skipped: owners are read
// from Linux /proc.
func Find(ctx context.Context, qs []Query, opt Options) ([]Result, error) {
	res := make([]Result, len(qs))
	for i := range res {
		res[i].Unseen = Skipped
	}
	return res, ErrNotSupported
}

// PIDs returns ErrNotSupported: there is no /proc off Linux.
func PIDs(procFD int) ([]int32, error) { return nil, ErrNotSupported }
