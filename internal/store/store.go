package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"time"

	"modernc.org/sqlite" // registers the "sqlite" database/sql driver
	sqlite3 "modernc.org/sqlite/lib"
)

// ErrNotFound is returned (wrapped) when a scan does not exist.
var ErrNotFound = errors.New("not found")

// ErrRunning is returned (wrapped) by ResumeScan when another live process
// is running the scan.
var ErrRunning = errors.New("still running")

// ErrForeign is returned by Open for a database that is not portolan's.
var ErrForeign = errors.New("not a portolan database")

// Store is an open scan database. It is safe for concurrent use; SQLite
// serialises writers, and in WAL mode readers see the last committed state
// without waiting for them.
type Store struct {
	// Now is the clock that stamps checkpoints and finished scans. Nil
	// means time.Now. Set it before using the store.
	Now func() time.Time

	db   *sql.DB
	path string
}

// busyTimeout is how long a writer waits for another one (another portolan
// process scanning into the same file) before giving up.
const busyTimeout = 10 * time.Second

// DefaultPath returns where the embedded store lives:
// $XDG_DATA_HOME/portolan/portolan.db, or ~/.local/share/portolan/portolan.db
// when XDG_DATA_HOME is unset or not absolute (as the XDG spec says).
func DefaultPath() (string, error) {
	if d := os.Getenv("XDG_DATA_HOME"); filepath.IsAbs(d) {
		return filepath.Join(d, "portolan", "portolan.db"), nil
	}
	home, err := os.UserHomeDir()
	if err != nil {
		return "", fmt.Errorf("find store path: %w (set XDG_DATA_HOME or use --db)", err)
	}
	return filepath.Join(home, ".local", "share", "portolan", "portolan.db"), nil
}

// Open opens the store at path, creating the file and its directory when
// missing, and brings its schema up to date. A path that is not a database,
// or one written by a newer portolan, is an error naming the path.
func Open(ctx context.Context, path string) (*Store, error) {
	if path == "" {
		return nil, errors.New("open store: empty path")
	}
	if i := strings.Index(path, "://"); i > 0 {
		// postgres://... is the fleet backend of a later release; refusing it
		// here keeps it from becoming a file named "postgres:".
		return nil, fmt.Errorf("open store %s: %s databases are not supported yet (use a file path)", path, path[:i])
	}
	abs, err := filepath.Abs(path)
	if err != nil {
		return nil, fmt.Errorf("open store %s: %w", path, err)
	}
	if fi, err := os.Stat(abs); err == nil && fi.IsDir() {
		return nil, fmt.Errorf("open store %s: is a directory", path)
	}
	if err := os.MkdirAll(filepath.Dir(abs), 0o700); err != nil {
		return nil, fmt.Errorf("open store %s: %w", path, err)
	}
	db, err := sql.Open("sqlite", dsn(abs))
	if err != nil {
		return nil, fmt.Errorf("open store %s: %w", path, err)
	}
	s := &Store{db: db, path: path}
	if err := checkOwn(ctx, db); err != nil {
		db.Close()
		return nil, fmt.Errorf("open store %s: %w", path, err)
	}
	if err := useWAL(ctx, db); err != nil {
		db.Close()
		return nil, fmt.Errorf("open store %s: %w", path, explain(err))
	}
	if err := s.migrate(ctx); err != nil {
		db.Close()
		return nil, fmt.Errorf("open store %s: %w", path, explain(err))
	}
	return s, nil
}

// useWAL puts the file in WAL mode (persistent: done once per file) so
// readers and the writer do not block each other. SQLite answers SQLITE_BUSY
// at once, without its busy handler, when another process is converting
// the same new file, so the conversion is retried here, for as long as a
// writer would wait.
func useWAL(ctx context.Context, db *sql.DB) error {
	deadline := time.Now().Add(busyTimeout)
	wait := time.Millisecond
	for {
		var mode string
		err := db.QueryRowContext(ctx, `PRAGMA journal_mode = WAL`).Scan(&mode)
		if err == nil || !isBusy(err) || time.Now().After(deadline) {
			return err
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(wait):
		}
		wait = min(2*wait, 50*time.Millisecond)
	}
}

// isBusy reports whether err is SQLite's "database is locked", with any
// extended code.
func isBusy(err error) bool {
	var se *sqlite.Error
	return errors.As(err, &se) && se.Code()&0xff == sqlite3.SQLITE_BUSY
}

// dsn builds the driver's connection string for the file at abs. Every
// pooled connection gets the same settings: NORMAL sync (safe with WAL, see
// useWAL: a crash loses at most the last transactions, never the file),
// foreign keys, a busy timeout, memory for temporary data, and immediate
// transactions so two writers queue at BEGIN instead of failing when one
// upgrades its read lock.
func dsn(abs string) string {
	u := url.URL{Scheme: "file", Path: abs}
	q := url.Values{}
	q.Add("_pragma", fmt.Sprintf("busy_timeout(%d)", busyTimeout.Milliseconds()))
	q.Add("_pragma", "synchronous(NORMAL)")
	q.Add("_pragma", "foreign_keys(ON)")
	// Multi-row inserts keep a statement journal; in a temp file it made
	// inserts ten times slower. A larger page cache keeps a big batch from
	// spilling into the WAL before commit. Both are memory only as used.
	q.Add("_pragma", "temp_store(MEMORY)")
	q.Add("_pragma", "cache_size(-32768)")
	q.Set("_txlock", "immediate")
	return u.String() + "?" + q.Encode()
}

// explain turns SQLite's terse messages about a bad file into something a
// person can act on.
func explain(err error) error {
	msg := err.Error()
	switch {
	case strings.Contains(msg, "file is not a database"), strings.Contains(msg, "malformed"):
		return fmt.Errorf("not a portolan database, or corrupt: %w", err)
	}
	return err
}

func (s *Store) now() time.Time {
	if s.Now != nil {
		return s.Now()
	}
	return time.Now()
}

// Path returns the path the store was opened with.
func (s *Store) Path() string { return s.path }

// Close closes the store.
func (s *Store) Close() error {
	if err := s.db.Close(); err != nil {
		return fmt.Errorf("close store %s: %w", s.path, err)
	}
	return nil
}

// checkOwn refuses a database that is not portolan's: one with tables but
// no schema_migrations. Adding portolan's tables to someone's SQLite file
// (a typo in --db) would be a change nobody asked for.
func checkOwn(ctx context.Context, db *sql.DB) error {
	rows, err := db.QueryContext(ctx, `SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%' ORDER BY name`)
	if err != nil {
		return explain(err)
	}
	defer rows.Close()
	var names []string
	for rows.Next() {
		var n string
		if err := rows.Scan(&n); err != nil {
			return err
		}
		if n == "schema_migrations" {
			return nil
		}
		names = append(names, n)
	}
	if err := rows.Err(); err != nil {
		return explain(err)
	}
	if len(names) > 0 {
		if len(names) > 5 {
			names = append(names[:5], "...")
		}
		return fmt.Errorf("%w: it has tables of its own (%s); give --db a new or empty file", ErrForeign, strings.Join(names, ", "))
	}
	return nil
}
