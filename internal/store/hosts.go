package store

import (
	"context"
	"database/sql"
	"encoding/binary"
	"fmt"
	"iter"
	"net/netip"
	"slices"
	"strings"

	"portolan/internal/portspec"
	"portolan/internal/scan"
)

// hostGroup is a row of port_groups as ScanHosts reads it: the ports
// still packed.
type hostGroup struct {
	ok           bool
	addr         netip.Addr
	proto, state string
	reason       string
	ports        []byte
}

func scanHostGroup(rows *sql.Rows) (hostGroup, error) {
	var g hostGroup
	var key []byte
	if err := rows.Scan(&key, &g.proto, &g.state, &g.reason, &g.ports); err != nil {
		return g, err
	}
	a, err := parseAddrKey(key)
	g.addr = a
	return g, err
}

// PortState is one port of a host as ScanHosts yields it.
type PortState struct {
	Port   portspec.Port
	Proto  portspec.Proto
	State  scan.State
	Reason string
	// Row is the index of the port's full result in HostPorts.Rows, or -1
	// for a port stored in a group: no banner, the registry's service name,
	// its RTT and time not read.
	Row int32
}

// HostPorts are the results of one address of a scan.
type HostPorts struct {
	Addr  netip.Addr
	Ports []PortState   // by protocol name, then port
	Rows  []scan.Result // the ports stored one row each (open ones, any with a banner)
}

// ScanHosts yields the results of scan id a host at a time, in address
// order, without making a scan.Result of every closed or filtered port:
// what a diff of scans of millions of ports needs. The HostPorts and its
// slices are reused: they are valid until the next iteration. It yields
// at most one error, last.
func (s *Store) ScanHosts(ctx context.Context, id int64) iter.Seq2[*HostPorts, error] {
	return func(yield func(*HostPorts, error) bool) {
		if _, err := s.Scan(ctx, id); err != nil {
			yield(nil, err)
			return
		}
		s.hostsOf(ctx, []int64{id}, fmt.Sprint(id))(yield)
	}
}

// ScanInfoHosts is ScanHosts of si: of its shards merged for a named scan
// (Named, ResolveScan), each port once, else of scan si.ID.
func (s *Store) ScanInfoHosts(ctx context.Context, si ScanInfo) iter.Seq2[*HostPorts, error] {
	if len(si.Shards) == 0 {
		return s.ScanHosts(ctx, si.ID)
	}
	ids := make([]int64, len(si.Shards))
	for i, sh := range si.Shards {
		ids[i] = sh.ID
	}
	return s.hostsOf(ctx, ids, fmt.Sprintf("%s@%d", si.Name, si.Run))
}

// hostsOf yields the hosts of the scans ids (one, or a named scan's
// shards) as ScanHosts does. A port stored twice is given once (the full
// row's before a group's, the latest row first).
func (s *Store) hostsOf(ctx context.Context, ids []int64, label string) iter.Seq2[*HostPorts, error] {
	return func(yield func(*HostPorts, error) bool) {
		fail := func(err error) { yield(nil, fmt.Errorf("read results of scan %s: %w", label, err)) }
		in := `scan_id IN (?` + strings.Repeat(",?", len(ids)-1) + `)`
		args := make([]any, len(ids))
		for i, id := range ids {
			args[i] = id
		}
		tx, err := s.db.BeginTx(ctx, s.d.readTx())
		if err != nil {
			fail(err)
			return
		}
		defer tx.Rollback()
		// Map the file instead of reading it a page per system call: a
		// scan of millions of ports is tens of megabytes, read once.
		if s.d.name() == "sqlite" {
			if _, err := tx.ExecContext(ctx, `PRAGMA mmap_size = 1073741824`); err != nil {
				fail(err)
				return
			}
		}
		// Two queries read at once: cursors, which PostgreSQL needs for it.
		rows, err := openCursor(ctx, s, tx, "portolan_host_rows", `SELECT pos, addr, proto, port, state, reason, rtt_us, service, banner, time
			FROM results WHERE `+in+` ORDER BY addr, proto, port, time DESC`, args, resultRow)
		if err != nil {
			fail(err)
			return
		}
		defer rows.close()
		groups, err := openCursor(ctx, s, tx, "portolan_host_groups", `SELECT addr, proto, state, reason, ports FROM port_groups
			WHERE `+in+` ORDER BY addr, proto`, args, scanHostGroup)
		if err != nil {
			fail(err)
			return
		}
		defer groups.close()

		var row *scan.Result
		nextRow := func() error {
			row = nil
			r, ok, err := rows.next()
			if ok {
				row = &r
			}
			return err
		}
		var g hostGroup
		nextGroup := func() error {
			var err error
			g, g.ok, err = groups.next()
			return err
		}
		if err := nextRow(); err != nil {
			fail(err)
			return
		}
		if err := nextGroup(); err != nil {
			fail(err)
			return
		}
		var h HostPorts
		for row != nil || g.ok {
			switch {
			case !g.ok:
				h.Addr = row.Addr
			case row == nil:
				h.Addr = g.addr
			default:
				h.Addr = row.Addr
				if g.addr.Less(row.Addr) {
					h.Addr = g.addr
				}
			}
			h.Ports, h.Rows = h.Ports[:0], h.Rows[:0]
			for row != nil && row.Addr == h.Addr {
				h.Ports = append(h.Ports, PortState{Port: row.Port, Proto: row.Proto, State: row.State, Reason: row.Reason, Row: int32(len(h.Rows))})
				h.Rows = append(h.Rows, *row)
				if err := nextRow(); err != nil {
					fail(err)
					return
				}
			}
			grouped := false
			for g.ok && g.addr == h.Addr {
				grouped = true
				proto, err := portspec.ParseProto(g.proto)
				if err != nil {
					fail(err)
					return
				}
				st, err := scan.ParseState(g.state)
				if err != nil {
					fail(err)
					return
				}
				port := uint64(0)
				for b := g.ports; len(b) > 0; {
					d, n := binary.Uvarint(b)
					if n <= 0 || port+d > 65535 {
						fail(errBadGroup)
						return
					}
					port += d
					b = b[n:]
					h.Ports = append(h.Ports, PortState{Port: portspec.Port(port), Proto: proto, State: st, Reason: g.reason, Row: -1})
				}
				if err := nextGroup(); err != nil {
					fail(err)
					return
				}
			}
			if grouped || len(ids) > 1 {
				slices.SortStableFunc(h.Ports, ComparePortState)
			}
			// A port stored twice (a batch written again after its commit's
			// answer was lost, shards overlapping) is given once.
			h.Ports = slices.CompactFunc(h.Ports, func(a, b PortState) bool { return ComparePortState(a, b) == 0 })
			if !yield(&h, nil) {
				return
			}
		}
	}
}

// ComparePortState orders ports as the results query does: protocol name,
// then port.
func ComparePortState(a, b PortState) int {
	if a.Proto != b.Proto {
		return protoRank(a.Proto) - protoRank(b.Proto)
	}
	return int(a.Port) - int(b.Port)
}

// protoRank orders protocols by name, as the queries' ORDER BY proto does.
func protoRank(p portspec.Proto) int {
	switch p.String() {
	case "sctp":
		return 0
	case "tcp":
		return 1
	case "udp":
		return 2
	}
	return 3
}
