package store

import (
	"context"
	"database/sql"
	"fmt"
	"net/netip"
	"strings"
	"time"

	"portolan/internal/portspec"
	"portolan/internal/watch"
)

const eventColumns = 16

// AddEvents stores watch events in one transaction.
func (s *Store) AddEvents(ctx context.Context, evs []watch.Event) error {
	if len(evs) == 0 {
		return nil
	}
	tx, err := s.db.BeginTx(ctx, nil)
	if err != nil {
		return fmt.Errorf("store events: %w", err)
	}
	defer tx.Rollback()
	args := make([]any, 0, batchRows*eventColumns)
	for len(evs) > 0 {
		n := min(len(evs), batchRows)
		args = args[:0]
		for _, e := range evs[:n] {
			if !e.Src.IsValid() || !e.Dst.IsValid() {
				return fmt.Errorf("store events: %s event at %s has no address", e.Type, e.Time.Format(time.RFC3339Nano))
			}
			source := ""
			if e.Source.IsValid() {
				source = e.Source.String()
			}
			proto := ""
			if e.Proto != 0 {
				proto = e.Proto.String()
			}
			kind := ""
			if e.Kind != 0 {
				kind = e.Kind.String()
			}
			args = append(args, nanos(e.Time), e.Type, addrKey(e.Src.Unmap()), int(e.SrcPort), addrKey(e.Dst.Unmap()), proto, int(e.Port),
				kind, int(e.Flags), source, string(e.Scan), e.Score, e.Offence, int64(e.Ban), e.Action)
		}
		evs = evs[n:]
		if _, err := tx.ExecContext(ctx, s.q(eventInsertSQL(n)), args...); err != nil {
			return fmt.Errorf("store events: %w", err)
		}
	}
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("store events: %w", err)
	}
	return nil
}

func eventInsertSQL(n int) string {
	var b strings.Builder
	b.WriteString(`INSERT INTO events (time, type, src, src_port, dst, proto, port, kind, flags, source, scan, score, offence, ban_ns, action) VALUES `)
	for i := range n {
		if i > 0 {
			b.WriteByte(',')
		}
		b.WriteString("(?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)")
	}
	return b.String()
}

// EventQuery selects events. The zero EventQuery selects all, oldest
// first.
type EventQuery struct {
	Since, Until time.Time    // zero: unbounded
	Source       netip.Prefix // only sources in it; invalid: any
	Types        []string     // only these types; empty: any
	Limit        int          // at most this many, the latest; 0: all
}

// Events returns the events q selects, in time order.
func (s *Store) Events(ctx context.Context, q EventQuery) ([]watch.Event, error) {
	var where []string
	var args []any
	if !q.Since.IsZero() {
		where = append(where, "time >= ?")
		args = append(args, q.Since.UnixNano())
	}
	if !q.Until.IsZero() {
		where = append(where, "time < ?")
		args = append(args, q.Until.UnixNano())
	}
	if q.Source.IsValid() {
		p := netip.PrefixFrom(q.Source.Addr().Unmap(), q.Source.Bits())
		if q.Source.Addr().Is4In6() {
			p = netip.PrefixFrom(p.Addr(), max(q.Source.Bits()-96, 0))
		}
		p = p.Masked()
		where = append(where, "src >= ? AND src <= ?")
		args = append(args, addrKey(p.Addr()), append(addrKey(lastAddr(p)), 0xff))
	}
	if len(q.Types) > 0 {
		where = append(where, "type IN (?"+strings.Repeat(",?", len(q.Types)-1)+")")
		for _, t := range q.Types {
			args = append(args, t)
		}
	}
	const cols = `id, time, type, src, src_port, dst, proto, port, kind, flags, source, scan, score, offence, ban_ns, action`
	query := `SELECT ` + cols + ` FROM events`
	if len(where) > 0 {
		query += " WHERE " + strings.Join(where, " AND ")
	}
	if q.Limit > 0 {
		query = `SELECT ` + cols + ` FROM (` + query + ` ORDER BY time DESC, id DESC LIMIT ?) AS latest`
		args = append(args, q.Limit)
	}
	query += " ORDER BY time, id"
	rows, err := s.db.QueryContext(ctx, s.q(query), args...)
	if err != nil {
		return nil, fmt.Errorf("read events: %w", err)
	}
	defer rows.Close()
	var out []watch.Event
	for rows.Next() {
		e, err := eventRow(rows)
		if err != nil {
			return nil, fmt.Errorf("read events: %w", err)
		}
		out = append(out, e)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("read events: %w", err)
	}
	return out, nil
}

func eventRow(rows *sql.Rows) (watch.Event, error) {
	var (
		e                        watch.Event
		id, ns, ban              int64
		src, dst                 []byte
		srcPort, port, flags     int
		proto, kind, source, scn string
	)
	if err := rows.Scan(&id, &ns, &e.Type, &src, &srcPort, &dst, &proto, &port, &kind, &flags, &source, &scn, &e.Score, &e.Offence, &ban, &e.Action); err != nil {
		return e, err
	}
	var err error
	if e.Src, err = parseAddrKey(src); err != nil {
		return e, err
	}
	if e.Dst, err = parseAddrKey(dst); err != nil {
		return e, err
	}
	e.Time, e.SrcPort, e.Port, e.Flags, e.Scan, e.Ban = fromNanos(ns), uint16(srcPort), portspec.Port(port), uint8(flags), watch.ScanKind(scn), time.Duration(ban)
	if proto != "" {
		if e.Proto, err = portspec.ParseProto(proto); err != nil {
			return e, err
		}
	}
	if kind != "" {
		if err := e.Kind.UnmarshalText([]byte(kind)); err != nil {
			return e, err
		}
	}
	if source != "" {
		if e.Source, err = netip.ParsePrefix(source); err != nil {
			return e, err
		}
	}
	return e, nil
}

// lastAddr is the highest address in p.
func lastAddr(p netip.Prefix) netip.Addr {
	b := p.Addr().AsSlice()
	for i := range b {
		bit := i * 8
		switch {
		case bit >= p.Bits():
			b[i] = 0xff
		case bit+8 > p.Bits():
			b[i] |= 0xff >> (p.Bits() - bit)
		}
	}
	a, _ := netip.AddrFromSlice(b)
	return a
}
