//go:build !linux

package scan

import (
	"context"
	"fmt"
	"runtime"
)

// Open starts a session; off Linux it is a DialProber's, which binds to no
// interface, source address or port.
func (c ConnectProber) Open(ctx context.Context, report func(Reply)) (Session, error) {
	if !c.Local.IsZero() {
		return nil, fmt.Errorf("connect scan from an interface, source address or port on %s: %w", runtime.GOOS, ErrUnsupported)
	}
	return DialProber{}.Open(ctx, report)
}
