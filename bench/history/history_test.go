// Package history_test measures scan history on big stored scans: diff of
// two /16 scans of 100 ports each (6.5 M results apiece) and the HTML
// report of a 10,000-host scan, each through the command a user runs.
// The scans are written straight through the store API (no packets).
// Run with
//
//	go test ./bench/history -run - -bench . -benchtime 3x -timeout 60m
//
// PORTOLAN_BENCH_DB=DIR keeps the generated stores in DIR between runs
// (generating the two /16 scans takes minutes on a loaded machine).
package history_test

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/netip"
	"os"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"portolan/internal/cli"
	"portolan/internal/portspec"
	"portolan/internal/registry"
	"portolan/internal/scan"
	"portolan/internal/store"
)

const ports = 100 // 1-100 on every host

// fill stores a finished scan of hosts addresses from 198.18.0.0 up, ports
// 1-100: 22 open on every 10th host, 80 on every 25th, 443 on every 50th
// (with banners), the rest closed; change alters every 1000th host (443
// opens, 22 closes) so the two scans differ as a week of a real network
// might.
func fill(ctx context.Context, st *store.Store, hosts int, start time.Time, change bool) (int64, error) {
	set, _ := portspec.Parse("1-100")
	id, err := st.CreateScan(ctx, store.ScanInfo{Started: start, Targets: fmt.Sprintf("198.18.0.0/%d", 32-bitsFor(hosts)),
		Ports: "1-100", PortSet: set, Prober: "connect", Hosts: uint64(hosts), Space: uint64(hosts * ports)})
	if err != nil {
		return 0, err
	}
	batch := make([]scan.Result, 0, 256*ports)
	var pos uint64
	for h := 0; h < hosts; h++ {
		a := netip.AddrFrom4([4]byte{198, 18, byte(h >> 8), byte(h)})
		flip := change && h%1000 == 0
		for p := portspec.Port(1); p <= ports; p++ {
			r := scan.Result{Addr: a, Port: p, Proto: portspec.TCP, State: scan.Closed, Reason: scan.ReasonConnRefused,
				Service: registry.PortName(p, portspec.TCP), RTT: 200 * time.Microsecond, Time: start, Pos: pos}
			pos++
			switch {
			case p == 22 && h%10 == 0 && !flip:
				r.State, r.Reason, r.Banner = scan.Open, scan.ReasonSynAck, "SSH-2.0-OpenSSH_9.2p1 Debian-2"
			case p == 80 && h%25 == 0:
				r.State, r.Reason, r.Banner = scan.Open, scan.ReasonSynAck, "HTTP/1.1 200 OK\r\nServer: nginx/1.22.1\r\n"
			case p == 100 && (h%50 == 0 || flip):
				r.State, r.Reason = scan.Open, scan.ReasonSynAck
			}
			batch = append(batch, r)
		}
		if len(batch) == cap(batch) || h == hosts-1 {
			if err := st.AddResults(ctx, id, batch); err != nil {
				return 0, err
			}
			batch = batch[:0]
		}
	}
	return id, st.FinishScan(ctx, id, store.Done, store.Counts{Probes: pos})
}

func bitsFor(n int) int {
	b := 0
	for 1<<b < n {
		b++
	}
	return b
}

// storeWith returns the path of a store holding two scans of hosts (ids 1
// and 2), made once per directory.
func storeWith(b *testing.B, name string, hosts int) string {
	dir := os.Getenv("PORTOLAN_BENCH_DB")
	if dir == "" {
		dir = b.TempDir()
	}
	path := filepath.Join(dir, name)
	ok := filepath.Join(dir, name+".done")
	if _, err := os.Stat(ok); err == nil {
		return path
	}
	os.Remove(path)
	ctx := context.Background()
	st, err := store.Open(ctx, path)
	if err != nil {
		b.Fatal(err)
	}
	defer st.Close()
	t0 := time.Now()
	day := time.Date(2026, 12, 1, 3, 0, 0, 0, time.UTC)
	if _, err := fill(ctx, st, hosts, day, false); err != nil {
		b.Fatal(err)
	}
	if _, err := fill(ctx, st, hosts, day.Add(24*time.Hour), true); err != nil {
		b.Fatal(err)
	}
	b.Logf("generated %s: 2 scans of %d hosts x %d ports in %v", name, hosts, ports, time.Since(t0).Round(time.Second))
	if err := os.WriteFile(ok, nil, 0o644); err != nil {
		b.Fatal(err)
	}
	return path
}

func cpuTime() time.Duration {
	var ru syscall.Rusage
	syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// run runs portolan with args as the command line would, and returns its
// exit code.
func run(b *testing.B, out io.Writer, args ...string) int {
	var errOut bytes.Buffer
	code := cli.Main(context.Background(), args, nil, out, &errOut)
	if code != 0 && code != cli.ExitChanged {
		b.Fatalf("portolan %v: exit %d: %s", args, code, errOut.String())
	}
	return code
}

// BenchmarkDiff16 is `portolan diff 1 2 --json` of two /16 scans of 100
// ports (6,553,600 results each); the target is under 5 s.
func BenchmarkDiff16(b *testing.B) {
	path := storeWith(b, "diff16.db", 65536)
	b.ResetTimer()
	cpu := cpuTime()
	for range b.N {
		if code := run(b, io.Discard, "diff", "1", "2", "--json", "--db", path); code != cli.ExitChanged {
			b.Fatalf("diff: exit %d; want %d (the scans differ)", code, cli.ExitChanged)
		}
	}
	b.ReportMetric(float64(cpuTime()-cpu)/float64(b.N)/1e9, "cpu-s/op")
	b.ReportMetric(float64(2*65536*ports)*float64(b.N)/b.Elapsed().Seconds()/1e6, "Mresults/s")
}

// BenchmarkReport10k is `portolan report 2 -o FILE` of a 10,000-host scan
// of 100 ports, with its diff against scan 1; the target is under 10 s.
func BenchmarkReport10k(b *testing.B) {
	path := storeWith(b, "report10k.db", 10000)
	out := filepath.Join(b.TempDir(), "report.html")
	b.ResetTimer()
	cpu := cpuTime()
	for range b.N {
		run(b, io.Discard, "report", "2", "-o", out, "--db", path)
	}
	b.ReportMetric(float64(cpuTime()-cpu)/float64(b.N)/1e9, "cpu-s/op")
	b.StopTimer()
	if fi, err := os.Stat(out); err == nil {
		b.ReportMetric(float64(fi.Size())/1e6, "MB-page")
	}
}
