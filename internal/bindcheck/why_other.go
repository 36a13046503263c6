//go:build !linux

package bindcheck

import (
	"context"
	"fmt"
	"runtime"
)

// Why returns an error off Linux: it needs Linux's socket table and
// per-thread credentials.
func Why(ctx context.Context, req Request) (*Verdict, error) {
	return nil, fmt.Errorf("why: not supported on %s (needs Linux)", runtime.GOOS)
}
