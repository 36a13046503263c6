package cli

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"runtime"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/spf13/cobra"

	"portolan/internal/output"
	"portolan/internal/sockets"
	"portolan/internal/wait"
)

func init() { register(newWaitCmd) }

// ExitTimeout is wait's exit code when --timeout passes with a target not
// ready: 124, as timeout(1) says, so a script can tell "still not up" from
// a command that failed (1) or bad input (2).
const ExitTimeout = 124

// WaitOptions are the inputs of `portolan wait`.
type WaitOptions struct {
	Targets     []string
	Command     []string // after --: run once every target is ready
	HTTP        bool     // host:port/path targets are http://host:port/path
	Status      string   // expected HTTP statuses
	Timeout     time.Duration
	EachTimeout time.Duration
	Interval    time.Duration
	Free        bool
	Insecure    bool
	Netns       string // network namespace name or path; empty means ours
}

func newWaitCmd(g *Globals) *cobra.Command {
	var opts WaitOptions
	cmd := &cobra.Command{
		Use:   "wait TARGET... [-- COMMAND [ARG...]]",
		Short: "Wait until ports accept (or are released), then run a command",
		Long: `Wait until every target is ready, all at once, then run COMMAND (its output and
exit code become portolan's) or exit 0.

Targets:
  host:port  [v6]:port              a TCP connection is accepted
  :port  port                       TCP on localhost
  unix:/path/to.sock                a unix socket accepts
  http://host:port/path  https://   a GET answers with a --status code
  host:port/path                    the same as http://host:port/path, with --http

A name is tried at every address it resolves to, and localhost always at both
127.0.0.1 and ::1, so a server listening on one family only counts. With --free
the wait is reversed: a target is ready when nothing listens on its port any
more, on any family (or its unix socket is gone).

Attempts start every --interval and back off (doubling, with jitter) to 2s or
the interval if longer; each attempt may take --each-timeout. After --timeout
(0: no limit) portolan says for each target that is not ready why, from what
it saw: "connection refused", "listening on 127.0.0.1 only, you asked for
::1", "accepting but HTTP 503", "accept queue full", "TLS handshake failed".

Exit status: 0 when every target is ready (or COMMAND's own), 124 when the
timeout passed first (as timeout(1)), 2 on bad input, 130 when interrupted.`,
		Example: `  portolan wait db:5432 api:8080/health --http --timeout 30s -- ./run-tests
  portolan wait :8080
  portolan wait https://localhost:8443/ready --status 200 --insecure
  portolan wait unix:/run/app.sock --timeout 10s
  portolan wait --free 8080 && ./start-server`,
		Args: cobra.ArbitraryArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			opts.Targets = args
			if n := cmd.ArgsLenAtDash(); n >= 0 {
				opts.Targets, opts.Command = args[:n], args[n:]
			}
			return runWait(cmd.Context(), g, opts)
		},
	}
	f := cmd.Flags()
	f.BoolVar(&opts.HTTP, "http", false, "read host:port/path targets as http://host:port/path")
	f.StringVar(&opts.Status, "status", "200-399", "HTTP statuses that count as ready: N or N-M")
	f.DurationVar(&opts.Timeout, "timeout", 30*time.Second, "give up after this long (0: never)")
	f.DurationVar(&opts.EachTimeout, "each-timeout", 5*time.Second, "limit for each attempt on a target (connect, TLS, HTTP request)")
	f.DurationVar(&opts.Interval, "interval", 250*time.Millisecond, "pause after the first failed attempt; later ones back off")
	f.BoolVar(&opts.Free, "free", false, "wait until the targets' ports are released instead")
	f.BoolVar(&opts.Insecure, "insecure", false, "accept any TLS certificate")
	f.StringVar(&opts.Netns, "netns", "", "connect (and with --free, bind) from network namespace `NAME` (under /run/netns) or PATH")
	return cmd
}

// waitStatus is the JSON form of one target's status.
type waitStatus struct {
	Target    string             `json:"target"`
	Kind      wait.Kind          `json:"kind"`
	Ready     bool               `json:"ready"`
	Attempts  int                `json:"attempts"`
	ElapsedMS int64              `json:"elapsed_ms"`
	Reason    string             `json:"reason,omitempty"`
	Addrs     []wait.Observation `json:"addrs,omitempty"`
}

