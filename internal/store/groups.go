package store

import (
	"context"
	"database/sql"
	"encoding/binary"
	"errors"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"time"

	"portolan/internal/portspec"
	"portolan/internal/registry"
	"portolan/internal/scan"
)

// grouped reports whether r is stored in a port group rather than a row of
// its own: a state and reason that most ports of a scan share, nothing
// learnt beyond them, and the service name the registry gives its port, so
// the group restores it exactly.
func isGrouped(r scan.Result) bool {
	switch {
	case r.State == scan.Closed && (r.Reason == scan.ReasonConnRefused || r.Reason == scan.ReasonReset):
	case r.State == scan.Filtered && (r.Reason == scan.ReasonNoResponse || r.Reason == scan.ReasonHostTimeout):
	default:
		return false
	}
	return r.Banner == "" && r.Service == registry.PortName(r.Port, r.Proto)
}

// groupKey is what the results of one group share.
type groupKey struct {
	addr   netip.Addr
	proto  portspec.Proto
	state  scan.State
	reason string
}

// groupRows returns the port_groups rows (groupColumnList) of the results
// at idx, all grouped: one per groupKey, in the order the keys first
// appear.
func groupRows(id int64, results []scan.Result, idx []int32) [][]any {
	type group struct {
		key groupKey
		es  []groupEntry
	}
	scratch := entryScratch.Get().(*[2][]groupEntry)
	defer entryScratch.Put(scratch)
	var groups []*group
	byKey := map[groupKey]*group{}
	var last *group
	// Entries are taken in the order the results lie, then sorted by port:
	// reading the results in port order instead (a random order for a
	// sweep) and growing the entries one by one were most of the CPU a
	// stored sweep cost.
	for _, i := range idx {
		r := &results[i]
		k := groupKey{r.Addr, r.Proto, r.State, r.Reason}
		// A sweep's results come in runs of one key: skip the map for them.
		if last == nil || k != last.key {
			g, ok := byKey[k]
			if !ok {
				g = &group{key: k}
				if len(groups) == 0 {
					// Usually the only one.
					if cap(scratch[0]) < len(idx) {
						scratch[0] = make([]groupEntry, 0, len(idx))
					}
					g.es = scratch[0][:0]
				}
				byKey[k] = g
				groups = append(groups, g)
			}
			last = g
		}
		last.es = append(last.es, groupEntry{port: r.Port, pos: r.Pos, rttUs: max(0, r.RTT.Microseconds()), time: nanos(r.Time)})
	}
	out := make([][]any, 0, len(groups))
	for _, g := range groups {
		if cap(scratch[1]) < len(g.es) {
			scratch[1] = make([]groupEntry, len(g.es))
		}
		sortByPort(g.es, scratch[1][:len(g.es)])
		e := encodeGroup(g.es)
		out = append(out, []any{id, int64(e.lo), int64(e.hi), addrKey(g.key.addr), g.key.proto.String(), g.key.state.String(),
			g.key.reason, e.base, e.ports, e.detail})
	}
	return out
}

// entryScratch holds the entries of a batch's first group and the sort's
// scratch, for the next batch: allocating them for each was most of the
// memory a stored sweep asked of the garbage collector.
var entryScratch = sync.Pool{New: func() any { return new([2][]groupEntry) }}

// sortByPort sorts es by port, stably, with tmp (as long as es) as
// scratch: a radix sort on the port's two bytes. A comparison sort of a
// sweep's batches was a third of the writer's CPU.
func sortByPort(es, tmp []groupEntry) {
	var lo, hi [257]int
	for _, e := range es {
		lo[e.port&0xff+1]++
		hi[e.port>>8+1]++
	}
	for i := 1; i < len(lo); i++ {
		lo[i] += lo[i-1]
		hi[i] += hi[i-1]
	}
	for _, e := range es {
		tmp[lo[e.port&0xff]] = e
		lo[e.port&0xff]++
	}
	for _, e := range tmp {
		es[hi[e.port>>8]] = e
		hi[e.port>>8]++
	}
}

// groupEntry is one port of a stored group: what a result row holds beyond
// the group's key.
type groupEntry struct {
	port  portspec.Port
	pos   uint64
	rttUs int64
	time  int64 // unix nanoseconds; 0 for none
}

// encodedGroup is a group as stored: the lowest and highest position, the
// earliest time (base), the ports as ascending uvarint deltas, and per port
// (in the same order) uvarint position-lo, RTT in µs, and time-base+1 (0
// for no time).
type encodedGroup struct {
	lo, hi        uint64
	base          int64
	ports, detail []byte
}

// encodeGroup stores es, which are sorted by port.
func encodeGroup(es []groupEntry) encodedGroup {
	var g encodedGroup
	if len(es) == 0 {
		return g
	}
	g.lo, g.hi = es[0].pos, es[0].pos
	for _, e := range es {
		g.lo, g.hi = min(g.lo, e.pos), max(g.hi, e.pos)
		if e.time != 0 && (g.base == 0 || e.time < g.base) {
			g.base = e.time
		}
	}
	prev := 0
	g.ports = make([]byte, 0, len(es)*2)
	g.detail = make([]byte, 0, len(es)*8)
	for _, e := range es {
		g.ports = binary.AppendUvarint(g.ports, uint64(int(e.port)-prev))
		prev = int(e.port)
		g.detail = binary.AppendUvarint(g.detail, e.pos-g.lo)
		g.detail = binary.AppendUvarint(g.detail, uint64(e.rttUs))
		t := uint64(0)
		if e.time != 0 {
			t = uint64(e.time-g.base) + 1
		}
		g.detail = binary.AppendUvarint(g.detail, t)
	}
	return g
}

