package sockets

import (
	"errors"
	"fmt"
	"runtime"

	"golang.org/x/sys/unix"
)

// ErrNetnsRestore: a thread could not return to its namespace (it is then
// left locked, to die with its goroutine).
var ErrNetnsRestore = errors.New("could not return to the original network namespace")

// inNetns runs fn with the calling goroutine's thread in the table's
// network namespace; with no Netns it just runs fn. Only what fn creates
// (a netlink socket) belongs to that namespace: a socket keeps the
// namespace it was made in, so it can be used from any thread afterwards.
func (t *Table) inNetns(fn func() error) error {
	if t == nil || t.Netns == "" {
		return fn()
	}
	path := NetnsPath(t.Netns)
	target, err := unix.Open(path, unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		return fmt.Errorf("open network namespace %s: %w", path, err)
	}
	defer unix.Close(target)

	runtime.LockOSThread()
	orig, err := unix.Open("/proc/thread-self/ns/net", unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		runtime.UnlockOSThread()
		return fmt.Errorf("open own network namespace: %w", err)
	}
	defer unix.Close(orig)
	if err := unix.Setns(target, unix.CLONE_NEWNET); err != nil {
		runtime.UnlockOSThread()
		return fmt.Errorf("enter network namespace %s: %w", path, err)
	}
	ferr := fn()
	if err := unix.Setns(orig, unix.CLONE_NEWNET); err != nil {
		// Leave the thread locked: the runtime ends it with the goroutine
		// rather than reuse a thread in the wrong namespace.
		return fmt.Errorf("leave network namespace %s: %w: %w", path, ErrNetnsRestore, err)
	}
	runtime.UnlockOSThread()
	return ferr
}

// InNetns runs fn on the calling goroutine's thread switched into the
// network namespace netns (a name under /run/netns, or a path such as
// /proc/PID/ns/net), then switches back; "" runs fn as it is. Sockets fn
// makes belong to that namespace for their whole life; goroutines fn starts
// do not run in it.
func InNetns(netns string, fn func() error) error { return (&Table{Netns: netns}).inNetns(fn) }
