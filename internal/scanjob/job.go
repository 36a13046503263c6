package scanjob

import (
	"context"
	"errors"
	"time"

	"portolan/internal/scan"
	"portolan/internal/store"
)

// A Sink keeps a job's results: batches and checkpoints (scan.Sink), and
// how the run ended. The store's Buffered implements it, for SQLite and
// PostgreSQL alike.
type Sink interface {
	scan.Sink
	// Finish records the run's end with the final totals, after the last
	// checkpoint.
	Finish(ctx context.Context, status store.Status, t scan.Totals) error
}

// Job is one run of a scan: the engine set up from a recipe
// (Recipe.Scanner, with StartAt for a resume) over its space, feeding a
// Sink and the caller's outputs. It owns what every runner of a scan
// needs besides: the writer that keeps the sink off the engine's goroutine,
// the running totals its checkpoints carry, the lease's heartbeat, and
// the status the run ends with.
type Job struct {
	Scanner *scan.Scanner
	Space   scan.Space
	// Sink, if set, gets every result and checkpoint. If it fails the run
	// stops: what the scan finds could be neither kept nor resumed.
	Sink Sink
	// Tally counts the results; a resume fills it first with what the
	// earlier runs stored. Nil means a fresh one.
	Tally *scan.Tally
	// OnResult, if set, gets every result (after Tally has counted it),
	// from the engine's goroutine. An error stops the run, as a failing
	// sink does, and is the Outcome's OutputErr.
	OnResult func(scan.Result) error
	// Heartbeat, if set, is called every HeartbeatEvery while the run
	// lasts (the store's lease). An error wrapping store.ErrLeaseLost
	// (another host took the scan over) stops the run; others are the
	// sink's to handle.
	Heartbeat      func(ctx context.Context) error
	HeartbeatEvery time.Duration
}

// Outcome is how a job's run ended.
type Outcome struct {
	Summary scan.Summary
	// Status is the scan's: done, interrupted (ctx was cancelled) or
	// failed (Err, or a sink that stopped it).
	Status store.Status
	// Err is the engine's own error: the prober failed, or ctx's.
	Err error
	// SinkErr is the first error of the sink (its writes or Finish), and
	// OutputErr the first of OnResult.
	SinkErr, OutputErr error
}

// Run runs the job. Its ctx stops the scan (Status interrupted); what was
// found up to then still reaches the sink, checkpointed, so a resume
// continues from there.
func (j *Job) Run(ctx context.Context) Outcome {
	tally := j.Tally
	if tally == nil {
		tally = &scan.Tally{}
	}
	runCtx, stopRun := context.WithCancel(ctx)
	defer stopRun()
	var out Outcome
	var writer *scan.SinkWriter
	if j.Sink != nil {
		writer = scan.NewSinkWriter(ctx, j.Sink, stopRun)
		writer.Expect(j.Scanner.Results(j.Space))
		if j.Heartbeat != nil {
			defer heartbeat(runCtx, stopRun, j.Heartbeat, j.HeartbeatEvery)()
		}
	}
	s := *j.Scanner
	s.OnResult = func(res scan.Result) {
		tally.Add(res)
		if j.OnResult != nil && out.OutputErr == nil {
			if err := j.OnResult(res); err != nil {
				out.OutputErr = err
				stopRun()
			}
		}
		if writer != nil {
			writer.Add(res)
		}
	}
	s.OnCheckpoint = func(pos uint64) {
		if writer != nil {
			writer.Checkpoint(pos, tally.Totals)
		}
	}
	out.Summary, out.Err = s.Run(runCtx, j.Space)
	switch {
	case out.Err != nil && ctx.Err() != nil:
		out.Status = store.Interrupted
	case out.Err != nil, out.OutputErr != nil:
		// An output that failed stopped the run, though the engine may
		// have sent its last probes before it saw the stop.
		out.Status = store.Failed
	default:
		out.Status = store.Done
	}
	if writer != nil {
		// Even after a cancel: the partial results are the resume's.
		bg := context.WithoutCancel(ctx)
		writer.Checkpoint(out.Summary.Checkpoint, tally.Totals)
		if out.SinkErr = writer.Close(); out.SinkErr != nil && out.Status == store.Done {
			out.Status = store.Failed
		}
		if err := j.Sink.Finish(bg, out.Status, tally.Totals); err != nil && out.SinkErr == nil {
			out.SinkErr = err
		}
	}
	return out
}

// heartbeat calls beat every every (a third of the default lease when 0)
// until the returned function is called; a lost lease stops the run.
func heartbeat(ctx context.Context, stopRun func(), beat func(context.Context) error, every time.Duration) func() {
	if every <= 0 {
		every = store.DefaultLeaseTTL / 3
	}
	ctx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() {
		defer close(done)
		t := time.NewTicker(every)
		defer t.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-t.C:
			}
			if err := beat(ctx); errors.Is(err, store.ErrLeaseLost) {
				stopRun()
				return
			}
		}
	}()
	return func() { cancel(); <-done }
}
