package store

import (
	"bytes"
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"portolan/internal/portspec"
	"portolan/internal/registry"
	"portolan/internal/scan"
)

// cmpAddr lets go-cmp compare netip.Addr, whose fields are unexported.
var cmpAddr = cmp.Comparer(func(a, b netip.Addr) bool { return a == b })

func openTemp(t *testing.T) (*Store, string) {
	t.Helper()
	path := filepath.Join(t.TempDir(), "sub", "portolan.db")
	s, err := Open(context.Background(), path)
	if err != nil {
		t.Fatalf("Open(%q) = %v", path, err)
	}
	t.Cleanup(func() { s.Close() })
	return s, path
}

// testResults makes n results spread over IPv4 and IPv6 hosts, every state,
// and banners with bytes that are not UTF-8.
func testResults(n int) []scan.Result {
	states := []scan.State{scan.Open, scan.Closed, scan.Filtered, scan.OpenFiltered}
	reasons := []string{scan.ReasonSynAck, scan.ReasonConnRefused, scan.ReasonNoResponse, scan.ReasonNoResponse}
	t0 := time.Unix(1_700_000_000, 123456789)
	out := make([]scan.Result, n)
	for i := range out {
		var a netip.Addr
		switch i % 3 {
		case 0:
			a = netip.AddrFrom4([4]byte{198, 18, byte(i >> 16), byte(i >> 8)})
		case 1:
			a = netip.MustParseAddr(fmt.Sprintf("fd00::%x", i>>8))
		default:
			a = netip.MustParseAddr(fmt.Sprintf("fe80::%x%%veth0", i>>8))
		}
		st := i % len(states)
		out[i] = scan.Result{
			Addr: a, Port: portspec.Port(i%65535 + 1), Proto: []portspec.Proto{portspec.TCP, portspec.UDP}[i/7%2],
			State: states[st], Reason: reasons[st], RTT: time.Duration(i%5000) * time.Microsecond,
			Time: t0.Add(time.Duration(i) * time.Millisecond), Pos: uint64(i),
		}
		// Closed and filtered ports carry the registry's name, as a scan
		// gives them, so most are stored in port groups.
		out[i].Service = registry.Default().Name(out[i].Port, out[i].Proto)
		if states[st] == scan.Open {
			out[i].Service = "ssh"
			out[i].Banner = "SSH-2.0-OpenSSH_9.2\r\n\x00\xff"
		}
	}
	return out
}

// sorted returns rs in the store's order: address, protocol name, port.
func sorted(rs []scan.Result) []scan.Result {
	out := append([]scan.Result(nil), rs...)
	key := func(r scan.Result) string {
		return fmt.Sprintf("%x/%s/%05d", addrKey(r.Addr), r.Proto, r.Port)
	}
	slices.SortFunc(out, func(a, b scan.Result) int { return strings.Compare(key(a), key(b)) })
	return out
}

func TestOpenNew(t *testing.T) {
	s, path := openTemp(t)
	ctx := context.Background()
	v, err := s.schemaVersion(ctx, s.db)
	if err != nil || v != SchemaVersion {
		t.Fatalf("schema version = %d, %v; want %d", v, err, SchemaVersion)
	}
	var mode string
	if err := s.db.QueryRowContext(ctx, "PRAGMA journal_mode").Scan(&mode); err != nil || mode != "wal" {
		t.Errorf("journal_mode = %q, %v; want wal", mode, err)
	}
	scans, err := s.Scans(ctx, 0)
	if err != nil || len(scans) != 0 {
		t.Errorf("Scans on a new store = %v, %v; want none", scans, err)
	}
	s.Close()
	// Reopening applies nothing and keeps the version.
	s2, err := Open(ctx, path)
	if err != nil {
		t.Fatalf("reopen: %v", err)
	}
	defer s2.Close()
	var n int
	s2.db.QueryRowContext(ctx, "SELECT COUNT(*) FROM schema_migrations").Scan(&n)
	if n != SchemaVersion {
		t.Errorf("schema_migrations has %d rows; want %d", n, SchemaVersion)
	}
}