func runWait(ctx context.Context, g *Globals, opts WaitOptions) error {
	if len(opts.Targets) == 0 {
		return usageErr(errors.New("wait for what? give at least one target (host:port, unix:/path, http://...)"))
	}
	targets := make([]wait.Target, len(opts.Targets))
	for i, s := range opts.Targets {
		if opts.HTTP && !strings.Contains(s, "://") && !strings.HasPrefix(s, "unix:") && strings.Contains(s, "/") {
			s = "http://" + s
		}
		t, err := wait.ParseTarget(s)
		if err != nil {
			if !opts.HTTP && strings.Contains(err.Error(), "needs an http://") {
				err = fmt.Errorf("%w (or use --http)", err)
			}
			return usageErr(err)
		}
		t.Raw = opts.Targets[i]
		targets[i] = t
	}
	if opts.Netns != "" {
		if err := sockets.InNetns(opts.Netns, func() error { return nil }); err != nil {
			return socketsErr(opts.Netns, err)
		}
	}
	lo, hi, err := wait.ParseStatus(opts.Status)
	if err != nil {
		return usageErr(fmt.Errorf("--status: %w", err))
	}
	if opts.Interval <= 0 || opts.EachTimeout <= 0 || opts.Timeout < 0 {
		return usageErr(errors.New("--interval and --each-timeout must be positive, --timeout not negative"))
	}
	wo := wait.Options{
		Interval:       opts.Interval,
		AttemptTimeout: opts.EachTimeout,
		Free:           opts.Free,
		StatusMin:      lo,
		StatusMax:      hi,
		Logger:         g.Logger(),
		Netns:          opts.Netns,
	}
	if opts.Insecure {
		wo.TLS = &tls.Config{InsecureSkipVerify: true}
	}

	// Progress on a terminal: how many are ready, and the last reason heard.
	prog := g.progress()
	start := time.Now()
	var mu sync.Mutex
	ready := 0
	wo.OnAttempt = func(_ int, s wait.Status) {
		mu.Lock()
		defer mu.Unlock()
		if s.Ready {
			ready++
			return
		}
		prog.Update("waiting %s, %d/%d ready: %s: %s", time.Since(start).Round(100*time.Millisecond), ready, len(targets), s.Target, s.Reason)
	}
	wctx := ctx
	if opts.Timeout > 0 {
		var cancel context.CancelFunc
		wctx, cancel = context.WithTimeout(ctx, opts.Timeout)
		defer cancel()
	}
	statuses, werr := wait.Wait(wctx, targets, wo)
	prog.Done()

	if g.JSON {
		out := make([]waitStatus, len(statuses))
		for i, s := range statuses {
			out[i] = waitStatus{Target: s.Target.Raw, Kind: s.Target.Kind, Ready: s.Ready, Attempts: s.Attempts,
				ElapsedMS: s.Elapsed.Milliseconds(), Reason: s.Reason, Addrs: s.Addrs}
		}
		if err := writeJSON(g, out); err != nil {
			return err
		}
	}
	if werr != nil {
		why := "timed out after " + opts.Timeout.String()
		if ctx.Err() != nil {
			why = "interrupted"
		}
		t := output.Table{}
		for _, s := range statuses {
			if !s.Ready {
				t.Add("  "+s.Target.Raw, s.Reason)
			}
		}
		code := ExitTimeout
		if ctx.Err() != nil {
			code = ExitInterrupted
		}
		fmt.Fprintf(g.io.ErrOut, "portolan: wait %s; not ready:\n", why)
		t.Write(g.io.ErrOut, false)
		if h := waitHint(statuses); h != "" {
			fmt.Fprintf(g.io.ErrOut, "hint: %s\n", h)
		}
		return silentExit(code)
	}
	if len(opts.Command) > 0 {
		return runAfterWait(g, opts.Command)
	}
	if !g.JSON {
		t := output.Table{}
		state := "ready"
		if opts.Free {
			state = "free"
		}
		for _, s := range statuses {
			t.Add(s.Target.Raw, state, s.Elapsed.Round(time.Millisecond).String(), waitReadyAt(s, opts.Free))
		}
		return t.Write(g.io.Out, g.color())
	}
	return nil
}

// waitReadyAt says where a ready target answered ("127.0.0.1:8080 HTTP 200
// OK"), or with free where it was found free.
func waitReadyAt(s wait.Status, free bool) string {
	var at []string
	for _, o := range s.Addrs {
		switch {
		case free:
			at = append(at, o.Addr)
		case o.OK:
			at = append(at, o.Addr+" "+o.Result)
		}
	}
	return strings.Join(at, ", ")
}

// waitHint suggests the fix for the reasons that have one.
func waitHint(statuses []wait.Status) string {
	for _, s := range statuses {
		switch {
		case strings.Contains(s.Reason, "only, you asked for"):
			return "the server listens on one address family only: wait for localhost:PORT (both), or make the server listen on [::] (dual-stack)"
		case strings.Contains(s.Reason, "certificate signed by an unknown authority"):
			return "a self-signed certificate? --insecure accepts any certificate"
		}
	}
	return ""
}

// runAfterWait runs the command the wait was for. With portolan's own
// stdio on a Unix system it replaces portolan (exec), so the command gets
// the signals and its exit code is the exit code; otherwise (other
// streams, as in tests, or Windows) it runs as a child with the streams
// passed through and its exit code returned.
func runAfterWait(g *Globals, argv []string) error {
	path, err := exec.LookPath(argv[0])
	if err != nil {
		code := 126
		if errors.Is(err, exec.ErrNotFound) || errors.Is(err, fs.ErrNotExist) {
			code = 127 // as a shell says
		}
		return withCode(code, fmt.Errorf("run %s: %w", argv[0], err))
	}
	if runtime.GOOS != "windows" && g.io.In == os.Stdin && g.io.Out == os.Stdout && g.io.ErrOut == os.Stderr {
		err := syscall.Exec(path, argv, os.Environ())
		return withCode(126, fmt.Errorf("run %s: %w", argv[0], err))
	}
	c := exec.Command(path, argv[1:]...)
	c.Args = argv // argv[0] as written, not the looked-up path
	c.Stdin, c.Stdout, c.Stderr = g.io.In, g.io.Out, g.io.ErrOut
	err = c.Run()
	var ee *exec.ExitError
	switch {
	case err == nil:
		return nil
	case errors.As(err, &ee):
		code := ee.ExitCode()
		if ws, ok := ee.Sys().(syscall.WaitStatus); ok && code < 0 {
			code = 128 + int(ws.Signal()) // killed by a signal, as a shell says
		}
		return silentExit(code)
	}
	return withCode(126, fmt.Errorf("run %s: %w", argv[0], err))
}
