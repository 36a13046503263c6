package store

import (
	"cmp"
	"context"
	"database/sql"
	"errors"
	"fmt"
	"iter"
	"net/netip"
	"slices"
	"strings"
	"time"

	"portolan/internal/portspec"
	"portolan/internal/scan"
)

// AddResults stores results of scan id in one transaction. Give it batches
// (thousands, not one at a time): each transaction costs a WAL write of every
// page it touched. Results must carry their permutation position (Pos) so
// that ResumeScan can drop the ones past the checkpoint.
//
// Closed (conn-refused, reset) and filtered (no-response, host-timeout)
// ports with no banner and the registry's service name, nearly all of a
// scan, are stored as one group per host, protocol, state and reason of the
// batch, as nmap's XML has <extraports>: that is a hundred times fewer rows.
// Results reads them back as they went in.
func (s *Store) AddResults(ctx context.Context, id int64, results []scan.Result) error {
	if len(results) == 0 {
		return nil
	}
	var rows, groups []scan.Result
	for _, r := range results {
		if grouped(r) {
			groups = append(groups, r)
		} else {
			rows = append(rows, r)
		}
	}
	tx, err := s.db.BeginTx(ctx, nil)
	if err != nil {
		return fmt.Errorf("store results of scan %d: %w", id, err)
	}
	defer tx.Rollback()
	if err := insertResults(ctx, tx, id, rows); err != nil {
		return fmt.Errorf("store results of scan %d: %w", id, err)
	}
	if err := insertGroups(ctx, tx, id, groups); err != nil {
		return fmt.Errorf("store results of scan %d: %w", id, err)
	}
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("store results of scan %d: %w", id, err)
	}
	return nil
}

// batchRows is how many rows one INSERT carries: one statement per row costs
// a round trip through database/sql each; a few dozen per statement amortise
// it while staying far below SQLite's limit of 32766 parameters.
const batchRows = 64

const resultColumns = 11

