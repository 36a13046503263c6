package store

import (
	"context"
	"database/sql"
	"errors"
	"flag"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	_ "github.com/jackc/pgx/v5/stdlib"

	"portolan/internal/portspec"
	"portolan/internal/scan"
	"portolan/internal/testenv"
	"portolan/internal/watch"
)

// TestMain stops the PostgreSQL server the tests share, if one started.
func TestMain(m *testing.M) {
	code := m.Run()
	testenv.StopPostgres()
	os.Exit(code)
}

// opener opens the same database again, as another process would.
type opener func(t *testing.T) *Store

// eachDialect runs f against a new SQLite file and a new PostgreSQL
// database on a real server (testenv.Postgres: a throwaway cluster).
func eachDialect(t *testing.T, f func(t *testing.T, open opener)) {
	eachPath(t, func(t *testing.T, path string) { f(t, openerOf(path)) })
}

// eachPath runs f with the path of a new SQLite file, then the URL of a
// new PostgreSQL database.
func eachPath(t *testing.T, f func(t *testing.T, path string)) {
	t.Run("sqlite", func(t *testing.T) { f(t, filepath.Join(t.TempDir(), "portolan.db")) })
	t.Run("postgres", func(t *testing.T) { f(t, testenv.Postgres(t)) })
}

func openerOf(path string) opener {
	return func(t *testing.T) *Store {
		t.Helper()
		s, err := Open(context.Background(), path)
		if err != nil {
			t.Fatalf("Open(%s) = %v", path, err)
		}
		t.Cleanup(func() { s.Close() })
		return s
	}
}

// rawDB opens the database at path without the store, to build old
// schemas by hand.
func rawDB(t *testing.T, path string) (*sql.DB, dialect) {
	t.Helper()
	var db *sql.DB
	var err error
	var d dialect = sqliteDialect{}
	if IsURL(path) {
		db, err = sql.Open("pgx", path)
		d = postgresDialect{}
	} else {
		abs, _ := filepath.Abs(path)
		db, err = sql.Open("sqlite", dsn(abs))
	}
	if err != nil {
		t.Fatal(err)
	}
	return db, d
}

// buildVersion writes the schema of version v into the empty database at
// path, from the migration list, with one scan and one result when v > 0.
func buildVersion(t *testing.T, path string, v int) {
	t.Helper()
	db, d := rawDB(t, path)
	defer db.Close()
	stmts := []string{`CREATE TABLE schema_migrations (version INTEGER PRIMARY KEY, applied BIGINT NOT NULL)`}
	for i := range v {
		stmts = append(stmts, migrationsOf(d)[i], fmt.Sprintf(`INSERT INTO schema_migrations VALUES (%d, 0)`, i+1))
	}
	if v > 0 {
		stmts = append(stmts, `INSERT INTO scans (started, status, targets) VALUES (1, 'done', '127.0.0.1')`)
	}
	for _, q := range stmts {
		if _, err := db.Exec(q); err != nil {
			t.Fatalf("version %d: %s: %v", v, q, err)
		}
	}
	if v > 0 {
		if _, err := db.Exec(d.rebind(`INSERT INTO results (scan_id, pos, addr, proto, port, state, reason, rtt_us) VALUES (1, 0, ?, 'tcp', 22, 'closed', 'conn-refused', 150)`),
			addrKey(netip.MustParseAddr("127.0.0.1"))); err != nil {
			t.Fatal(err)
		}
	}
}

// checkMigrated checks a store opened from an earlier version: at the
// current version, its old scan readable, and new scans, shards included,
// stored and read back.
func checkMigrated(t *testing.T, s *Store, from int) {
	t.Helper()
	ctx := context.Background()
	v, err := s.schemaVersion(ctx, s.db)
	if err != nil || v != SchemaVersion {
		t.Fatalf("schema version after Open = %d, %v; want %d", v, err, SchemaVersion)
	}
	if from > 0 {
		got, err := s.Results(ctx, 1, Filter{})
		want := []scan.Result{{Addr: netip.MustParseAddr("127.0.0.1"), Port: 22, Proto: portspec.TCP, State: scan.Closed,
			Reason: scan.ReasonConnRefused, RTT: 150 * time.Microsecond}}
		if diff := cmp.Diff(want, got, cmpAddr); err != nil || diff != "" {
			t.Errorf("Results(1) of a version %d store: %v (-want +got):\n%s", from, err, diff)
		}
	}
	id, err := s.CreateScan(ctx, ScanInfo{Targets: "198.18.0.0/24"})
	if err != nil {
		t.Fatal(err)
	}
	rs := testResults(300)
	if err := s.AddResults(ctx, id, rs); err != nil {
		t.Fatalf("AddResults after migration: %v", err)
	}
	if got, err := s.Results(ctx, id, Filter{}); err != nil || !cmp.Equal(sorted(rs), got, cmpAddr) {
		t.Errorf("Results(%d) after migration = %d results, %v; want the %d stored", id, len(got), err, len(rs))
	}
	if _, err := s.CreateShard(ctx, ScanInfo{Name: "weekly", ShardIndex: 1, ShardCount: 2, Targets: "198.18.0.0/24"}); err != nil {
		t.Errorf("CreateShard after migration: %v", err)
	}
}

