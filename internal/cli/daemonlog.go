package cli

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"portolan/internal/daemon"
)

// daemonLog is the logger of a long-running command: slog in format (text
// or json) over a daemon.LogWriter on stderr, so logging never holds up
// the work; lines are dropped and counted while stderr stalls.
type daemonLog struct {
	*slog.Logger
	lw   *daemon.LogWriter
	pipe chan os.Signal
}

// newDaemonLog makes the logger. From now until close, a write to a
// vanished reader fails with EPIPE instead of killing the process with
// SIGPIPE: daemon.Run catches it only while it runs, and the lines still
// queued are written after it returns.
func newDaemonLog(g *Globals, format string) (*daemonLog, error) {
	pipe := make(chan os.Signal, 1)
	signal.Notify(pipe, syscall.SIGPIPE)
	lw := daemon.NewLogWriter(g.io.ErrOut, 0)
	hopts := &slog.HandlerOptions{Level: slog.LevelInfo}
	if g.Verbose >= 1 {
		hopts.Level = slog.LevelDebug
	}
	var h slog.Handler
	switch format {
	case "text":
		h = slog.NewTextHandler(lw, hopts)
	case "json":
		h = slog.NewJSONHandler(lw, hopts)
	default:
		lw.Close(context.Background())
		signal.Stop(pipe)
		return nil, usageErr(fmt.Errorf("--log-format %q: want text or json", format))
	}
	log := slog.New(h)
	lw.OnDrop = func(n uint64) { log.Warn("log lines dropped while the log sink stalled", "lines", n) }
	lw.OnError = func(err error) {
		// Said on the sink that failed, in case it comes back (a full
		// disk); counted in the metrics either way.
		log.Error("log sink: lines lost", "err", err)
	}
	return &daemonLog{Logger: log, lw: lw, pipe: pipe}, nil
}

// close writes what is queued, waiting at most 2 s.
func (l *daemonLog) close() {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	l.lw.Close(ctx)
	signal.Stop(l.pipe)
}

// collectors are the log writer's counters as Prometheus metrics.
func (l *daemonLog) collectors() []prometheus.Collector {
	return []prometheus.Collector{prometheus.NewCounterFunc(prometheus.CounterOpts{
		Name: "portolan_log_lines_dropped_total",
		Help: "Log lines dropped because the log sink stalled or failed.",
	}, func() float64 { return float64(l.lw.Dropped()) }), prometheus.NewCounterFunc(prometheus.CounterOpts{
		Name: "portolan_log_write_errors_total",
		Help: "Writes to the log sink that failed (a closed pipe, a full disk).",
	}, func() float64 { return float64(l.lw.Errors()) })}
}
