// Package store_test measures the embedded scan store: how fast results go
// in and come back out. Run with
//
//	go test ./bench/store -run - -bench . -benchtime 5x
package store_test

import (
	"context"
	"net/netip"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"portolan/internal/portspec"
	"portolan/internal/registry"
	"portolan/internal/scan"
	"portolan/internal/store"
)

const n = 100_000

// results are 100k results over 100 IPv4 hosts x 1000 ports in a scrambled
// order, as a permuted scan reports them.
func results() []scan.Result {
	out := make([]scan.Result, n)
	t0 := time.Now()
	for i := range out {
		j := (i * 7919) % n // 7919 is prime and coprime to n: a permutation
		st, reason := scan.Closed, scan.ReasonConnRefused
		if j%50 == 0 {
			st, reason = scan.Open, scan.ReasonSynAck
		}
		port := portspec.Port(j%1000 + 1)
		out[i] = scan.Result{
			Addr: netip.AddrFrom4([4]byte{198, 18, 0, byte(j / 1000)}), Port: port, Proto: portspec.TCP,
			State: st, Reason: reason, RTT: 180 * time.Microsecond, Time: t0, Pos: uint64(i),
			// A scan names every port from the registry; closed ports so
			// named are stored in port groups.
			Service: registry.Default().Name(port, portspec.TCP),
		}
	}
	return out
}

// cpuTime is the CPU this process has used, user and system. On a shared
// machine it is steadier than the wall clock, which counts waiting for a
// core.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// report adds results/s (wall clock) and CPU ms per 100k results.
func report(b *testing.B, cpu0 time.Duration) {
	b.ReportMetric(float64(n)*float64(b.N)/b.Elapsed().Seconds(), "results/s")
	b.ReportMetric(float64(cpuTime()-cpu0)/float64(time.Millisecond)/float64(b.N), "cpu-ms/op")
}

func benchInsert(b *testing.B, batch int) {
	rs := results()
	ctx := context.Background()
	s, err := store.Open(ctx, filepath.Join(b.TempDir(), "bench.db"))
	if err != nil {
		b.Fatal(err)
	}
	defer s.Close()
	cpu0 := cpuTime()
	for b.Loop() {
		id, err := s.CreateScan(ctx, store.ScanInfo{Targets: "198.18.0.0/25"})
		if err != nil {
			b.Fatal(err)
		}
		for i := 0; i < n; i += batch {
			if err := s.AddResults(ctx, id, rs[i:min(i+batch, n)]); err != nil {
				b.Fatal(err)
			}
		}
	}
	report(b, cpu0)
}

// BenchmarkAddResults100k inserts 100k results in one call (one transaction).
func BenchmarkAddResults100k(b *testing.B) { benchInsert(b, n) }

// BenchmarkAddResults100kBatch1000 inserts them 1000 per call, as a scan
// flushing every few hundred milliseconds would.
func BenchmarkAddResults100kBatch1000(b *testing.B) { benchInsert(b, 1000) }

// BenchmarkResults100k reads 100k results back in order.
func BenchmarkResults100k(b *testing.B) {
	ctx := context.Background()
	s, err := store.Open(ctx, filepath.Join(b.TempDir(), "bench.db"))
	if err != nil {
		b.Fatal(err)
	}
	defer s.Close()
	id, _ := s.CreateScan(ctx, store.ScanInfo{Targets: "198.18.0.0/25"})
	if err := s.AddResults(ctx, id, results()); err != nil {
		b.Fatal(err)
	}
	cpu0 := cpuTime()
	for b.Loop() {
		got, err := s.Results(ctx, id, store.Filter{})
		if err != nil || len(got) != n {
			b.Fatalf("Results = %d, %v", len(got), err)
		}
	}
	report(b, cpu0)
}
