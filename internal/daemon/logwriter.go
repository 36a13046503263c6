package daemon

import (
	"bytes"
	"context"
	"errors"
	"io"
	"sync"
	"sync/atomic"
	"time"
)

// DefaultLogBuffer is how many bytes of log lines a LogWriter holds while
// its sink is slow: about 4,000 connection lines.
const DefaultLogBuffer = 1 << 20

// LogWriter is an io.Writer for a daemon's log handler that never makes
// the work wait for the log. Lines go into a bounded buffer and a
// goroutine writes them to the sink. While the sink stalls (a full pipe
// nobody reads, a log collector that hangs) new lines are dropped and
// counted; once the sink takes lines again, OnDrop is told how many were
// lost so that it can log one summary line. A write that fails (the
// reader of a pipe went away, a full disk) loses its lines, counted, and
// is reported through OnError once per run of failures; the daemon goes
// on, and the writer tries the sink again with the next lines.
//
// Each Write is taken whole or dropped whole: a log handler writes one
// line per call.
type LogWriter struct {
	// OnDrop is called, from the writer's goroutine, after lines were
	// dropped and the sink took a line again. Nil: nothing.
	OnDrop func(lines uint64)
	// OnError is called, from the writer's goroutine, when a write to
	// the sink fails after one that did not. Nil: nothing.
	OnError func(err error)

	w       io.Writer
	max     int
	dropped atomic.Uint64 // lines dropped, in all
	errs    atomic.Uint64 // failed writes to the sink

	mu       sync.Mutex
	buf      []byte // lines waiting
	spare    []byte
	wake     chan struct{}
	failing  bool   // the last write to the sink failed
	unseen   uint64 // dropped since OnDrop was last called
	writing  bool
	closed   bool
	finished chan struct{}
}

// NewLogWriter starts a LogWriter in front of w holding at most max
// bytes (0: DefaultLogBuffer). Close stops it.
func NewLogWriter(w io.Writer, max int) *LogWriter {
	if max <= 0 {
		max = DefaultLogBuffer
	}
	lw := &LogWriter{w: w, max: max, wake: make(chan struct{}, 1), finished: make(chan struct{})}
	go lw.run()
	return lw
}

// Write queues p, or drops (and counts) it if the buffer is full or the
// writer is closed. It never blocks on the sink.
func (lw *LogWriter) Write(p []byte) (int, error) {
	lw.mu.Lock()
	if lw.closed || len(lw.buf)+len(p) > lw.max {
		lw.unseen++
		lw.mu.Unlock()
		lw.dropped.Add(1)
		return len(p), nil
	}
	lw.buf = append(lw.buf, p...)
	lw.mu.Unlock()
	select {
	case lw.wake <- struct{}{}:
	default:
	}
	return len(p), nil
}

// Dropped is how many lines were dropped so far.
func (lw *LogWriter) Dropped() uint64 { return lw.dropped.Load() }

// Errors is how many writes to the sink failed so far.
func (lw *LogWriter) Errors() uint64 { return lw.errs.Load() }

func (lw *LogWriter) run() {
	defer close(lw.finished)
	for {
		lw.mu.Lock()
		for len(lw.buf) == 0 && !lw.closed {
			lw.mu.Unlock()
			<-lw.wake
			lw.mu.Lock()
		}
		if len(lw.buf) == 0 && lw.closed {
			lw.mu.Unlock()
			return
		}
		batch := lw.buf
		lw.buf = lw.spare[:0]
		lw.writing = true
		lw.mu.Unlock()

		_, err := lw.w.Write(batch)

		var lost uint64
		if err != nil {
			lost = uint64(bytes.Count(batch, []byte{'\n'}))
			lw.dropped.Add(lost)
			lw.errs.Add(1)
		}
		lw.mu.Lock()
		lw.spare = batch[:0]
		unseen := lw.unseen
		first := err != nil && !lw.failing
		lw.failing = err != nil
		if err != nil {
			lw.unseen += lost
		} else {
			lw.unseen = 0
		}
		lw.mu.Unlock()
		switch {
		case err != nil && first && lw.OnError != nil:
			lw.OnError(err)
		case err == nil && unseen > 0 && lw.OnDrop != nil:
			lw.OnDrop(unseen)
		}
		// Only now: a Flush waits for what the callbacks write (a drop
		// summary), which a Close right after it would otherwise drop.
		lw.mu.Lock()
		lw.writing = false
		lw.mu.Unlock()
	}
}

// Flush waits until every queued line has been written, or ctx is done.
func (lw *LogWriter) Flush(ctx context.Context) error {
	for {
		lw.mu.Lock()
		done := len(lw.buf) == 0 && !lw.writing
		lw.mu.Unlock()
		if done {
			return nil
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(5 * time.Millisecond):
		}
	}
}

// Close writes what is queued (until ctx is done) and stops the writer;
// later lines are dropped.
func (lw *LogWriter) Close(ctx context.Context) error {
	err := lw.Flush(ctx)
	lw.mu.Lock()
	lw.closed = true
	lw.mu.Unlock()
	select {
	case lw.wake <- struct{}{}:
	default:
	}
	if err != nil {
		// The sink is stuck in a write: leave the goroutine to it.
		return errors.Join(errors.New("log sink stalled: lines dropped"), err)
	}
	select {
	case <-lw.finished:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}
