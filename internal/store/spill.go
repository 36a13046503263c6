package store

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"

	"portolan/internal/scan"
)

// SpillSummary says what LoadSpill stored.
type SpillSummary struct {
	ScanID     int64  `json:"scan_id"`
	Name       string `json:"name,omitempty"`
	Results    int    `json:"results"`
	Checkpoint uint64 `json:"checkpoint"`
	Status     Status `json:"status"` // the scan's status after loading
}

// LoadSpill writes the spill file r (named name in errors), which a
// Buffered sink wrote while the database was unreachable, into the store:
// its results, its last checkpoint and the scan's end. The scan must be in
// this database, and no live process may be running it. Loading a file
// twice stores nothing twice that reads back twice (reads give each port
// once). A spill without an end (its process died too) leaves the scan
// interrupted at its last checkpoint, for --resume.
func (s *Store) LoadSpill(ctx context.Context, r io.Reader, name string) (SpillSummary, error) {
	var sum SpillSummary
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 0, 1<<20), 256<<20) // a line is a batch of results
	line := 0
	fail := func(err error) (SpillSummary, error) {
		return sum, fmt.Errorf("load spill %s:%d: %w", name, line, err)
	}
	next := func() (spillLine, bool, error) {
		var l spillLine
		if !sc.Scan() {
			return l, false, sc.Err()
		}
		line++
		if err := json.Unmarshal(sc.Bytes(), &l); err != nil {
			return l, false, err
		}
		return l, true, nil
	}
	hdr, ok, err := next()
	switch {
	case err != nil:
		return fail(err)
	case !ok || hdr.Type != "spill" || hdr.Header == nil:
		line = max(line, 1)
		return fail(errors.New("not a portolan spill file (its first line is not a spill header)"))
	case hdr.Header.Version != 1:
		return fail(fmt.Errorf("spill version %d: this portolan reads version 1", hdr.Header.Version))
	}
	h := hdr.Header
	sum.ScanID, sum.Name = h.ScanID, h.Name
	si, err := s.Scan(ctx, h.ScanID)
	if err != nil {
		return fail(fmt.Errorf("%w (the spill is of %s: is --db that database?)", err, h.DB))
	}
	if si.Name != h.Name || si.Run != h.Run {
		return fail(fmt.Errorf("the spill is of scan %d %s@%d in %s, but scan %d here is %q@%d: is --db that database?",
			h.ScanID, h.Name, h.Run, h.DB, si.ID, si.Name, si.Run))
	}
	if err := s.adopt(ctx, h.ScanID); err != nil {
		return fail(err)
	}

	var batch []scan.Result
	store := func() error {
		if len(batch) == 0 {
			return nil
		}
		err := s.AddResults(ctx, h.ScanID, batch)
		sum.Results += len(batch)
		batch = batch[:0]
		return err
	}
	var last scan.Totals
	finished := false
	for {
		l, ok, err := next()
		if err != nil {
			return fail(err)
		}
		if !ok {
			break
		}
		if finished {
			return fail(errors.New("a line after the scan's end"))
		}
		switch l.Type {
		case "results":
			for _, r := range l.Results {
				if !r.Addr.IsValid() {
					return fail(errors.New("a result without an address"))
				}
				batch = append(batch, r.result())
			}
			if len(batch) >= 8192 {
				if err := store(); err != nil {
					return fail(err)
				}
			}
		case "checkpoint":
			if l.Checkpoint == nil {
				return fail(errors.New("a checkpoint line without its checkpoint"))
			}
			if err := store(); err != nil {
				return fail(err)
			}
			if err := s.Checkpoint(ctx, h.ScanID, l.Checkpoint.Pos, l.Checkpoint.Totals); err != nil {
				return fail(err)
			}
			sum.Checkpoint, last = l.Checkpoint.Pos, l.Checkpoint.Totals
		case "finish":
			if l.Finish == nil || !l.Finish.Status.valid() || l.Finish.Status == Running {
				return fail(errors.New("a finish line without a final status"))
			}
			if err := store(); err != nil {
				return fail(err)
			}
			if err := s.FinishScan(ctx, h.ScanID, l.Finish.Status, l.Finish.Totals); err != nil {
				return fail(err)
			}
			sum.Status, finished = l.Finish.Status, true
		default:
			return fail(fmt.Errorf("unknown line type %q", l.Type))
		}
	}
	if err := store(); err != nil {
		return fail(err)
	}
	if !finished {
		// Its process died while spilling: resumable from its checkpoint.
		if err := s.FinishScan(ctx, h.ScanID, Interrupted, last); err != nil {
			return fail(err)
		}
		sum.Status = Interrupted
	}
	return sum, nil
}

// adopt makes this process the owner of scan id, as ResumeScan does, but
// keeps every stored result: a spill continues what the database holds.
func (s *Store) adopt(ctx context.Context, id int64) error {
	tx, err := s.db.BeginTx(ctx, nil)
	if err != nil {
		return err
	}
	defer tx.Rollback()
	if err := s.d.lock(ctx, tx, fmt.Sprintf("scan/%d", id)); err != nil {
		return err
	}
	var status Status
	if err := tx.QueryRowContext(ctx, s.q(`SELECT status FROM scans WHERE id = ?`), id).Scan(&status); err != nil {
		return err
	}
	l, err := s.leaseOf(ctx, tx, id)
	if err != nil {
		return err
	}
	if status == Running && !s.mine(l) && s.alive(l) {
		return fmt.Errorf("scan %d: %w", id, s.runningErr(l))
	}
	me := self()
	if _, err := tx.ExecContext(ctx, s.q(`UPDATE scans SET status = 'running', finished = NULL, owner_pid = ?, owner_start = ?,
		lease_host = ?, lease_until = ? WHERE id = ?`), me.pid, me.start, s.host(), s.now().Add(s.leaseTTL()).UnixNano(), id); err != nil {
		return err
	}
	return tx.Commit()
}
