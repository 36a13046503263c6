package store

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"time"

	"portolan/internal/portspec"
	"portolan/internal/scan"
)

// Buffered is a scan.Sink for one scan that outlives its database going
// away (a PostgreSQL restart, a network partition): results that cannot be
// written are kept in memory and retried with backoff, checkpoints wait
// until every result below them is stored, and the scan goes on. Past
// MaxBuffered results, everything held and everything after goes to a
// spill file (JSON Lines) instead, which LoadSpill (portolan store
// load-spill) writes into the database later. Nothing a scan found is lost
// unless the local disk fails too, and then AddResults says so and the scan
// stops.
//
// Its methods are called from one goroutine (scan.SinkWriter's).
type Buffered struct {
	// MaxBuffered is how many results are held in memory before spilling.
	// Zero means DefaultMaxBuffered.
	MaxBuffered int
	// RetryFor is how long Finish keeps retrying an unreachable database
	// before it spills what is left. Zero means DefaultRetryFor.
	RetryFor time.Duration
	// SpillDir is where the spill file goes. Empty means SpillDir().
	SpillDir string
	// Logger says when the database goes away and comes back. Nil means
	// discard.
	Logger *slog.Logger

	s     *Store
	si    ScanInfo
	start *Starting // the store being opened, when s is nil
	log   *slog.Logger

	fill      []scan.Result    // results gathered for the next write
	fillSince time.Time        // when the first of them came
	pending   [][]scan.Result  // batches not yet stored, in order
	held      int              // results in pending
	cp        *spillCheckpoint // the checkpoint not yet written
	cpAt      time.Time        // when the last one was written (or the sink made)
	down      error            // why the database is unreachable; nil when it is not
	nextTry   time.Time
	backoff   time.Duration
	spill     *os.File
	spillW    *bufio.Writer
	spilled   int
	spillErr  error
	fatal     error // a write failed for good: the store is broken, not away
}

// DefaultMaxBuffered results (some 200 bytes each) are held in memory
// while the database is away.
const DefaultMaxBuffered = 200_000

// DefaultRetryFor is how long a finishing scan waits for its database.
const DefaultRetryFor = 30 * time.Second

// attemptTimeout bounds one write: a database behind a dead network
// answers nothing, and a write must not hang the scan's writer forever.
const attemptTimeout = 15 * time.Second

// Buffered returns a buffered sink for scan si (as CreateScan or
// ResumeScan returned it).
func (s *Store) Buffered(si ScanInfo) *Buffered {
	return &Buffered{s: s, si: si, cpAt: time.Now()}
}

// SpillDir is where spill files go by default: beside the default SQLite
// store ($XDG_DATA_HOME/portolan/spill), else the temporary directory.
func SpillDir() string {
	if p, err := DefaultPath(); err == nil {
		return filepath.Join(filepath.Dir(p), "spill")
	}
	return os.TempDir()
}

func (b *Buffered) logger() *slog.Logger {
	if b.log == nil {
		b.log = b.Logger
		if b.log == nil {
			b.log = slog.New(slog.DiscardHandler)
		}
	}
	return b.log
}

// AddResults keeps rs and stores what it can.
func (b *Buffered) AddResults(ctx context.Context, rs []scan.Result) error {
	if len(rs) == 0 {
		return nil
	}
	if b.spill != nil {
		return b.writeSpill(spillLine{Type: "results", Results: spillResults(rs)})
	}
	switch {
	case len(b.fill) == 0 && len(rs) >= gatherResults && b.down == nil && len(b.pending) == 0 && b.opened(false):
		// A whole write already, with nothing before it: straight
		// through, not copied into fill first (a sweep's every batch).
		ok, err := b.store(ctx, rs)
		switch {
		case err != nil:
			return err
		case ok:
			return b.flush(ctx)
		}
		b.hold(slices.Clone(rs)) // rs is reused
	default:
		if len(b.fill) == 0 {
			b.fillSince = time.Now()
			if b.fill == nil {
				// Room for a whole write: growing it copied each result again.
				b.fill = make([]scan.Result, 0, max(gatherResults, len(rs)))
			}
		}
		b.fill = append(b.fill, rs...) // rs is reused
		if len(b.fill) >= gatherResults || time.Since(b.fillSince) >= gatherWait {
			if err := b.push(ctx); err != nil {
				return err
			}
		}
	}
	// The bound is on what the database's absence holds back, not on a
	// write being gathered.
	if b.down != nil && b.held+len(b.fill) > b.max() {
		return b.startSpill()
	}
	return nil
}

