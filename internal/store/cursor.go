package store

import (
	"context"
	"database/sql"
	"strconv"
)

// cursor reads the rows of a query in a read transaction, as T. Merging
// results with port groups reads two queries at once: SQLite's driver
// interleaves two open result sets, a PostgreSQL connection cannot, so
// there each query is a server-side cursor fetched in batches.
type cursor[T any] struct {
	ctx     context.Context
	tx      *sql.Tx
	scanRow func(*sql.Rows) (T, error)

	rows  *sql.Rows // SQLite: the open result set
	fetch string    // PostgreSQL: the FETCH of the next batch
	buf   []T
	done  bool
}

// fetchRows is how many rows a PostgreSQL cursor fetches at once.
const fetchRows = 4096

func openCursor[T any](ctx context.Context, s *Store, tx *sql.Tx, name, query string, args []any, scanRow func(*sql.Rows) (T, error)) (*cursor[T], error) {
	c := &cursor[T]{ctx: ctx, tx: tx, scanRow: scanRow}
	if s.d.name() != "postgres" {
		rows, err := tx.QueryContext(ctx, query, args...)
		c.rows = rows
		return c, err
	}
	if _, err := tx.ExecContext(ctx, `DECLARE `+name+` NO SCROLL CURSOR FOR `+s.q(query), args...); err != nil {
		return nil, err
	}
	c.fetch = `FETCH FORWARD ` + strconv.Itoa(fetchRows) + ` FROM ` + name
	return c, nil
}

// next returns the next row; false at the end.
func (c *cursor[T]) next() (T, bool, error) {
	var zero T
	if c.rows != nil {
		if !c.rows.Next() {
			return zero, false, c.rows.Err()
		}
		v, err := c.scanRow(c.rows)
		return v, err == nil, err
	}
	if len(c.buf) == 0 {
		if c.done {
			return zero, false, nil
		}
		if err := c.fill(); err != nil {
			return zero, false, err
		}
		if len(c.buf) == 0 {
			return zero, false, nil
		}
	}
	v := c.buf[0]
	c.buf = c.buf[1:]
	return v, true, nil
}

// fill reads the next batch of a PostgreSQL cursor whole, so the other
// cursor can fetch on the same connection.
func (c *cursor[T]) fill() error {
	rows, err := c.tx.QueryContext(c.ctx, c.fetch)
	if err != nil {
		return err
	}
	defer rows.Close()
	c.buf = c.buf[:0]
	for rows.Next() {
		v, err := c.scanRow(rows)
		if err != nil {
			return err
		}
		c.buf = append(c.buf, v)
	}
	if len(c.buf) < fetchRows {
		c.done = true
	}
	return rows.Err()
}

func (c *cursor[T]) close() {
	if c.rows != nil {
		c.rows.Close()
	}
}
