// Command scan-bench is portolan's scan benchmark: it builds a test network
// with internal/netlab (a scanner namespace and a target namespace with a
// known set of open TCP ports, some ports silently dropped by nftables, the
// rest closed), runs portolan and the anchors (nmap -sT, naabu's connect
// scan when given) against the same target in the same run, and prints wall
// time, recall, false opens and the ratio to portolan; then portolan's peak
// RSS over a 10-million-probe space. Run it through run.sh, as root.
//
// Traffic stays inside the two namespaces it makes (198.18.0.0/15 and
// fd00::/8, no default route); every command has a time limit; the
// namespaces are removed on exit, on SIGINT and SIGTERM, and by the next
// run's sweep if the process was killed.
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"portolan/internal/netlab"
)

type config struct {
	portolan, naabu string
	runs            int
	seed            uint64
	nOpen, nDrop    int
	limit           time.Duration
	outDir          string
	only            string // comma-separated tool names; empty = all
	scenarios       string // comma-separated scenario names; empty = all
	memory          bool
	silentFor       time.Duration
	sweep           bool
	hold            bool
	udp             bool
}

func main() {
	var c config
	flag.StringVar(&c.portolan, "portolan", "", "portolan `binary` to benchmark (required)")
	flag.StringVar(&c.naabu, "naabu", "", "naabu `binary`; empty leaves naabu out")
	flag.IntVar(&c.runs, "runs", 3, "runs of every tool in every scenario")
	flag.Uint64Var(&c.seed, "seed", 20260521, "seed of the open and dropped port sets")
	flag.IntVar(&c.nOpen, "open", 200, "open ports on the target")
	flag.IntVar(&c.nDrop, "dropped", 1000, "ports the target drops silently in the dropped scenarios")
	flag.DurationVar(&c.limit, "limit", 300*time.Second, "time limit of one tool run")
	flag.StringVar(&c.outDir, "out", "", "`dir` for raw outputs and results.md (default: a new dir under /tmp)")
	flag.StringVar(&c.only, "tools", "", "comma-separated tools to run (default: all)")
	flag.StringVar(&c.scenarios, "scenarios", "", "comma-separated scenarios to run (default: all)")
	flag.BoolVar(&c.memory, "memory", true, "measure portolan's peak RSS over a 10M-probe space (--dry-run)")
	flag.DurationVar(&c.silentFor, "silent", 400*time.Second, "also scan 198.19.0.0/16 x 150 silent ports for this long, sampling RSS (0: skip)")
	flag.BoolVar(&c.sweep, "sweep", false, "only remove namespaces left by killed runs, then exit")
	flag.BoolVar(&c.udp, "udp", false, "run the UDP benchmark instead: portolan -sU --top-ports 100 against nmap -sU --top-ports 100 (scenarios udp-v4, udp-v6)")
	flag.BoolVar(&c.hold, "hold", false, "build the network (dropped ports on), print how to reach it, and wait for Ctrl-C: for profiling by hand")
	flag.Parse()

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := run(ctx, c)
	stop()
	if err != nil {
		fmt.Fprintln(os.Stderr, "scan-bench:", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, c config) error {
	if c.sweep {
		return netlab.SweepStale()
	}
	if os.Geteuid() != 0 {
		return errors.New("needs root (network namespaces)")
	}
	if c.portolan == "" {
		return errors.New("-portolan is required")
	}
	for _, p := range []string{c.portolan, "nmap", "masscan", "nft", "ip"} {
		if _, err := exec.LookPath(p); err != nil {
			return fmt.Errorf("%s: %w (apt-get install nmap masscan nftables iproute2)", p, err)
		}
	}
	if c.outDir == "" {
		c.outDir = filepath.Join(os.TempDir(), "scan-bench-"+time.Now().UTC().Format("20060102-150405"))
	}
	if err := os.MkdirAll(c.outDir, 0o755); err != nil {
		return err
	}

	open, dropped := pickPorts(c.seed, c.nOpen, c.nDrop)
	tb, err := newTestbed(open, dropped)
	if err != nil {
		return fmt.Errorf("test network: %w", err)
	}
	defer func() {
		if err := tb.Close(); err != nil {
			fmt.Fprintln(os.Stderr, "scan-bench: remove test network:", err)
		}
	}()
	if err := tb.check(ctx); err != nil {
		return err
	}

	if c.hold {
		return tb.holdOpen(ctx)
	}
	if c.udp {
		return runUDP(ctx, c, tb)
	}

	env := describeEnv(ctx, tb, c)
	fmt.Print(env)
	fmt.Printf("target: %d open ports (seed %d), %d dropped in the dropped scenarios; outputs in %s\n\n",
		len(open), c.seed, len(dropped), c.outDir)

	scs := []scenario{
		{name: "all-v4", addr: tb.link.B4},
		{name: "all-v6", addr: tb.link.B6},
		{name: "dropped-v4", addr: tb.link.B4, filter: filterDropped},
		{name: "dropped-v6", addr: tb.link.B6, filter: filterDropped},
		// A server behind an ordinary firewall, scanned as a pentester
		// would: default host discovery (no -Pn), the first 2000 ports and
		// the open ones; everything else is dropped.
		{name: "firewalled-v4", addr: tb.link.B4, filter: filterFirewall, ports: firewallPorts(open)},
		{name: "firewalled-v6", addr: tb.link.B6, filter: filterFirewall, ports: firewallPorts(open)},
	}
	scs = slices.DeleteFunc(scs, func(s scenario) bool { return !picked(c.scenarios, s.name) })
	ts := slices.DeleteFunc(tools(c.portolan, c.naabu, tb.link), func(t tool) bool { return !picked(c.only, t.name) })

	if slices.ContainsFunc(ts, func(t tool) bool { return strings.HasPrefix(t.name, "masscan") }) {
		tickCtx, stopTick := context.WithCancel(ctx)
		defer stopTick()
		go tb.tick(tickCtx)
	}
	var rows []row
	var ceil []ceilRow
	for r := 1; r <= c.runs && ctx.Err() == nil; r++ {
		for _, sc := range scs {
			if ctx.Err() != nil {
				break
			}
			if err := tb.setFilter(ctx, sc.filter); err != nil {
				if ctx.Err() != nil {
					break
				}
				return err
			}
			if sc.ports == "" && picked(c.only, "raw-ceiling") {
				cr := tb.rawCeiling(sc, r)
				ceil = append(ceil, cr)
				fmt.Fprintln(os.Stderr, cr.line())
			}
			// Rotate the order so no tool always runs right after another.
			for i := range ts {
				t := ts[(i+r-1)%len(ts)]
				if ctx.Err() != nil {
					break
				}
				if t.args(sc, "", r) == nil {
					continue // the tool does not do this scenario
				}
				rw := tb.runTool(ctx, c, t, sc, r)
				rows = append(rows, rw)
				fmt.Fprintln(os.Stderr, rw.line())
			}
		}
	}
	if err := tb.setFilter(ctx, filterNone); err != nil && ctx.Err() == nil {
		return err
	}

	var mem []memRow
	if c.memory && ctx.Err() == nil {
		mem = append(mem, tb.memDryRun(ctx, c))
	}
	if c.silentFor > 0 && ctx.Err() == nil {
		mem = append(mem, tb.memSilent(ctx, c))
	}

	rep := report(rows, ceil, mem, scs, ts, c)
	fmt.Print(rep.text)
	md := env + "\n" + rep.markdown
	if err := os.WriteFile(filepath.Join(c.outDir, "results.md"), []byte(md), 0o644); err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(c.outDir, "runs.tsv"), []byte(tsv(rows)), 0o644); err != nil {
		return err
	}
	fmt.Printf("\nmarkdown: %s\n", filepath.Join(c.outDir, "results.md"))
	if ctx.Err() != nil {
		return fmt.Errorf("interrupted: %w", ctx.Err())
	}
	return nil
}

// firewallPorts is the firewalled scenarios' port spec: 1-2000 and the
// open ports (a full -p- of 65,000 dropped ports would take nmap hours).
func firewallPorts(open []uint16) string {
	parts := []string{"1-2000"}
	for _, p := range open {
		if p > 2000 {
			parts = append(parts, strconv.Itoa(int(p)))
		}
	}
	return strings.Join(parts, ",")
}

func picked(list, name string) bool {
	return list == "" || slices.Contains(strings.Split(list, ","), name)
}

// check makes sure the network behaves as the scoring assumes: an open
// port accepts and a closed one refuses, over both families.
func (tb *testbed) check(ctx context.Context) error {
	closed := uint16(1)
	for tb.openSet[closed] || tb.dropSet[closed] {
		closed++
	}
	for _, a := range []netip.Addr{tb.link.B4, tb.link.B6} {
		ctx, cancel := context.WithTimeout(ctx, 2*time.Second)
		c, err := tb.scanner.DialContext(ctx, "tcp", netip.AddrPortFrom(a, tb.open[0]).String())
		if err != nil {
			cancel()
			return fmt.Errorf("check: open port %d on %s: %w", tb.open[0], a, err)
		}
		c.Close()
		_, err = tb.scanner.DialContext(ctx, "tcp", netip.AddrPortFrom(a, closed).String())
		cancel()
		if !errors.Is(err, syscall.ECONNREFUSED) {
			return fmt.Errorf("check: closed port %d on %s: %v; want connection refused", closed, a, err)
		}
	}
	return nil
}

// row is one tool run in one scenario.
type row struct {
	tool, scenario string
	run            int
	m              measured
	found          int // expected open ports found
	falseOpen      int
	filtered       int // ports reported filtered; -1: the format does not say
	want           int
	load           float64
	parseErr       error
}

func (r row) ok() bool { return r.m.err == nil && !r.m.timedOut && r.parseErr == nil }

func (r row) line() string {
	s := fmt.Sprintf("run %d %-11s %-16s %7.2fs  cpu %.2f+%.2fs  rss %s  open %d/%d  false %d  filtered %d  load %.1f",
		r.run, r.scenario, r.tool, r.m.wall.Seconds(), r.m.user.Seconds(), r.m.sys.Seconds(), mib(r.m.maxRSSKB),
		r.found, r.want, r.falseOpen, r.filtered, r.load)
	switch {
	case r.m.timedOut:
		s += "  TIMED OUT"
	case r.m.err != nil:
		s += "  ERROR " + r.m.err.Error()
	case r.parseErr != nil:
		s += "  PARSE " + r.parseErr.Error()
	}
	return s
}

func (tb *testbed) runTool(ctx context.Context, c config, t tool, sc scenario, run int) row {
	base := filepath.Join(c.outDir, fmt.Sprintf("%s.%s.%d", t.name, sc.name, run))
	out := base + ".out"
	os.Remove(out)
	rw := row{tool: t.name, scenario: sc.name, run: run, want: len(tb.open), load: load1()}
	rw.m = measure(ctx, tb.scanner, c.limit, t.args(sc, out, run), base+".stdout", 0)
	if _, err := os.Stat(out); err != nil {
		// Some tools write nothing to -o when they find nothing; stdout then.
		out = base + ".stdout"
	}
	open, filtered, err := t.parse(out, sc.addr) // filtered -1: not in this format
	rw.parseErr, rw.filtered = err, filtered
	for p := range open {
		if tb.openSet[p] {
			rw.found++
		} else {
			rw.falseOpen++
		}
	}
	return rw
}

// memRow is a peak-memory measurement of portolan.
type memRow struct {
	name   string
	probes string
	m      measured
	note   string
}

// memDryRun runs the whole engine over a /16 x 150 ports (9,830,400 probes)
// without sending anything.
func (tb *testbed) memDryRun(ctx context.Context, c config) memRow {
	// --dry-run computes the plan without running the engine (issue 14):
	// this row is now the cost of planning, not of the engine's bookkeeping,
	// which the silent-network row measures.
	argv := []string{c.portolan, "scan", "198.18.0.0/16", "-p", "1-150", "--dry-run", "--no-store", "--seed", "1"}
	m := measure(ctx, tb.scanner, 10*c.limit, argv, filepath.Join(c.outDir, "mem-dryrun.stdout"), time.Second)
	return memRow{name: "dry-run plan 198.18.0.0/16 x 1-150", probes: "9,830,400", m: m, note: "planned, not run"}
}

// memSilent scans a /16 that never answers for c.silentFor, then stops the
// scan with SIGINT, sampling the resident set all along.
func (tb *testbed) memSilent(ctx context.Context, c config) memRow {
	argv := []string{c.portolan, "scan", silentNet.String(), "-p", "1-150", "--no-store", "--format", "list",
		"--seed", "1", "--stats-every", "5s"}
	stdout := filepath.Join(c.outDir, "mem-silent.stdout")
	m := measure(ctx, tb.scanner, c.silentFor, argv, stdout, time.Second)
	note := fmt.Sprintf("stopped after %s", c.silentFor)
	if st, ok := lastStats(strings.TrimSuffix(stdout, ".stdout") + ".stderr"); ok {
		note += "; " + st
	}
	if !m.timedOut {
		note = "finished"
	}
	return memRow{name: "silent 198.19.0.0/16 x 1-150", probes: "9,830,400", m: m, note: note}
}

// lastStats summarises the last --stats-every line of a portolan stderr.
func lastStats(path string) (string, bool) {
	b, err := os.ReadFile(path)
	if err != nil {
		return "", false
	}
	lines := strings.Split(strings.TrimSpace(string(b)), "\n")
	for i := len(lines) - 1; i >= 0; i-- {
		var st struct {
			Type string `json:"type"`
			Done uint64 `json:"done"`
			Sent uint64 `json:"sent"`
		}
		if json.Unmarshal([]byte(lines[i]), &st) == nil && st.Type == "stats" {
			return fmt.Sprintf("%d ports done, %d probes sent", st.Done, st.Sent), true
		}
	}
	return "", false
}

// describeEnv says when, where and with what the benchmark ran.
func describeEnv(ctx context.Context, tb *testbed, c config) string {
	var b strings.Builder
	first := func(argv ...string) string {
		cmd := exec.CommandContext(ctx, argv[0], argv[1:]...)
		out, err := cmd.CombinedOutput()
		if err != nil && len(out) == 0 {
			return "? (" + err.Error() + ")"
		}
		s, _, _ := strings.Cut(strings.TrimSpace(string(out)), "\n")
		return s
	}
	cpu := "?"
	if bs, err := os.ReadFile("/proc/cpuinfo"); err == nil {
		for _, l := range strings.Split(string(bs), "\n") {
			if v, ok := strings.CutPrefix(l, "model name"); ok {
				cpu = strings.TrimSpace(strings.TrimPrefix(strings.TrimSpace(v), ":"))
				break
			}
		}
	}
	fmt.Fprintf(&b, "date:     %s\n", time.Now().UTC().Format("2006-01-02 15:04 MST"))
	fmt.Fprintf(&b, "machine:  %s CPUs (nproc), %s, kernel %s, load1 at start %.1f\n", first("nproc"), cpu, first("uname", "-r"), load1())
	fmt.Fprintf(&b, "portolan: %s, built from %s\n", first(c.portolan, "version"), sourceTree(ctx))
	fmt.Fprintf(&b, "nmap:     %s\n", first("nmap", "--version"))
	fmt.Fprintf(&b, "masscan:  %s\n", first("masscan", "--version"))
	if c.naabu != "" {
		fmt.Fprintf(&b, "naabu:    %s\n", naabuVersion(ctx, c.naabu))
	} else {
		b.WriteString("naabu:    not run (not built)\n")
	}
	return b.String()
}

func mib(kb int64) string { return strconv.FormatFloat(float64(kb)/1024, 'f', 1, 64) + " MiB" }

// naabuVersion finds "Current Version: X" in naabu's banner.
func naabuVersion(ctx context.Context, path string) string {
	out, _ := exec.CommandContext(ctx, path, "-version").CombinedOutput()
	if _, v, ok := strings.Cut(string(out), "Current Version: "); ok {
		v, _, _ = strings.Cut(v, "\n")
		return "naabu " + strings.TrimSpace(v)
	}
	return "?"
}

// holdOpen keeps the network up for work by hand until ctx is done.
func (tb *testbed) holdOpen(ctx context.Context) error {
	if err := tb.setFilter(ctx, filterDropped); err != nil {
		return err
	}
	fmt.Printf("scanner: ip netns exec %s ...\ntarget:  ip netns exec %s ...  (%s, %s; %d open, %d dropped)\n",
		tb.scanner.Netns(), tb.target.Netns(), tb.link.B4, tb.link.B6, len(tb.open), len(tb.dropped))
	fmt.Printf("dropped ports: nft delete table inet scanbench (in the target) to stop dropping\nCtrl-C removes the network\n")
	<-ctx.Done()
	return nil
}

// sourceTree names the commit portolan was built from (run.sh builds the
// working tree) and the scan-related files changed on top of it.
func sourceTree(ctx context.Context) string {
	out, err := exec.CommandContext(ctx, "git", "rev-parse", "--short", "HEAD").Output()
	if err != nil {
		return "an unknown tree"
	}
	s := "commit " + strings.TrimSpace(string(out))
	st, _ := exec.CommandContext(ctx, "git", "status", "--porcelain", "--", "cmd", "internal/scan", "internal/cli/scan.go", "internal/output", "internal/target").Output()
	var changed []string
	for _, l := range strings.Split(strings.TrimRight(string(st), "\n"), "\n") {
		if len(l) > 3 {
			changed = append(changed, l[3:])
		}
	}
	if len(changed) > 0 {
		s += " + uncommitted " + strings.Join(changed, " ")
	}
	return s
}
