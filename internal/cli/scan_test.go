package cli

import (
	"bytes"
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"portolan/internal/portspec"
	"portolan/internal/scan"
	"portolan/internal/scanjob"
	"portolan/internal/store"
	"portolan/internal/target"
	"portolan/internal/testenv"
)

// The end-to-end tests of "portolan scan" run portolan as a child process,
// as a user would, so that SIGINT and SIGKILL hit a real process: they
// re-exec this test binary with mainEnv set, and init then runs Main with
// the signal handling of cmd/portolan. (TestMain's "portolan" command, for
// testscript, runs without it.) Re-executing needs no build step and tests
// exactly the code under test.
const mainEnv = "PORTOLAN_TEST_MAIN"

func init() {
	if os.Getenv(mainEnv) != "1" {
		return
	}
	// As cmd/portolan/main.go does.
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := Main(ctx, os.Args[1:], os.Stdin, os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}

// portolanExe is the path of this test binary, which runs portolan when
// started with mainEnv=1.
func portolanExe(t testing.TB) string {
	t.Helper()
	exe, err := os.Executable()
	if err != nil {
		t.Fatalf("os.Executable: %v", err)
	}
	return exe
}

// portolanEnv is the environment of a portolan child: no colour, and a
// store under dir unless the test passes --db.
func portolanEnv(dir string) []string {
	return append(os.Environ(), mainEnv+"=1", "NO_COLOR=1", "XDG_DATA_HOME="+dir)
}

// portolanCmd returns "portolan args..." as a child process of the test.
func portolanCmd(t testing.TB, ctx context.Context, args ...string) *exec.Cmd {
	t.Helper()
	cmd := exec.CommandContext(ctx, portolanExe(t), args...)
	cmd.Env = portolanEnv(t.TempDir())
	return cmd
}

// childResult is what a finished child printed and its exit code.
type childResult struct {
	stdout, stderr string
	code           int
}

func (r childResult) String() string {
	return fmt.Sprintf("exit %d\nstdout:\n%s\nstderr:\n%s", r.code, r.stdout, r.stderr)
}

// runChild runs cmd to the end. Only a failure to start fails the test; the
// exit code is the caller's to check.
func runChild(t testing.TB, cmd *exec.Cmd) childResult {
	t.Helper()
	var out, errOut bytes.Buffer
	if cmd.Stdout == nil {
		cmd.Stdout = &out
	}
	if cmd.Stderr == nil {
		cmd.Stderr = &errOut
	}
	err := cmd.Run()
	var ee *exec.ExitError
	switch {
	case errors.As(err, &ee):
	case err != nil:
		t.Fatalf("run %s: %v", strings.Join(cmd.Args, " "), err)
	}
	return childResult{out.String(), errOut.String(), cmd.ProcessState.ExitCode()}
}

// resultKey names one port of one address.
type resultKey struct {
	addr  netip.Addr
	port  portspec.Port
	proto portspec.Proto
}

func (k resultKey) String() string {
	return netip.AddrPortFrom(k.addr, uint16(k.port)).String() + "/" + k.proto.String()
}

// resultOutcome is what a user compares between two scans of the same space.
type resultOutcome struct {
	State  string
	Reason string
}

// resultSet keys results by port and fails the test on a duplicate.
func resultSet(t testing.TB, what string, results []scan.Result) map[resultKey]resultOutcome {
	t.Helper()
	m := make(map[resultKey]resultOutcome, len(results))
	dups := 0
	for _, r := range results {
		k := resultKey{r.Addr, r.Port, r.Proto}
		if _, ok := m[k]; ok {
			if dups++; dups <= 5 {
				t.Errorf("%s: %s twice", what, k)
			}
		}
		m[k] = resultOutcome{r.State.String(), r.Reason}
	}
	if dups > 5 {
		t.Errorf("%s: %d duplicates in all", what, dups)
	}
	return m
}

// storedScan reads scan id and its results from the store at path.
func storedScan(t testing.TB, path string, id int64) (store.ScanInfo, []scan.Result) {
	t.Helper()
	ctx := context.Background()
	db, err := store.Open(ctx, path)
	if err != nil {
		t.Fatalf("open store: %v", err)
	}
	defer db.Close()
	si, err := db.Scan(ctx, id)
	if err != nil {
		t.Fatalf("read scan %d: %v", id, err)
	}
	results, err := db.Results(ctx, id, store.Filter{})
	if err != nil {
		t.Fatalf("read results of scan %d: %v", id, err)
	}
	return si, results
}

// jsonlResults parses portolan's JSON Lines output.
func jsonlResults(t testing.TB, out string) []scan.Result {
	t.Helper()
	var rs []scan.Result
	for i, line := range strings.Split(strings.TrimSpace(out), "\n") {
		if line == "" {
			continue
		}
		var r scan.Result
		if err := json.Unmarshal([]byte(line), &r); err != nil {
			t.Fatalf("jsonl line %d %q: %v", i+1, line, err)
		}
		rs = append(rs, r)
	}
	return rs
}

// diffSets compares two result sets, reporting at most a few differences.
func diffSets(t testing.TB, what string, got, want map[resultKey]resultOutcome) {
	t.Helper()
	if len(got) != len(want) {
		t.Errorf("%s: %d ports; want %d", what, len(got), len(want))
	}
	n := 0
	for k, w := range want {
		g, ok := got[k]
		switch {
		case !ok:
			t.Errorf("%s: %s missing (a gap); want %v", what, k, w)
		case g != w:
			t.Errorf("%s: %s = %v; want %v", what, k, g, w)
		default:
			continue
		}
		if n++; n == 10 {
			t.Errorf("%s: and more", what)
			return
		}
	}
	for k := range got {
		if _, ok := want[k]; !ok {
			t.Errorf("%s: %s is outside the space", what, k)
		}
	}
}

// countingListener is an open port that counts the connections it accepts,
// so a test can prove a command sent nothing. It listens on an address of
// 127.0.0.0/8 of its own, which other tests' scans of 127.0.0.1 do not hit.
type countingListener struct {
	ln       net.Listener
	addr     netip.Addr
	port     portspec.Port
	accepted atomic.Int64
}

func newCountingListener(t testing.TB) *countingListener {
	t.Helper()
	// 127.x.y.z from the pid: distinct between concurrent test processes.
	pid := os.Getpid()
	addr := netip.AddrFrom4([4]byte{127, byte(100 + pid>>16&0x7f), byte(pid >> 8), byte(pid) | 1})
	ln, err := net.Listen("tcp4", netip.AddrPortFrom(addr, 0).String())
	if err != nil { // systems with only 127.0.0.1 on lo
		addr = netip.AddrFrom4([4]byte{127, 0, 0, 1})
		ln, err = net.Listen("tcp4", netip.AddrPortFrom(addr, 0).String())
	}
	if err != nil {
		t.Fatalf("listen: %v", err)
	}
	t.Cleanup(func() { ln.Close() })
	cl := &countingListener{ln: ln, addr: addr, port: portspec.Port(ln.Addr().(*net.TCPAddr).Port)}
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			cl.accepted.Add(1)
			c.Close()
		}
	}()
	return cl
}

