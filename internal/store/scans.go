package store

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"time"

	"portolan/internal/portspec"
	"portolan/internal/scan"
)

// Status is where a scan is in its life.
type Status string

// The statuses of a scan.
const (
	Running     Status = "running"     // started and not finished; or its process died (see ScanInfo.Checkpointed)
	Done        Status = "done"        // ran to the end of its space
	Interrupted Status = "interrupted" // stopped early (Ctrl-C); resumable from its checkpoint
	Failed      Status = "failed"      // stopped by an error; resumable from its checkpoint
)

func (s Status) valid() bool {
	switch s {
	case Running, Done, Interrupted, Failed:
		return true
	}
	return false
}

// Counts are the running totals of a scan (scan.Totals, which the scan
// package keeps and hands to its Sink).
type Counts = scan.Totals

// ScanInfo describes one scan: what was asked, how far it got, what it found.
// Zero fields mean "not given"; CreateScan fills Started and Status.
type ScanInfo struct {
	ID       int64     `json:"id"`
	Started  time.Time `json:"started"`
	Finished time.Time `json:"finished,omitzero"` // zero while running
	Status   Status    `json:"status"`

	Command string        `json:"command,omitempty"`  // the command line, for people
	Version string        `json:"version,omitempty"`  // portolan's version that ran it
	Targets string        `json:"targets"`            // target spec as given
	Ports   string        `json:"ports"`              // port spec as given ("-p-", "--top-ports 100")
	PortSet *portspec.Set `json:"port_set,omitempty"` // the ports it resolved to; nil when unknown
	Prober  string        `json:"prober"`             // "connect", later "syn", "udp"
	Seed    uint64        `json:"seed"`
	// ShardIndex and ShardCount are --shard i/n as given; zero ShardCount
	// means the scan was not sharded.
	ShardIndex int             `json:"shard_index,omitempty"`
	ShardCount int             `json:"shard_count,omitempty"`
	Rate       int             `json:"rate,omitempty"` // probes per second; zero means no cap
	Hosts      uint64          `json:"hosts"`          // addresses in the target space
	Space      uint64          `json:"space"`          // addresses x ports
	Options    json.RawMessage `json:"options,omitempty"`

	// RunStarted is when the latest run began, for a resumed scan (zero:
	// Started); Earlier is how long the runs before it took.
	RunStarted time.Time     `json:"run_started,omitzero"`
	Earlier    time.Duration `json:"earlier_ns,omitempty"`

	Checkpoint   uint64    `json:"checkpoint"`            // positions of the permutation done
	Checkpointed time.Time `json:"checkpointed,omitzero"` // when it was written
	Counts       Counts    `json:"counts"`

	// Name is the --scan-id of a named scan, whose shards many processes
	// run, and Run which run of that name this is (1, 2, ...); "" and 0 for
	// a plain scan.
	Name string `json:"name,omitempty"`
	Run  int    `json:"run,omitempty"`
	// Host holds the lease of a running scan until LeaseUntil: the host id
	// of the process that runs it, renewed by its heartbeats.
	Host       string    `json:"host,omitempty"`
	LeaseUntil time.Time `json:"lease_until,omitzero"`

	// Shards are the shards of a named scan's run, as Named merges them
	// (ID is then 0), by shard index; Missing are the indexes of the shards
	// no process has started.
	Shards  []ScanInfo `json:"shards,omitempty"`
	Missing []int      `json:"missing_shards,omitempty"`
}

// MarshalJSON writes the scan with its seed also as a decimal string
// ("seed_str"): jq and JavaScript read numbers as doubles and lose the low
// bits of a 64-bit seed, which a resume by hand must repeat exactly.
func (si ScanInfo) MarshalJSON() ([]byte, error) {
	type plain ScanInfo // without this method
	return json.Marshal(struct {
		plain
		SeedText string `json:"seed_str"`
	}{plain(si), strconv.FormatUint(si.Seed, 10)})
}