// insertResults inserts results in statements of batchRows rows.
func insertResults(ctx context.Context, tx *sql.Tx, id int64, results []scan.Result) error {
	var full *sql.Stmt
	args := make([]any, 0, batchRows*resultColumns)
	for len(results) > 0 {
		n := min(len(results), batchRows)
		args = args[:0]
		for _, r := range results[:n] {
			if !r.Addr.IsValid() {
				return fmt.Errorf("result for port %d/%s has no address", r.Port, r.Proto)
			}
			args = append(args, id, int64(r.Pos), addrKey(r.Addr), r.Proto.String(), int(r.Port), r.State.String(), r.Reason,
				r.RTT.Microseconds(), r.Service, r.Banner, nanos(r.Time))
		}
		results = results[n:]
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
	b.WriteString(`INSERT INTO results (scan_id, pos, addr, proto, port, state, reason, rtt_us, service, banner, time) VALUES `)
	for i := range n {
		if i > 0 {
			b.WriteByte(',')
		}
		b.WriteString("(?,?,?,?,?,?,?,?,?,?,?)")
	}
	return b.String()
}

// Filter selects results. The zero Filter selects all.
type Filter struct {
	States []scan.State // only these states; empty means any
}

// Results returns the results of scan id, ordered by address (IPv4 first),
// protocol and port. A scan that does not exist is an error wrapping
// ErrNotFound.
func (s *Store) Results(ctx context.Context, id int64, f Filter) ([]scan.Result, error) {
	var out []scan.Result
	for r, err := range s.ResultsSeq(ctx, id, f) {
		if err != nil {
			return nil, err
		}
		out = append(out, r)
	}
	return out, nil
}

// ResultsSeq is Results as an iterator, for scans too large to hold in
// memory. It yields at most one error, last.
func (s *Store) ResultsSeq(ctx context.Context, id int64, f Filter) iter.Seq2[scan.Result, error] {
	return func(yield func(scan.Result, error) bool) {
		if _, err := s.Scan(ctx, id); err != nil {
			yield(scan.Result{}, err)
			return
		}
		q := `SELECT pos, addr, proto, port, state, reason, rtt_us, service, banner, time FROM results WHERE scan_id = ?`
		args := []any{id}
		if len(f.States) > 0 {
			q += ` AND state IN (?` + strings.Repeat(",?", len(f.States)-1) + `)`
			for _, st := range f.States {
				args = append(args, st.String())
			}
		}
		q += ` ORDER BY addr, proto, port`
		fail := func(err error) { yield(scan.Result{}, fmt.Errorf("read results of scan %d: %w", id, err)) }
		// One read transaction: the rows and the groups come from the same
		// snapshot even while a scan writes.
		tx, err := s.db.BeginTx(ctx, &sql.TxOptions{ReadOnly: true})
		if err != nil {
			fail(err)
			return
		}
		defer tx.Rollback()
		rows, err := tx.QueryContext(ctx, q, args...)
		if err != nil {
			fail(err)
			return
		}
		defer rows.Close()
		groups, err := readGroups(ctx, tx, id, f)
		if err != nil {
			fail(err)
			return
		}
		defer groups.close()

		// Merge the rows with the groups: a host's ports from both are
		// gathered and sorted by port; hosts with rows only stream through.
		var next *scan.Result
		advance := func() error {
			next = nil
			if !rows.Next() {
				return rows.Err()
			}
			r, err := resultRow(rows)
			next = &r
			return err
		}
		if err := advance(); err != nil {
			fail(err)
			return
		}
		var host []scan.Result
		for next != nil || groups.next != nil {
			if groups.next == nil || (next != nil && compareHost(*next, groups.next[0]) < 0) {
				if !yield(*next, nil) {
					return
				}
				if err := advance(); err != nil {
					fail(err)
					return
				}
				continue
			}
			key := groups.next[0]
			host = host[:0]
			for groups.next != nil && compareHost(groups.next[0], key) == 0 {
				host = append(host, groups.next...)
				if err := groups.advance(); err != nil {
					fail(err)
					return
				}
			}
			for next != nil && compareHost(*next, key) == 0 {
				host = append(host, *next)
				if err := advance(); err != nil {
					fail(err)
					return
				}
			}
			slices.SortFunc(host, func(a, b scan.Result) int { return cmp.Compare(a.Port, b.Port) })
			for _, r := range host {
				if !yield(r, nil) {
					return
				}
			}
		}
	}
}

// resultRow reads one row of the results query.
func resultRow(rows *sql.Rows) (scan.Result, error) {
	var (
		r                   scan.Result
		key                 []byte
		proto, state        string
		port                int
		pos, rttUs, t       int64
		reason, svc, banner string
	)
	if err := rows.Scan(&pos, &key, &proto, &port, &state, &reason, &rttUs, &svc, &banner, &t); err != nil {
		return r, err
	}
	var err error
	if r.Addr, err = parseAddrKey(key); err != nil {
		return r, err
	}
	if r.Proto, err = portspec.ParseProto(proto); err != nil {
		return r, err
	}
	if r.State, err = scan.ParseState(state); err != nil {
		return r, err
	}
	if port < 0 || port > 65535 {
		return r, fmt.Errorf("stored port %d out of range", port)
	}
	r.Port, r.Pos = portspec.Port(port), uint64(pos)
	r.Reason, r.Service, r.Banner = reason, svc, banner
	r.RTT = time.Duration(rttUs) * time.Microsecond
	r.Time = fromNanos(t)
	return r, nil
}

// addrKey encodes a as the results key: a family byte (4 or 6), the address
// bytes, then the zone, so byte order is netip.Addr.Compare order.
func addrKey(a netip.Addr) []byte {
	if a.Is4() {
		b := a.As4()
		return append([]byte{4}, b[:]...)
	}
	b := a.As16()
	return append(append([]byte{6}, b[:]...), a.Zone()...)
}

// parseAddrKey decodes what addrKey wrote.
func parseAddrKey(k []byte) (netip.Addr, error) {
	switch {
	case len(k) == 5 && k[0] == 4:
		return netip.AddrFrom4([4]byte(k[1:5])), nil
	case len(k) >= 17 && k[0] == 6:
		return netip.AddrFrom16([16]byte(k[1:17])).WithZone(string(k[17:])), nil
	}
	return netip.Addr{}, errors.New("stored address is malformed")
}
