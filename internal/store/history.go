package store

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/netip"
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
	err = tx.QueryRowContext(ctx, `INSERT INTO scans
		(started, finished, status, command, version, targets, ports, port_set, prober, seed, shard_index, shard_count,
		rate, hosts, space, options, checkpoint, checkpointed, probes, open, closed, filtered, open_filtered, hosts_up)
		VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) RETURNING id`,
		si.Started.UnixNano(), nullNanos(si.Finished), string(si.Status), si.Command, si.Version, si.Targets, si.Ports,
		portSetText(si.PortSet), si.Prober, int64(si.Seed), si.ShardIndex, si.ShardCount, si.Rate, int64(si.Hosts),
		int64(si.Space), string(opts), int64(si.Checkpoint), nullNanos(si.Finished), int64(c.Probes), int64(c.Open),
		int64(c.Closed), int64(c.Filtered), int64(c.OpenFiltered), int64(c.HostsUp),
	).Scan(&id)
	if err != nil {
		return 0, fmt.Errorf("import scan into %s: %w", s.path, err)
	}
	var rows, groups []scan.Result
	for _, r := range results {
		if grouped(r) {
			groups = append(groups, r)
		} else {
			rows = append(rows, r)
		}
	}
	if err := insertResults(ctx, tx, id, rows); err != nil {
		return 0, fmt.Errorf("import scan into %s: %w", s.path, err)
	}
	if err := insertGroups(ctx, tx, id, groups); err != nil {
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
