//go:build unix

package freeport

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"syscall"
	"time"
)

// lockRegistry creates the registry directory if needed (mode 0700, and it
// must be ours: /tmp is shared), then takes an exclusive or shared flock on
// its lock file. flock is polled rather than blocked on so ctx can end the
// wait; holders keep it only for a few binds.
func lockRegistry(ctx context.Context, dir string, exclusive bool) (unlock func(), err error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("reservation registry %s: %w", dir, err)
	}
	fi, err := os.Lstat(dir)
	if err != nil {
		return nil, fmt.Errorf("reservation registry %s: %w", dir, err)
	}
	st, ok := fi.Sys().(*syscall.Stat_t)
	switch {
	case !fi.IsDir():
		return nil, fmt.Errorf("reservation registry %s: not a directory (a symlink?)", dir)
	case ok && int(st.Uid) != os.Geteuid():
		return nil, fmt.Errorf("reservation registry %s: owned by uid %d, not by us (uid %d)", dir, st.Uid, os.Geteuid())
	}
	f, err := os.OpenFile(filepath.Join(dir, registryLock), os.O_RDWR|os.O_CREATE|syscall.O_NOFOLLOW, 0o600)
	if err != nil {
		return nil, fmt.Errorf("reservation registry lock: %w", err)
	}
	how := syscall.LOCK_SH
	if exclusive {
		how = syscall.LOCK_EX
	}
	pause := time.Millisecond
	for {
		err := syscall.Flock(int(f.Fd()), how|syscall.LOCK_NB)
		if err == nil {
			break
		}
		if !errors.Is(err, syscall.EWOULDBLOCK) && !errors.Is(err, syscall.EINTR) {
			f.Close()
			return nil, fmt.Errorf("reservation registry lock %s: %w", f.Name(), err)
		}
		t := time.NewTimer(pause)
		select {
		case <-ctx.Done():
			t.Stop()
			f.Close()
			return nil, fmt.Errorf("reservation registry lock %s: %w", f.Name(), ctx.Err())
		case <-t.C:
		}
		pause = min(2*pause, 20*time.Millisecond)
	}
	// Closing the file drops the flock.
	return func() { f.Close() }, nil
}

// holderAlive reports whether process pid still runs and, when start is
// known, is the same process (not a new one that reused the pid).
func holderAlive(pid int, start uint64) bool {
	err := syscall.Kill(pid, 0)
	if err != nil && !errors.Is(err, syscall.EPERM) {
		return false
	}
	if start != 0 {
		if now := holderStart(pid); now != 0 && now != start {
			return false
		}
	}
	return true
}
