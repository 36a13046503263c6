//go:build !linux

package store

import (
	"os"
	"syscall"
)

// processStart reports 0 (unknown) for a process that exists, an error
// otherwise; without /proc a reused pid passes for the scan's owner.
// Where signal 0 is not supported (Windows) every owner is taken for dead,
// so a scan is never locked out of --resume there.
func processStart(pid int) (int64, error) {
	p, err := os.FindProcess(pid)
	if err != nil {
		return 0, err
	}
	return 0, p.Signal(syscall.Signal(0))
}
