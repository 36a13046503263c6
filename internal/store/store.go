package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"
)

// ErrNotFound is returned (wrapped) when a scan does not exist.
var ErrNotFound = errors.New("not found")

// ErrRunning is returned (wrapped) by ResumeScan when another live process
// is running the scan.
var ErrRunning = errors.New("still running")

// ErrForeign is returned by Open for a database that is not portolan's.
var ErrForeign = errors.New("not a portolan database")

// Store is an open scan database: a SQLite file or a PostgreSQL database.
// It is safe for concurrent use; SQLite serialises writers, and in WAL mode
// readers see the last committed state without waiting for them.
type Store struct {
	// Now is the clock that stamps checkpoints and finished scans. Nil
	// means time.Now. Set it before using the store.
	Now func() time.Time

	// LeaseTTL is how long a running scan's lease lasts without a
	// heartbeat before another host may take its scan over (--resume).
	// Zero means DefaultLeaseTTL.
	LeaseTTL time.Duration
	// HostID names this host in leases. Empty means HostID().
	HostID string

	db   *sql.DB
	d    dialect
	path string // as given, with any password hidden
}

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

// Open opens the store at path and brings its schema up to date. A
// postgres:// or postgresql:// URL opens a PostgreSQL database (which must
// exist; portolan creates its tables in it). Anything else is a SQLite file,
// created with its directory when missing. A path that is not a database,
// or one written by a newer portolan, is an error naming the path.
func Open(ctx context.Context, path string) (*Store, error) {
	if path == "" {
		return nil, errors.New("open store: empty path")
	}
	if IsURL(path) {
		return openPostgres(ctx, path)
	}
	if i := strings.Index(path, "://"); i > 0 {
		// Refusing other URLs keeps one from becoming a file named "mysql:".
		return nil, fmt.Errorf("open store %s: %s databases are not supported (use a file path or postgres://)", path, path[:i])
	}
	return openSQLite(ctx, path)
}

// IsURL reports whether path names a PostgreSQL database rather than a
// SQLite file.
func IsURL(path string) bool {
	return strings.HasPrefix(path, "postgres://") || strings.HasPrefix(path, "postgresql://")
}

// open finishes opening db: it checks the database is portolan's (or
// empty) and migrates it.
func (s *Store) open(ctx context.Context) error {
	if ok, err := s.current(ctx); ok || err != nil {
		return err
	}
	tables, err := s.d.tables(ctx, s.db)
	if err != nil {
		return err
	}
	if err := checkOwn(tables, s.d); err != nil {
		return err
	}
	return s.migrate(ctx, tables)
}

// current reports whether the store is portolan's at this build's schema
// version, in one query: the usual case, paid by every command and by
// every scan before it starts (listing the tables first cost PostgreSQL a
// catalog scan and a round trip more). A store without schema_migrations
// (new, foreign, not a database) is not current, with no error: the full
// check says what it is. A newer schema is an error.
func (s *Store) current(ctx context.Context) (bool, error) {
	v, err := s.schemaVersion(ctx, s.db)
	switch {
	case err != nil:
		return false, nil
	case v > SchemaVersion:
		return false, errNewer(v)
	}
	return v == SchemaVersion, nil
}

// q rewrites the placeholders of query for the store's engine.
func (s *Store) q(query string) string { return s.d.rebind(query) }

// Dialect returns the engine behind the store: "sqlite" or "postgres".
func (s *Store) Dialect() string { return s.d.name() }

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
