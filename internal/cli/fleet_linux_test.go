package cli

import (
	"context"
	"encoding/json"
	"os/exec"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"portolan/internal/netlab"
	"portolan/internal/scan"
	"portolan/internal/store"
	"portolan/internal/testenv"
)

// fleetLab is a scanner namespace and a target with open, closed and
// dropped ports, a real PostgreSQL reachable from the scanner over its unix
// socket, and the reference: the space scanned by one process, unsharded.
type fleetLab struct {
	scanner *netlab.Host
	pg      *testenv.PG
	db      string // the database's URL (unix socket)
	space   []string
	want    map[resultKey]resultOutcome
}

const fleetPorts = 3000

func newFleetLab(t *testing.T) *fleetLab {
	t.Helper()
	scanner, target, lk := netlab.NewPair(t)
	for p := 7; p <= fleetPorts; p += 97 {
		serveTCP(t, target, p)
	}
	var dropped []string
	for p := 3; p <= fleetPorts; p += 211 {
		dropped = append(dropped, strconv.Itoa(p))
	}
	nft(t, target, "table inet portolantest {\n chain input {\n  type filter hook input priority 0;\n  tcp dport { "+
		strings.Join(dropped, ", ")+" } drop\n }\n}\n")
	l := &fleetLab{scanner: scanner, pg: testenv.StartPostgres(t),
		space: []string{lk.B4.String(), lk.B6.String(), "-p", "1-" + strconv.Itoa(fleetPorts)}}
	url, err := l.pg.CreateDatabase()
	if err != nil {
		t.Fatal(err)
	}
	l.db = l.pg.SocketURL(url[strings.LastIndexByte(url, '/')+1 : strings.IndexByte(url, '?')])
	r := runChild(t, portolanIn(t, scanner, append([]string{"scan", "--no-store", "--format", "jsonl"}, l.space...)...))
	if r.code != ExitOK {
		t.Fatalf("reference scan: %v", r)
	}
	l.want = resultSet(t, "reference", jsonlResults(t, r.stdout))
	if len(l.want) != 2*fleetPorts {
		t.Fatalf("reference scan: %d results; want %d", len(l.want), 2*fleetPorts)
	}
	return l
}

// portolan returns portolan args... in the scanner namespace, on host id
// host, with the lab's database in $PORTOLAN_DB.
func (l *fleetLab) portolan(t *testing.T, host string, args ...string) *exec.Cmd {
	cmd := portolanIn(t, l.scanner, args...)
	cmd.Env = append(cmd.Env, "PORTOLAN_DB="+l.db, "PORTOLAN_HOST_ID="+host, "PORTOLAN_LEASE_TTL=10s")
	return cmd
}

// merged reads the named scan from the lab's database, its shards merged.
func (l *fleetLab) merged(t *testing.T, name string) (store.ScanInfo, []scan.Result) {
	t.Helper()
	ctx := context.Background()
	db, err := store.Open(ctx, l.db)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	si, err := db.ResolveScan(ctx, name)
	if err != nil {
		t.Fatal(err)
	}
	rs, err := db.ScanResults(ctx, si, store.Filter{})
	if err != nil {
		t.Fatal(err)
	}
	return si, rs
}

// waitShard polls the named scan until shard i satisfies ok, for at most a
// minute; it fails the test when exited closes first.
func (l *fleetLab) waitShard(t *testing.T, name string, i int, exited <-chan struct{}, ok func(store.ScanInfo) bool) {
	t.Helper()
	ctx := context.Background()
	db, err := store.Open(ctx, l.db)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	deadline := time.Now().Add(time.Minute)
	for time.Now().Before(deadline) {
		if sh, err := db.ShardByIndex(ctx, name, 0, i); err == nil && ok(sh) {
			return
		}
		select {
		case <-exited:
			t.Fatalf("shard %d of %s: its process ended before the state awaited", i, name)
		case <-time.After(50 * time.Millisecond):
		}
	}
	t.Fatalf("shard %d of %s: not in the state awaited within a minute", i, name)
}

