package store

import (
	"context"
	"errors"
	"os"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"portolan/internal/scan"
	"portolan/internal/testenv"
)

// TestBufferedRestart: PostgreSQL stops in the middle of a scan and comes
// back; the results written meanwhile are buffered, retried, and all end up
// stored, with the scan finished.
func TestBufferedRestart(t *testing.T) {
	pg := testenv.StartPostgres(t)
	ctx := context.Background()
	s := openerOf(pg.NewDatabase(t))(t)
	si, err := s.CreateShard(ctx, shardInfo(1, 1, 4000))
	if err != nil {
		t.Fatal(err)
	}
	rs := testResults(4000)
	b := s.Buffered(si)
	b.AddResults(ctx, rs[:1000])
	b.Checkpoint(ctx, 1000, scan.Totals{Probes: 1000})
	if err := pg.Stop(); err != nil {
		t.Fatal(err)
	}
	for i := 1000; i < 3000; i += 500 {
		if err := b.AddResults(ctx, rs[i:i+500]); err != nil {
			t.Fatalf("AddResults while the database is down = %v; want the results buffered", err)
		}
	}
	if err := b.Checkpoint(ctx, 3000, scan.Totals{Probes: 3000}); err != nil {
		t.Fatalf("Checkpoint while the database is down = %v", err)
	}
	if b.down == nil || b.held != 2000 {
		t.Fatalf("while down: down %v, %d held; want an error and 2000 held", b.down, b.held)
	}
	if err := pg.Start(); err != nil {
		t.Fatal(err)
	}
	if err := b.AddResults(ctx, rs[3000:]); err != nil {
		t.Fatal(err)
	}
	if err := b.Finish(ctx, Done, scan.Totals{Probes: 4000}); err != nil {
		t.Fatalf("Finish after the database came back = %v", err)
	}
	got, err := s.Results(ctx, si.ID, Filter{})
	if diff := cmp.Diff(sorted(rs), got, cmpAddr); err != nil || diff != "" {
		t.Errorf("results after a restart mid-scan: %v (-want +got):\n%s", err, diff)
	}
	if got, _ := s.Scan(ctx, si.ID); got.Status != Done || got.Checkpoint != 3000 {
		t.Errorf("scan after a restart mid-scan: %s at %d; want done at 3000", got.Status, got.Checkpoint)
	}
}

// TestBufferedSpill: PostgreSQL stays away past the buffer's bound; the
// results go to a spill file, Finish's error names it, and LoadSpill
// stores it all once the database is back.
func TestBufferedSpill(t *testing.T) {
	pg := testenv.StartPostgres(t)
	ctx := context.Background()
	s := openerOf(pg.NewDatabase(t))(t)
	si, err := s.CreateShard(ctx, shardInfo(1, 1, 4000))
	if err != nil {
		t.Fatal(err)
	}
	rs := testResults(4000)
	b := s.Buffered(si)
	b.MaxBuffered, b.RetryFor, b.SpillDir = 600, 300*time.Millisecond, t.TempDir()
	b.AddResults(ctx, rs[:1000])
	b.Checkpoint(ctx, 1000, scan.Totals{Probes: 1000})
	// More than MaxBuffered at once, with the database there: stored, not
	// spilled (the bound is on what an outage holds back).
	if b.spill != nil {
		t.Fatalf("spilled to %s with the database up", b.spill.Name())
	}
	pg.Stop()
	for i := 1000; i < 4000; i += 500 {
		if err := b.AddResults(ctx, rs[i:i+500]); err != nil {
			t.Fatalf("AddResults while the database is down = %v", err)
		}
		if i == 2500 {
			b.Checkpoint(ctx, 3000, scan.Totals{Probes: 3000})
		}
	}
	err = b.Finish(ctx, Done, scan.Totals{Probes: 4000})
	m := regexp.MustCompile(`load-spill (\S+) loads them`).FindStringSubmatch(errString(err))
	if m == nil || !strings.Contains(err.Error(), "3000 results") {
		t.Fatalf("Finish with the database away = %v; want an error naming the spill file and its 3000 results", err)
	}
	if err := pg.Start(); err != nil {
		t.Fatal(err)
	}
	// Another process loads it.
	s2 := openerOf(s.path)(t)
	f, err := os.Open(m[1])
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	sum, err := s2.LoadSpill(ctx, f, m[1])
	if err != nil || sum.Results != 3000 || sum.Status != Done || sum.Checkpoint != 3000 {
		t.Fatalf("LoadSpill = %+v, %v; want 3000 results, done, checkpoint 3000", sum, err)
	}
	got, err := s2.Results(ctx, si.ID, Filter{})
	if diff := cmp.Diff(sorted(rs), got, cmpAddr); err != nil || diff != "" {
		t.Errorf("results after loading the spill: %v (-want +got):\n%s", err, diff)
	}
	if got, _ := s2.Scan(ctx, si.ID); got.Status != Done || got.Counts.Probes != 4000 {
		t.Errorf("scan after loading the spill: %s, %d probes; want done, 4000", got.Status, got.Counts.Probes)
	}
	// A spill for another database is refused.
	other := openerOf(pg.NewDatabase(t))(t)
	f.Seek(0, 0)
	if _, err := other.LoadSpill(ctx, f, m[1]); !errors.Is(err, ErrNotFound) || !strings.Contains(err.Error(), m[1]+":1") {
		t.Errorf("LoadSpill into another database = %v; want not found, naming the file and line", err)
	}
}

func errString(err error) string {
	if err == nil {
		return ""
	}
	return err.Error()
}

// TestBufferedWholeBatches: a batch as large as a write goes straight to
// the database; the database away, it is kept as a copy, since the
// scan's writer reuses the batch as soon as AddResults returns.
func TestBufferedWholeBatches(t *testing.T) {
	pg := testenv.StartPostgres(t)
	ctx := context.Background()
	s := openerOf(pg.NewDatabase(t))(t)
	n := 3 * gatherResults
	si, err := s.CreateShard(ctx, shardInfo(1, 1, n))
	if err != nil {
		t.Fatal(err)
	}
	rs := testResults(n)
	b := s.Buffered(si)
	batch := make([]scan.Result, gatherResults)
	hand := func(from int) {
		t.Helper()
		copy(batch, rs[from:])
		if err := b.AddResults(ctx, batch); err != nil {
			t.Fatalf("AddResults of results %d-: %v", from, err)
		}
		clear(batch) // as the writer reuses it
	}
	hand(0)
	if b.held != 0 || len(b.fill) != 0 {
		t.Fatalf("a whole batch with the database up: %d held, %d gathered; want it stored", b.held, len(b.fill))
	}
	if err := pg.Stop(); err != nil {
		t.Fatal(err)
	}
	hand(gatherResults)
	if b.down == nil || b.held != gatherResults {
		t.Fatalf("a whole batch with the database down: down %v, %d held; want it held", b.down, b.held)
	}
	if err := pg.Start(); err != nil {
		t.Fatal(err)
	}
	hand(2 * gatherResults)
	if err := b.Finish(ctx, Done, scan.Totals{Probes: uint64(n)}); err != nil {
		t.Fatal(err)
	}
	got, err := s.Results(ctx, si.ID, Filter{})
	if diff := cmp.Diff(sorted(rs), got, cmpAddr); err != nil || diff != "" {
		t.Errorf("results: %v (-want +got):\n%s", err, diff)
	}
}
