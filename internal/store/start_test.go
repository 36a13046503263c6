package store

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"portolan/internal/scan"
)

// TestStartScan: a scan runs while its store opens; what it found before
// the store was open is all stored, the checkpoint and the end with it.
func TestStartScan(t *testing.T) {
	eachPath(t, func(t *testing.T, path string) {
		ctx := context.Background()
		release := make(chan struct{})
		open := func(ctx context.Context) (*Store, error) {
			<-release // the database is slow to answer
			return Open(ctx, path)
		}
		st := StartScan(ctx, open, ScanInfo{Targets: "198.18.0.0/16", Ports: "-p-", Prober: "connect", Seed: 7})
		b := st.Buffered()
		// More than one write's worth comes before the store opens: full
		// writes wait their turn as they are.
		rs := testResults(45_000)
		for i := 0; i < 40_000; i += 5_000 {
			if err := b.AddResults(ctx, rs[i:i+5_000]); err != nil {
				t.Fatalf("AddResults while the store opens = %v", err)
			}
		}
		if err := b.Checkpoint(ctx, 40_000, scan.Totals{Probes: 40_000}); err != nil {
			t.Fatalf("Checkpoint while the store opens = %v", err)
		}
		if st.ready() {
			t.Fatal("the store opened before it was let")
		}
		if len(b.pending) == 0 {
			t.Errorf("40000 results gathered while the store opens, none queued as a full write")
		}
		close(release)
		if err := b.AddResults(ctx, rs[40_000:]); err != nil {
			t.Fatal(err)
		}
		if err := b.Finish(ctx, Done, scan.Totals{Probes: 45_000}); err != nil {
			t.Fatalf("Finish = %v", err)
		}
		s, si, err := st.Wait()
		if err != nil {
			t.Fatal(err)
		}
		defer s.Close()
		got, err := s.Results(ctx, si.ID, Filter{})
		if diff := cmp.Diff(sorted(rs), got, cmpAddr); err != nil || diff != "" {
			t.Errorf("results of a scan that ran while its store opened: %v (-want +got):\n%s", err, diff)
		}
		if got, err := s.Scan(ctx, si.ID); err != nil || got.Status != Done || got.Seed != 7 || got.Counts.Probes != 45_000 {
			t.Errorf("scan = %+v, %v; want done, seed 7, 45000 probes", got, err)
		}
	})
}

// TestStartScanOpenFails: a store that cannot be opened (not portolan's)
// fails the sink, so the scan stops, and is left as it was.
func TestStartScanOpenFails(t *testing.T) {
	path := filepath.Join(t.TempDir(), "notes.db")
	text := []byte("a text file given to --db by mistake, not a database at all, padded padded padded padded")
	if err := os.WriteFile(path, text, 0o600); err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	st := StartScan(ctx, func(ctx context.Context) (*Store, error) { return Open(ctx, path) }, ScanInfo{Targets: "127.0.0.1"})
	b := st.Buffered()
	rs := testResults(gatherResults)
	var err error
	// The open fails soon, and the sink says so; past its bound it waits
	// for the open.
	for i := 0; i < 100 && err == nil; i++ {
		err = b.AddResults(ctx, rs)
	}
	if err == nil || !strings.Contains(err.Error(), "notes.db: not a portolan database") {
		t.Fatalf("AddResults into a store that failed to open = %v; want the open's error", err)
	}
	if ferr := b.Finish(ctx, Failed, scan.Totals{}); ferr == nil || ferr.Error() != err.Error() {
		t.Errorf("Finish = %v; want %v", ferr, err)
	}
	if got, _ := os.ReadFile(path); string(got) != string(text) {
		t.Errorf("the file given was changed: %q", got)
	}
}

// TestBufferedIdle: what a sink gathered is stored when the scan's writer
// is idle, not only once a whole write is gathered; the checkpoint that
// follows soon after is recorded with the end.
func TestBufferedIdle(t *testing.T) {
	eachDialect(t, func(t *testing.T, open opener) {
		ctx := context.Background()
		s := open(t)
		id, err := s.CreateScan(ctx, ScanInfo{Targets: "198.18.0.0/16", Prober: "connect"})
		if err != nil {
			t.Fatal(err)
		}
		b := s.Buffered(ScanInfo{ID: id})
		rs := testResults(3000)
		if err := b.AddResults(ctx, rs); err != nil {
			t.Fatal(err)
		}
		if err := b.Idle(ctx); err != nil {
			t.Fatal(err)
		}
		if got, err := s.Results(ctx, id, Filter{}); err != nil || len(got) != len(rs) {
			t.Fatalf("after Idle: %d results stored, %v; want %d", len(got), err, len(rs))
		}
		if err := b.Checkpoint(ctx, 3000, scan.Totals{Probes: 3000}); err != nil {
			t.Fatal(err)
		}
		if err := b.Finish(ctx, Done, scan.Totals{Probes: 3000}); err != nil {
			t.Fatal(err)
		}
		if got, err := s.Scan(ctx, id); err != nil || got.Status != Done || got.Checkpoint != 3000 || got.Counts.Probes != 3000 {
			t.Errorf("finished scan: %s at %d, %d probes, %v; want done at 3000, 3000 probes", got.Status, got.Checkpoint, got.Counts.Probes, err)
		}
	})
}