// TestFleetLeaseResume: host a runs shard 1 of 2 and dies (SIGKILL) after
// a checkpoint; while its lease holds, host b can neither resume the shard
// nor start it again, and show says it still runs on a. Once the lease
// lapses, b resumes it (--resume) and dies too; then host c runs the
// shard's own command again, as an orchestrator retrying it would, which
// continues it. The merged scan equals one process's scan of the same
// space, port for port.
func TestFleetLeaseResume(t *testing.T) {
	l := newFleetLab(t)
	shard := func(host, i string, extra ...string) *exec.Cmd {
		args := append([]string{"scan", "--scan-id", "sweep", "--shard", i + "/2", "--format", "jsonl", "-o", "/dev/null"}, extra...)
		return l.portolan(t, host, append(args, l.space...)...)
	}
	// killAfterCheckpoint runs cmd until shard 1's checkpoint passes from,
	// then kills it, and returns the checkpoint it left.
	killAfterCheckpoint := func(cmd *exec.Cmd, from uint64) {
		t.Helper()
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		exited := make(chan struct{})
		go func() { cmd.Wait(); close(exited) }()
		l.waitShard(t, "sweep", 1, exited, func(sh store.ScanInfo) bool { return sh.Checkpoint > from })
		cmd.Process.Kill()
		<-exited
	}
	killAfterCheckpoint(shard("a", "1", "--rate", "400"), 0) // 3000 probes: 7.5 s, so each run is killed midway

	r := runChild(t, l.portolan(t, "b", "scan", "--resume", "sweep", "--shard", "1/2", "-o", "/dev/null"))
	if r.code != ExitError || !strings.Contains(r.stderr, "still running on host a") {
		t.Errorf("--resume on b while a's lease holds: %v; want exit 1 naming host a", r)
	}
	if r := runChild(t, shard("b", "1")); r.code != ExitError || !strings.Contains(r.stderr, "still running on host a") {
		t.Errorf("shard 1 started again on b while a's lease holds: %v; want exit 1 naming host a", r)
	}
	r = runChild(t, l.portolan(t, "b", "show", "sweep", "--format", "list"))
	if !strings.Contains(r.stderr, "still running 1/2 on a") || !strings.Contains(r.stderr, "missing (never started) 2/2") {
		t.Errorf("show while shard 1 is leased and 2 missing: %v; want both named", r)
	}
	if r := runChild(t, shard("b", "2")); r.code != ExitOK {
		t.Fatalf("shard 2 on b: %v", r)
	}
	l.waitShard(t, "sweep", 1, nil, func(sh store.ScanInfo) bool { return sh.Status == store.Interrupted })
	sh := l.shard(t, "sweep", 1)
	killAfterCheckpoint(l.portolan(t, "b", "scan", "--resume", "sweep", "--shard", "1/2", "--format", "jsonl", "-o", "/dev/null"), sh.Checkpoint)
	if sh := l.shard(t, "sweep", 1); sh.Host != "b" || sh.Status != store.Running {
		t.Fatalf("shard 1 after b resumed it: %s on %q; want running on b", sh.Status, sh.Host)
	}

	l.waitShard(t, "sweep", 1, nil, func(sh store.ScanInfo) bool { return sh.Status == store.Interrupted })
	r = runChild(t, shard("c", "1"))
	if r.code != ExitOK || !strings.Contains(r.stderr, "resuming shard 1/2 of scan sweep@1") {
		t.Fatalf("shard 1's command again on c after b's lease lapsed: %v; want it continued", r)
	}
	si, results := l.merged(t, "sweep")
	if si.Status != store.Done || len(si.Missing) != 0 || si.Run != 1 {
		t.Errorf("merged scan: status %s, missing %v, run %d; want done, none, 1", si.Status, si.Missing, si.Run)
	}
	diffSets(t, "merged scan", resultSet(t, "merged scan", results), l.want)
}

// shard reads shard i of the latest run of name.
func (l *fleetLab) shard(t *testing.T, name string, i int) store.ScanInfo {
	t.Helper()
	ctx := context.Background()
	db, err := store.Open(ctx, l.db)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	sh, err := db.ShardByIndex(ctx, name, 0, i)
	if err != nil {
		t.Fatal(err)
	}
	return sh
}