// TestOpenVersion1: a file from before port groups opens, keeps its result
// rows, and stores new scans in groups.
func TestOpenVersion1(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "v1.db")
	db, err := sql.Open("sqlite", dsn(path))
	if err != nil {
		t.Fatal(err)
	}
	for _, q := range []string{
		`CREATE TABLE schema_migrations (version INTEGER PRIMARY KEY, applied INTEGER NOT NULL)`,
		migrations[0],
		`INSERT INTO schema_migrations VALUES (1, 0)`,
		`INSERT INTO scans (started, status) VALUES (1, 'done')`,
		`INSERT INTO results (scan_id, pos, addr, proto, port, state, reason, rtt_us) VALUES (1, 0, x'047f000001', 'tcp', 22, 'closed', 'conn-refused', 150)`,
	} {
		if _, err := db.Exec(q); err != nil {
			t.Fatalf("%s: %v", q, err)
		}
	}
	db.Close()

	s, err := Open(ctx, path)
	if err != nil {
		t.Fatalf("Open(version 1 file) = %v", err)
	}
	defer s.Close()
	got, err := s.Results(ctx, 1, Filter{})
	want := []scan.Result{{Addr: netip.MustParseAddr("127.0.0.1"), Port: 22, Proto: portspec.TCP, State: scan.Closed,
		Reason: scan.ReasonConnRefused, RTT: 150 * time.Microsecond}}
	if diff := cmp.Diff(want, got, cmpAddr); err != nil || diff != "" {
		t.Errorf("Results(1) of a version 1 file: %v (-want +got):\n%s", err, diff)
	}
	id, _ := s.CreateScan(ctx, ScanInfo{Targets: "127.0.0.1"})
	rs := testResults(300)
	if err := s.AddResults(ctx, id, rs); err != nil {
		t.Fatalf("AddResults after migration: %v", err)
	}
	if got, err := s.Results(ctx, id, Filter{}); err != nil || len(got) != len(rs) {
		t.Errorf("Results(%d) after migration = %d results, %v; want %d", id, len(got), err, len(rs))
	}
}

func TestOpenBadFiles(t *testing.T) {
	dir := t.TempDir()
	garbage := filepath.Join(dir, "garbage.db")
	os.WriteFile(garbage, []byte(strings.Repeat("this is not sqlite\n", 300)), 0o600)
	// A store written by a later portolan with a schema this one does not know.
	newer := filepath.Join(dir, "newer.db")
	s, err := Open(context.Background(), newer)
	if err != nil {
		t.Fatal(err)
	}
	s.db.Exec(`INSERT INTO schema_migrations (version, applied) VALUES (?, 0)`, SchemaVersion+1)
	s.Close()
	// Someone else's SQLite file: --db with a typo.
	foreign := filepath.Join(dir, "app.db")
	fdb, err := sql.Open("sqlite", foreign)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := fdb.Exec(`CREATE TABLE users (name TEXT)`); err != nil {
		t.Fatal(err)
	}
	fdb.Close()

	tests := []struct {
		name, path, want string
	}{
		{"garbage", garbage, "not a portolan database, or corrupt"},
		{"foreign", foreign, "not a portolan database: it has tables of its own (users)"},
		{"directory", dir, "is a directory"},
		{"newer schema", newer, "newer than this portolan knows"},
		{"other url", "mysql://db.example/portolan", "not supported"},
		{"empty", "", "empty path"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var before []byte
			if tt.name == "foreign" {
				before, _ = os.ReadFile(tt.path)
			}
			s, err := Open(context.Background(), tt.path)
			if tt.name == "foreign" {
				if after, _ := os.ReadFile(tt.path); !bytes.Equal(before, after) {
					t.Errorf("Open(%q) changed the file", tt.path)
				}
			}
			if err == nil {
				s.Close()
				t.Fatalf("Open(%q) = nil error; want %q", tt.path, tt.want)
			}
			if !strings.Contains(err.Error(), tt.want) || !strings.Contains(err.Error(), tt.path) {
				t.Errorf("Open(%q) = %v; want it to name the path and say %q", tt.path, err, tt.want)
			}
		})
	}
}

