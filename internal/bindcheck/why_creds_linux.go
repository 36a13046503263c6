package bindcheck

// Trying a bind as another user, on one thread.
//
// The kernel checks a bind against the credentials of the calling thread:
// its effective capabilities (CAP_NET_BIND_SERVICE), its fsuid (the uid a
// new socket belongs to, which SO_REUSEPORT compares) and its LSM label.
// On Linux these belong to each thread; glibc and Go's syscall.Setuid
// family only make them process-wide by repeating the call on every
// thread. So Why locks a goroutine to its thread and changes that
// thread's credentials with the raw setgroups/setresgid/setresuid system
// calls, tries the bind, and changes them back. Compared with re-executing
// ourselves as the user, this needs no hidden entry point in main (so it
// works from any program, tests included), no binary the user can read and
// execute, and no fork. It is safe because the Go runtime never clones a
// locked thread (newm hands thread creation to the template thread), so
// the changed credentials cannot leak to another thread; and if they cannot
// be changed back the goroutine exits still locked, and the runtime
// discards the thread.
//
// The saved uid stays 0, so the thread can return to root: with an
// effective uid other than 0 the kernel clears the effective capabilities
// (those that decide a bind) but keeps the permitted ones.

import (
	"errors"
	"fmt"
	"runtime"
	"unsafe"

	"golang.org/x/sys/unix"

	"portolan/internal/sockets"
)

// errCredsStuck says a thread could not get its credentials back.
var errCredsStuck = errors.New("could not restore the thread's credentials")

// asUser runs fn on a locked thread, in the network namespace netns (empty:
// ours) and with the credentials of as (nil: ours). It runs on a goroutine
// of its own, so a thread left in a wrong state dies with that goroutine.
func asUser(netns string, as *Credential, fn func() error) error {
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		clean := true
		defer func() {
			if clean {
				runtime.UnlockOSThread()
			}
		}()
		var err error
		clean, err = runAs(netns, as, fn)
		errc <- err
	}()
	return <-errc
}

// runAs does asUser's work on the locked thread; clean reports whether the
// thread is back in its namespace with its credentials.
func runAs(netns string, as *Credential, fn func() error) (clean bool, err error) {
	clean = true
	err = sockets.InNetns(netns, func() error {
		if as == nil {
			return fn()
		}
		restore, err := switchCreds(as)
		if err != nil {
			clean = !errors.Is(err, errCredsStuck)
			return fmt.Errorf("switch to user %s: %w", as, err)
		}
		ferr := fn()
		if err := restore(); err != nil {
			clean = false
			return fmt.Errorf("switch back from user %s: %w", as, err)
		}
		return ferr
	})
	if errors.Is(err, sockets.ErrNetnsRestore) {
		clean = false
	}
	return clean, err
}

// switchCreds gives the calling (locked) thread the uid, gid and groups of
// c, keeping root as the saved uid, and returns the function that switches
// back.
func switchCreds(c *Credential) (restore func() error, err error) {
	ruid, euid, suid := unix.Getresuid()
	rgid, egid, sgid := unix.Getresgid()
	oldGroups, err := getgroups()
	if err != nil {
		return nil, fmt.Errorf("getgroups: %w", err)
	}
	back := func() error {
		// uid first: that gives back the capabilities the rest needs.
		if err := setres(sysSetresuid, ruid, euid, suid); err != nil {
			return fmt.Errorf("%w: setresuid: %w", errCredsStuck, err)
		}
		if err := setres(sysSetresgid, rgid, egid, sgid); err != nil {
			return fmt.Errorf("%w: setresgid: %w", errCredsStuck, err)
		}
		if err := setgroups(oldGroups); err != nil {
			return fmt.Errorf("%w: setgroups: %w", errCredsStuck, err)
		}
		return nil
	}
	groups := c.Groups
	if len(groups) == 0 {
		groups = []uint32{c.GID}
	}
	if err := setgroups(groups); err != nil {
		return nil, fmt.Errorf("setgroups (needs root): %w", err)
	}
	if err := setres(sysSetresgid, int(c.GID), int(c.GID), int(c.GID)); err != nil {
		return nil, errors.Join(fmt.Errorf("setresgid %d (needs root): %w", c.GID, err), back())
	}
	if err := setres(sysSetresuid, int(c.UID), int(c.UID), euid); err != nil {
		return nil, errors.Join(fmt.Errorf("setresuid %d (needs root): %w", c.UID, err), back())
	}
	return back, nil
}

// setres calls setresuid or setresgid for this thread only.
func setres(nr uintptr, r, e, s int) error {
	if _, _, errno := unix.Syscall(nr, uintptr(r), uintptr(e), uintptr(s)); errno != 0 {
		return errno
	}
	return nil
}

// setgroups sets this thread's supplementary groups only.
func setgroups(gids []uint32) error {
	var p unsafe.Pointer
	if len(gids) > 0 {
		p = unsafe.Pointer(&gids[0])
	}
	if _, _, errno := unix.Syscall(sysSetgroups, uintptr(len(gids)), uintptr(p), 0); errno != 0 {
		return errno
	}
	return nil
}

func getgroups() ([]uint32, error) {
	n, _, errno := unix.Syscall(sysGetgroups, 0, 0, 0)
	if errno != 0 {
		return nil, errno
	}
	if n == 0 {
		return nil, nil
	}
	gids := make([]uint32, n)
	n, _, errno = unix.Syscall(sysGetgroups, n, uintptr(unsafe.Pointer(&gids[0])), 0)
	if errno != 0 {
		return nil, errno
	}
	return gids[:n], nil
}
