//go:build linux && (386 || arm)

package bindcheck

import (
	"golang.org/x/sys/unix"
)

// The credential syscalls taking 32-bit ids: on 386 and arm the plain
// ones take 16-bit ids.
const (
	sysSetresuid = unix.SYS_SETRESUID32
	sysSetresgid = unix.SYS_SETRESGID32
	sysSetgroups = unix.SYS_SETGROUPS32
	sysGetgroups = unix.SYS_GETGROUPS32
)