// Duration returns how long the scan ran: until it finished, or until its
// last checkpoint while it is running (or died without finishing). The
// runs of a resumed scan add up; the time between them does not count.
func (si ScanInfo) Duration() time.Duration {
	start := si.Started
	if !si.RunStarted.IsZero() {
		start = si.RunStarted
	}
	end := si.Finished
	if end.IsZero() {
		end = si.Checkpointed
	}
	if end.IsZero() || end.Before(start) {
		return si.Earlier
	}
	return si.Earlier + end.Sub(start)
}

// CreateScan records a new running scan and returns its id. Started defaults
// to now; ID, Status, Finished, Checkpoint and Counts are ignored. A scan
// with a Name is a shard of a named scan (see CreateShard).
func (s *Store) CreateScan(ctx context.Context, si ScanInfo) (int64, error) {
	if si.Name != "" {
		si, err := s.CreateShard(ctx, si)
		return si.ID, err
	}
	tx, err := s.db.BeginTx(ctx, nil)
	if err != nil {
		return 0, fmt.Errorf("create scan in %s: %w", s.path, err)
	}
	defer tx.Rollback()
	if err := s.insertScan(ctx, tx, &si); err != nil {
		return 0, fmt.Errorf("create scan in %s: %w", s.path, err)
	}
	if err := tx.Commit(); err != nil {
		return 0, fmt.Errorf("create scan in %s: %w", s.path, err)
	}
	return si.ID, nil
}

// insertScan inserts si as a running scan this process owns, and sets its
// ID.
func (s *Store) insertScan(ctx context.Context, tx *sql.Tx, si *ScanInfo) error {
	if si.Started.IsZero() {
		si.Started = s.now()
	}
	opts := []byte(si.Options)
	if len(opts) == 0 {
		opts = []byte("{}")
	} else if !json.Valid(opts) {
		return errors.New("options are not valid JSON")
	}
	me := self()
	si.Status, si.Host, si.LeaseUntil = Running, s.host(), s.now().Add(s.leaseTTL())
	return tx.QueryRowContext(ctx, s.q(`INSERT INTO scans
		(started, status, command, version, targets, ports, port_set, prober, seed, shard_index, shard_count, rate, hosts, space, options,
		owner_pid, owner_start, name, run, lease_host, lease_until)
		VALUES (?, 'running', ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) RETURNING id`),
		si.Started.UnixNano(), si.Command, si.Version, si.Targets, si.Ports, portSetText(si.PortSet), si.Prober,
		int64(si.Seed), si.ShardIndex, si.ShardCount, si.Rate, int64(si.Hosts), int64(si.Space), string(opts),
		me.pid, me.start, si.Name, si.Run, si.Host, si.LeaseUntil.UnixNano(),
	).Scan(&si.ID)
}

// Checkpoint records that the scan has done every position of its
// permutation below pos, with the totals so far. Write the results up to pos
// first (AddResults) so a resume from pos loses nothing.
func (s *Store) Checkpoint(ctx context.Context, id int64, pos uint64, c Counts) error {
	now := s.now()
	return s.updateOwned(ctx, "checkpoint", id, `UPDATE scans SET checkpoint = ?, checkpointed = ?, lease_until = ?,
		probes = ?, open = ?, closed = ?, filtered = ?, open_filtered = ?, hosts_up = ? WHERE id = ?`,
		int64(pos), now.UnixNano(), now.Add(s.leaseTTL()).UnixNano(), int64(c.Probes), int64(c.Open), int64(c.Closed), int64(c.Filtered),
		int64(c.OpenFiltered), int64(c.HostsUp), id)
}

// FinishScan records the end of a scan: its final status (Done, Interrupted
// or Failed), the time, and its totals.
func (s *Store) FinishScan(ctx context.Context, id int64, status Status, c Counts) error {
	return s.finishScan(ctx, id, status, c, nil)
}

// FailDone marks scan id, which this process has finished as Done, as
// Failed: its results did not all reach their output after all (a file's
// last bytes may fail only at its close). Finishing released the scan's
// lease, so FinishScan would take it for another process's. Only a Done
// scan changes; ErrNotFound (wrapped) otherwise.
func (s *Store) FailDone(ctx context.Context, id int64) error {
	return s.update(ctx, "fail", id, `UPDATE scans SET status = ? WHERE id = ? AND status = ?`, string(Failed), id, string(Done))
}

