//go:build linux && !386 && !arm

package bindcheck

import (
	"golang.org/x/sys/unix"
)

// The credential syscalls taking 32-bit ids.
const (
	sysSetresuid = unix.SYS_SETRESUID
	sysSetresgid = unix.SYS_SETRESGID
	sysSetgroups = unix.SYS_SETGROUPS
	sysGetgroups = unix.SYS_GETGROUPS
)
