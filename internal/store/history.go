package store

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"time"

	"portolan/internal/portspec"
	"portolan/internal/scan"
)

// What scan history (diff, import, timeline, report) needs from the store
// beyond scans and their results. Plain SQL only, as everywhere here.

// VersionKey names a port of a scan in ScanInfo's "versions" option.
type VersionKey struct {
	Addr  netip.Addr
	Port  portspec.Port
	Proto portspec.Proto
}

// String is the key as stored: "198.18.0.2 22/tcp".
func (k VersionKey) String() string {
	return k.Addr.String() + " " + strconv.Itoa(int(k.Port)) + "/" + k.Proto.String()
}

// parseVersionKey reads what VersionKey.String writes.
func parseVersionKey(s string) (VersionKey, error) {
	a, pp, ok := strings.Cut(s, " ")
	p, proto, ok2 := strings.Cut(pp, "/")
	if !ok || !ok2 {
		return VersionKey{}, fmt.Errorf("version key %q: want \"ADDR PORT/PROTO\"", s)
	}
	var k VersionKey
	var err error
	if k.Addr, err = netip.ParseAddr(a); err != nil {
		return VersionKey{}, fmt.Errorf("version key %q: %w", s, err)
	}
	n, err := strconv.ParseUint(p, 10, 16)
	if err != nil {
		return VersionKey{}, fmt.Errorf("version key %q: %w", s, err)
	}
	k.Port = portspec.Port(n)
	if k.Proto, err = portspec.ParseProto(proto); err != nil {
		return VersionKey{}, fmt.Errorf("version key %q: %w", s, err)
	}
	return k, nil
}

// VersionsOption is the options key under which an imported scan keeps
// what its source said about services beyond a banner (nmap -sV's product,
// version and extra info), by VersionKey.String.
const VersionsOption = "versions"

// Versions returns the service versions the scan's options record (see
// VersionsOption); nil when there are none.
func (si ScanInfo) Versions() (map[VersionKey]scan.Version, error) {
	if len(si.Options) == 0 {
		return nil, nil
	}
	var opts struct {
		Versions map[string]scan.Version `json:"versions"`
	}
	if err := json.Unmarshal(si.Options, &opts); err != nil {
		return nil, fmt.Errorf("scan %d: options: %w", si.ID, err)
	}
	if len(opts.Versions) == 0 {
		return nil, nil
	}
	out := make(map[VersionKey]scan.Version, len(opts.Versions))
	for s, v := range opts.Versions {
		k, err := parseVersionKey(s)
		if err != nil {
			return nil, fmt.Errorf("scan %d: options: %w", si.ID, err)
		}
		out[k] = v
	}
	return out, nil
}

// ServiceVersion returns what the scan knows of a result's service: the
// version its options record (an import of nmap -sV), else what the banner
// says. It is nil when the options record none, so callers can skip it.
func (si ScanInfo) ServiceVersion() (func(scan.Result) scan.Version, error) {
	vs, err := si.Versions()
	if err != nil || len(vs) == 0 {
		return nil, err
	}
	return func(r scan.Result) scan.Version {
		if v, ok := vs[VersionKey{r.Addr, r.Port, r.Proto}]; ok {
			return v
		}
		return scan.ParseVersion(r.Service, r.Banner)
	}, nil
}

// ImportScan stores a complete scan and all its results in one
// transaction: either all of it is there afterwards or none. si.Status
// defaults to Done; Started must be set. It returns the new scan's id.
func (s *Store) ImportScan(ctx context.Context, si ScanInfo, results []scan.Result) (int64, error) {
	if si.Started.IsZero() {
		return 0, errors.New("import scan: no start time")
	}
	if si.Status == "" {
		si.Status = Done
	}
	if !si.Status.valid() || si.Status == Running {
		return 0, fmt.Errorf("import scan: invalid status %q", si.Status)
	}
	opts := []byte(si.Options)
	if len(opts) == 0 {
		opts = []byte("{}")
	} else if !json.Valid(opts) {
		return 0, errors.New("import scan: options are not valid JSON")
	}
	tx, err := s.db.BeginTx(ctx, nil)
	if err != nil {
		return 0, fmt.Errorf("import scan into %s: %w", s.path, err)
	}
	defer tx.Rollback()
	c := si.Counts
	var id int64
	err = tx.QueryRowContext(ctx, s.q(`INSERT INTO scans
		(started, finished, status, command, version, targets, ports, port_set, prober, seed, shard_index, shard_count,
		rate, hosts, space, options, checkpoint, checkpointed, probes, open, closed, filtered, open_filtered, hosts_up)
		VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) RETURNING id`),
		si.Started.UnixNano(), nullNanos(si.Finished), string(si.Status), si.Command, si.Version, si.Targets, si.Ports,
		portSetText(si.PortSet), si.Prober, int64(si.Seed), si.ShardIndex, si.ShardCount, si.Rate, int64(si.Hosts),
		int64(si.Space), string(opts), int64(si.Checkpoint), nullNanos(si.Finished), int64(c.Probes), int64(c.Open),
		int64(c.Closed), int64(c.Filtered), int64(c.OpenFiltered), int64(c.HostsUp),
	).Scan(&id)
	if err != nil {
		return 0, fmt.Errorf("import scan into %s: %w", s.path, err)
	}
	rows, groups, err := s.resultRows(id, results)
	if err == nil {
		err = s.insertInTx(ctx, tx, rows, groups)
	}
	if err != nil {
		return 0, fmt.Errorf("import scan into %s: %w", s.path, err)
	}
	if err := tx.Commit(); err != nil {
		return 0, fmt.Errorf("import scan into %s: %w", s.path, err)
	}
	return id, nil
}