// startShard starts a paced one-shard named scan in the lab and returns
// once the database holds a checkpoint of it; exited closes when the
// process ends, and its exit code is then in code.
func (l *fleetLab) startShard(t *testing.T, name string, extra ...string) (stderr *screen, exited chan struct{}, code *int) {
	t.Helper()
	args := append([]string{"scan", "--scan-id", name, "--rate", "1500", "--format", "jsonl", "-o", "/dev/null"}, extra...)
	cmd := l.portolan(t, "a", append(args, l.space...)...)
	stderr = newScreen()
	cmd.Stderr = stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited, code = make(chan struct{}), new(int)
	go func() { cmd.Wait(); *code = cmd.ProcessState.ExitCode(); close(exited) }()
	t.Cleanup(func() { cmd.Process.Kill(); <-exited })
	l.waitShard(t, name, 0, exited, func(sh store.ScanInfo) bool { return sh.Checkpoint > 0 })
	return stderr, exited, code
}

// TestFleetDatabaseDown stops PostgreSQL in the middle of scans. When it
// comes back before the scan ends, the buffered results are retried and the
// scan completes in the database; when it stays away, the results go to a
// spill file the error names, and store load-spill stores them. Either way
// the stored scan is one process's undisturbed scan, port for port.
func TestFleetDatabaseDown(t *testing.T) {
	l := newFleetLab(t)
	t.Run("restart", func(t *testing.T) {
		stderr, exited, code := l.startShard(t, "restart")
		if err := l.pg.Stop(); err != nil {
			t.Fatal(err)
		}
		if !stderr.waitFor("database unreachable: buffering results", 30*time.Second) {
			t.Fatalf("no word of the database going away; stderr:\n%s", stderr)
		}
		if err := l.pg.Start(); err != nil {
			t.Fatal(err)
		}
		<-exited
		if *code != ExitOK || !strings.Contains(stderr.String(), "database back") {
			t.Fatalf("scan across a database restart: exit %d; stderr:\n%s", *code, stderr)
		}
		si, results := l.merged(t, "restart")
		if si.Status != store.Done {
			t.Errorf("scan across a database restart: status %s; want done", si.Status)
		}
		diffSets(t, "scan across a database restart", resultSet(t, "restart", results), l.want)
	})
	t.Run("spill", func(t *testing.T) {
		spills := t.TempDir()
		stderr, exited, code := l.startShard(t, "spill", "--db-buffer", "500", "--db-retry", "1s", "--spill-dir", spills)
		if err := l.pg.Stop(); err != nil {
			t.Fatal(err)
		}
		<-exited
		if err := l.pg.Start(); err != nil {
			t.Fatal(err)
		}
		m := regexp.MustCompile(`portolan store load-spill (\S+) loads them`).FindStringSubmatch(stderr.String())
		if *code != ExitError || m == nil || !strings.HasPrefix(m[1], spills) {
			t.Fatalf("scan with the database away to its end: exit %d; want 1 and the spill file named; stderr:\n%s", *code, stderr)
		}
		r := runChild(t, l.portolan(t, "a", "store", "load-spill", m[1])) // where the file is
		if r.code != ExitOK || !strings.Contains(r.stdout, "it is done") {
			t.Fatalf("store load-spill: %v", r)
		}
		// Loading it again stores nothing twice; --json says what it did.
		r = runChild(t, l.portolan(t, "a", "store", "load-spill", m[1], "--json"))
		var sum store.SpillSummary
		if err := json.Unmarshal([]byte(r.stdout), &sum); r.code != ExitOK || err != nil || sum.Status != store.Done || sum.Results == 0 {
			t.Fatalf("store load-spill --json: %v (%v)", r, err)
		}
		var doc any
		json.Unmarshal([]byte(r.stdout), &doc)
		for _, k := range keys(doc) {
			if strings.ToLower(k) != k || strings.Contains(k, "-") {
				t.Errorf("store load-spill --json: key %q is not snake_case", k)
			}
		}
		si, results := l.merged(t, "spill")
		if si.Status != store.Done {
			t.Errorf("scan loaded from its spill: status %s; want done", si.Status)
		}
		diffSets(t, "scan loaded from its spill", resultSet(t, "spill", results), l.want)
	})
}
