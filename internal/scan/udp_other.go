//go:build !linux

package scan

import (
	"context"
	"fmt"
	"runtime"
)

// Open returns ErrUnsupported: the UDP prober reads ICMP errors through
// Linux's IP_RECVERR.
func (UDPProber) Open(context.Context, func(Reply)) (Session, error) {
	return nil, fmt.Errorf("udp scan on %s: %w", runtime.GOOS, ErrUnsupported)
}
