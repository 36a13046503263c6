package kill

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"portolan/internal/owners"
	"portolan/internal/portspec"
	"portolan/internal/procstat"
	"portolan/internal/sockets"
)

// killPoll is how often Kill looks whether the port is free.
const killPoll = 50 * time.Millisecond

// killAfterKILL bounds the wait for the port after SIGKILL: the kernel
// closes a killed process's sockets as it exits, which is quick unless the
// process is stuck in the kernel (D state).
const killAfterKILL = 3 * time.Second

// NewPlan reads the sockets on req.Port (exact local port, both families)
// and their processes, and decides whom Kill would signal: the holders of
// the listening socket (or of every selected socket with AllStates),
// parents before the workers they stop themselves, refusing pid 1, kernel
// threads, this process, and the processes of systemd services and
// containers (pointing to systemctl or the container runtime instead)
// unless Force. It changes nothing: a dry run is NewPlan alone.
func NewPlan(ctx context.Context, req Request) (*Plan, error) {
	if req.Port == 0 {
		return nil, errors.New("kill: port 0 is no port")
	}
	for _, p := range req.protos() {
		if p != portspec.TCP && p != portspec.UDP {
			return nil, fmt.Errorf("kill: protocol %v not supported (want tcp or udp)", p)
		}
	}
	socks, err := portSockets(ctx, &req)
	if err != nil {
		return nil, err
	}
	if err := sockets.FindOwners(ctx, socks, owners.Options{Details: true}); err != nil {
		if ctx.Err() != nil {
			return nil, err
		}
		req.logger().Debug("owners", "err", err)
	}
	facts := map[int]procFacts{}
	for i := range socks {
		for _, p := range socks[i].Procs {
			if _, ok := facts[p.PID]; !ok {
				facts[p.PID] = readFacts(p.PID)
			}
		}
	}
	return buildPlan(&req, socks, facts, os.Getpid(), ownCgroup()), nil
}

// portSockets lists every socket with local port req.Port of its protocols.
func portSockets(ctx context.Context, req *Request) ([]sockets.Socket, error) {
	t := &sockets.Table{Netns: req.Netns, Logger: req.Logger}
	var out []sockets.Socket
	for _, proto := range req.protos() {
		q := sockets.Query{Proto: proto, States: sockets.AllStates, Ports: []sockets.PortRange{{Lo: req.Port, Hi: req.Port}}}
		socks, err := t.List(ctx, q)
		if err != nil {
			return nil, fmt.Errorf("kill %d/%v: %w", req.Port, proto, err)
		}
		out = append(out, socks...)
	}
	sockets.SortByPort(out)
	return out, nil
}

// heldBy returns the sockets req selects that are on the port now.
func heldBy(ctx context.Context, req *Request) ([]sockets.Socket, error) {
	socks, err := portSockets(ctx, req)
	if err != nil {
		return nil, err
	}
	kept := socks[:0]
	for i := range socks {
		if req.selects(&socks[i]) {
			kept = append(kept, socks[i])
		}
	}
	return kept, nil
}

func readFacts(pid int) procFacts {
	st, err := procstat.Read(pid)
	if err != nil {
		return procFacts{}
	}
	return factsOf(st)
}

// ownCgroup is this process's cgroup path.
func ownCgroup() string {
	b, err := os.ReadFile("/proc/self/cgroup")
	if err != nil {
		return ""
	}
	p, _ := owners.ParseProcCgroup(b)
	return p
}

