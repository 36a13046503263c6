package daemon

import (
	"context"
	"errors"
	"log/slog"
	"os"
	"os/signal"
	"syscall"
	"time"
)

// DefaultDrainTimeout is how long Run lets Drain take when
// Options.DrainTimeout is zero.
const DefaultDrainTimeout = 30 * time.Second

// Options say how Run drives a daemon.
type Options struct {
	// Logger gets the daemon layer's own lines (reloads, the drain).
	// Nil: discard.
	Logger *slog.Logger
	// Reload is called on SIGHUP. It validates and applies a new
	// configuration, and on error leaves the running one as it was (the
	// error is logged, the daemon goes on). Nil: SIGHUP is logged and
	// ignored.
	Reload func(ctx context.Context) error
	// Drain stops taking new work and waits for the work in hand until
	// its ctx is done, then cuts the rest and returns ctx's error. It is
	// called once, when the daemon is asked to stop.
	Drain func(ctx context.Context) error
	// DrainTimeout bounds Drain. Zero: DefaultDrainTimeout.
	DrainTimeout time.Duration
}

// Errors Run returns when the stop did not go as planned.
var (
	// ErrDrainTimeout: work was still in hand at the drain deadline and was cut.
	ErrDrainTimeout = errors.New("drain: work still in hand at the deadline was cut")
	// ErrForced: a second stop signal came during the drain.
	ErrForced = errors.New("stopped at once by a second signal: work in hand was cut")
)

// stopSignals ask a daemon to stop: the first drains, a second forces.
var stopSignals = []os.Signal{os.Interrupt, syscall.SIGTERM}

// Run runs a daemon whose work has started: it tells systemd it is ready,
// reloads on SIGHUP, and when ctx is done or SIGINT or SIGTERM comes,
// drains. A second SIGINT or SIGTERM during the drain cuts it short
// (ErrForced). It returns nil when the drain ended in time.
//
// While Run runs, a write to a closed pipe or socket (a log reader gone)
// fails with EPIPE instead of killing the process with SIGPIPE.
func Run(ctx context.Context, o Options) error {
	log := o.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	pipe := make(chan os.Signal, 1)
	signal.Notify(pipe, syscall.SIGPIPE)
	defer signal.Stop(pipe)
	stop := make(chan os.Signal, 4)
	signal.Notify(stop, stopSignals...)
	defer signal.Stop(stop)
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)

	notify(log, "READY=1")
	stops := 0
wait:
	for {
		select {
		case <-ctx.Done():
			break wait
		case <-stop:
			stops++
			break wait
		case <-hup:
			if o.Reload == nil {
				log.Warn("reload: nothing to re-read")
				continue
			}
			notify(log, reloading())
			if err := o.Reload(ctx); err != nil {
				log.Error("reload: keeping the running configuration", "err", err)
			}
			notify(log, "READY=1")
		}
	}

	timeout := o.DrainTimeout
	if timeout <= 0 {
		timeout = DefaultDrainTimeout
	}
	notify(log, "STOPPING=1")
	log.Info("draining", "timeout", timeout.String())
	dctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- o.Drain(dctx) }()
	forced := false
	for {
		select {
		case err := <-done:
			switch {
			case err == nil:
				return nil
			case forced:
				return ErrForced
			case errors.Is(err, context.DeadlineExceeded):
				return ErrDrainTimeout
			}
			return err
		case <-stop:
			// main's context and this channel both see the first
			// signal; a second one is the person insisting.
			if stops++; stops >= 2 && !forced {
				forced = true
				log.Warn("second signal: stopping now")
				cancel()
			}
		}
	}
}

func notify(log *slog.Logger, state string) {
	if err := Notify(state); err != nil {
		log.Warn("systemd notify", "err", err)
	}
}