var errBadGroup = errors.New("stored port group is malformed")

// decodeGroup is the inverse of encodeGroup.
func decodeGroup(g encodedGroup) ([]groupEntry, error) {
	var out []groupEntry
	port := uint64(0)
	ports, detail := g.ports, g.detail
	var v [3]uint64
	for len(ports) > 0 {
		d, n := binary.Uvarint(ports)
		if n <= 0 || port+d > 65535 {
			return nil, errBadGroup
		}
		port += d
		ports = ports[n:]
		for i := range v {
			x, m := binary.Uvarint(detail)
			if m <= 0 {
				return nil, errBadGroup
			}
			v[i], detail = x, detail[m:]
		}
		e := groupEntry{port: portspec.Port(port), pos: g.lo + v[0], rttUs: int64(v[1])}
		if v[2] != 0 {
			e.time = g.base + int64(v[2]-1)
		}
		out = append(out, e)
	}
	if len(detail) > 0 {
		return nil, errBadGroup
	}
	return out, nil
}

// trimGroups drops from the groups of scan id the ports at or past
// position from, as ResumeScan does with result rows.
func (s *Store) trimGroups(ctx context.Context, tx *sql.Tx, id int64, from uint64) error {
	if _, err := tx.ExecContext(ctx, s.q(`DELETE FROM port_groups WHERE scan_id = ? AND pos >= ?`), id, int64(from)); err != nil {
		return err
	}
	type straddler struct {
		rowid int64
		g     encodedGroup
	}
	rows, err := tx.QueryContext(ctx, s.q(`SELECT id, pos, base, ports, detail FROM port_groups WHERE scan_id = ? AND max_pos >= ?`), id, int64(from))
	if err != nil {
		return err
	}
	var todo []straddler
	for rows.Next() {
		var st straddler
		var lo int64
		if err := rows.Scan(&st.rowid, &lo, &st.g.base, &st.g.ports, &st.g.detail); err != nil {
			rows.Close()
			return err
		}
		st.g.lo = uint64(lo)
		todo = append(todo, st)
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return err
	}
	for _, st := range todo {
		es, err := decodeGroup(st.g)
		if err != nil {
			return err
		}
		// Some port stays: the lowest position is below from.
		g := encodeGroup(slices.DeleteFunc(es, func(e groupEntry) bool { return e.pos >= from }))
		if _, err := tx.ExecContext(ctx, s.q(`UPDATE port_groups SET pos = ?, max_pos = ?, base = ?, ports = ?, detail = ? WHERE id = ?`),
			int64(g.lo), int64(g.hi), g.base, g.ports, g.detail, st.rowid); err != nil {
			return err
		}
	}
	return nil
}

// groupReader yields the ports of a scan's groups, one (address, protocol)
// at a time, in the order of the results query.
type groupReader struct {
	c    *cursor[[]scan.Result]
	next []scan.Result // the ports of the next group, by port; nil at the end
}

// readGroups reads the groups that match where (a condition on
// port_groups' columns, with its args).
func (s *Store) readGroups(ctx context.Context, tx *sql.Tx, where string, args []any) (*groupReader, error) {
	c, err := openCursor(ctx, s, tx, "portolan_groups", `SELECT pos, addr, proto, state, reason, base, ports, detail FROM port_groups
		WHERE `+where+` ORDER BY addr, proto`, args, groupRow)
	if err != nil {
		return nil, err
	}
	g := &groupReader{c: c}
	return g, g.advance()
}

// advance reads the next group with ports into g.next.
func (g *groupReader) advance() error {
	for {
		next, ok, err := g.c.next()
		g.next = nil
		if !ok || err != nil {
			return err
		}
		if len(next) > 0 {
			g.next = next
			return nil
		}
	}
}

// groupRow reads a row of port_groups as its ports' results.
func groupRow(rows *sql.Rows) ([]scan.Result, error) {
	var (
		enc                  encodedGroup
		lo                   int64
		key                  []byte
		proto, state, reason string
	)
	if err := rows.Scan(&lo, &key, &proto, &state, &reason, &enc.base, &enc.ports, &enc.detail); err != nil {
		return nil, err
	}
	enc.lo = uint64(lo)
	addr, err := parseAddrKey(key)
	if err != nil {
		return nil, err
	}
	pr, err := portspec.ParseProto(proto)
	if err != nil {
		return nil, err
	}
	st, err := scan.ParseState(state)
	if err != nil {
		return nil, err
	}
	es, err := decodeGroup(enc)
	if err != nil {
		return nil, err
	}
	out := make([]scan.Result, len(es))
	for i, e := range es {
		out[i] = scan.Result{Addr: addr, Port: e.port, Proto: pr, State: st, Reason: reason,
			RTT: time.Duration(e.rttUs) * time.Microsecond, Service: registry.PortName(e.port, pr),
			Pos: e.pos, Time: fromNanos(e.time)}
	}
	return out, nil
}

func (g *groupReader) close() { g.c.close() }

// compareHost orders results as the results query does: by address key,
// then protocol name.
func compareHost(a, b scan.Result) int {
	if c := a.Addr.Compare(b.Addr); c != 0 {
		return c
	}
	return strings.Compare(a.Proto.String(), b.Proto.String())
}
