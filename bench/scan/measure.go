package main

import (
	"bufio"
	"context"
	"errors"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
	"time"

	"portolan/internal/netlab"
)

// measured is one timed run of a command.
type measured struct {
	wall      time.Duration
	user, sys time.Duration
	maxRSSKB  int64 // peak resident set (ru_maxrss)
	timedOut  bool
	err       error // exit status, or why it did not start
	samples   []rssSample
}

// rssSample is the resident set of the running command at some moment.
type rssSample struct {
	at    time.Duration
	rssKB int64
}

// measure runs argv inside h with a time limit: SIGINT at the limit, SIGKILL
// 5 s later. Stdout goes to stdout (a path), stderr next to it. With
// sampleEvery > 0 it records VmRSS while the command runs.
//
// The command is forked from a thread switched into h's namespace, so it
// starts there without `ip netns exec`, whose start-up (remounting /sys,
// 0.1 s on a loaded machine) would otherwise be inside every wall time.
// Its /proc/net is its own namespace's; /sys/class/net is not, which none
// of the tools needs for a connect scan.
func measure(ctx context.Context, h *netlab.Host, limit time.Duration, argv []string, stdout string, sampleEvery time.Duration) measured {
	ctx, cancel := context.WithTimeout(ctx, limit)
	defer cancel()
	var m measured
	out, err := os.Create(stdout)
	if err != nil {
		m.err = err
		return m
	}
	defer out.Close()
	errf, err := os.Create(strings.TrimSuffix(stdout, ".stdout") + ".stderr")
	if err != nil {
		m.err = err
		return m
	}
	defer errf.Close()
	cmd := exec.CommandContext(ctx, argv[0], argv[1:]...)
	cmd.Stdout, cmd.Stderr = out, errf
	cmd.Cancel = func() error { return cmd.Process.Signal(os.Interrupt) }
	cmd.WaitDelay = 5 * time.Second
	var start time.Time
	if err := h.Do(func() error { start = time.Now(); return cmd.Start() }); err != nil {
		m.err = err
		return m
	}
	done := make(chan struct{})
	sampled := make(chan []rssSample, 1)
	go func() {
		var s []rssSample
		if sampleEvery > 0 {
			t := time.NewTicker(sampleEvery)
			defer t.Stop()
		loop:
			for {
				select {
				case <-done:
					break loop
				case <-t.C:
					if kb, ok := vmRSS(cmd.Process.Pid); ok {
						s = append(s, rssSample{time.Since(start), kb})
					}
				}
			}
		}
		sampled <- s
	}()
	m.err = cmd.Wait()
	m.wall = time.Since(start)
	close(done)
	m.samples = <-sampled
	m.timedOut = errors.Is(ctx.Err(), context.DeadlineExceeded)
	if ru, ok := cmd.ProcessState.SysUsage().(*syscall.Rusage); ok {
		m.user = time.Duration(ru.Utime.Nano())
		m.sys = time.Duration(ru.Stime.Nano())
		m.maxRSSKB = ru.Maxrss
	}
	var ee *exec.ExitError
	if errors.As(m.err, &ee) && m.timedOut {
		m.err = nil // stopped at the limit: reported as a time-out
	}
	return m
}

// vmRSS reads the current resident set of pid in KiB.
func vmRSS(pid int) (int64, bool) {
	f, err := os.Open("/proc/" + strconv.Itoa(pid) + "/status")
	if err != nil {
		return 0, false
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), "VmRSS:"); ok {
			kb, err := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 10, 64)
			return kb, err == nil
		}
	}
	return 0, false
}

// load1 is the one-minute load average.
func load1() float64 {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return 0
	}
	f := strings.Fields(string(b))
	if len(f) == 0 {
		return 0
	}
	v, _ := strconv.ParseFloat(f[0], 64)
	return v
}