// finishScan is FinishScan, with the position of checkpoint cp recorded in
// the same statement when it is not nil (the totals are c, the final ones).
func (s *Store) finishScan(ctx context.Context, id int64, status Status, c Counts, cp *spillCheckpoint) error {
	if !status.valid() || status == Running {
		return fmt.Errorf("finish scan %d: invalid final status %q", id, status)
	}
	now := s.now().UnixNano()
	set, args := ``, []any{string(status), now}
	if cp != nil {
		set, args = `checkpoint = ?, checkpointed = ?, `, []any{int64(cp.Pos), now, string(status), now}
	}
	return s.updateOwned(ctx, "finish", id, `UPDATE scans SET `+set+`status = ?, finished = ?, owner_pid = 0, owner_start = 0, lease_host = '', lease_until = 0,
		probes = ?, open = ?, closed = ?, filtered = ?, open_filtered = ?, hosts_up = ? WHERE id = ?`,
		append(args, int64(c.Probes), int64(c.Open), int64(c.Closed), int64(c.Filtered),
			int64(c.OpenFiltered), int64(c.HostsUp), id)...)
}

// ResumeScan marks an unfinished scan as running again in this process and
// returns it, with the checkpoint to continue from. Results at or past the
// checkpoint are deleted: the resumed scan probes those positions again. A
// scan that is Done cannot be resumed, nor one another live process is
// running (an error wrapping ErrRunning); one whose process died can.
func (s *Store) ResumeScan(ctx context.Context, id int64) (ScanInfo, error) {
	tx, err := s.db.BeginTx(ctx, nil)
	if err != nil {
		return ScanInfo{}, fmt.Errorf("resume scan %d: %w", id, err)
	}
	defer tx.Rollback()
	// Two hosts resuming one dead shard at once: one waits for the other's
	// transaction, then sees its lease.
	if err := s.d.lock(ctx, tx, fmt.Sprintf("scan/%d", id)); err != nil {
		return ScanInfo{}, fmt.Errorf("resume scan %d: %w", id, err)
	}
	si, err := scanRow(tx.QueryRowContext(ctx, s.q(`SELECT `+scanColumns+` FROM scans WHERE id = ?`), id))
	switch {
	case errors.Is(err, sql.ErrNoRows):
		return ScanInfo{}, fmt.Errorf("resume scan %d: %w", id, ErrNotFound)
	case err != nil:
		return ScanInfo{}, fmt.Errorf("resume scan %d: %w", id, err)
	case si.Status == Done:
		return ScanInfo{}, fmt.Errorf("resume scan %d: it is complete, nothing to resume", id)
	}
	l, err := s.leaseOf(ctx, tx, id)
	if err != nil {
		return ScanInfo{}, fmt.Errorf("resume scan %d: %w", id, err)
	}
	if si.Status == Running && s.alive(l) {
		return ScanInfo{}, fmt.Errorf("resume scan %d: %w", id, s.runningErr(l))
	}
	me := self()
	if _, err := tx.ExecContext(ctx, s.q(`DELETE FROM results WHERE scan_id = ? AND pos >= ?`), id, int64(si.Checkpoint)); err != nil {
		return ScanInfo{}, fmt.Errorf("resume scan %d: %w", id, err)
	}
	if err := s.trimGroups(ctx, tx, id, si.Checkpoint); err != nil {
		return ScanInfo{}, fmt.Errorf("resume scan %d: %w", id, err)
	}
	now := s.now()
	earlier := si.Duration()
	si.Host, si.LeaseUntil = s.host(), now.Add(s.leaseTTL())
	if _, err := tx.ExecContext(ctx, s.q(`UPDATE scans SET status = 'running', finished = NULL, owner_pid = ?, owner_start = ?,
		lease_host = ?, lease_until = ?, run_started = ?, prior_ns = ? WHERE id = ?`),
		me.pid, me.start, si.Host, si.LeaseUntil.UnixNano(), now.UnixNano(), int64(earlier), id); err != nil {
		return ScanInfo{}, fmt.Errorf("resume scan %d: %w", id, err)
	}
	if err := tx.Commit(); err != nil {
		return ScanInfo{}, fmt.Errorf("resume scan %d: %w", id, err)
	}
	si.Status, si.Finished, si.RunStarted, si.Earlier = Running, time.Time{}, now, earlier
	return si, nil
}