// unusedPort returns a port of addr with no listener. On the listener's
// own address of 127.0.0.0/8 nothing else takes it meanwhile.
func unusedPort(t testing.TB, addr netip.Addr) portspec.Port {
	t.Helper()
	ln, err := net.Listen("tcp", netip.AddrPortFrom(addr, 0).String())
	if err != nil {
		t.Fatalf("listen: %v", err)
	}
	defer ln.Close()
	return portspec.Port(ln.Addr().(*net.TCPAddr).Port)
}

// TestScanBadInputSendsNothing checks that a bad port spec or a refused
// target fails with exit 2 before anything is sent or stored, even when the
// rest of the command line names a port that is open.
func TestScanBadInputSendsNothing(t *testing.T) {
	ln := newCountingListener(t)
	target, port := ln.addr.String(), strconv.Itoa(int(ln.port))
	db := filepath.Join(t.TempDir(), "scans.db")
	tests := []struct {
		name   string
		args   []string
		stderr string
	}{
		{"port out of range", []string{target, "-p", port + ",70000"}, "70000 out of range"},
		{"bad --exclude-ports", []string{target, "-p", port, "--exclude-ports", "1-x"}, "--exclude-ports"},
		{"--exclude-ports leaves nothing", []string{target, "-p", port, "--exclude-ports", port}, "leaves no port"},
		{"blocked target beside a good one", []string{target, "224.0.0.1", "-p", port}, "--include-reserved"},
		{"bad target beside a good one", []string{target, "127.0.0.1/33", "-p", port}, `prefix length "33"`},
		{"bad shard", []string{target, "-p", port, "--shard", "3/2"}, "--shard"},
		{"UDP port in a connect scan", []string{target, "-p", port + ",U:53"}, "UDP"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			args := append([]string{"scan", "--db", db}, tt.args...)
			r := runChild(t, portolanCmd(t, t.Context(), args...))
			if r.code != ExitUsage || !strings.Contains(r.stderr, tt.stderr) {
				t.Errorf("portolan %s: %v\nwant exit %d and %q on stderr", strings.Join(args, " "), r, ExitUsage, tt.stderr)
			}
		})
	}
	if n := ln.accepted.Load(); n != 0 {
		t.Errorf("the open port accepted %d connections from refused scans; want 0", n)
	}
	if _, err := os.Stat(db); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("refused scans left a store behind (stat %s: %v)", db, err)
	}

	// The control: the same port, scanned for real, is reached.
	r := runChild(t, portolanCmd(t, t.Context(), "scan", "-sT", target, "-p", port, "--no-store", "--format", "list"))
	if r.code != ExitOK || !strings.Contains(r.stdout, target+":"+port) {
		t.Fatalf("control scan: %v\nwant %s:%s open", r, target, port)
	}
	for deadline := time.Now().Add(10 * time.Second); ln.accepted.Load() == 0 && time.Now().Before(deadline); {
		time.Sleep(10 * time.Millisecond)
	}
	if n := ln.accepted.Load(); n != 1 {
		t.Errorf("control scan: the open port accepted %d connections; want 1", n)
	}
}

