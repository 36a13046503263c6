//go:build !unix

package knock

import (
	"fmt"
	"net/netip"
	"runtime"
)

func knockSYN(netip.AddrPort) error {
	return fmt.Errorf("tcp knocks: not supported on %s", runtime.GOOS)
}
