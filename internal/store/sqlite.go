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

// busyTimeout is how long a writer waits for another one (another portolan
// process scanning into the same file) before giving up.
const busyTimeout = 10 * time.Second

// openSQLite opens the SQLite file at path, creating it and its directory
// when missing.
func openSQLite(ctx context.Context, path string) (*Store, error) {
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
	s := &Store{db: db, d: sqliteDialect{}, path: path}
	if err := s.openSQLite(ctx); err != nil {
		db.Close()
		return nil, fmt.Errorf("open store %s: %w", path, explain(err))
	}
	return s, nil
}

// openSQLite checks the file is portolan's (or empty) before anything
// writes to it, puts it in WAL mode and migrates it.
func (s *Store) openSQLite(ctx context.Context) error {
	current, err := s.current(ctx)
	if err != nil {
		return err
	}
	var tables []string
	if !current {
		if tables, err = s.d.tables(ctx, s.db); err != nil {
			return err
		}
		if err := checkOwn(tables, s.d); err != nil {
			return err
		}
	}
	// Also for a current file: one copied in rollback mode (a backup, a
	// fixture) goes back to WAL.
	if err := useWAL(ctx, s.db); err != nil {
		return err
	}
	if current {
		return nil
	}
	return s.migrate(ctx, tables)
}

// sqliteDialect is the embedded default: modernc.org/sqlite, pure Go.
type sqliteDialect struct{}

func (sqliteDialect) name() string           { return "sqlite" }
func (sqliteDialect) rebind(q string) string { return q }
func (sqliteDialect) emptyWhat() string      { return "file" }

func (sqliteDialect) tables(ctx context.Context, db *sql.DB) ([]string, error) {
	return queryStrings(ctx, db, `SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%' ORDER BY name`)
}

// transient: a file that another process keeps locked past the busy
// timeout; anything else repeats.
func (sqliteDialect) transient(err error) bool { return isBusy(err) }

// lock has nothing to do: every transaction is immediate (see dsn), so
// writers queue at BEGIN.
func (sqliteDialect) lock(context.Context, *sql.Tx, string) error { return nil }

// lockLazy: SQLite's commits do not wait for the disk anyway (synchronous
// NORMAL, see dsn).
func (sqliteDialect) lockLazy(context.Context, *sql.Tx, string) error { return nil }

// readTx: a SQLite transaction reads one snapshot from its first read.
func (sqliteDialect) readTx() *sql.TxOptions { return &sql.TxOptions{ReadOnly: true} }

func (sqliteDialect) addResults(ctx context.Context, db *sql.DB, rows, groups [][]any) error {
	tx, err := db.BeginTx(ctx, nil)
	if err != nil {
		return err
	}
	defer tx.Rollback()
	if err := insertRows(ctx, tx, rows); err != nil {
		return err
	}
	if len(groups) > 0 {
		stmt, err := tx.PrepareContext(ctx, `INSERT INTO port_groups (`+groupColumnList+`) VALUES (?,?,?,?,?,?,?,?,?,?)`)
		if err != nil {
			return err
		}
		defer stmt.Close()
		for _, g := range groups {
			if _, err := stmt.ExecContext(ctx, g...); err != nil {
				return err
			}
		}
	}
	return tx.Commit()
}

// batchRows is how many rows one INSERT carries: one statement per row costs
// a round trip through database/sql each; a few dozen per statement amortise
// it while staying far below SQLite's limit of 32766 parameters.
const batchRows = 64

// insertRows inserts result rows in statements of batchRows rows.
func insertRows(ctx context.Context, tx *sql.Tx, rows [][]any) error {
	var full *sql.Stmt
	args := make([]any, 0, batchRows*resultColumns)
	for len(rows) > 0 {
		n := min(len(rows), batchRows)
		args = args[:0]
		for _, r := range rows[:n] {
			args = append(args, r...)
		}
		rows = rows[n:]
		var err error
		if n == batchRows {
			if full == nil {
				if full, err = tx.PrepareContext(ctx, insertSQL(batchRows)); err != nil {
					return err
				}
				defer full.Close()
			}
			_, err = full.ExecContext(ctx, args...)
		} else {
			_, err = tx.ExecContext(ctx, insertSQL(n), args...)
		}
		if err != nil {
			return err
		}
	}
	return nil
}

// insertSQL returns the insert of n result rows.
func insertSQL(n int) string {
	var b strings.Builder
	b.WriteString(`INSERT INTO results (` + resultColumnList + `) VALUES `)
	for i := range n {
		if i > 0 {
			b.WriteByte(',')
		}
		b.WriteString("(?,?,?,?,?,?,?,?,?,?,?)")
	}
	return b.String()
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
	// The WAL goes back into the file every 64 pages (SQLite's default:
	// 1000), as a scan writes: the last connection's close copies what is
	// left and waits for the disk, after the scan's last probe, and a
	// sweep's whole WAL made that 7-20 ms; a quarter of a megabyte, 2-3.
	q.Add("_pragma", "wal_autocheckpoint(64)")
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
