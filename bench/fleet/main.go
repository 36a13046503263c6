// Command fleet-bench measures what storing a scan into PostgreSQL costs:
// a 65,535-port sweep of one target with --no-store, into PostgreSQL (a
// throwaway cluster on this machine, durable settings: fsync and
// synchronous commit on) and into the embedded SQLite file, the runs
// interleaved, each configuration -runs times. It prints the median wall
// time of each and the overhead of storing against --no-store. Run it
// through run.sh, as root.
//
// Traffic stays inside two network namespaces it makes (198.18.0.0/15, no
// default route); PostgreSQL is reached over its unix socket, from the
// scanner's namespace. The target listens on -open ports; the rest answer
// RST, as a typical host's closed ports do.
package main

import (
	"bytes"
	"context"
	"errors"
	"flag"
	"fmt"
	"net"
	"os"
	"os/signal"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"portolan/internal/netlab"
	"portolan/internal/testenv"
)

func main() {
	bin := flag.String("portolan", "", "portolan `binary` to measure (required)")
	runs := flag.Int("runs", 5, "runs of each configuration")
	nOpen := flag.Int("open", 200, "open ports on the target")
	limit := flag.Duration("limit", 5*time.Minute, "time limit of one scan")
	flag.Parse()
	if *bin == "" {
		fmt.Fprintln(os.Stderr, "fleet-bench: -portolan BINARY is required")
		os.Exit(2)
	}
	if err := run(*bin, *runs, *nOpen, *limit); err != nil {
		fmt.Fprintln(os.Stderr, "fleet-bench:", err)
		os.Exit(1)
	}
}

func run(bin string, runs, nOpen int, limit time.Duration) error {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	netlab.SweepStale()
	lab, err := netlab.New()
	if err != nil {
		return err
	}
	defer lab.Close()
	scanner, err := lab.AddHost("scanner")
	if err != nil {
		return err
	}
	target, err := lab.AddHost("target")
	if err != nil {
		return err
	}
	link, err := lab.Link(scanner, target)
	if err != nil {
		return err
	}
	if err := link.PinNeighbors(); err != nil {
		return err
	}
	for i := range nOpen {
		ln, err := target.Listen("tcp", ":"+strconv.Itoa(1+i*(65535/nOpen)))
		if err != nil {
			return err
		}
		defer ln.Close()
		go func() {
			for {
				c, err := ln.Accept()
				if errors.Is(err, net.ErrClosed) {
					return
				}
				if err == nil {
					c.Close()
				}
			}
		}()
	}

	// Durable, as a real database: the test defaults turn fsync off.
	pg, err := testenv.NewPostgres([]string{"fsync = on", "synchronous_commit = on", "full_page_writes = on"})
	if err != nil {
		return err
	}
	defer pg.Close()
	dir, err := os.MkdirTemp("", "fleet-bench-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)

	space := []string{link.B4.String(), "-p-", "--format", "jsonl", "-o", "/dev/null"}
	// One database per configuration, as a fleet's: its schema is made by
	// the warm-up run, which is not counted.
	pgURL := func() (string, error) {
		url, err := pg.CreateDatabase()
		if err != nil {
			return "", err
		}
		return pg.SocketURL(url[strings.LastIndexByte(url, '/')+1 : strings.IndexByte(url, '?')]), nil
	}
	plain, err := pgURL()
	if err != nil {
		return err
	}
	named, err := pgURL()
	if err != nil {
		return err
	}
	configs := []struct {
		name string
		args []string
	}{
		{"--no-store", []string{"--no-store"}},
		{"postgres", []string{"--db", plain}},
		{"postgres, shard 1/1 of a named scan", []string{"--db", named, "--scan-id", "bench", "--shard", "1/1"}},
		{"sqlite", []string{"--db", filepath.Join(dir, "bench.db")}},
	}
	times := make([][]time.Duration, len(configs))
	cpus := make([][]time.Duration, len(configs))
	for r := -1; r < runs; r++ { // run -1 warms up
		for i, c := range configs {
			cctx, cancel := context.WithTimeout(ctx, limit)
			cmd := scanner.Command(cctx, bin, append(append([]string{"scan"}, space...), c.args...)...)
			cmd.Env = append(os.Environ(), "NO_COLOR=1", "XDG_DATA_HOME="+dir)
			var stderr bytes.Buffer
			cmd.Stderr = &stderr
			start := time.Now()
			err = cmd.Run()
			d := time.Since(start)
			cancel()
			if err != nil {
				return fmt.Errorf("%s, run %d: %w\n%s", c.name, r+1, err, stderr.String())
			}
			cpu := cmd.ProcessState.UserTime() + cmd.ProcessState.SystemTime()
			fmt.Fprintf(os.Stderr, "run %d %-40s %6.2fs  cpu %.2fs\n", r+1, c.name, d.Seconds(), cpu.Seconds())
			if r >= 0 {
				times[i] = append(times[i], d)
				cpus[i] = append(cpus[i], cpu)
			}
		}
	}
	// The machine may be shared: besides the medians, the median of each
	// run's ratio to the --no-store run just before it (the same moment's
	// load), and portolan's own CPU time, which waiting does not inflate.
	base := median(times[0])
	fmt.Printf("| configuration | median wall s | vs --no-store | median of run ratios | portolan CPU s | runs, wall s |\n| --- | --- | --- | --- | --- | --- |\n")
	for i, c := range configs {
		m := median(times[i])
		var all []string
		var ratios []time.Duration
		for r, d := range times[i] {
			all = append(all, fmt.Sprintf("%.2f", d.Seconds()))
			ratios = append(ratios, time.Duration(float64(time.Second)*d.Seconds()/times[0][r].Seconds()))
		}
		fmt.Printf("| %s | %.2f | %+.1f%% | %+.1f%% | %.2f | %s |\n", c.name, m.Seconds(), 100*(m.Seconds()/base.Seconds()-1),
			100*(median(ratios).Seconds()-1), median(cpus[i]).Seconds(), strings.Join(all, ", "))
	}
	load, _ := os.ReadFile("/proc/loadavg")
	fmt.Printf("\nload average at the end: %s", load)
	return nil
}

func median(ds []time.Duration) time.Duration {
	s := slices.Clone(ds)
	slices.Sort(s)
	return s[len(s)/2]
}
