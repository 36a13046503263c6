package store

import (
	"context"
	"database/sql"
	"database/sql/driver"
	"errors"
	"fmt"
	"hash/fnv"
	"io"
	"net"
	"net/url"
	"strings"
	"sync/atomic"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/stdlib" // registers the "pgx" database/sql driver
)

// openPostgres opens the PostgreSQL database at the URL dsn. The database
// must exist; its tables are created on first use. A database with tables
// of its own and none of portolan's is refused, as a foreign SQLite file is.
func openPostgres(ctx context.Context, dsn string) (*Store, error) {
	shown := redact(dsn)
	cfg, err := pgx.ParseConfig(dsn)
	if err != nil {
		return nil, fmt.Errorf("open store %s: %w", shown, err)
	}
	// One round trip per statement: a scan's process is short-lived, so
	// preparing each statement first (pgx's default) costs more than it
	// saves.
	cfg.DefaultQueryExecMode = pgx.QueryExecModeExec
	db := stdlib.OpenDB(*cfg)
	// A scan writes from one goroutine, reads come one query at a time: a
	// few connections serve a process; many processes share the server.
	db.SetMaxOpenConns(4)
	db.SetMaxIdleConns(2)
	s := &Store{db: db, d: postgresDialect{plainTOAST: new(atomic.Bool)}, path: shown}
	// No ping first: the first query connects, and says so when it cannot.
	if err := s.open(ctx); err != nil {
		db.Close()
		return nil, fmt.Errorf("open store %s: %w", shown, err)
	}
	return s, nil
}

// redact hides the password of a database URL in messages.
func redact(dsn string) string {
	u, err := url.Parse(dsn)
	if err != nil {
		return "postgres://..." // unparsable: do not echo what may hold a password
	}
	return u.Redacted()
}

// postgresDialect is PostgreSQL through pgx's database/sql driver, with
// pgx's own connection for COPY.
type postgresDialect struct {
	// plainTOAST is set once the server refused lz4 for the values it
	// compresses (before PostgreSQL 14, or built without it): writes use
	// its default then. Nil means try lz4 every time.
	plainTOAST *atomic.Bool
}

// toastCompression is how the server compresses the large values a write
// brings (a sweep's port groups, tens of kilobytes each): lz4, which cost
// the server a quarter less CPU per stored sweep than its default, pglz,
// on the cores the scan needs. Reading them back is the same either way.
// A variable for the test of a server that refuses it.
var toastCompression = "lz4"

func (postgresDialect) name() string           { return "postgres" }
func (postgresDialect) rebind(q string) string { return numberedRebind(q) }
func (postgresDialect) emptyWhat() string      { return "database" }

func (postgresDialect) tables(ctx context.Context, db *sql.DB) ([]string, error) {
	// pg_tables, not information_schema.tables: the same answer, a sixth of
	// the time, paid by every command that opens the store.
	return queryStrings(ctx, db, `SELECT tablename::text FROM pg_catalog.pg_tables WHERE schemaname = current_schema() ORDER BY 1`)
}

// lock takes a transaction-scoped advisory lock on key: PostgreSQL's
// transactions do not queue writers as SQLite's immediate ones do.
func (postgresDialect) lock(ctx context.Context, tx *sql.Tx, key string) error {
	h := fnv.New64a()
	h.Write([]byte("portolan/" + key))
	_, err := tx.ExecContext(ctx, `SELECT pg_advisory_xact_lock($1)`, int64(h.Sum64()))
	return err
}

// lockLazy is lock, and tx's commit does not wait for its WAL to reach
// the disk (SET LOCAL synchronous_commit = off), in the same round trip.
func (postgresDialect) lockLazy(ctx context.Context, tx *sql.Tx, key string) error {
	h := fnv.New64a()
	h.Write([]byte("portolan/" + key))
	_, err := tx.ExecContext(ctx, `SELECT pg_advisory_xact_lock($1), set_config('synchronous_commit', 'off', true)`, int64(h.Sum64()))
	return err
}

