//go:build !linux

package sockets

import (
	"context"
	"fmt"
	"runtime"
	"strconv"
	"syscall"
)

var errKillNotSupported = fmt.Errorf("kill: not supported on %s (needs Linux sock_diag, /proc and pidfds)", runtime.GOOS)

// PlanKill returns an error off Linux.
func PlanKill(ctx context.Context, req KillRequest) (*KillPlan, error) {
	return nil, errKillNotSupported
}

// Kill returns an error off Linux.
func Kill(ctx context.Context, plan *KillPlan) (*KillResult, error) { return nil, errKillNotSupported }

// ParseSignal reads a signal number; names need Linux.
func ParseSignal(s string) (syscall.Signal, error) {
	n, err := strconv.Atoi(s)
	if err != nil || n < 1 || n > 64 {
		return 0, fmt.Errorf("signal %q: want a number here (%w)", s, errKillNotSupported)
	}
	return syscall.Signal(n), nil
}

// SignalName is the number of sig off Linux.
func SignalName(sig syscall.Signal) string { return strconv.Itoa(int(sig)) }
