package daemon

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
)

// TestLogWriterNeverWaitsForAStalledSink: a sink that takes nothing (a
// pipe nobody reads) must not hold up the writers; lines beyond the
// buffer are dropped and counted, and once the sink reads again it gets
// the lines held, in order, and OnDrop hears how many were lost.
func TestLogWriterNeverWaitsForAStalledSink(t *testing.T) {
	pr, pw := io.Pipe() // every write waits for a reader
	defer pr.Close()
	var reported, summaries atomic.Uint64
	lw := NewLogWriter(pw, 4096)
	lw.OnDrop = func(n uint64) {
		// The summary is queued before the report is counted, so that
		// once the test sees a report, a Flush writes its summary.
		fmt.Fprintf(lw, "dropped %d\n", n) // may be dropped too, and reported next
		summaries.Add(1)
		reported.Add(n)
	}

	wrote := make(chan struct{})
	go func() {
		defer close(wrote)
		for i := range 10000 {
			fmt.Fprintf(lw, "line %05d\n", i) // 11 bytes
		}
	}()
	select {
	case <-wrote:
	case <-time.After(30 * time.Second):
		t.Fatal("writers were held up by a sink that reads nothing")
	}
	if lw.Dropped() == 0 {
		t.Fatal("nothing dropped with a stalled sink and a 4 KiB buffer")
	}
	// The sink recovers.
	lines := make(chan string, 20000)
	go func() {
		sc := bufio.NewScanner(pr)
		for sc.Scan() {
			lines <- sc.Text()
		}
		close(lines)
	}()
	waitFor(t, "the drop report", func() bool { return reported.Load() > 0 })
	// Written out before Close: a summary queued after Close is dropped
	// (it failed so under the race detector's timing).
	if err := lw.Flush(context.Background()); err != nil {
		t.Fatal(err)
	}
	if err := lw.Close(context.Background()); err != nil {
		t.Fatal(err)
	}
	pw.Close()
	last, n := -1, 0
	var sumSeen, summariesSeen uint64
	for l := range lines {
		var i int
		if _, err := fmt.Sscanf(l, "dropped %d", &i); err == nil {
			sumSeen += uint64(i)
			summariesSeen++
			continue
		}
		if _, err := fmt.Sscanf(l, "line %d", &i); err != nil || i <= last {
			t.Fatalf("line %q after line %d: want whole lines in order", l, last)
		}
		last = i
		n++
	}
	// Every line is written or counted: the summaries that were dropped
	// are counted among the dropped lines.
	droppedSummaries := summaries.Load() - summariesSeen
	if got := uint64(n) + lw.Dropped() - droppedSummaries; got != 10000 {
		t.Errorf("%d lines written + %d dropped - %d dropped summaries = %d; want 10000", n, lw.Dropped(), droppedSummaries, got)
	}
	if reported.Load() != lw.Dropped() {
		t.Errorf("OnDrop reported %d lines, %d were dropped", reported.Load(), lw.Dropped())
	}
	if sumSeen == 0 {
		t.Error("no summary line reached the sink")
	}
}

// TestLogWriterSinkGone: the reader of the log pipe exits. The write
// fails (EPIPE), OnError is told once, later lines are dropped, and
// nobody waits.
func TestLogWriterSinkGone(t *testing.T) {
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	r.Close()
	var mu sync.Mutex
	var errs []error
	lw := NewLogWriter(w, 0)
	lw.OnError = func(err error) { mu.Lock(); errs = append(errs, err); mu.Unlock() }
	for i := range 100 {
		fmt.Fprintf(lw, "line %d\n", i)
		time.Sleep(100 * time.Microsecond)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	lw.Close(ctx)
	mu.Lock()
	defer mu.Unlock()
	if len(errs) != 1 || !errors.Is(errs[0], syscall.EPIPE) {
		t.Fatalf("errors reported = %v; want one EPIPE", errs)
	}
	if lw.Dropped() == 0 {
		t.Error("no line counted as dropped after the sink went away")
	}
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	for end := time.Now().Add(15 * time.Second); time.Now().Before(end); time.Sleep(5 * time.Millisecond) {
		if cond() {
			return
		}
	}
	t.Fatalf("timed out waiting for %s", what)
}
