package store

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"portolan/internal/scan"
)

// shardInfo is shard i of n of the named scan "weekly" over the space of
// testResults(size).
func shardInfo(i, n, size int) ScanInfo {
	return ScanInfo{Name: "weekly", ShardIndex: i, ShardCount: n, Targets: "198.18.0.0/16", Ports: "-p-",
		Prober: "connect", Space: uint64(size)}
}

// TestShardsConcurrent: shard writers, each with its own store (as many
// processes), start at once and write concurrently; they share one run and
// one seed, and the merged scan is every result exactly once.
func TestShardsConcurrent(t *testing.T) {
	eachDialect(t, func(t *testing.T, open opener) {
		ctx := context.Background()
		const n, size = 4, 8000
		rs := testResults(size)
		stores := make([]*Store, n)
		for i := range stores {
			stores[i] = open(t)
			stores[i].HostID = fmt.Sprintf("host%d", i+1)
		}
		infos := make([]ScanInfo, n)
		var wg sync.WaitGroup
		errs := make(chan error, n)
		for i := range n {
			wg.Add(1)
			go func() {
				defer wg.Done()
				s := stores[i]
				si, err := s.CreateShard(ctx, shardInfo(i+1, n, size))
				if err != nil {
					errs <- err
					return
				}
				infos[i] = si
				lo, hi := scan.Shard{Index: uint64(i + 1), Count: n}.Range(size)
				for p := lo; p < hi; p += 700 {
					if err := s.AddResults(ctx, si.ID, rs[p:min(p+700, hi)]); err != nil {
						errs <- err
						return
					}
					if err := s.Checkpoint(ctx, si.ID, min(p+700, hi), Counts{}); err != nil {
						errs <- err
						return
					}
				}
				if i < n-1 { // the last shard stays running
					errs <- s.FinishScan(ctx, si.ID, Done, Counts{Probes: hi - lo})
				}
			}()
		}
		wg.Wait()
		close(errs)
		for err := range errs {
			if err != nil {
				t.Fatalf("shard writer: %v", err)
			}
		}
		for _, si := range infos {
			if si.Run != 1 || si.Seed != infos[0].Seed || si.Seed == 0 {
				t.Errorf("shard %d: run %d seed %d; want run 1 and one seed for all (%d)", si.ShardIndex, si.Run, si.Seed, infos[0].Seed)
			}
		}
		reader := open(t)
		m, err := reader.ResolveScan(ctx, "weekly")
		if err != nil {
			t.Fatal(err)
		}
		if m.Status != Running || len(m.Shards) != n || len(m.Missing) != 0 || m.Shards[n-1].Host != "host4" {
			t.Errorf("Named(weekly) with one shard running: status %s, %d shards, missing %v, last host %q; want running, %d, none, host4",
				m.Status, len(m.Shards), m.Missing, m.Shards[n-1].Host, n)
		}
		if err := stores[n-1].FinishScan(ctx, infos[n-1].ID, Done, Counts{}); err != nil {
			t.Fatal(err)
		}
		m, err = reader.ResolveScan(ctx, "weekly@1")
		if err != nil || m.Status != Done || m.Counts.Probes != size*(n-1)/n {
			t.Errorf("ResolveScan(weekly@1) = status %s, probes %d, %v; want done, %d", m.Status, m.Counts.Probes, err, size*(n-1)/n)
		}
		got, err := reader.ScanResults(ctx, m, Filter{})
		if diff := cmp.Diff(sorted(rs), got, cmpAddr); err != nil || diff != "" {
			t.Errorf("merged results: %v (-want +got):\n%s", err, diff)
		}
	})
}