func TestRoundTrip(t *testing.T) {
	s, path := openTemp(t)
	ctx := context.Background()
	set, err := portspec.Parse("T:1-1000,8080,U:53")
	if err != nil {
		t.Fatal(err)
	}
	in := ScanInfo{
		Started: time.Unix(1_700_000_000, 5), Command: "portolan scan 198.18.0.0/16 -p 1-1000,8080,U:53",
		Version: "v0.1.0", Targets: "198.18.0.0/16", Ports: "1-1000,8080,U:53", PortSet: set, Prober: "connect",
		Seed: 1<<64 - 3, ShardIndex: 2, ShardCount: 8, Rate: 5000, Hosts: 65536, Space: 65536 * 1002,
		Options: json.RawMessage(`{"banner":true}`),
	}
	id, err := s.CreateScan(ctx, in)
	if err != nil {
		t.Fatal(err)
	}
	results := testResults(20_000)
	for i := 0; i < len(results); i += 3000 {
		if err := s.AddResults(ctx, id, results[i:min(i+3000, len(results))]); err != nil {
			t.Fatal(err)
		}
	}
	counts := Counts{Probes: 20_000, Open: 5000, Closed: 5000, Filtered: 5000, OpenFiltered: 5000, HostsUp: 7}
	if err := s.FinishScan(ctx, id, Done, counts); err != nil {
		t.Fatal(err)
	}
	s.Close()

	s, err = Open(ctx, path)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	got, err := s.Scan(ctx, id)
	if err != nil {
		t.Fatal(err)
	}
	want := in
	want.ID, want.Status, want.Counts = id, Done, counts
	want.Finished = got.Finished
	if got.Finished.IsZero() {
		t.Error("Finished is zero after FinishScan")
	}
	if diff := cmp.Diff(want, got, cmp.Comparer(func(a, b *portspec.Set) bool { return a.Equal(b) })); diff != "" {
		t.Errorf("Scan(%d) mismatch (-want +got):\n%s", id, diff)
	}

	all, err := s.Results(ctx, id, Filter{})
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(sorted(results), all, cmpAddr); diff != "" {
		t.Errorf("Results mismatch (-want +got):\n%s", diff)
	}
	// Closed and filtered ports went into port groups, not rows of their own.
	var rows, groups int
	s.db.QueryRowContext(ctx, `SELECT COUNT(*) FROM results WHERE scan_id = ?`, id).Scan(&rows)
	s.db.QueryRowContext(ctx, `SELECT COUNT(*) FROM port_groups WHERE scan_id = ?`, id).Scan(&groups)
	if groups == 0 || rows >= len(results)*3/4 {
		t.Errorf("stored %d results as %d rows and %d groups; want closed and filtered ports grouped", len(results), rows, groups)
	}
	open, err := s.Results(ctx, id, Filter{States: []scan.State{scan.Open, scan.OpenFiltered}})
	if err != nil {
		t.Fatal(err)
	}
	if len(open) != 10_000 {
		t.Errorf("Results(open, open|filtered) = %d results; want 10000", len(open))
	}
	for _, r := range open {
		if r.State != scan.Open && r.State != scan.OpenFiltered {
			t.Fatalf("filter open returned %v", r)
		}
	}
}

func TestAddResultsNoAddress(t *testing.T) {
	s, _ := openTemp(t)
	ctx := context.Background()
	id, _ := s.CreateScan(ctx, ScanInfo{Targets: "127.0.0.1"})
	err := s.AddResults(ctx, id, []scan.Result{{Port: 1, Proto: portspec.TCP, State: scan.Open}})
	if err == nil || !strings.Contains(err.Error(), "no address") {
		t.Errorf("AddResults with no address = %v; want an error saying so", err)
	}
}

// TestResumeDropsResultsPastCheckpoint: a scan killed after storing results
// past its last checkpoint probes those positions again when resumed; the
// store must end with one row per port, as if it had never died.
func TestResumeDropsResultsPastCheckpoint(t *testing.T) {
	s, _ := openTemp(t)
	ctx := context.Background()
	id, _ := s.CreateScan(ctx, ScanInfo{Targets: "198.18.0.0/24"})
	results := testResults(1000)
	if err := s.AddResults(ctx, id, results[:600]); err != nil {
		t.Fatal(err)
	}
	if err := s.Checkpoint(ctx, id, 400, Counts{Probes: 400}); err != nil {
		t.Fatal(err)
	}
	// The process dies here: status stays running, 200 results lie past the checkpoint.
	si, err := s.ResumeScan(ctx, id)
	if err != nil || si.Checkpoint != 400 {
		t.Fatalf("ResumeScan = checkpoint %d, %v; want 400", si.Checkpoint, err)
	}
	if err := s.AddResults(ctx, id, results[400:]); err != nil {
		t.Fatal(err)
	}
	got, err := s.Results(ctx, id, Filter{})
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(sorted(results), got, cmpAddr); diff != "" {
		t.Errorf("Results after resume (-want +got):\n%s", diff)
	}
}

