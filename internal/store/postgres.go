package store

import (
	"bytes"
	"context"
	"database/sql"
	"database/sql/driver"
	"encoding/binary"
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
// transaction, in binary made here: one round trip for a batch of one kind
// of row (BEGIN with its settings, the COPY, COMMIT, in one query), two
// for both. pgx's CopyFrom took five: it asks the server for the columns'
// types before each COPY.
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
		c := sc.Conn().PgConn()
		err := d.copyIn(ctx, c, rows, groups)
		var pgErr *pgconn.PgError
		if errors.As(err, &pgErr) && (pgErr.Code == "22023" || pgErr.Code == "42704") && d.plainTOAST != nil && !d.plainTOAST.Load() {
			// The server refused toastCompression (22023: not built
			// with it; 42704: no such setting, before 14): once more
			// in its default, and from now on.
			d.plainTOAST.Store(true)
			if err := rollback(ctx, c); err != nil {
				return err
			}
			err = d.copyIn(ctx, c, rows, groups)
		}
		if err != nil {
			if rerr := rollback(ctx, c); rerr != nil {
				return errors.Join(err, rerr)
			}
		}
		return err
	})
}

// copyIn writes rows and groups in one transaction on c, whose commit
// does not wait for the WAL to reach the disk: the checkpoint that vouches
// for these results commits synchronously, and flushing its WAL flushes
// everything written before it. A crash between the two loses results
// past the last checkpoint, which a resume probes again anyway. Waiting
// for each batch's flush made the writer slower than a fast scan.
func (d postgresDialect) copyIn(ctx context.Context, c *pgconn.PgConn, rows, groups [][]any) error {
	type table struct {
		name, cols, types string
		rows              [][]any
	}
	var todo []table
	if len(rows) > 0 {
		todo = append(todo, table{"results", resultColumnList, resultCopyTypes, rows})
	}
	if len(groups) > 0 {
		todo = append(todo, table{"port_groups", groupColumnList, groupCopyTypes, groups})
	}
	var buf []byte
	for i, t := range todo {
		q := `COPY ` + t.name + ` (` + t.cols + `) FROM STDIN (FORMAT binary)`
		if i == 0 {
			q = `BEGIN; SET LOCAL synchronous_commit = off; ` + d.compression() + q
		}
		if i == len(todo)-1 {
			q += `; COMMIT`
		}
		var err error
		if buf, err = appendCopy(buf[:0], t.types, t.rows); err != nil {
			return fmt.Errorf("copy into %s: %w", t.name, err)
		}
		if _, err := c.CopyFrom(ctx, bytes.NewReader(buf), q); err != nil {
			return err
		}
	}
	return nil
}

// compression is the setting that asks for toastCompression, unless the
// server refused it before.
func (d postgresDialect) compression() string {
	if d.plainTOAST != nil && d.plainTOAST.Load() {
		return ""
	}
	return `SET LOCAL default_toast_compression = ` + toastCompression + `; `
}

// rollback ends c's transaction after a failed write. A connection that
// cannot say even that is dropped by the pool (driver.ErrBadConn).
func rollback(ctx context.Context, c *pgconn.PgConn) error {
	if err := c.Exec(context.WithoutCancel(ctx), `ROLLBACK`).Close(); err != nil {
		return errors.Join(err, driver.ErrBadConn)
	}
	return nil
}

// The binary COPY types of the columns of resultColumnList and
// groupColumnList, in order: l BIGINT, i INTEGER, t TEXT, b BYTEA.
const (
	resultCopyTypes = "llbtittltbl"
	groupCopyTypes  = "lllbtttlbb"
)

// appendCopy appends rows to buf in PostgreSQL's binary COPY format, as
// columns of types; a value of another kind than its column's is an error.
func appendCopy(buf []byte, types string, rows [][]any) ([]byte, error) {
	buf = append(buf, "PGCOPY\n\377\r\n\000"...)
	buf = binary.BigEndian.AppendUint32(buf, 0) // flags
	buf = binary.BigEndian.AppendUint32(buf, 0) // header extension
	for _, r := range rows {
		if len(r) != len(types) {
			return nil, fmt.Errorf("row of %d values for %d columns", len(r), len(types))
		}
		buf = binary.BigEndian.AppendUint16(buf, uint16(len(r)))
		for i, v := range r {
			switch types[i] {
			case 'l', 'i':
				var n int64
				switch v := v.(type) {
				case int64:
					n = v
				case int:
					n = int64(v)
				default:
					return nil, fmt.Errorf("column %d: %T is not an integer", i+1, v)
				}
				if types[i] == 'l' {
					buf = binary.BigEndian.AppendUint32(buf, 8)
					buf = binary.BigEndian.AppendUint64(buf, uint64(n))
				} else {
					if n != int64(int32(n)) {
						return nil, fmt.Errorf("column %d: %d out of range", i+1, n)
					}
					buf = binary.BigEndian.AppendUint32(buf, 4)
					buf = binary.BigEndian.AppendUint32(buf, uint32(n))
				}
			default:
				switch v := v.(type) {
				case string:
					buf = binary.BigEndian.AppendUint32(buf, uint32(len(v)))
					buf = append(buf, v...)
				case []byte:
					buf = binary.BigEndian.AppendUint32(buf, uint32(len(v)))
					buf = append(buf, v...)
				default:
					return nil, fmt.Errorf("column %d: %T is not text or bytes", i+1, v)
				}
			}
		}
	}
	return binary.BigEndian.AppendUint16(buf, 0xffff), nil // the trailer: -1
}
