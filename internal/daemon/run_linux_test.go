package daemon

import (
	"context"
	"errors"
	"net"
	"path/filepath"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
)

// notifySocket listens where systemd would for Type=notify, and returns
// the states sent to it.
func notifySocket(t *testing.T) <-chan string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "notify")
	c, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: path, Net: "unixgram"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	t.Setenv("NOTIFY_SOCKET", path)
	out := make(chan string, 32)
	go func() {
		b := make([]byte, 512)
		for {
			n, err := c.Read(b)
			if err != nil {
				return
			}
			out <- string(b[:n])
		}
	}()
	return out
}

func expectState(t *testing.T, states <-chan string, prefix string) {
	t.Helper()
	select {
	case s := <-states:
		if !strings.HasPrefix(s, prefix) {
			t.Fatalf("systemd was told %q; want %q", s, prefix)
		}
	case <-time.After(15 * time.Second):
		t.Fatalf("systemd was not told %q", prefix)
	}
}

func signalSelf(t *testing.T, sig syscall.Signal) {
	t.Helper()
	if err := syscall.Kill(syscall.Getpid(), sig); err != nil {
		t.Fatal(err)
	}
}

func runAsync(o Options) <-chan error {
	done := make(chan error, 1)
	go func() { done <- Run(context.Background(), o) }()
	return done
}

func result(t *testing.T, done <-chan error) error {
	t.Helper()
	select {
	case err := <-done:
		return err
	case <-time.After(20 * time.Second):
		t.Fatal("Run did not return")
		return nil
	}
}

// TestRunReloadsAndDrains: SIGHUP reloads (a failed reload keeps the
// daemon running), SIGTERM drains, and systemd hears each step.
func TestRunReloadsAndDrains(t *testing.T) {
	states := notifySocket(t)
	var reloads atomic.Int32
	drained := false
	done := runAsync(Options{
		Reload: func(context.Context) error {
			if reloads.Add(1) == 1 {
				return errors.New("bad config")
			}
			return nil
		},
		Drain: func(context.Context) error { drained = true; return nil },
	})
	expectState(t, states, "READY=1")
	for range 2 {
		signalSelf(t, syscall.SIGHUP)
		expectState(t, states, "RELOADING=1\nMONOTONIC_USEC=")
		expectState(t, states, "READY=1")
	}
	signalSelf(t, syscall.SIGTERM)
	expectState(t, states, "STOPPING=1")
	if err := result(t, done); err != nil || !drained {
		t.Fatalf("Run = %v, drained %v; want nil after a drain", err, drained)
	}
	if reloads.Load() != 2 {
		t.Errorf("%d reloads; want 2", reloads.Load())
	}
}

// TestRunSecondSignalForces: a drain that would wait for an hour ends at
// a second SIGTERM.
func TestRunSecondSignalForces(t *testing.T) {
	states := notifySocket(t)
	done := runAsync(Options{
		DrainTimeout: time.Hour,
		Drain: func(ctx context.Context) error {
			<-ctx.Done()
			return ctx.Err()
		},
	})
	expectState(t, states, "READY=1")
	signalSelf(t, syscall.SIGTERM)
	expectState(t, states, "STOPPING=1")
	signalSelf(t, syscall.SIGINT)
	if err := result(t, done); !errors.Is(err, ErrForced) {
		t.Fatalf("Run = %v; want ErrForced", err)
	}
}

// TestRunDrainDeadline: work still in hand at the deadline is cut and
// said so.
func TestRunDrainDeadline(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		done <- Run(ctx, Options{
			DrainTimeout: 50 * time.Millisecond,
			Drain: func(ctx context.Context) error {
				<-ctx.Done()
				return ctx.Err()
			},
		})
	}()
	cancel()
	if err := result(t, done); !errors.Is(err, ErrDrainTimeout) {
		t.Fatalf("Run = %v; want ErrDrainTimeout", err)
	}
}