// Results are gathered into writes of gatherResults, or what came in
// gatherWait, whichever is first, or what came while the last write ran
// (Idle; a checkpoint writes them too): each write costs round trips to
// the server, and on a busy machine each round trip waits for the server's
// process to get a core. Fewer, larger writes kept a 65,535-port sweep
// from waiting for its database.
const (
	gatherResults = 16384
	gatherWait    = 500 * time.Millisecond
)

// push writes what was gathered, straight through when the database is
// there and nothing waits before it (the usual case, without a copy), or
// queues it behind what waits.
func (b *Buffered) push(ctx context.Context) error {
	if !b.opened(b.held+len(b.fill) > b.max()) {
		// Still opening: gather on, within the bound. A store that
		// failed to open fails the sink. A full write waits in
		// pending: growing one slice for all a slow open gathers (a
		// busy PostgreSQL took 100-250 ms) copied the results again at
		// each doubling.
		if b.fatal == nil && len(b.fill) >= gatherResults {
			b.hold(b.fill)
			b.fill = nil
		}
		return b.fatal
	}
	if len(b.fill) == 0 {
		return b.flush(ctx)
	}
	if b.down == nil && len(b.pending) == 0 {
		ok, err := b.store(ctx, b.fill)
		switch {
		case err != nil:
			return err
		case ok:
			b.fill = b.fill[:0]
			return b.flush(ctx)
		}
	}
	b.hold(b.fill) // the pending batch owns it now
	b.fill = nil
	return b.flush(ctx)
}

// hold queues batch, which the buffer owns from now on, behind what waits
// for the database.
func (b *Buffered) hold(batch []scan.Result) {
	b.pending = append(b.pending, batch)
	b.held += len(batch)
}

// store writes rs now. False with no error when the database is away for
// now (noted: see failed); an error when it is broken, or the lease lost.
func (b *Buffered) store(ctx context.Context, rs []scan.Result) (bool, error) {
	actx, cancel := context.WithTimeout(ctx, attemptTimeout)
	err := b.s.AddResults(actx, b.si.ID, rs)
	cancel()
	switch {
	case err == nil:
		return true, nil
	case !b.transient(ctx, err):
		b.fatal = err
		return false, err
	}
	b.failed(err)
	return false, nil
}

// Idle writes what was gathered: the scan's writer has nothing more for
// now (scan.IdleSink).
func (b *Buffered) Idle(ctx context.Context) error {
	if len(b.fill) == 0 && len(b.pending) == 0 && b.cp == nil {
		return nil
	}
	return b.push(ctx)
}

// cpHold is how soon after the last checkpoint was written (or the sink
// made) a new one waits: for the next write, or the scan's end. The engine
// checkpoints once a second (scan.DefaultEvery), and those are written as
// they come; the one that follows the last probe soon after is written
// with Finish, in one statement (for PostgreSQL one synchronous commit,
// not two). A scan killed meanwhile resumes from the one before.
const cpHold = 750 * time.Millisecond

// Checkpoint records pos once every result before it is stored.
func (b *Buffered) Checkpoint(ctx context.Context, pos uint64, t scan.Totals) error {
	b.cp = &spillCheckpoint{Pos: pos, Totals: t}
	if b.spill != nil {
		return b.writeSpill(spillLine{Type: "checkpoint", Checkpoint: b.cp})
	}
	return b.push(ctx)
}

func (b *Buffered) max() int {
	if b.MaxBuffered > 0 {
		return b.MaxBuffered
	}
	return DefaultMaxBuffered
}

// flush writes the pending batches, then the checkpoint, unless the
// database is down and its next try is not due. A lost lease is the only
// error: another process has taken the scan over, so this one must stop.
func (b *Buffered) flush(ctx context.Context) error {
	if b.down != nil && time.Now().Before(b.nextTry) {
		return nil
	}
	for len(b.pending) > 0 {
		if ok, err := b.store(ctx, b.pending[0]); !ok {
			return err
		}
		b.held -= len(b.pending[0])
		b.pending[0] = nil
		b.pending = b.pending[1:]
	}
	if b.cp != nil && time.Since(b.cpAt) >= cpHold {
		at := time.Now()
		actx, cancel := context.WithTimeout(ctx, attemptTimeout)
		err := b.s.Checkpoint(actx, b.si.ID, b.cp.Pos, b.cp.Totals)
		cancel()
		if err != nil && !b.transient(ctx, err) {
			b.fatal = err
			return err
		}
		if err != nil {
			b.failed(err)
			return nil
		}
		b.cp, b.cpAt = nil, at
	}
	if b.down != nil {
		b.logger().Warn("database back: buffered results stored", "scan", b.si.ID, "db", b.s.Path())
		b.down, b.backoff = nil, 0
	}
	return nil
}