// dryRunPlan runs "portolan scan ... --dry-run --json" in process.
func dryRunPlan(t *testing.T, args ...string) dryPlan {
	t.Helper()
	var out, errOut bytes.Buffer
	args = append([]string{"scan", "--dry-run", "--json"}, args...)
	if code := Main(t.Context(), args, nil, &out, &errOut); code != ExitOK {
		t.Fatalf("portolan %s: exit %d: %s", strings.Join(args, " "), code, errOut.String())
	}
	var p dryPlan
	if err := json.Unmarshal(out.Bytes(), &p); err != nil {
		t.Fatalf("portolan %s: %v\n%s", strings.Join(args, " "), err, out.String())
	}
	return p
}

// TestScanDryRunShards checks the plans of the n shards of one seed: each
// names the whole space, their probes add up to it, and their first probes
// are distinct.
func TestScanDryRunShards(t *testing.T) {
	const targets, ports = "198.18.0.0/22", "1-50" // 1024 x 50
	const space = 1024 * 50
	whole := dryRunPlan(t, targets, "-p", ports, "--seed", "9")
	if whole.Space != space || whole.Probes != space {
		t.Fatalf("whole space: probes %d of %d; want %d of %d", whole.Probes, whole.Space, space, space)
	}
	for _, n := range []int{1, 2, 7, 64} {
		var sum uint64
		seen := map[string]int{}
		for i := 1; i <= n; i++ {
			shard := fmt.Sprintf("%d/%d", i, n)
			p := dryRunPlan(t, targets, "-p", ports, "--seed", "9", "--shard", shard)
			if p.Space != space || p.Seed != 9 || p.Shard != shard {
				t.Errorf("shard %s: space %d, seed %d, shard %q; want %d, 9, %q", shard, p.Space, p.Seed, p.Shard, space, shard)
			}
			if len(p.First) == 0 {
				t.Errorf("shard %s: no probes listed", shard)
			}
			for _, probe := range p.First {
				if j, ok := seen[probe]; ok {
					t.Errorf("shard %s: first probe %s is also in shard %d/%d", shard, probe, j, n)
				}
				seen[probe] = i
			}
			sum += p.Probes
		}
		if sum != space {
			t.Errorf("%d shards plan %d probes in all; want the space, %d", n, sum, space)
		}
	}
	// The seed fixes the order; another seed gives another.
	again := dryRunPlan(t, targets, "-p", ports, "--seed", "9")
	other := dryRunPlan(t, targets, "-p", ports, "--seed", "10")
	if !slices.Equal(again.First, whole.First) {
		t.Errorf("seed 9 twice: first probes %v, then %v", whole.First, again.First)
	}
	if slices.Equal(other.First, whole.First) {
		t.Errorf("seeds 9 and 10 give the same first probes %v", other.First)
	}
}