// transient: the connection failed or broke (the server restarting or
// unreachable), or the server says it is shutting down, starting up, out
// of connections, or that a transaction must be retried. An error in the
// SQL or the schema repeats.
func (postgresDialect) transient(err error) bool {
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) {
		switch {
		case strings.HasPrefix(pgErr.Code, "08"), // connection exception
			strings.HasPrefix(pgErr.Code, "57P"),         // admin or crash shutdown, cannot connect now
			pgErr.Code == "53300",                        // too many connections
			pgErr.Code == "40001", pgErr.Code == "40P01": // serialization failure, deadlock
			return true
		}
		return false
	}
	var netErr net.Error
	var connErr *pgconn.ConnectError
	return errors.As(err, &netErr) || errors.As(err, &connErr) || errors.Is(err, driver.ErrBadConn) ||
		errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) || pgconn.SafeToRetry(err) || pgconn.Timeout(err) ||
		errors.Is(err, sql.ErrConnDone)
}

// readTx: PostgreSQL's default isolation gives each statement its own
// snapshot; the rows and the groups of one read must share one.
func (postgresDialect) readTx() *sql.TxOptions {
	return &sql.TxOptions{ReadOnly: true, Isolation: sql.LevelRepeatableRead}
}

// addResults writes with COPY, PostgreSQL's bulk path, in one
// transaction: four round trips for a batch of one kind of row (BEGIN with
// its setting, COPY's two, COMMIT) where statements would take one each.
func (d postgresDialect) addResults(ctx context.Context, db *sql.DB, rows, groups [][]any) error {
	conn, err := db.Conn(ctx)
	if err != nil {
		return err
	}
	defer conn.Close()
	return conn.Raw(func(dc any) error {
		sc, ok := dc.(*stdlib.Conn)
		if !ok {
			return errors.New("postgres connection is not pgx's")
		}
		c := sc.Conn()
		// The commit does not wait for the WAL to reach the disk: the
		// checkpoint that vouches for these results commits synchronously,
		// and flushing its WAL flushes everything written before it. A
		// crash between the two loses results past the last checkpoint,
		// which a resume probes again anyway. Waiting for each batch's
		// flush made the writer slower than a fast scan.
		if err := d.begin(ctx, c); err != nil {
			return err
		}
		err := func() error {
			if len(rows) > 0 {
				if _, err := c.CopyFrom(ctx, pgx.Identifier{"results"}, resultColumnNames, pgx.CopyFromRows(rows)); err != nil {
					return err
				}
			}
			if len(groups) > 0 {
				if _, err := c.CopyFrom(ctx, pgx.Identifier{"port_groups"}, groupColumnNames, pgx.CopyFromRows(groups)); err != nil {
					return err
				}
			}
			_, err := c.Exec(ctx, `COMMIT`)
			return err
		}()
		if err != nil {
			if _, rerr := c.Exec(context.WithoutCancel(ctx), `ROLLBACK`); rerr != nil {
				return errors.Join(err, driver.ErrBadConn) // the pool drops the connection
			}
		}
		return err
	})
}

// begin starts a write's transaction on c: its commit does not wait for the
// WAL's flush, and its large values are compressed with toastCompression
// unless the server refused it before.
func (d postgresDialect) begin(ctx context.Context, c *pgx.Conn) error {
	const begin = `BEGIN; SET LOCAL synchronous_commit = off`
	if d.plainTOAST != nil && d.plainTOAST.Load() {
		_, err := c.Exec(ctx, begin)
		return err
	}
	_, err := c.Exec(ctx, begin+`; SET LOCAL default_toast_compression = `+toastCompression)
	var pgErr *pgconn.PgError
	if err == nil || !errors.As(err, &pgErr) || (pgErr.Code != "22023" && pgErr.Code != "42704") {
		return err // 22023: not built with it; 42704: no such setting (before 14)
	}
	if _, err := c.Exec(ctx, `ROLLBACK`); err != nil {
		return errors.Join(err, driver.ErrBadConn)
	}
	if d.plainTOAST != nil {
		d.plainTOAST.Store(true)
	}
	_, err = c.Exec(ctx, begin)
	return err
}
