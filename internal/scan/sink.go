package scan

import (
	"context"
	"net/netip"
)

// Totals are the running counts of a scan's results, which a Sink records
// with each checkpoint.
type Totals struct {
	Probes       uint64 `json:"probes"` // ports with a verdict
	Open         uint64 `json:"open"`
	Closed       uint64 `json:"closed"`
	Filtered     uint64 `json:"filtered"`
	OpenFiltered uint64 `json:"open_filtered"`
	HostsUp      uint64 `json:"hosts_up"` // addresses that answered at least once
}

// Tally keeps Totals as results come. The zero value is ready.
type Tally struct {
	Totals
	up map[netip.Addr]struct{}
}

// Add counts r.
func (t *Tally) Add(r Result) {
	t.Probes++
	switch r.State {
	case Open:
		t.Open++
	case Closed:
		t.Closed++
	case Filtered:
		t.Filtered++
	case OpenFiltered:
		t.OpenFiltered++
	}
	if r.State == Open || r.State == Closed {
		if _, ok := t.up[r.Addr]; !ok {
			if t.up == nil {
				t.up = map[netip.Addr]struct{}{}
			}
			t.up[r.Addr] = struct{}{}
			t.HostsUp++
		}
	}
}

// A Sink keeps a scan's results: the embedded SQLite store, later
// PostgreSQL for fleets. Scanner.OnResult and OnCheckpoint feed it through
// a SinkWriter, which calls it from one goroutine, in order.
type Sink interface {
	// AddResults records results; rs is reused after it returns.
	AddResults(ctx context.Context, rs []Result) error
	// Checkpoint records that every result below position pos has been
	// added, with the totals so far: a resume starts there.
	Checkpoint(ctx context.Context, pos uint64, t Totals) error
}

// An IdleSink is a Sink that gathers results into fewer, larger writes
// (each write costs the database round trips, or a transaction). Its Idle
// is called when nothing more is queued for it: while it writes slower
// than the scan finds, batches queue and go out gathered; while it keeps
// up, each goes at once, so what is left to write when the scan ends is
// one batch, not a gathered pile that the scan's end waits for.
type IdleSink interface {
	Sink
	Idle(ctx context.Context) error
}

// SinkWriter batches results into a Sink from a goroutine of its own, so
// the sink never holds up the engine's goroutine, which calls OnResult and
// OnCheckpoint (storing every result one by one took as long as the whole
// scan of 65535 loopback ports). Batches go to the sink in the order they
// were handed over, so a checkpoint is recorded only after every result
// handed over before it (all those below its position), and a resume from
// it loses nothing. Add and Checkpoint are called from one goroutine.
type SinkWriter struct {
	sink    Sink
	pending []Result // the batch being filled
	jobs    chan sinkJob
	free    chan []Result // written batches, for reuse
	done    chan struct{}
	failed  func() // called on the first error
	err     error  // the first error; read after done is closed
	left    uint64 // results still to come, counting pending; 0: unknown (see Expect)
}

// sinkBatch is how many results go to the sink at once, and sinkQueue how
// many batches may wait before Add waits too (memory stays bounded when
// the sink is slow: some 11 MB). A sink writes each batch it is handed
// when it has nothing else queued (IdleSink), so the batch sets how many
// writes a sweep costs: 16 writes of 4,096 took 40-60 ms more of a
// 65,535-port loopback sweep than 4 of 16,384 (bench/RESULTS.md). The
// engine's checkpoints, once a second, still hand over what they cover.
//
// The last batch is written after the last probe, when nothing else is
// left to do: the scan's end waits for it. When the writer knows how many
// results are coming (Expect), the batch before the last is handed over
// early, so that the last holds tailBatch: a sweep of 65,535 ports ended
// with 16,383 results to store.
const (
	sinkBatch = 16384
	sinkQueue = 4
	tailBatch = 2048
)

// sinkJob is a batch of results, then optionally a checkpoint.
type sinkJob struct {
	results    []Result
	checkpoint bool
	pos        uint64
	totals     Totals
}

// NewSinkWriter starts writing to sink. failed, if not nil, is called (once,
// from the writer's goroutine) on the first error, say to stop the scan:
// what it finds could not be kept. The writes go on after ctx is done, so
// a cancelled scan's partial results are kept.
func NewSinkWriter(ctx context.Context, sink Sink, failed func()) *SinkWriter {
	w := &SinkWriter{sink: sink, failed: failed, done: make(chan struct{}),
		jobs: make(chan sinkJob, sinkQueue), free: make(chan []Result, sinkQueue+2)}
	go w.run(context.WithoutCancel(ctx))
	return w
}

func (w *SinkWriter) run(ctx context.Context) {
	defer close(w.done)
	for j := range w.jobs {
		if w.err == nil {
			err := w.sink.AddResults(ctx, j.results)
			if err == nil && j.checkpoint {
				err = w.sink.Checkpoint(ctx, j.pos, j.totals)
			}
			if is, ok := w.sink.(IdleSink); ok && err == nil && len(w.jobs) == 0 {
				err = is.Idle(ctx)
			}
			if err != nil {
				w.err = err
				if w.failed != nil {
					w.failed()
				}
			}
		}
		if j.results != nil {
			select {
			case w.free <- j.results[:0]:
			default:
			}
		}
	}
}

// Add queues one result.
func (w *SinkWriter) Add(r Result) {
	if w.pending == nil {
		select {
		case w.pending = <-w.free:
		default:
			w.pending = make([]Result, 0, sinkBatch)
		}
	}
	w.pending = append(w.pending, r)
	if w.left > 0 {
		w.left--
	}
	if len(w.pending) >= sinkBatch || (w.left == tailBatch && len(w.pending) >= tailBatch) {
		w.send(sinkJob{})
	}
}

// Expect says how many results are still to come (Scanner.Results), so
// that the last batch is a short one. Called before the first Add.
func (w *SinkWriter) Expect(n uint64) { w.left = n }

// Checkpoint queues the results so far, then the checkpoint pos with the
// totals t.
func (w *SinkWriter) Checkpoint(pos uint64, t Totals) {
	w.send(sinkJob{checkpoint: true, pos: pos, totals: t})
}

func (w *SinkWriter) send(j sinkJob) {
	j.results, w.pending = w.pending, nil
	w.jobs <- j
}

// Close writes what is queued and returns the first error.
func (w *SinkWriter) Close() error {
	if w.pending != nil {
		w.send(sinkJob{})
	}
	close(w.jobs)
	<-w.done
	return w.err
}
