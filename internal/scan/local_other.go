//go:build !linux

package scan

import (
	"fmt"
	"runtime"

	"portolan/internal/portspec"
)

// Check returns ErrUnsupported unless l is zero: probes leave from an
// interface, address or port of their own only on Linux.
func (l Local) Check(portspec.Proto) error {
	if l.IsZero() {
		return nil
	}
	return fmt.Errorf("probes from an interface, source address or port on %s: %w", runtime.GOOS, ErrUnsupported)
}
