//go:build !linux

package ephemeral

import (
	"context"
	"fmt"
	"runtime"
)

// Ephemeral returns an error off Linux: it reads Linux's sysctls and
// socket table.
func Survey(ctx context.Context, req Request) (*Report, error) {
	return nil, fmt.Errorf("ephemeral: not supported on %s (needs Linux)", runtime.GOOS)
}