// TestShardRules: which run a shard joins, and what is refused.
func TestShardRules(t *testing.T) {
	eachDialect(t, func(t *testing.T, open opener) {
		ctx := context.Background()
		s := open(t)
		s.HostID = "a"
		first, err := s.CreateShard(ctx, shardInfo(1, 2, 100))
		if err != nil {
			t.Fatal(err)
		}
		// Shard 1 again while it runs here.
		if _, err := s.CreateShard(ctx, shardInfo(1, 2, 100)); !errors.Is(err, ErrShardStarted) && !errors.Is(err, ErrRunning) {
			t.Errorf("CreateShard(1/2) again while it runs = %v; want it refused", err)
		}
		// Another host's shard 2 with other ports, or another count, or another seed.
		b := open(t)
		b.HostID = "b"
		other := shardInfo(2, 2, 100)
		other.Space = 200
		if _, err := b.CreateShard(ctx, other); err == nil || !strings.Contains(err.Error(), "space of 100") {
			t.Errorf("CreateShard with another space = %v; want the mismatch named", err)
		}
		if _, err := b.CreateShard(ctx, shardInfo(2, 3, 100)); err == nil || !strings.Contains(err.Error(), "has 2 shards, not 3") {
			t.Errorf("CreateShard(2/3) into a run of 2 = %v; want the mismatch named", err)
		}
		seeded := shardInfo(2, 2, 100)
		seeded.Seed = first.Seed + 1
		if _, err := b.CreateShard(ctx, seeded); err == nil || !strings.Contains(err.Error(), "--seed") {
			t.Errorf("CreateShard with another seed = %v; want refused", err)
		}
		m, _ := s.Named(ctx, "weekly", 0)
		if len(m.Missing) != 1 || m.Missing[0] != 2 {
			t.Errorf("Named with shard 2 never started: missing %v; want [2]", m.Missing)
		}
		second, err := b.CreateShard(ctx, shardInfo(2, 2, 100))
		if err != nil || second.Run != 1 || second.Seed != first.Seed {
			t.Fatalf("CreateShard(2/2) = run %d seed %d, %v; want run 1 seed %d", second.Run, second.Seed, err, first.Seed)
		}
		s.FinishScan(ctx, first.ID, Done, Counts{})
		b.FinishScan(ctx, second.ID, Done, Counts{})
		// Shard 1 of a complete run: the next run, with a new seed.
		next, err := s.CreateShard(ctx, shardInfo(1, 2, 100))
		if err != nil || next.Run != 2 {
			t.Fatalf("CreateShard(1/2) after run 1 = run %d, %v; want run 2", next.Run, err)
		}
		if m, err := s.Named(ctx, "weekly", 1); err != nil || m.Status != Done {
			t.Errorf("Named(weekly, 1) = %s, %v; want done", m.Status, err)
		}
		if _, err := s.ResolveScan(ctx, "weekly@3"); !errors.Is(err, ErrNotFound) {
			t.Errorf("ResolveScan(weekly@3) = %v; want ErrNotFound", err)
		}
		for _, bad := range []string{"", "42", "a b", "we@k"} {
			if err := ValidName(bad); err == nil {
				t.Errorf("ValidName(%q) = nil; want an error", bad)
			}
		}
	})
}

// TestLeaseExpiry: a shard whose host stops renewing its lease is running
// until the lease lapses, then interrupted; another host resumes it, and
// the first host, if it comes back, has lost it.
func TestLeaseExpiry(t *testing.T) {
	eachDialect(t, func(t *testing.T, open opener) {
		ctx := context.Background()
		clock := time.Now()
		a, b := open(t), open(t)
		a.HostID, b.HostID = "a", "b"
		a.LeaseTTL, b.LeaseTTL = time.Minute, time.Minute
		a.Now = func() time.Time { return clock }
		b.Now = func() time.Time { return clock }
		si, err := a.CreateShard(ctx, shardInfo(1, 1, 100))
		if err != nil {
			t.Fatal(err)
		}
		a.AddResults(ctx, si.ID, testResults(60))
		if err := a.Checkpoint(ctx, si.ID, 40, Counts{Probes: 40}); err != nil {
			t.Fatal(err)
		}
		_, err = b.ResumeScan(ctx, si.ID)
		if !errors.Is(err, ErrRunning) || !strings.Contains(err.Error(), "host a") {
			t.Fatalf("ResumeScan on b while a's lease holds = %v; want ErrRunning naming host a", err)
		}
		clock = clock.Add(50 * time.Second)
		if err := a.Heartbeat(ctx, si.ID); err != nil {
			t.Fatalf("Heartbeat: %v", err)
		}
		clock = clock.Add(50 * time.Second) // within the renewed lease
		if got, _ := b.Scan(ctx, si.ID); got.Status != Running || got.Host != "a" {
			t.Errorf("Scan on b after a's heartbeat = %s on %q; want running on a", got.Status, got.Host)
		}
		clock = clock.Add(time.Minute) // a went silent
		if got, _ := b.Scan(ctx, si.ID); got.Status != Interrupted {
			t.Errorf("Scan on b after a's lease lapsed = %s; want interrupted", got.Status)
		}
		resumed, err := b.ResumeScan(ctx, si.ID)
		if err != nil || resumed.Checkpoint != 40 {
			t.Fatalf("ResumeScan on b after the lease lapsed = checkpoint %d, %v; want 40", resumed.Checkpoint, err)
		}
		if err := a.Checkpoint(ctx, si.ID, 60, Counts{}); !errors.Is(err, ErrLeaseLost) || !strings.Contains(err.Error(), "host b") {
			t.Errorf("Checkpoint by a after b took over = %v; want ErrLeaseLost naming host b", err)
		}
		if err := a.Heartbeat(ctx, si.ID); !errors.Is(err, ErrLeaseLost) {
			t.Errorf("Heartbeat by a after b took over = %v; want ErrLeaseLost", err)
		}
		if got, _ := b.Results(ctx, si.ID, Filter{}); len(got) != 40 {
			t.Errorf("results after b resumed at 40 = %d; want 40", len(got))
		}
		b.AddResults(ctx, si.ID, testResults(100)[40:])
		if err := b.FinishScan(ctx, si.ID, Done, Counts{Probes: 100}); err != nil {
			t.Fatal(err)
		}
		m, err := a.Named(ctx, "weekly", 0)
		if err != nil || m.Status != Done {
			t.Errorf("Named after b finished = %s, %v; want done", m.Status, err)
		}
		got, _ := a.ScanResults(ctx, m, Filter{})
		if diff := cmp.Diff(sorted(testResults(100)), got, cmpAddr); diff != "" {
			t.Errorf("merged results (-want +got):\n%s", diff)
		}
	})
}