// nullNanos is a time as stored, with the zero time as NULL.
func nullNanos(t time.Time) any {
	if t.IsZero() {
		return nil
	}
	return t.UnixNano()
}

// Sighting is what one scan recorded about one port of an address.
type Sighting struct {
	Scan    int64     // the scan's id
	Started time.Time // when the scan started
	Result  scan.Result
	// Version is what the scan knew of the service: an import's record
	// (see VersionsOption), else what the banner says.
	Version scan.Version
}

// Sightings returns what every stored scan recorded about addr, oldest
// scan first, each scan's results in protocol and port order. port 0
// means every port; otherwise only that port of proto.
func (s *Store) Sightings(ctx context.Context, addr netip.Addr, port portspec.Port, proto portspec.Proto) ([]Sighting, error) {
	fail := func(err error) ([]Sighting, error) { return nil, fmt.Errorf("read history of %s: %w", addr, err) }
	scans, err := s.Scans(ctx, 0)
	if err != nil {
		return fail(err)
	}
	key := addrKey(addr.Unmap())
	var out []Sighting
	// Scan by scan: the indexes lead with the scan's id.
	for i := len(scans) - 1; i >= 0; i-- {
		si := scans[i]
		var host []scan.Result
		q := `SELECT pos, addr, proto, port, state, reason, rtt_us, service, banner, time FROM results WHERE scan_id = ? AND addr = ?`
		args := []any{si.ID, key}
		if port != 0 {
			q += ` AND proto = ? AND port = ?`
			args = append(args, proto.String(), int(port))
		}
		rows, err := s.db.QueryContext(ctx, s.q(q), args...)
		if err != nil {
			return fail(err)
		}
		for rows.Next() {
			r, err := resultRow(rows)
			if err != nil {
				rows.Close()
				return fail(err)
			}
			host = append(host, r)
		}
		rows.Close()
		if err := rows.Err(); err != nil {
			return fail(err)
		}
		g, err := s.hostGroups(ctx, si.ID, key)
		if err != nil {
			return fail(err)
		}
		for _, r := range g {
			if port == 0 || (r.Port == port && r.Proto == proto) {
				host = append(host, r)
			}
		}
		slices.SortFunc(host, func(a, b scan.Result) int {
			if c := strings.Compare(a.Proto.String(), b.Proto.String()); c != 0 {
				return c
			}
			return cmp.Compare(a.Port, b.Port)
		})
		vs, err := si.Versions()
		if err != nil {
			return fail(err)
		}
		for _, r := range host {
			v, ok := vs[VersionKey{r.Addr, r.Port, r.Proto}]
			if !ok {
				v = scan.ParseVersion(r.Service, r.Banner)
			}
			out = append(out, Sighting{Scan: si.ID, Started: si.Started, Result: r, Version: v})
		}
	}
	return out, nil
}

// hostGroups reads the grouped ports of one address of scan id.
func (s *Store) hostGroups(ctx context.Context, id int64, key []byte) ([]scan.Result, error) {
	tx, err := s.db.BeginTx(ctx, s.d.readTx())
	if err != nil {
		return nil, err
	}
	defer tx.Rollback()
	g, err := s.readGroups(ctx, tx, "scan_id = ? AND addr = ?", []any{id, key})
	if err != nil {
		return nil, err
	}
	defer g.close()
	var out []scan.Result
	for g.next != nil {
		out = append(out, g.next...)
		if err := g.advance(); err != nil {
			return nil, err
		}
	}
	return out, nil
}
