package firewall

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"golang.org/x/sys/unix"
)

// OpenNetns opens the network namespace spec names: a name under
// /run/netns (as `ip netns` makes), a path (/proc/PID/ns/net), or, when
// empty, the calling process's own.
func OpenNetns(spec string) (*Netns, error) {
	path := spec
	switch {
	case spec == "":
		path = "/proc/self/ns/net"
	case !strings.Contains(spec, "/"):
		path = filepath.Join("/run/netns", spec)
	}
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("open network namespace %s: %w", spec, err)
	}
	t, err := unix.IoctlRetInt(int(f.Fd()), unix.NS_GET_NSTYPE)
	if err != nil || t != unix.CLONE_NEWNET {
		f.Close()
		if err == nil {
			err = errors.New("not a network namespace")
		}
		return nil, fmt.Errorf("open network namespace %s: %s: %w", spec, path, err)
	}
	var st unix.Stat_t
	if err := unix.Fstat(int(f.Fd()), &st); err != nil {
		f.Close()
		return nil, fmt.Errorf("open network namespace %s: %w", spec, err)
	}
	return &Netns{File: f, Spec: spec, ID: fmt.Sprintf("netns-%d-%d", st.Dev, st.Ino)}, nil
}

// lockFile takes an exclusive flock on path, trying until ctx ends.
func lockFile(ctx context.Context, path string) (func(), error) {
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, err
	}
	for {
		err := unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB)
		if err == nil {
			return func() { f.Close() }, nil // closing releases the lock
		}
		if !errors.Is(err, unix.EWOULDBLOCK) {
			f.Close()
			return nil, err
		}
		select {
		case <-ctx.Done():
			f.Close()
			return nil, fmt.Errorf("wait for %s: %w", path, ctx.Err())
		case <-time.After(50 * time.Millisecond):
		}
	}
}