// TestMigrations opens stores of every earlier schema version, built from
// the migration list, in both dialects: each is brought to the current
// version with its data intact.
func TestMigrations(t *testing.T) {
	for v := 0; v < SchemaVersion; v++ {
		t.Run(fmt.Sprintf("from%d", v), func(t *testing.T) {
			eachPath(t, func(t *testing.T, path string) {
				buildVersion(t, path, v)
				checkMigrated(t, openerOf(path)(t), v)
			})
		})
	}
}

var updateFixtures = flag.Bool("update-fixtures", false, "rewrite testdata/sqlite-vN.db from the migration list")

// TestSQLiteFixtures opens the SQLite files of earlier versions kept in
// testdata (as older portolans left them; -update-fixtures rebuilds them
// from the migration list) and migrates copies of them.
func TestSQLiteFixtures(t *testing.T) {
	for v := 1; v < SchemaVersion; v++ {
		fixture := filepath.Join("testdata", fmt.Sprintf("sqlite-v%d.db", v))
		if *updateFixtures {
			os.Remove(fixture)
			buildVersion(t, fixture, v)
			db, _ := rawDB(t, fixture)
			db.Exec(`PRAGMA journal_mode = DELETE`) // one file, no -wal beside it
			db.Close()
		}
		t.Run(fmt.Sprintf("v%d", v), func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "old.db")
			testenv.CopyFile(t, fixture, path, 0o644)
			checkMigrated(t, openerOf(path)(t), v)
		})
	}
}

// TestDialectRoundTrip stores results of every kind (groups and rows,
// IPv4, IPv6 with zones, banners that are not UTF-8) and reads them back,
// resumes past a checkpoint, and lists scans, in both dialects.
func TestDialectRoundTrip(t *testing.T) {
	eachDialect(t, func(t *testing.T, open opener) {
		ctx := context.Background()
		s := open(t)
		set, _ := portspec.Parse("T:1-1000,U:53")
		in := ScanInfo{Started: time.Unix(1_700_000_000, 5), Targets: "198.18.0.0/16", Ports: "1-1000,U:53", PortSet: set,
			Prober: "connect", Seed: 1<<64 - 3, ShardIndex: 2, ShardCount: 8, Hosts: 65536, Space: 65536 * 1001}
		id, err := s.CreateScan(ctx, in)
		if err != nil {
			t.Fatal(err)
		}
		rs := testResults(5000)
		for i := 0; i < len(rs); i += 1500 {
			if err := s.AddResults(ctx, id, rs[i:min(i+1500, len(rs))]); err != nil {
				t.Fatal(err)
			}
		}
		if err := s.Checkpoint(ctx, id, 3000, Counts{Probes: 3000}); err != nil {
			t.Fatal(err)
		}
		// Another process (another store) resumes it after this one "died".
		s2 := open(t)
		s2.HostID = s.host()
		if _, err := s2.ResumeScan(ctx, id); err != nil {
			t.Fatalf("ResumeScan: %v", err)
		}
		if got, err := s2.Results(ctx, id, Filter{}); err != nil || !cmp.Equal(sorted(rs[:3000]), got, cmpAddr) {
			t.Fatalf("Results after resume from 3000 = %d results, %v; want the first 3000", len(got), err)
		}
		if err := s2.AddResults(ctx, id, rs[3000:]); err != nil {
			t.Fatal(err)
		}
		if err := s2.FinishScan(ctx, id, Done, Counts{Probes: 5000}); err != nil {
			t.Fatal(err)
		}
		got, err := s.Results(ctx, id, Filter{})
		if diff := cmp.Diff(sorted(rs), got, cmpAddr); err != nil || diff != "" {
			t.Errorf("Results: %v (-want +got):\n%s", err, diff)
		}
		si, err := s.Scan(ctx, id)
		if err != nil || si.Status != Done || si.Seed != in.Seed || !si.PortSet.Equal(set) || si.Space != in.Space {
			t.Errorf("Scan(%d) = %+v, %v; want done with the stored parameters", id, si, err)
		}
		list, err := s.Scans(ctx, 1)
		if err != nil || len(list) != 1 || list[0].ID != id {
			t.Errorf("Scans(1) = %v, %v; want scan %d", list, err, id)
		}
		open2, err := s.Results(ctx, id, Filter{States: []scan.State{scan.Open}})
		if err != nil || len(open2) != 1250 {
			t.Errorf("Results(open) = %d, %v; want 1250", len(open2), err)
		}
	})
}

