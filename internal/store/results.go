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
	rows, groups, err := s.resultRows(id, results)
	if err != nil {
		return fmt.Errorf("store results of scan %d: %w", id, err)
	}
	if err := s.d.addResults(ctx, s.db, rows, groups); err != nil {
		return fmt.Errorf("store results of scan %d: %w", id, err)
	}
	return nil
}

// resultRows turns results into the rows of results (resultColumnList)
// and of port_groups (groupColumnList).
func (s *Store) resultRows(id int64, results []scan.Result) (rows, groups [][]any, err error) {
	// Indexes, not copies: a result is some 170 bytes, and copying each of
	// a -p- sweep's into a growing slice was most of this function's time.
	grouped := make([]int32, 0, len(results))
	for i, r := range results {
		if !r.Addr.IsValid() {
			return nil, nil, fmt.Errorf("result for port %d/%s has no address", r.Port, r.Proto)
		}
		if isGrouped(r) {
			grouped = append(grouped, int32(i))
			continue
		}
		var banner any = r.Banner
		if s.d.name() == "postgres" {
			banner = []byte(r.Banner) // BYTEA: a banner is any bytes
		}
		rows = append(rows, []any{id, int64(r.Pos), addrKey(r.Addr), r.Proto.String(), int(r.Port), r.State.String(), r.Reason,
			r.RTT.Microseconds(), r.Service, banner, nanos(r.Time)})
	}
	return rows, groupRows(id, results, grouped), nil
}

// insertInTx writes result and group rows inside tx, for a caller that
// writes more in the same transaction (an import). Bulk writes of a
// running scan go through the dialect's addResults instead.
func (s *Store) insertInTx(ctx context.Context, tx *sql.Tx, rows, groups [][]any) error {
	for _, w := range []struct {
		table, cols string
		n           int
		rows        [][]any
	}{{"results", resultColumnList, resultColumns, rows}, {"port_groups", groupColumnList, groupColumns, groups}} {
		if len(w.rows) == 0 {
			continue
		}
		stmt, err := tx.PrepareContext(ctx, s.q(`INSERT INTO `+w.table+` (`+w.cols+`) VALUES (?`+strings.Repeat(",?", w.n-1)+`)`))
		if err != nil {
			return err
		}
		for _, r := range w.rows {
			if _, err := stmt.ExecContext(ctx, r...); err != nil {
				stmt.Close()
				return err
			}
		}
		stmt.Close()
	}
	return nil
}

// The columns of a result row and of a port group, in the order the
// insert values are built.
const (
	resultColumnList = `scan_id, pos, addr, proto, port, state, reason, rtt_us, service, banner, time`
	groupColumnList  = `scan_id, pos, max_pos, addr, proto, state, reason, base, ports, detail`
	resultColumns    = 11
	groupColumns     = 10
)

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
		s.resultsOf(ctx, []int64{id}, f)(func(r scan.Result, err error) bool {
			if err != nil {
				err = fmt.Errorf("read results of scan %d: %w", id, err)
			}
			return yield(r, err)
		})
	}
}

// resultsOf yields the results of the scans ids (the shards of a named
// scan, or one scan) as one, ordered by address, protocol and port. A port
// stored more than once (two shards' runs overlapped, a batch written again
// after its commit's answer was lost) is given once: its latest result.
func (s *Store) resultsOf(ctx context.Context, ids []int64, f Filter) iter.Seq2[scan.Result, error] {
	return func(yield func(scan.Result, error) bool) {
		fail := func(err error) { yield(scan.Result{}, err) }
		if len(ids) == 0 {
			return
		}
		where := `scan_id IN (?` + strings.Repeat(",?", len(ids)-1) + `)`
		var args []any
		for _, id := range ids {
			args = append(args, id)
		}
		if len(f.States) > 0 {
			where += ` AND state IN (?` + strings.Repeat(",?", len(f.States)-1) + `)`
			for _, st := range f.States {
				args = append(args, st.String())
			}
		}
		// One read transaction: the rows and the groups come from the same
		// snapshot even while a scan writes.
		tx, err := s.db.BeginTx(ctx, s.d.readTx())
		if err != nil {
			fail(err)
			return
		}
		defer tx.Rollback()
		rows, err := openCursor(ctx, s, tx, "portolan_results", `SELECT pos, addr, proto, port, state, reason, rtt_us, service, banner, time
			FROM results WHERE `+where+` ORDER BY addr, proto, port, time DESC`, args, resultRow)
		if err != nil {
			fail(err)
			return
		}
		defer rows.close()
		groups, err := s.readGroups(ctx, tx, where, args)
		if err != nil {
			fail(err)
			return
		}
		defer groups.close()

		// last is the port yielded last: a repeat of it is skipped.
		var last scan.Result
		haveLast := false
		emit := func(r scan.Result) bool {
			if haveLast && r.Port == last.Port && compareHost(r, last) == 0 {
				return true
			}
			last, haveLast = r, true
			return yield(r, nil)
		}
		// Merge the rows with the groups: a host's ports from both are
		// gathered and sorted by port (latest first); hosts with rows only
		// stream through.
		var next *scan.Result
		advance := func() error {
			r, ok, err := rows.next()
			next = nil
			if ok {
				next = &r
			}
			return err
		}
		if err := advance(); err != nil {
			fail(err)
			return
		}
		var host []scan.Result
		for next != nil || groups.next != nil {
			if groups.next == nil || (next != nil && compareHost(*next, groups.next[0]) < 0) {
				if !emit(*next) {
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
			slices.SortStableFunc(host, func(a, b scan.Result) int {
				return cmp.Or(cmp.Compare(a.Port, b.Port), b.Time.Compare(a.Time))
			})
			for _, r := range host {
				if !emit(r) {
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