// scanStatsLine is one NDJSON object of --stats-every.
type scanStatsLine struct {
	Type     string   `json:"type"`
	Percent  *float64 `json:"percent"`
	Done     *uint64  `json:"done"`
	Total    *uint64  `json:"total"`
	Complete bool     `json:"complete"`
}

// TestScanStatsEvery checks --stats-every: NDJSON progress objects on
// stderr with the type, percent and done/total, a summary last, and no
// terminal progress line when stderr is not a terminal.
func TestScanStatsEvery(t *testing.T) {
	ln := newCountingListener(t)
	const ports = 400
	// 400 ports at 500/s: about 0.8 s, so several 200 ms reports.
	r := runChild(t, portolanCmd(t, t.Context(), "scan", ln.addr.String(), "-p", fmt.Sprintf("%d-%d", ln.port, int(ln.port)+ports-1),
		"--rate", "500", "--stats-every", "200ms", "--format", "jsonl", "--no-store"))
	if r.code != ExitOK {
		t.Fatalf("scan: %v", r)
	}
	if strings.Contains(r.stderr, "\r") {
		t.Errorf("stderr is not a terminal but has a progress line: %q", r.stderr)
	}
	var lines []scanStatsLine
	for i, line := range strings.Split(strings.TrimSpace(r.stderr), "\n") {
		var s scanStatsLine
		if err := json.Unmarshal([]byte(line), &s); err != nil {
			t.Fatalf("stderr line %d %q is not JSON: %v\nstderr:\n%s", i+1, line, err, r.stderr)
		}
		if s.Percent == nil || s.Done == nil || s.Total == nil {
			t.Errorf("stderr line %d %q: want percent, done and total", i+1, line)
			continue
		}
		lines = append(lines, s)
	}
	if len(lines) < 2 {
		t.Fatalf("%d stats lines; want progress and a summary:\n%s", len(lines), r.stderr)
	}
	var last uint64
	for i, s := range lines[:len(lines)-1] {
		if s.Type != "stats" || *s.Total != ports || *s.Done < last || *s.Done > ports {
			t.Errorf("line %d: type %q, done %d of %d; want stats, %d <= done <= %d", i+1, s.Type, *s.Done, *s.Total, last, ports)
		}
		if want := 100 * float64(*s.Done) / float64(*s.Total); *s.Percent < want-0.1 || *s.Percent > want+0.1 {
			t.Errorf("line %d: percent %.2f for %d of %d", i+1, *s.Percent, *s.Done, *s.Total)
		}
		last = *s.Done
	}
	sum := lines[len(lines)-1]
	if sum.Type != "summary" || *sum.Done != ports || *sum.Total != ports || *sum.Percent != 100 || !sum.Complete {
		t.Errorf("last line: %+v; want a complete summary of %d ports", sum, ports)
	}
	if got := len(jsonlResults(t, r.stdout)); got != ports {
		t.Errorf("%d results on stdout; want %d", got, ports)
	}
}

