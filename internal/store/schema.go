package store

import (
	"context"
	"database/sql"
	"fmt"
	"slices"
	"strings"
)

// migrations are SQLite's schema changes in order; migrations[i] takes the
// schema from version i to i+1. They are the files in migrations/sqlite;
// PostgreSQL's, in migrations/postgres, have the same versions.
var migrations = migrationsOf(sqliteDialect{})

// SchemaVersion is the schema version this build writes.
var SchemaVersion = len(migrations)

func init() {
	if n := len(migrationsOf(postgresDialect{})); n != SchemaVersion {
		panic(fmt.Sprintf("store: %d SQLite migrations but %d PostgreSQL ones", SchemaVersion, n))
	}
}

// migrate brings the schema up to SchemaVersion, in one transaction;
// tables are the store's tables as it was opened. An up-to-date store is
// only read, so a store on read-only media (or a PostgreSQL role that may
// only read) still opens. Two processes migrating at once are serialised
// (SQLite's immediate transactions, PostgreSQL's advisory lock); the
// second sees the first one's work. One transaction, not one per
// migration: a new SQLite file (every stored scan of the scan benchmark)
// paid a commit, with its WAL writes, for each, on a core the sweep needs;
// and a migration that fails leaves the store as it was.
func (s *Store) migrate(ctx context.Context, tables []string) error {
	if slices.Contains(tables, "schema_migrations") {
		v, err := s.schemaVersion(ctx, s.db)
		if err != nil {
			return err
		}
		if v > SchemaVersion {
			return errNewer(v)
		}
		if v == SchemaVersion {
			return nil
		}
	}
	tx, err := s.db.BeginTx(ctx, nil)
	if err != nil {
		return err
	}
	defer tx.Rollback()
	if err := s.d.lock(ctx, tx, "schema"); err != nil {
		return err
	}
	if _, err := tx.ExecContext(ctx, `CREATE TABLE IF NOT EXISTS schema_migrations (
		version INTEGER PRIMARY KEY,
		applied BIGINT NOT NULL -- unix nanoseconds
	)`); err != nil {
		return err
	}
	v, err := s.schemaVersion(ctx, tx)
	if err != nil {
		return err
	}
	if v > SchemaVersion {
		return errNewer(v)
	}
	for ; v < SchemaVersion; v++ {
		if _, err := tx.ExecContext(ctx, migrationsOf(s.d)[v]); err != nil {
			return fmt.Errorf("migrate schema to version %d: %w", v+1, err)
		}
		if _, err := tx.ExecContext(ctx, s.q(`INSERT INTO schema_migrations (version, applied) VALUES (?, ?)`), v+1, s.now().UnixNano()); err != nil {
			return fmt.Errorf("migrate schema to version %d: %w", v+1, err)
		}
	}
	return tx.Commit()
}

func errNewer(v int) error {
	return fmt.Errorf("schema version %d is newer than this portolan knows (%d): upgrade portolan", v, SchemaVersion)
}

// schemaVersion returns the version of the schema, 0 for a new store.
func (s *Store) schemaVersion(ctx context.Context, q interface {
	QueryRowContext(context.Context, string, ...any) *sql.Row
}) (int, error) {
	var v sql.NullInt64
	if err := q.QueryRowContext(ctx, `SELECT MAX(version) FROM schema_migrations`).Scan(&v); err != nil {
		return 0, err
	}
	return int(v.Int64), nil
}

// checkOwn refuses a database that is not portolan's, given its tables: one with tables but
// no schema_migrations. Adding portolan's tables to someone's database (a
// typo in --db) would be a change nobody asked for.
func checkOwn(names []string, d dialect) error {
	if len(names) == 0 || slices.Contains(names, "schema_migrations") {
		return nil
	}
	if len(names) > 5 {
		names = append(names[:5], "...")
	}
	return fmt.Errorf("%w: it has tables of its own (%s); give --db a new or empty %s", ErrForeign, strings.Join(names, ", "), d.emptyWhat())
}

// queryStrings returns the one text column of query's rows.
func queryStrings(ctx context.Context, db *sql.DB, query string, args ...any) ([]string, error) {
	rows, err := db.QueryContext(ctx, query, args...)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []string
	for rows.Next() {
		var n string
		if err := rows.Scan(&n); err != nil {
			return nil, err
		}
		out = append(out, n)
	}
	return out, rows.Err()
}
