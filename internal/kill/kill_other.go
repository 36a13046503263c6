//go:build !linux

package kill

import (
	"context"
	"fmt"
	"runtime"
	"strconv"
	"syscall"
)

var errKillNotSupported = fmt.Errorf("kill: not supported on %s (needs Linux sock_diag, /proc and pidfds)", runtime.GOOS)

// NewPlan returns an error off Linux.
func NewPlan(ctx context.Context, req Request) (*Plan, error) {
	return nil, errKillNotSupported
}

// Run returns an error off Linux.
func Run(ctx context.Context, plan *Plan) (*Result, error) { return nil, errKillNotSupported }

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