// TestScanXMLValidates scans real listeners into nmap XML, validates it with
// xmllint against nmap's own DTD, and reads it back with two other
// consumers: Python's ElementTree and nmap's ndiff, which compares two
// scans as a user of nmap would.
func TestScanXMLValidates(t *testing.T) {
	const dtd = "/usr/share/nmap/nmap.dtd"
	xmllint := testenv.RequireCommand(t, "xmllint")
	if _, err := os.Stat(dtd); err != nil {
		if testenv.InCI() {
			t.Fatalf("nmap's DTD: %v (scripts/deps.sh installs nmap-common)", err)
		}
		t.Skipf("nmap's DTD: %v (scripts/deps.sh installs nmap-common)", err)
	}
	ln := newCountingListener(t)
	target, open := ln.addr.String(), strconv.Itoa(int(ln.port))
	closedPort := unusedPort(t, ln.addr)
	closed := strconv.Itoa(int(closedPort))
	dir := t.TempDir()
	db := filepath.Join(dir, "scans.db")
	before := filepath.Join(dir, "before.xml")
	// A live scan writes XML to a file; "show" re-renders the stored scan.
	r := runChild(t, portolanCmd(t, t.Context(), "scan", "-sT", target, "-p", open+","+closed, "--db", db, "-o", before))
	if r.code != ExitOK {
		t.Fatalf("scan: %v", r)
	}
	shown := filepath.Join(dir, "shown.xml")
	if r := runChild(t, portolanCmd(t, t.Context(), "show", "1", "--db", db, "--format", "xml", "-o", shown)); r.code != ExitOK {
		t.Fatalf("show: %v", r)
	}
	for _, f := range []string{before, shown} {
		if out, err := exec.Command(xmllint, "--noout", "--dtdvalid", dtd, f).CombinedOutput(); err != nil {
			b, _ := os.ReadFile(f)
			t.Errorf("xmllint --dtdvalid %s %s: %v\n%s\n%s", dtd, filepath.Base(f), err, out, b)
		}
	}

	t.Run("ElementTree", func(t *testing.T) {
		python := testenv.RequireCommand(t, "python3")
		const script = `import sys, xml.etree.ElementTree as ET
root = ET.parse(sys.argv[1]).getroot()
assert root.tag == "nmaprun" and root.get("scanner") == "nmap", root.attrib
for h in root.iter("host"):
    addr = h.find("address").get("addr")
    for p in h.iter("port"):
        st = p.find("state")
        print(addr, p.get("portid"), p.get("protocol"), st.get("state"), st.get("reason"))
print("finished", root.find("runstats/finished").get("exit"))`
		out, err := exec.Command(python, "-c", script, before).CombinedOutput()
		if err != nil {
			t.Fatalf("python3 ElementTree: %v\n%s", err, out)
		}
		lines := []string{target + " " + open + " tcp open syn-ack", target + " " + closed + " tcp closed conn-refused"}
		if ln.port > closedPort { // nmap lists ports in order
			lines[0], lines[1] = lines[1], lines[0]
		}
		want := strings.Join(lines, "\n") + "\nfinished success\n"
		if diff := cmp.Diff(want, string(out)); diff != "" {
			t.Errorf("ports as ElementTree reads them (-want +got):\n%s", diff)
		}
	})

	t.Run("ndiff", func(t *testing.T) {
		ndiff := testenv.RequireCommand(t, "ndiff")
		// The same ports again after the open one has closed: ndiff reads
		// both files and reports the change.
		after := filepath.Join(dir, "after.xml")
		ln.ln.Close()
		r := runChild(t, portolanCmd(t, t.Context(), "scan", "-sT", target, "-p", open+","+closed, "--no-store", "-o", after))
		if r.code != ExitOK {
			t.Fatalf("scan after closing: %v", r)
		}
		out, err := exec.Command(ndiff, before, after).CombinedOutput()
		var ee *exec.ExitError
		if !errors.As(err, &ee) || ee.ExitCode() != 1 {
			t.Fatalf("ndiff before.xml after.xml: %v (want exit 1: differences)\n%s", err, out)
		}
		if want := "-" + open + "/tcp open"; !strings.Contains(string(out), want) {
			t.Errorf("ndiff output lacks %q:\n%s", want, out)
		}
		if want := "+" + open + "/tcp closed"; !strings.Contains(string(out), want) {
			t.Errorf("ndiff output lacks %q:\n%s", want, out)
		}
		if out, err := exec.Command(ndiff, before, before).CombinedOutput(); err != nil {
			t.Errorf("ndiff of a file with itself: %v\n%s", err, out)
		}
	})
}

// waitCheckpoint polls the store at path until scan 1 has a checkpoint past
// 0. It returns false if exited is closed first.
func waitCheckpoint(t testing.TB, path string, exited <-chan struct{}) bool {
	t.Helper()
	ctx := context.Background()
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	deadline := time.After(60 * time.Second)
	var db *store.Store
	defer func() {
		if db != nil {
			db.Close()
		}
	}()
	for {
		select {
		case <-exited:
			return false
		case <-deadline:
			t.Fatalf("no checkpoint in %s within 60 s", path)
		case <-tick.C:
		}
		if db == nil {
			if _, err := os.Stat(path); err != nil {
				continue
			}
			var err error
			if db, err = store.Open(ctx, path); err != nil {
				t.Fatalf("open store: %v", err)
			}
		}
		si, err := db.Scan(ctx, 1)
		if errors.Is(err, store.ErrNotFound) {
			continue
		}
		if err != nil {
			t.Fatalf("poll store: %v", err)
		}
		if si.Checkpoint > 0 {
			return true
		}
	}
}

