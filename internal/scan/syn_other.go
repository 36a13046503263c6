//go:build !linux

package scan

import (
	"context"
	"fmt"
	"runtime"
)

// synDest is what the Linux session knows about a destination.
type synDest struct{}

// Open returns ErrUnsupported: raw sockets are Linux only here.
func (SYNProber) Open(context.Context, func(Reply)) (Session, error) {
	return nil, fmt.Errorf("syn scan on %s: %w", runtime.GOOS, ErrUnsupported)
}