func TestCheckpointResume(t *testing.T) {
	s, path := openTemp(t)
	ctx := context.Background()
	now := time.Unix(1_700_000_000, 0)
	s.Now = func() time.Time { return now }
	id, _ := s.CreateScan(ctx, ScanInfo{Targets: "127.0.0.1", Ports: "-", Space: 65535})
	for i, pos := range []uint64{1000, 30000, 65000} {
		now = now.Add(time.Second)
		c := Counts{Probes: pos, Closed: pos - uint64(i), Open: uint64(i)}
		if err := s.Checkpoint(ctx, id, pos, c); err != nil {
			t.Fatal(err)
		}
		got, _ := s.Scan(ctx, id)
		if got.Checkpoint != pos || got.Counts != c || got.Status != Running || !got.Checkpointed.Equal(now) {
			t.Errorf("after Checkpoint(%d): checkpoint %d, counts %+v, status %s, at %v", pos, got.Checkpoint, got.Counts, got.Status, got.Checkpointed)
		}
		if d := got.Duration(); d != time.Duration(i+1)*time.Second {
			t.Errorf("Duration of a running scan = %v; want %v", d, time.Duration(i+1)*time.Second)
		}
	}
	if err := s.FinishScan(ctx, id, Interrupted, Counts{Probes: 65000}); err != nil {
		t.Fatal(err)
	}
	s.Close()

	s, err := Open(ctx, path)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	now = now.Add(time.Hour)
	s.Now = func() time.Time { return now }
	si, err := s.ResumeScan(ctx, id)
	if err != nil {
		t.Fatal(err)
	}
	if si.Checkpoint != 65000 || si.Status != Running || !si.Finished.IsZero() {
		t.Errorf("ResumeScan = checkpoint %d, status %s, finished %v; want 65000, running, zero", si.Checkpoint, si.Status, si.Finished)
	}
	// The first run took 3 s; an hour passes before the resume, which
	// runs 2 s: the scan took 5 s, not an hour.
	if d := si.Duration(); d != 3*time.Second {
		t.Errorf("Duration at the resume = %v; want the first run's 3s", d)
	}
	now = now.Add(2 * time.Second)
	if err := s.FinishScan(ctx, id, Done, Counts{Probes: 65535}); err != nil {
		t.Fatal(err)
	}
	if got, _ := s.Scan(ctx, id); got.Duration() != 5*time.Second {
		t.Errorf("Duration of a scan resumed after an hour = %v; want its runs' 5s", got.Duration())
	}
	if _, err := s.ResumeScan(ctx, id); err == nil || !strings.Contains(err.Error(), "complete") {
		t.Errorf("ResumeScan of a done scan = %v; want an error saying it is complete", err)
	}
	if err := s.FinishScan(ctx, id, Running, Counts{}); err == nil {
		t.Error("FinishScan(Running) = nil error")
	}
}

// TestFailDone: a scan finished as done whose output then failed is
// marked failed, although finishing released its lease; a scan not done
// is left alone.
func TestFailDone(t *testing.T) {
	s, _ := openTemp(t)
	ctx := context.Background()
	done, _ := s.CreateScan(ctx, ScanInfo{Targets: "127.0.0.1"})
	if err := s.FinishScan(ctx, done, Done, Counts{Probes: 65535}); err != nil {
		t.Fatal(err)
	}
	if err := s.FinishScan(ctx, done, Failed, Counts{Probes: 65535}); !errors.Is(err, ErrLeaseLost) {
		t.Fatalf("FinishScan of a finished scan = %v; want ErrLeaseLost (why FailDone exists)", err)
	}
	if err := s.FailDone(ctx, done); err != nil {
		t.Fatalf("FailDone = %v", err)
	}
	if got, _ := s.Scan(ctx, done); got.Status != Failed || got.Counts.Probes != 65535 {
		t.Errorf("after FailDone: status %s, probes %d; want failed, 65535", got.Status, got.Counts.Probes)
	}
	running, _ := s.CreateScan(ctx, ScanInfo{Targets: "127.0.0.1"})
	if err := s.FailDone(ctx, running); !errors.Is(err, ErrNotFound) {
		t.Errorf("FailDone of a running scan = %v; want ErrNotFound", err)
	}
	if got, _ := s.Scan(ctx, running); got.Status != Running {
		t.Errorf("a running scan after FailDone: %s", got.Status)
	}
}