// TestScanStoreFailureStops breaks the store under a running scan (its
// results table goes away): the scan stops at once with exit 1 and the
// store's error, instead of probing on with nowhere to keep the results.
func TestScanStoreFailureStops(t *testing.T) {
	ln := newCountingListener(t)
	db := filepath.Join(t.TempDir(), "scans.db")
	// 4000 ports at 1000/s: 4 s if nothing stopped it.
	cmd := portolanCmd(t, t.Context(), "scan", ln.addr.String(), "-p", "1-4000", "--rate", "1000", "--db", db, "--format", "jsonl")
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited, code := make(chan struct{}), make(chan int, 1)
	go func() { cmd.Wait(); code <- cmd.ProcessState.ExitCode(); close(exited) }()
	if !waitCheckpoint(t, db, exited) {
		t.Fatalf("no checkpoint before the scan ended: exit %d\n%s", <-code, stderr.String())
	}
	sqlDB, err := sql.Open("sqlite", db)
	if err != nil {
		t.Fatal(err)
	}
	defer sqlDB.Close()
	// Closed ports go to port_groups, the others to results: drop both.
	if _, err := sqlDB.Exec(`PRAGMA busy_timeout = 10000; DROP TABLE results; DROP TABLE port_groups`); err != nil {
		t.Fatalf("drop the results tables: %v", err)
	}
	if c := <-code; c != ExitError || !strings.Contains(stderr.String(), "no such table: ") {
		t.Fatalf("scan with a broken store: exit %d\nstderr:\n%s\nwant exit %d and the store's error", c, stderr.String(), ExitError)
	}
	if n := len(jsonlResults(t, stdout.String())); n >= 4000 {
		t.Errorf("the scan went on to the end (%d results) with a broken store", n)
	}
	var status string
	if err := sqlDB.QueryRow(`SELECT status FROM scans WHERE id = 1`).Scan(&status); err != nil || status != string(store.Failed) {
		t.Errorf("stored status %q, %v; want %q", status, err, store.Failed)
	}
}

// TestScanResumeRefusedWhileRunning: --resume of a scan that a live process
// is running is refused, naming that process, and leaves the scan alone.
func TestScanResumeRefusedWhileRunning(t *testing.T) {
	ln := newCountingListener(t)
	db := filepath.Join(t.TempDir(), "scans.db")
	// 4000 ports at 1000/s: 4 s, long enough to try a resume meanwhile.
	cmd := portolanCmd(t, t.Context(), "scan", ln.addr.String(), "-p", "1-4000", "--rate", "1000", "--db", db, "--format", "jsonl")
	cmd.Stdout, cmd.Stderr = io.Discard, io.Discard
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan struct{})
	go func() { cmd.Wait(); close(exited) }()
	defer func() { cmd.Process.Kill(); <-exited }()
	if !waitCheckpoint(t, db, exited) {
		t.Fatal("no checkpoint before the scan ended")
	}
	r := runChild(t, portolanCmd(t, t.Context(), "scan", "--resume", "1", "--db", db, "--format", "jsonl"))
	select {
	case <-exited:
		t.Skip("the first scan ended before the resume was tried (loaded machine)")
	default:
	}
	want := fmt.Sprintf("process %d is scanning it", cmd.Process.Pid)
	if r.code != ExitError || !strings.Contains(r.stderr, want) {
		t.Errorf("--resume of a running scan: %v\nwant exit %d and %q", r, ExitError, want)
	}
}

