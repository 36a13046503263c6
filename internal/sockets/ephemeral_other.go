//go:build !linux

package sockets

import (
	"context"
	"fmt"
	"runtime"
)

// Ephemeral returns an error off Linux: it reads Linux's sysctls and
// socket table.
func Ephemeral(ctx context.Context, req EphemeralRequest) (*EphemeralReport, error) {
	return nil, fmt.Errorf("ephemeral: not supported on %s (needs Linux)", runtime.GOOS)
}