func TestNotFound(t *testing.T) {
	s, _ := openTemp(t)
	ctx := context.Background()
	checks := map[string]error{
		"Scan":       func() error { _, err := s.Scan(ctx, 42); return err }(),
		"Results":    func() error { _, err := s.Results(ctx, 42, Filter{}); return err }(),
		"Checkpoint": s.Checkpoint(ctx, 42, 1, Counts{}),
		"FinishScan": s.FinishScan(ctx, 42, Done, Counts{}),
		"ResumeScan": func() error { _, err := s.ResumeScan(ctx, 42); return err }(),
		"AddResults": s.AddResults(ctx, 42, testResults(1)), // the foreign key
	}
	for name, err := range checks {
		if name == "AddResults" {
			if err == nil {
				t.Errorf("%s(42) = nil; want an error", name)
			}
			continue
		}
		if !errors.Is(err, ErrNotFound) || !strings.Contains(err.Error(), "42") {
			t.Errorf("%s(42) = %v; want ErrNotFound naming 42", name, err)
		}
	}
}

func TestScansNewestFirst(t *testing.T) {
	s, _ := openTemp(t)
	ctx := context.Background()
	var ids []int64
	for i := range 5 {
		id, err := s.CreateScan(ctx, ScanInfo{Targets: fmt.Sprintf("198.18.0.%d", i)})
		if err != nil {
			t.Fatal(err)
		}
		ids = append(ids, id)
	}
	got, err := s.Scans(ctx, 3)
	if err != nil {
		t.Fatal(err)
	}
	var gotIDs []int64
	for _, si := range got {
		gotIDs = append(gotIDs, si.ID)
	}
	if diff := cmp.Diff([]int64{ids[4], ids[3], ids[2]}, gotIDs); diff != "" {
		t.Errorf("Scans(3) ids (-want +got):\n%s", diff)
	}
}

// TestConcurrentReaders reads through a second Store, as another portolan
// process would (portolan show while a scan runs), while results are written.
func TestConcurrentReaders(t *testing.T) {
	w, path := openTemp(t)
	ctx := context.Background()
	id, _ := w.CreateScan(ctx, ScanInfo{Targets: "198.18.0.0/16"})
	r, err := Open(ctx, path)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()

	const batches, per = 40, 500
	results := testResults(batches * per)
	stop := make(chan struct{})
	var wg sync.WaitGroup
	errs := make(chan error, 8)
	for range 3 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			last := 0
			for {
				select {
				case <-stop:
					return
				default:
				}
				got, err := r.Results(ctx, id, Filter{})
				if err != nil {
					errs <- err
					return
				}
				// Whole batches only: a reader never sees half a transaction.
				if len(got) < last || len(got)%per != 0 {
					errs <- fmt.Errorf("reader saw %d results after %d", len(got), last)
					return
				}
				last = len(got)
				if _, err := r.Scans(ctx, 10); err != nil {
					errs <- err
					return
				}
			}
		}()
	}
	for i := range batches {
		if err := w.AddResults(ctx, id, results[i*per:(i+1)*per]); err != nil {
			t.Fatal(err)
		}
		if err := w.Checkpoint(ctx, id, uint64((i+1)*per), Counts{Probes: uint64((i + 1) * per)}); err != nil {
			t.Fatal(err)
		}
	}
	close(stop)
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	got, err := r.Results(ctx, id, Filter{})
	if err != nil || len(got) != batches*per {
		t.Errorf("final Results = %d, %v; want %d", len(got), err, batches*per)
	}
}

