package store

import (
	"context"
	"fmt"
	"math/rand/v2"
	"net/netip"
	"path/filepath"
	"testing"
	"time"

	"portolan/internal/portspec"
	"portolan/internal/registry"
	"portolan/internal/scan"
)

// sweepResults is what a -p- connect sweep of one host finds: every port in
// a random order, a few open, the rest refused, with RTTs and times as a
// fast network gives them.
func sweepResults() []scan.Result {
	addr := netip.MustParseAddr("198.18.0.2")
	rnd := rand.New(rand.NewPCG(1, 2))
	perm := rnd.Perm(65535)
	t0 := time.Unix(1_700_000_000, 0)
	out := make([]scan.Result, len(perm))
	for i, p := range perm {
		port := portspec.Port(p + 1)
		r := scan.Result{Addr: addr, Port: port, Proto: portspec.TCP, State: scan.Closed, Reason: scan.ReasonConnRefused,
			RTT: time.Duration(50+rnd.IntN(400)) * time.Microsecond, Service: registry.PortName(port, portspec.TCP),
			Time: t0.Add(time.Duration(i)*7*time.Microsecond + time.Duration(rnd.IntN(1000))), Pos: uint64(i)}
		if p%327 == 0 {
			r.State, r.Reason, r.Service = scan.Open, scan.ReasonSynAck, "http"
		}
		out[i] = r
	}
	return out
}

// BenchmarkSweepSQLite is a stored sweep's whole life in a new SQLite file,
// as the scan benchmark's stored run has it: open (creating the schema),
// record the scan, write 65,535 results in the scan writer's batches,
// finish, close. Its CPU time is what a stored sweep costs its machine.
func BenchmarkSweepSQLite(b *testing.B) {
	rs := sweepResults()
	ctx := context.Background()
	dir := b.TempDir()
	b.ReportAllocs()
	for i := range b.N {
		path := filepath.Join(dir, fmt.Sprintf("b%d.db", i))
		st := StartScan(ctx, func(ctx context.Context) (*Store, error) { return Open(ctx, path) },
			ScanInfo{Started: time.Now(), Status: Running, Targets: "198.18.0.2", Ports: "-"})
		sink := st.Buffered()
		for j := 0; j < len(rs); j += 4096 {
			if err := sink.AddResults(ctx, rs[j:min(j+4096, len(rs))]); err != nil {
				b.Fatal(err)
			}
			if j == 0 {
				// The store opens while the first batch comes, as in
				// a scan on a fast network.
				st.Wait()
			}
			if err := sink.Idle(ctx); err != nil {
				b.Fatal(err)
			}
		}
		if err := sink.Checkpoint(ctx, uint64(len(rs)), scan.Totals{}); err != nil {
			b.Fatal(err)
		}
		if err := sink.Finish(ctx, Done, scan.Totals{}); err != nil {
			b.Fatal(err)
		}
		s, _, err := st.Wait()
		if err != nil {
			b.Fatal(err)
		}
		if err := s.Close(); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkSweepRows is the writer's own work on a sweep's results before
// the database sees them: rows and port groups.
func BenchmarkSweepRows(b *testing.B) {
	rs := sweepResults()
	s := &Store{d: sqliteDialect{}}
	b.ReportAllocs()
	for range b.N {
		for j := 0; j < len(rs); j += 4096 {
			if _, _, err := s.resultRows(1, rs[j:min(j+4096, len(rs))]); err != nil {
				b.Fatal(err)
			}
		}
	}
}
