//go:build !linux

package testenv

import (
	"errors"
	"net"
	"runtime"
)

// HoldSockets needs Linux network namespaces.
func HoldSockets(netnsPath, mode string, handle func(net.Conn)) (int, error) {
	return 0, errors.New("socket holders need Linux network namespaces, not " + runtime.GOOS)
}