// TestScanResumeRefusedKeepsOutput: a --resume that is refused (the scan
// is finished) leaves the -o file as it was, and creates none that did
// not exist.
func TestScanResumeRefusedKeepsOutput(t *testing.T) {
	ln := newCountingListener(t)
	dir := t.TempDir()
	db := filepath.Join(dir, "scans.db")
	if r := runChild(t, portolanCmd(t, t.Context(), "scan", ln.addr.String(), "-p", "1-20", "--db", db, "--format", "jsonl")); r.code != 0 {
		t.Fatalf("first scan: %v", r)
	}
	kept := filepath.Join(dir, "kept.xml")
	const before = "results of an earlier run\n"
	if err := os.WriteFile(kept, []byte(before), 0o644); err != nil {
		t.Fatal(err)
	}
	fresh := filepath.Join(dir, "fresh.xml")
	for _, out := range []string{kept, fresh} {
		r := runChild(t, portolanCmd(t, t.Context(), "scan", "--resume", "1", "--db", db, "--format", "xml", "-o", out))
		if r.code == 0 {
			t.Fatalf("--resume of a finished scan -o %s: %v; want it refused", out, r)
		}
	}
	if b, err := os.ReadFile(kept); err != nil || string(b) != before {
		t.Errorf("-o file after a refused resume: %q, %v; want it untouched (%q)", b, err, before)
	}
	if _, err := os.Stat(fresh); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("a refused resume left %s behind (stat: %v)", fresh, err)
	}
}

// TestScanDryRunHugeSpace: the plan of two big prefixes x every port (over
// 10^12 probes) is computed, not run: it comes back with its first probes
// well inside a minute (the engine took minutes for a single /8), and a
// dry run stopped by Ctrl-C exits 130 like any interrupted scan.
func TestScanDryRunHugeSpace(t *testing.T) {
	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	defer cancel()
	var out, errOut bytes.Buffer
	args := []string{"scan", "--dry-run", "--json", "198.18.0.0/15", "10.0.0.0/8", "-p-", "--force", "--seed", "5", "--rate", "100000"}
	if code := Main(ctx, args, nil, &out, &errOut); code != ExitOK {
		t.Fatalf("portolan %s: exit %d: %s", strings.Join(args, " "), code, errOut.String())
	}
	var p dryPlan
	if err := json.Unmarshal(out.Bytes(), &p); err != nil {
		t.Fatalf("%v\n%s", err, out.String())
	}
	const space = (1<<17 + 1<<24) * 65535
	if p.Space != space || p.Probes != space || len(p.First) != dryFirst || p.Estimate != time.Duration(space/100000)*time.Second+time.Duration(space%100000)*10*time.Microsecond {
		t.Errorf("plan %+v; want %d probes, %d first, the estimate at 100000/s", p, uint64(space), dryFirst)
	}

	stopped, stop := context.WithCancel(t.Context())
	stop()
	if code := Main(stopped, args, nil, &out, &errOut); code != ExitInterrupted {
		t.Errorf("dry run with Ctrl-C: exit %d; want %d", code, ExitInterrupted)
	}
}

// TestProgressLine: the progress line says what a scan waits for, so it
// does not look stuck at 0% while silent hosts time out, or at 99.9%
// while banners are read.
func TestProgressLine(t *testing.T) {
	for _, tc := range []struct {
		st   scan.Stats
		want string
	}{
		{scan.Stats{Total: 1000, InFlight: 900}, "0/1000 ports  0 probes/s  0 open  900 in flight"},
		{scan.Stats{Total: 1000, Done: 999, Percent: 99.9, Banners: 1}, "reading 1 banners"},
	} {
		if got := progressLine(tc.st); !strings.Contains(got, tc.want) {
			t.Errorf("progressLine(%+v) = %q; want %q in it", tc.st, got, tc.want)
		}
	}
}

// TestScanHistoryTexts: history shows -p- as typed (not "-p -"), and a
// resumed scan's interruption says how far the whole scan got, its earlier
// runs included, not how far this run got through what was left.
func TestScanHistoryTexts(t *testing.T) {
	if text := (scanjob.Recipe{Ports: "-"}).PortText(); text != "-p-" {
		t.Errorf("PortText(-p-) = %q; want -p-", text)
	}
	hosts, err := target.Parse(t.Context(), []string{"198.18.0.0/30"}, nil, target.Options{IncludeReserved: true})
	if err != nil {
		t.Fatal(err)
	}
	ports := &portspec.Set{}
	for p := portspec.Port(1); p <= 250; p++ {
		ports.Add(portspec.TCP, p)
	}
	space, err := target.NewSpace(hosts, ports)
	if err != nil {
		t.Fatal(err)
	}
	r := &scanRun{plan: &scanPlan{space: space, hosts: hosts, ports: ports}}
	r.tally.Probes = 737 // 500 from the first run, 237 from this one
	if got := r.percent(); got != 73.7 {
		t.Errorf("percent with 737 of 1000 done = %v; want 73.7", got)
	}
}