// Run carries out plan: the plan's signal to each target (parents only),
// then a wait of up to Grace for the port to be free, then SIGKILL to every
// target still alive (workers too) and a short wait again. Processes are
// signalled through pidfds opened before the first signal, after checking
// their start time, so a pid reused meanwhile is never hit. Processes that
// took the port after the plan (a supervisor restarting the server) are not
// signalled; they show in Result.Remaining.
func Run(ctx context.Context, plan *Plan) (*Result, error) {
	req := plan.req
	if req == nil {
		return nil, errors.New("kill: plan not made by NewPlan")
	}
	log := req.logger()
	start := time.Now()
	res := &Result{}
	defer func() { res.Waited = time.Since(start) }()

	type live struct {
		t  *Target
		fd int
	}
	var targets []live
	defer func() {
		for _, l := range targets {
			unix.Close(l.fd)
		}
	}()
	for i := range plan.Targets {
		t := &plan.Targets[i]
		if t.Refused != "" {
			continue
		}
		fd, err := unix.PidfdOpen(t.Process.PID, 0)
		if err != nil {
			res.Steps = append(res.Steps, Step{PID: t.Process.PID, Signal: plan.Signal, Gone: true})
			continue
		}
		if t.startTicks != 0 && readFacts(t.Process.PID).start != t.startTicks {
			unix.Close(fd)
			res.Steps = append(res.Steps, Step{PID: t.Process.PID, Signal: plan.Signal, Gone: true, Err: "exited; its pid now names another process"})
			continue
		}
		targets = append(targets, live{t, fd})
	}
	send := func(l live, sig syscall.Signal) {
		step := Step{PID: l.t.Process.PID, Signal: sig, After: time.Since(start)}
		err := unix.PidfdSendSignal(l.fd, sig, nil, 0)
		switch {
		case errors.Is(err, unix.ESRCH):
			step.Gone = true
		case err != nil:
			step.Err = err.Error()
		}
		log.Debug("signal", "pid", step.PID, "signal", sig, "err", err)
		res.Steps = append(res.Steps, step)
	}
	sent := false
	for _, l := range targets {
		if !l.t.ViaParent {
			send(l, plan.Signal)
			sent = true
		}
	}
	// Waiting makes sense only while a target lives: once all are gone,
	// whatever still holds the port is someone else.
	anyAlive := func() bool {
		for _, l := range targets {
			if alive(l.fd) {
				return true
			}
		}
		return false
	}
	grace := plan.Grace
	if !sent {
		grace = 0
	}
	freed, remaining, err := waitFreed(ctx, req, grace, anyAlive)
	if err != nil {
		return res, err
	}
	if !freed && plan.Grace >= 0 && plan.Signal != syscall.SIGKILL && anyAlive() {
		res.Escalated = true
		for _, l := range targets {
			if alive(l.fd) {
				send(l, syscall.SIGKILL)
			}
		}
		freed, remaining, err = waitFreed(ctx, req, killAfterKILL, anyAlive)
		if err != nil {
			return res, err
		}
	}
	res.Freed, res.Remaining = freed, remaining
	if len(remaining) > 0 {
		if err := sockets.FindOwners(ctx, res.Remaining, owners.Options{First: true, Details: true}); err != nil && ctx.Err() != nil {
			return res, err
		}
	}
	return res, nil
}

// waitFreed polls the port until nothing selected holds it, d passes, or
// live reports that no target is left (then after one more look: a process
// closes its sockets before it counts as exited). It looks at least once.
func waitFreed(ctx context.Context, req *Request, d time.Duration, live func() bool) (bool, []sockets.Socket, error) {
	deadline := time.Now().Add(d)
	for {
		gone := !live()
		socks, err := heldBy(ctx, req)
		if err != nil {
			return false, nil, err
		}
		if len(socks) == 0 {
			return true, nil, nil
		}
		if gone || !time.Now().Before(deadline) {
			return false, socks, nil
		}
		t := time.NewTimer(min(killPoll, time.Until(deadline)))
		select {
		case <-ctx.Done():
			t.Stop()
			return false, socks, ctx.Err()
		case <-t.C:
		}
	}
}

// alive reports whether the process behind a pidfd still runs: the pidfd
// turns readable when it exits.
func alive(pidfd int) bool {
	fds := []unix.PollFd{{Fd: int32(pidfd), Events: unix.POLLIN}}
	n, err := unix.Poll(fds, 0)
	return err == nil && n == 0
}

// ParseSignal reads a signal name or number: "TERM", "SIGTERM", "term",
// "15".
func ParseSignal(s string) (syscall.Signal, error) {
	if n, err := strconv.Atoi(s); err == nil {
		if n < 1 || n > 64 {
			return 0, fmt.Errorf("signal %q: want 1-64 or a name such as TERM", s)
		}
		return syscall.Signal(n), nil
	}
	u := strings.ToUpper(strings.TrimSpace(s))
	if !strings.HasPrefix(u, "SIG") {
		u = "SIG" + u
	}
	if sig := unix.SignalNum(u); sig != 0 {
		return sig, nil
	}
	return 0, fmt.Errorf("signal %q: unknown (want TERM, INT, HUP, QUIT, KILL, USR1, ... or a number)", s)
}

// SignalName is the short name of sig ("TERM").
func SignalName(sig syscall.Signal) string {
	if n := unix.SignalName(sig); n != "" {
		return strings.TrimPrefix(n, "SIG")
	}
	return strconv.Itoa(int(sig))
}
