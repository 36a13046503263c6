//go:build !linux

package scan

import (
	"context"
	"fmt"
	"runtime"
)

// Open returns ErrUnsupported: ICMP echo is implemented for Linux only.
func (EchoProber) Open(context.Context, func(Reply)) (Session, error) {
	return nil, fmt.Errorf("ICMP echo on %s: %w", runtime.GOOS, ErrUnsupported)
}
