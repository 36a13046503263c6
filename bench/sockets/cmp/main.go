// Command cmp times commands against the first one, interleaved: round
// after round each command runs once, in turn, so a machine whose load
// drifts (shared CI runners, a laptop) weighs on all of them alike, which
// back-to-back batches do not. It prints a Markdown table: median and mean
// wall time, mean CPU time (user + system) of each command, and how many
// times slower than the first command each one is.
//
//	cmp -rounds 15 -title "who 8080" -- 'portolan who 8080' 'ss -Htnp state listening sport = :8080'
//
// Commands are split on spaces (no shell); their output goes to /dev/null.
// Every run is bounded by -timeout.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log"
	"os/exec"
	"slices"
	"strings"
	"time"
)

type stats struct {
	cmd   string
	wall  []time.Duration
	cpu   []time.Duration
	codes map[int]int
}

func main() {
	rounds := flag.Int("rounds", 15, "interleaved rounds")
	warmup := flag.Int("warmup", 2, "untimed rounds first (page cache, dentries)")
	title := flag.String("title", "", "heading for the table")
	timeout := flag.Duration("timeout", time.Minute, "longest a single run may take")
	target := flag.Float64("target", 0, "say whether the second command's median wall time is at least this many times the first's")
	flag.Parse()
	log.SetFlags(0)
	log.SetPrefix("cmp: ")
	if flag.NArg() < 2 {
		log.Fatal("usage: cmp [-rounds N] [-title T] -- 'reference command' 'other command'...")
	}
	all := make([]*stats, flag.NArg())
	for i, c := range flag.Args() {
		all[i] = &stats{cmd: c, codes: map[int]int{}}
	}
	for r := -*warmup; r < *rounds; r++ {
		for _, s := range all {
			wall, cpu, code, err := runOnce(s.cmd, *timeout)
			if err != nil {
				log.Fatalf("%s: %v", s.cmd, err)
			}
			if r >= 0 {
				s.wall = append(s.wall, wall)
				s.cpu = append(s.cpu, cpu)
				s.codes[code]++
			}
		}
	}
	if *title != "" {
		fmt.Printf("\n%s (%d interleaved rounds after %d warm-up)\n\n", *title, *rounds, *warmup)
	}
	fmt.Println("| command | median wall | mean wall | mean CPU | wall vs first (median) | CPU vs first | exit |")
	fmt.Println("| --- | ---: | ---: | ---: | ---: | ---: | --- |")
	ref := all[0]
	for _, s := range all {
		fmt.Printf("| `%s` | %s | %s | %s | %s | %s | %s |\n", s.cmd, ms(median(s.wall)), ms(mean(s.wall)), ms(mean(s.cpu)),
			ratio(median(s.wall), median(ref.wall)), ratio(mean(s.cpu), mean(ref.cpu)), codes(s.codes))
	}
	if *target > 0 {
		got := float64(median(all[1].wall)) / float64(median(ref.wall))
		verdict := "met"
		if got < *target {
			verdict = "MISSED"
		}
		fmt.Printf("\nTarget: `%s` at least %.2fx the time of `%s` (median wall): %s (%.2fx).\n", all[1].cmd, *target, ref.cmd, verdict, got)
	}
}

// runOnce runs cmd with its output discarded and returns its wall time,
// CPU time (user + system) and exit code.
func runOnce(cmd string, timeout time.Duration) (time.Duration, time.Duration, int, error) {
	args := strings.Fields(cmd)
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	c := exec.CommandContext(ctx, args[0], args[1:]...)
	start := time.Now()
	err := c.Run()
	wall := time.Since(start)
	if ctx.Err() != nil {
		return 0, 0, 0, fmt.Errorf("took longer than %v", timeout)
	}
	var ee *exec.ExitError
	if err != nil && !errors.As(err, &ee) {
		return 0, 0, 0, err
	}
	ps := c.ProcessState
	return wall, ps.UserTime() + ps.SystemTime(), ps.ExitCode(), nil
}

func median(d []time.Duration) time.Duration {
	s := slices.Clone(d)
	slices.Sort(s)
	if len(s)%2 == 1 {
		return s[len(s)/2]
	}
	return (s[len(s)/2-1] + s[len(s)/2]) / 2
}

func mean(d []time.Duration) time.Duration {
	var t time.Duration
	for _, x := range d {
		t += x
	}
	return t / time.Duration(len(d))
}

func ms(d time.Duration) string { return fmt.Sprintf("%.1f ms", float64(d)/float64(time.Millisecond)) }

// ratio says how many times slower d is than ref ("1.00x" for ref itself).
func ratio(d, ref time.Duration) string {
	if ref == 0 {
		return "-"
	}
	return fmt.Sprintf("%.2fx", float64(d)/float64(ref))
}

func codes(m map[int]int) string {
	var parts []string
	for code, n := range m {
		parts = append(parts, fmt.Sprintf("%d×%d", n, code))
	}
	slices.Sort(parts)
	return strings.Join(parts, " ")
}