func TestDefaultPath(t *testing.T) {
	t.Setenv("HOME", "/home/someone")
	tests := []struct{ xdg, want string }{
		{"/data", "/data/portolan/portolan.db"},
		{"", "/home/someone/.local/share/portolan/portolan.db"},
		{"relative/dir", "/home/someone/.local/share/portolan/portolan.db"}, // the XDG spec says ignore it
	}
	for _, tt := range tests {
		t.Setenv("XDG_DATA_HOME", tt.xdg)
		if got, err := DefaultPath(); got != tt.want || err != nil {
			t.Errorf("DefaultPath() with XDG_DATA_HOME=%q = %q, %v; want %q", tt.xdg, got, err, tt.want)
		}
	}
}

func FuzzAddrKey(f *testing.F) {
	for _, s := range []string{"198.18.0.1", "::1", "fe80::1%eth0", "::ffff:198.18.0.1", "0.0.0.0"} {
		f.Add(addrKey(netip.MustParseAddr(s)))
	}
	f.Add([]byte{4, 1, 2})
	f.Fuzz(func(t *testing.T, k []byte) {
		a, err := parseAddrKey(k)
		if err != nil {
			return
		}
		if got, err := parseAddrKey(addrKey(a)); err != nil || got != a {
			t.Errorf("parseAddrKey(addrKey(%v)) = %v, %v", a, got, err)
		}
	})
}

// TestResultsQueryUsesIndex: reading a scan of millions of results must
// walk the index in order, not sort in memory (temp_store is MEMORY).
func TestResultsQueryUsesIndex(t *testing.T) {
	s, _ := openTemp(t)
	for q, index := range map[string]string{
		`SELECT pos FROM results WHERE scan_id = 1 ORDER BY addr, proto, port`:                       "results_port",
		`SELECT pos FROM results WHERE scan_id = 1 AND state IN ('open') ORDER BY addr, proto, port`: "results_port",
		`SELECT pos FROM port_groups WHERE scan_id = 1 ORDER BY addr, proto`:                         "port_groups_addr",
		`SELECT pos FROM port_groups WHERE scan_id = 1 AND state IN ('closed') ORDER BY addr, proto`: "port_groups_addr",
	} {
		rows, err := s.db.Query("EXPLAIN QUERY PLAN " + q)
		if err != nil {
			t.Fatal(err)
		}
		var plan []string
		for rows.Next() {
			var id, parent, unused int
			var detail string
			rows.Scan(&id, &parent, &unused, &detail)
			plan = append(plan, detail)
		}
		rows.Close()
		p := strings.Join(plan, "; ")
		if !strings.Contains(p, index) || strings.Contains(p, "TEMP B-TREE") {
			t.Errorf("plan of %q = %q; want the %s index and no temporary sort", q, p, index)
		}
	}
}

// TestOpenConcurrently: processes starting their first scans at once on a
// new file all migrate it (one does the work, none fails), then write their
// results side by side; each scan keeps all of its own.
func TestOpenConcurrently(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "portolan.db")
	const writers, batches, per = 4, 5, 400
	results := testResults(batches * per)
	errs := make(chan error, writers)
	for range writers {
		go func() {
			errs <- func() error {
				s, err := Open(ctx, path)
				if err != nil {
					return err
				}
				defer s.Close()
				id, err := s.CreateScan(ctx, ScanInfo{Targets: "127.0.0.1"})
				if err != nil {
					return err
				}
				for i := range batches {
					if err := s.AddResults(ctx, id, results[i*per:(i+1)*per]); err != nil {
						return err
					}
				}
				return s.FinishScan(ctx, id, Done, Counts{Probes: batches * per})
			}()
		}()
	}
	for range writers {
		if err := <-errs; err != nil {
			t.Errorf("concurrent Open and write: %v", err)
		}
	}
	s, err := Open(ctx, path)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	var n int
	s.db.QueryRow("SELECT COUNT(*) FROM schema_migrations").Scan(&n)
	scans, _ := s.Scans(ctx, 0)
	if n != SchemaVersion || len(scans) != writers {
		t.Fatalf("after %d concurrent opens: %d migrations, %d scans; want %d and %d", writers, n, len(scans), SchemaVersion, writers)
	}
	for _, sc := range scans {
		got, err := s.Results(ctx, sc.ID, Filter{})
		if err != nil || len(got) != batches*per || sc.Status != Done {
			t.Errorf("scan %d: %d results, %v, status %s; want %d, done", sc.ID, len(got), err, sc.Status, batches*per)
		}
	}
}