// updateOwned runs update for the process that holds the lease of scan
// id: query ends in "WHERE id = ?", to which the lease's condition is
// added. When another process took the scan over (this one was taken for
// dead), the error wraps ErrLeaseLost and nothing is changed: two writers
// of one checkpoint would each undo the other.
func (s *Store) updateOwned(ctx context.Context, op string, id int64, query string, args ...any) error {
	query += ` AND lease_host = ? AND owner_pid = ?`
	args = append(args, s.host(), self().pid)
	err := s.update(ctx, op, id, query, args...)
	if !errors.Is(err, ErrNotFound) {
		return err
	}
	l, lerr := s.leaseOf(ctx, s.db, id)
	switch {
	case errors.Is(lerr, sql.ErrNoRows):
		return err
	case lerr != nil:
		return fmt.Errorf("%s scan %d: %w", op, id, lerr)
	case l.host == "":
		return fmt.Errorf("%s scan %d: %w: it was finished by another process", op, id, ErrLeaseLost)
	}
	return fmt.Errorf("%s scan %d: %w: host %s (process %d) took it over", op, id, ErrLeaseLost, l.host, l.owner.pid)
}

// update runs one UPDATE of scan id and reports ErrNotFound when it matched
// nothing.
func (s *Store) update(ctx context.Context, op string, id int64, query string, args ...any) error {
	res, err := s.db.ExecContext(ctx, s.q(query), args...)
	if err != nil {
		return fmt.Errorf("%s scan %d: %w", op, id, err)
	}
	if n, err := res.RowsAffected(); err == nil && n == 0 {
		return fmt.Errorf("%s scan %d: %w", op, id, ErrNotFound)
	}
	return nil
}

const scanColumns = `id, started, finished, status, command, version, targets, ports, port_set, prober, seed,
	shard_index, shard_count, rate, hosts, space, options, checkpoint, checkpointed,
	probes, open, closed, filtered, open_filtered, hosts_up, run_started, prior_ns,
	name, run, lease_host, lease_until`

// Scan returns scan id, or an error wrapping ErrNotFound.
func (s *Store) Scan(ctx context.Context, id int64) (ScanInfo, error) {
	row := s.db.QueryRowContext(ctx, s.q(`SELECT `+scanColumns+` FROM scans WHERE id = ?`), id)
	si, err := scanRow(row)
	if errors.Is(err, sql.ErrNoRows) {
		return ScanInfo{}, fmt.Errorf("scan %d: %w", id, ErrNotFound)
	}
	if err != nil {
		return ScanInfo{}, fmt.Errorf("read scan %d: %w", id, err)
	}
	if err := s.settle(ctx, &si); err != nil {
		return ScanInfo{}, fmt.Errorf("read scan %d: %w", id, err)
	}
	return si, nil
}

// settle reports a running scan whose process is gone (killed with -9, a
// reboot, a machine lost) as interrupted: it is resumable, and nothing runs
// it. Its lease is cleared from what is returned.
func (s *Store) settle(ctx context.Context, si *ScanInfo) error {
	if si.Status != Running {
		si.Host, si.LeaseUntil = "", time.Time{}
		return nil
	}
	l, err := s.leaseOf(ctx, s.db, si.ID)
	if err != nil {
		return err
	}
	if !s.mine(l) && !s.alive(l) {
		si.Status = Interrupted
	}
	return nil
}

