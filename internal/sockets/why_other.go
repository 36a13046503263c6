//go:build !linux

package sockets

import (
	"context"
	"fmt"
	"runtime"
)

// Why returns an error off Linux: it needs Linux's socket table and
// per-thread credentials.
func Why(ctx context.Context, req WhyRequest) (*Verdict, error) {
	return nil, fmt.Errorf("why: not supported on %s (needs Linux)", runtime.GOOS)
}
