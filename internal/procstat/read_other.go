//go:build !linux

package procstat

import (
	"errors"
	"runtime"
)

// Read has no /proc to read off Linux.
func Read(pid int) (Stat, error) {
	return Stat{}, errors.New("proc stat: not supported on " + runtime.GOOS + " (needs Linux /proc)")
}