// TestDuplicatesReadOnce: a batch stored twice (its commit's answer lost,
// then retried) reads back once.
func TestDuplicatesReadOnce(t *testing.T) {
	eachDialect(t, func(t *testing.T, open opener) {
		ctx := context.Background()
		s := open(t)
		id, _ := s.CreateScan(ctx, ScanInfo{Targets: "198.18.0.0/24"})
		rs := testResults(2000)
		for range 2 {
			if err := s.AddResults(ctx, id, rs); err != nil {
				t.Fatal(err)
			}
		}
		got, err := s.Results(ctx, id, Filter{})
		if diff := cmp.Diff(sorted(rs), got, cmpAddr); err != nil || diff != "" {
			t.Errorf("Results of a batch stored twice: %v (-want +got):\n%s", err, diff)
		}
		ports := 0
		for h, err := range s.ScanHosts(ctx, id) {
			if err != nil {
				t.Fatal(err)
			}
			ports += len(h.Ports)
		}
		if ports != len(rs) {
			t.Errorf("ScanHosts of a batch stored twice: %d ports; want %d", ports, len(rs))
		}
	})
}

// TestForeignPostgres: a PostgreSQL database with tables of its own is not
// taken over; a URL's password never appears in errors.
func TestForeignPostgres(t *testing.T) {
	url := testenv.Postgres(t)
	db, _ := rawDB(t, url)
	if _, err := db.Exec(`CREATE TABLE users (name TEXT)`); err != nil {
		t.Fatal(err)
	}
	db.Close()
	_, err := Open(context.Background(), url)
	if !errors.Is(err, ErrForeign) || !strings.Contains(err.Error(), "users") {
		t.Errorf("Open(a database with a users table) = %v; want ErrForeign naming the table", err)
	}
	secret := strings.Replace(url, "postgres@", "postgres:hunter2@", 1)
	secret = strings.Replace(secret, "/t", "/nosuchdb", 1)
	_, err = Open(context.Background(), secret)
	if err == nil || strings.Contains(err.Error(), "hunter2") || !strings.Contains(err.Error(), "nosuchdb") {
		t.Errorf("Open(%s) = %v; want an error naming the database without the password", secret, err)
	}
}

// TestOpenConcurrentlyPostgres: processes opening a new database at once
// migrate it once (the advisory lock), and all can write.
func TestOpenConcurrentlyPostgres(t *testing.T) {
	url := testenv.Postgres(t)
	var wg sync.WaitGroup
	errs := make(chan error, 6)
	for range 6 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			s, err := Open(context.Background(), url)
			if err == nil {
				_, err = s.CreateScan(context.Background(), ScanInfo{Targets: "127.0.0.1"})
				s.Close()
			}
			errs <- err
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Errorf("concurrent Open and CreateScan: %v", err)
		}
	}
	s := openerOf(url)(t)
	var n int
	s.db.QueryRow(`SELECT COUNT(*) FROM schema_migrations`).Scan(&n)
	if n != SchemaVersion {
		t.Errorf("schema_migrations has %d rows after concurrent opens; want %d", n, SchemaVersion)
	}
}

// TestEventTablesBothDialects: the watch and knock tables (versions 5 and
// 6) work through the dialect layer as the scan tables do.
func TestEventTablesBothDialects(t *testing.T) {
	eachDialect(t, func(t *testing.T, open opener) {
		ctx := context.Background()
		s := open(t)
		t0 := time.Unix(1_800_000_000, 0)
		var evs []watch.Event
		for i := range 20 {
			evs = append(evs, watch.AttemptEvent(watch.Attempt{Time: t0.Add(time.Duration(i) * time.Second), Src: netip.MustParseAddr("198.18.0.9"),
				SrcPort: 40000, Dst: netip.MustParseAddr("198.18.0.1"), Proto: portspec.TCP, Port: portspec.Port(1000 + i), Kind: watch.KindSYN, Flags: 2}))
		}
		if err := s.AddEvents(ctx, evs); err != nil {
			t.Fatal(err)
		}
		for _, q := range []EventQuery{{}, {Source: netip.MustParsePrefix("198.18.0.0/24"), Limit: 5}} {
			got, err := s.Events(ctx, q)
			want := 20
			if q.Limit > 0 {
				want = q.Limit
			}
			if err != nil || len(got) != want {
				t.Errorf("Events(%+v) = %d, %v; want %d", q, len(got), err, want)
			}
		}
		nonce := []byte{1, 2, 3}
		if added, err := s.AddKnockNonce(ctx, nonce, t0.Add(time.Hour)); err != nil || !added {
			t.Errorf("AddKnockNonce(new) = %v, %v; want true", added, err)
		}
		if added, err := s.AddKnockNonce(ctx, nonce, t0.Add(time.Hour)); err != nil || added {
			t.Errorf("AddKnockNonce(again) = %v, %v; want false", added, err)
		}
		if err := s.AddKnockEvents(ctx, []KnockEvent{{Time: t0, Type: "opened", Door: "ssh"}, {Time: t0.Add(time.Second), Type: "closed", Door: "ssh"}}); err != nil {
			t.Fatal(err)
		}
		for limit, want := range map[int]int{0: 2, 1: 1} {
			if got, err := s.KnockEvents(ctx, limit); err != nil || len(got) != want {
				t.Errorf("KnockEvents(%d) = %d, %v; want %d", limit, len(got), err, want)
			}
		}
	})
}