// transient reports whether err means the database is away for now (its
// connection failed, it is restarting, the attempt timed out) rather than
// broken (a missing table) or no longer this process's (ErrLeaseLost).
func (b *Buffered) transient(ctx context.Context, err error) bool {
	if ctx.Err() == nil && errors.Is(err, context.DeadlineExceeded) {
		return true // the attempt's own timeout
	}
	return !errors.Is(err, ErrLeaseLost) && b.s.d.transient(err)
}

// failed notes a failed write and when to try again: after 100 ms, then
// twice as long each time, up to 5 s.
func (b *Buffered) failed(err error) {
	if b.down == nil {
		b.logger().Warn("database unreachable: buffering results and retrying", "scan", b.si.ID, "db", b.s.Path(), "err", err)
		b.backoff = 100 * time.Millisecond
	} else {
		b.backoff = min(2*b.backoff, 5*time.Second)
	}
	b.down = err
	b.nextTry = time.Now().Add(b.backoff)
}

// Finish flushes what is held, retrying for RetryFor, and records the end
// of the scan. What cannot be stored by then is spilled, and the error
// names the spill file and says how to load it.
func (b *Buffered) Finish(ctx context.Context, status Status, t scan.Totals) error {
	retry := b.RetryFor
	if retry <= 0 {
		retry = DefaultRetryFor
	}
	if !b.opened(true) {
		return b.fatal // no store: nothing to record the end in
	}
	if b.fatal != nil {
		// The store is broken, not away (the scan stopped on it): record
		// the end if it can be.
		actx, cancel := context.WithTimeout(ctx, attemptTimeout)
		defer cancel()
		return b.s.FinishScan(actx, b.si.ID, status, t)
	}
	deadline := time.Now().Add(retry)
	for b.spill == nil {
		if err := b.push(ctx); err != nil {
			return err
		}
		if b.down == nil && len(b.pending) == 0 {
			// Every result is stored: the checkpoint still held goes
			// with the end.
			actx, cancel := context.WithTimeout(ctx, attemptTimeout)
			err := b.s.finishScan(actx, b.si.ID, status, t, b.cp)
			cancel()
			if err == nil || !b.transient(ctx, err) {
				return err
			}
			b.failed(err)
		}
		if !time.Now().Before(deadline) || ctx.Err() != nil {
			if err := b.startSpill(); err != nil {
				return err
			}
			break
		}
		select {
		case <-time.After(time.Until(b.nextTry)):
		case <-ctx.Done():
		}
	}
	if err := b.writeSpill(spillLine{Type: "finish", Finish: &spillFinish{Status: status, Totals: t}}); err != nil {
		return err
	}
	name := b.spill.Name()
	if err := b.closeSpill(); err != nil {
		return err
	}
	return fmt.Errorf("scan %d: the database %s was unreachable (%v): %d results and the scan's end are in %s; portolan store load-spill %s loads them once it is back",
		b.si.ID, b.s.Path(), b.down, b.spilled, name, name)
}

// startSpill opens the spill file and moves what is held into it.
func (b *Buffered) startSpill() error {
	dir := b.SpillDir
	if dir == "" {
		dir = SpillDir()
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("spill results of scan %d: %w", b.si.ID, err)
	}
	f, err := os.CreateTemp(dir, fmt.Sprintf("scan-%d-*.jsonl", b.si.ID))
	if err != nil {
		return fmt.Errorf("spill results of scan %d: %w", b.si.ID, err)
	}
	b.spill, b.spillW = f, bufio.NewWriterSize(f, 1<<16)
	why := ""
	if b.down != nil {
		why = b.down.Error()
	}
	b.logger().Warn("database unreachable too long: spilling results to a file", "scan", b.si.ID, "file", f.Name())
	hdr := spillLine{Type: "spill", Header: &spillHeader{Version: 1, ScanID: b.si.ID, Name: b.si.Name, Run: b.si.Run,
		Shard: shardText(b.si.ShardIndex, b.si.ShardCount), DB: b.s.Path(), Error: why}}
	if err := b.writeSpill(hdr); err != nil {
		return err
	}
	for _, rs := range append(b.pending, b.fill) {
		if len(rs) == 0 {
			continue
		}
		if err := b.writeSpill(spillLine{Type: "results", Results: spillResults(rs)}); err != nil {
			return err
		}
	}
	b.pending, b.held, b.fill = nil, 0, nil
	if b.cp != nil {
		return b.writeSpill(spillLine{Type: "checkpoint", Checkpoint: b.cp})
	}
	return nil
}