// Scans returns the latest limit scans, newest first; limit <= 0 means all.
func (s *Store) Scans(ctx context.Context, limit int) ([]ScanInfo, error) {
	q, args := `SELECT `+scanColumns+` FROM scans ORDER BY id DESC`, []any{}
	if limit > 0 {
		q, args = q+` LIMIT ?`, append(args, limit)
	}
	rows, err := s.db.QueryContext(ctx, s.q(q), args...)
	if err != nil {
		return nil, fmt.Errorf("list scans: %w", err)
	}
	defer rows.Close()
	var out []ScanInfo
	for rows.Next() {
		si, err := scanRow(rows)
		if err != nil {
			return nil, fmt.Errorf("list scans: %w", err)
		}
		out = append(out, si)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("list scans: %w", err)
	}
	rows.Close()
	for i := range out {
		if err := s.settle(ctx, &out[i]); err != nil {
			return nil, fmt.Errorf("list scans: %w", err)
		}
	}
	return out, nil
}

// scanRow reads the columns of scanColumns.
func scanRow(r interface{ Scan(...any) error }) (ScanInfo, error) {
	var (
		si                                               ScanInfo
		started                                          int64
		finished, checkpointed, runStarted               sql.NullInt64
		prior, leaseUntil                                int64
		status, portSet, options                         string
		seed, hosts, space, checkpoint                   int64
		probes, open, closed, filtered, openFilt, hostUp int64
	)
	err := r.Scan(&si.ID, &started, &finished, &status, &si.Command, &si.Version, &si.Targets, &si.Ports, &portSet,
		&si.Prober, &seed, &si.ShardIndex, &si.ShardCount, &si.Rate, &hosts, &space, &options,
		&checkpoint, &checkpointed, &probes, &open, &closed, &filtered, &openFilt, &hostUp, &runStarted, &prior,
		&si.Name, &si.Run, &si.Host, &leaseUntil)
	if err != nil {
		return ScanInfo{}, err
	}
	si.Started = fromNanos(started)
	if finished.Valid {
		si.Finished = fromNanos(finished.Int64)
	}
	if checkpointed.Valid {
		si.Checkpointed = fromNanos(checkpointed.Int64)
	}
	if runStarted.Valid {
		si.RunStarted = fromNanos(runStarted.Int64)
	}
	si.Earlier = time.Duration(prior)
	si.LeaseUntil = fromNanos(leaseUntil)
	si.Status = Status(status)
	if portSet != "" {
		set, err := portspec.Parse(portSet)
		if err != nil {
			return ScanInfo{}, fmt.Errorf("scan %d: stored port set: %w", si.ID, err)
		}
		si.PortSet = set
	}
	if options != "" && options != "{}" {
		si.Options = json.RawMessage(options)
	}
	si.Seed, si.Hosts, si.Space, si.Checkpoint = uint64(seed), uint64(hosts), uint64(space), uint64(checkpoint)
	si.Counts = Counts{Probes: uint64(probes), Open: uint64(open), Closed: uint64(closed),
		Filtered: uint64(filtered), OpenFiltered: uint64(openFilt), HostsUp: uint64(hostUp)}
	return si, nil
}

func portSetText(s *portspec.Set) string {
	if s == nil {
		return ""
	}
	return s.String()
}

// fromNanos turns stored unix nanoseconds into a time; 0 is the zero time.
func fromNanos(ns int64) time.Time {
	if ns == 0 {
		return time.Time{}
	}
	return time.Unix(0, ns)
}

// nanos stores t as unix nanoseconds; the zero time is 0.
func nanos(t time.Time) int64 {
	if t.IsZero() {
		return 0
	}
	return t.UnixNano()
}

// Sink returns scan id of the store as a scan.Sink: results and checkpoints
// of a run go through it (scan.SinkWriter batches them).
func (s *Store) Sink(id int64) scan.Sink { return scanSink{s, id} }

type scanSink struct {
	s  *Store
	id int64
}

func (k scanSink) AddResults(ctx context.Context, rs []scan.Result) error {
	return k.s.AddResults(ctx, k.id, rs)
}

func (k scanSink) Checkpoint(ctx context.Context, pos uint64, t scan.Totals) error {
	return k.s.Checkpoint(ctx, k.id, pos, t)
}