// writeSpill appends one line to the spill file and syncs it, so a crash
// after the line keeps it.
func (b *Buffered) writeSpill(l spillLine) error {
	if b.spillErr != nil {
		return b.spillErr
	}
	line, err := json.Marshal(l)
	if err == nil {
		_, err = b.spillW.Write(append(line, '\n'))
	}
	if err == nil {
		err = b.spillW.Flush()
	}
	if err == nil {
		err = b.spill.Sync()
	}
	if err != nil {
		b.spillErr = fmt.Errorf("spill results of scan %d to %s: %w", b.si.ID, b.spill.Name(), err)
		return b.spillErr
	}
	b.spilled += len(l.Results)
	return nil
}

func (b *Buffered) closeSpill() error {
	if err := b.spill.Close(); err != nil && b.spillErr == nil {
		return fmt.Errorf("spill results of scan %d to %s: %w", b.si.ID, b.spill.Name(), err)
	}
	return b.spillErr
}

// A spill file is JSON Lines: a header line, then lines of results,
// checkpoints and at most one finish, in the order the scan produced them.
type spillLine struct {
	Type       string           `json:"type"` // spill, results, checkpoint, finish
	Header     *spillHeader     `json:"spill,omitempty"`
	Results    []spillResult    `json:"results,omitempty"`
	Checkpoint *spillCheckpoint `json:"checkpoint,omitempty"`
	Finish     *spillFinish     `json:"finish,omitempty"`
}

type spillHeader struct {
	Version int    `json:"version"`
	ScanID  int64  `json:"scan_id"`
	Name    string `json:"name,omitempty"`
	Run     int    `json:"run,omitempty"`
	Shard   string `json:"shard,omitempty"`
	DB      string `json:"db"`              // where it should have gone (password hidden)
	Error   string `json:"error,omitempty"` // why it did not
}

type spillCheckpoint struct {
	Pos    uint64      `json:"pos"`
	Totals scan.Totals `json:"totals"`
}

type spillFinish struct {
	Status Status      `json:"status"`
	Totals scan.Totals `json:"totals"`
}

// spillResult is a result as spilled: every field the store keeps, exactly
// (the banner as bytes: base64, since it need not be UTF-8).
type spillResult struct {
	Addr    netip.Addr     `json:"addr"`
	Port    portspec.Port  `json:"port"`
	Proto   portspec.Proto `json:"proto"`
	State   scan.State     `json:"state"`
	Reason  string         `json:"reason,omitempty"`
	RTTus   int64          `json:"rtt_us,omitempty"`
	Service string         `json:"service,omitempty"`
	Banner  []byte         `json:"banner,omitempty"`
	Pos     uint64         `json:"pos"`
	Time    int64          `json:"time,omitempty"` // unix nanoseconds
}

func spillResults(rs []scan.Result) []spillResult {
	out := make([]spillResult, len(rs))
	for i, r := range rs {
		out[i] = spillResult{Addr: r.Addr, Port: r.Port, Proto: r.Proto, State: r.State, Reason: r.Reason,
			RTTus: r.RTT.Microseconds(), Service: r.Service, Pos: r.Pos, Time: nanos(r.Time)}
		if r.Banner != "" {
			out[i].Banner = []byte(r.Banner)
		}
	}
	return out
}

func (r spillResult) result() scan.Result {
	return scan.Result{Addr: r.Addr, Port: r.Port, Proto: r.Proto, State: r.State, Reason: r.Reason,
		RTT: time.Duration(r.RTTus) * time.Microsecond, Service: r.Service, Banner: string(r.Banner), Pos: r.Pos, Time: fromNanos(r.Time)}
}
