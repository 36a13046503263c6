package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"iter"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode"

	"portolan/internal/scan"
)

// A named scan (--scan-id NAME) is run as shards by many processes, on many
// machines, into one database. Each shard is a row of scans with the name,
// the run and its shard index: its own checkpoint, lease and results, so a
// dead shard is resumed alone. A run is complete when all its shards are;
// the next time a shard of a complete run is started, the name's next run
// begins (a weekly scan is one name with one run a week). Reading a named
// scan merges its shards.

// ErrShardStarted is returned (wrapped) by CreateShard when the shard was
// started before in the current run, with the same recipe, did not finish,
// and no live process runs it: --resume continues it.
var ErrShardStarted = errors.New("shard already started")

// ValidName checks a --scan-id: printable, no spaces, no "@" (it separates
// the run: NAME@2), and not a number (numbers are scan ids).
func ValidName(name string) error {
	switch {
	case name == "":
		return errors.New("scan name is empty")
	case len(name) > 128:
		return fmt.Errorf("scan name %q: longer than 128 bytes", name[:32]+"...")
	case isNumber(name):
		return fmt.Errorf("scan name %q: a number is a scan id; give a name with a letter in it", name)
	}
	for i, r := range name {
		if r == '@' || unicode.IsSpace(r) || !unicode.IsPrint(r) {
			return fmt.Errorf("scan name %q: at %d: %q is not allowed (no spaces, no @)", name, i+1, r)
		}
	}
	return nil
}

func isNumber(s string) bool {
	_, err := strconv.ParseUint(s, 10, 63)
	return err == nil
}

// CreateShard records a new running shard of the named scan si.Name, as
// CreateScan does a scan, and returns it as stored: with its ID, its Run,
// and the Seed of the run, which every shard shares so that the shards
// cover the space exactly (si.Seed zero: take the run's, or pick one for a
// new run; non-zero: it must be the run's).
//
// The shard joins the latest run of the name unless that run already has
// this shard: if it finished, a new run begins; if not, the error wraps
// ErrRunning (its process lives) or ErrShardStarted (resume it). Shards of
// one run must agree on targets, ports and shard count.
func (s *Store) CreateShard(ctx context.Context, si ScanInfo) (ScanInfo, error) {
	if err := ValidName(si.Name); err != nil {
		return ScanInfo{}, fmt.Errorf("create scan: %w", err)
	}
	shard := func() string { return shardText(si.ShardIndex, si.ShardCount) }
	fail := func(err error) (ScanInfo, error) {
		return ScanInfo{}, fmt.Errorf("create shard %s of scan %s: %w", shard(), si.Name, err)
	}
	tx, err := s.db.BeginTx(ctx, nil)
	if err != nil {
		return fail(err)
	}
	defer tx.Rollback()
	// Shards starting at once queue here, so one picks the run's seed and
	// the others see it. The shard's commit does not wait for the disk
	// (the scan waits for it before its first probe): its first
	// checkpoint commits durably, and flushes it with it; a database that
	// crashed before then has lost the shard, and the scan's next write
	// fails, naming it.
	if err := s.d.lockLazy(ctx, tx, "name/"+si.Name); err != nil {
		return fail(err)
	}
	var latest int
	if err := tx.QueryRowContext(ctx, s.q(`SELECT COALESCE(MAX(run), 0) FROM scans WHERE name = ?`), si.Name).Scan(&latest); err != nil {
		return fail(err)
	}
	run, seed := latest+1, uint64(0)
	if latest > 0 {
		shards, err := s.shardRows(ctx, tx, si.Name, latest)
		if err != nil {
			return fail(err)
		}
		complete := len(missingShards(shards)) == 0
		for _, sh := range shards {
			complete = complete && sh.Status == Done
		}
		join := true
		why := mismatch(shards[0], si)
		if i := slices.IndexFunc(shards, func(sh ScanInfo) bool { return sh.ShardIndex == si.ShardIndex }); i >= 0 {
			sh := shards[i]
			if sh.Status != Done && why != "" {
				return fail(fmt.Errorf("run %d of %s, still incomplete, %s: give the same targets, ports and --shard count, or another --scan-id", latest, si.Name, why))
			}
			if sh.Status != Done {
				l, err := s.leaseOf(ctx, tx, sh.ID)
				if err != nil {
					return fail(err)
				}
				if sh.Status == Running && s.alive(l) {
					return fail(fmt.Errorf("run %d: %w", latest, s.runningErr(l)))
				}
				return fail(fmt.Errorf("run %d: %w (scan %d, %s at position %d): portolan scan --resume %s --shard %s continues it",
					latest, ErrShardStarted, sh.ID, s.settled(sh, l), sh.Checkpoint, si.Name, shard()))
			}
			join = false // this shard is done: the name's next run
		}
		if join {
			if why != "" {
				if !complete {
					return fail(fmt.Errorf("run %d of %s, still incomplete, %s: give the same targets, ports and --shard count, or another --scan-id", latest, si.Name, why))
				}
				join = false
			}
		}
		if join {
			if si.Seed != 0 && si.Seed != shards[0].Seed {
				return fail(fmt.Errorf("--seed %d: run %d of %s uses seed %d, which every shard must share (leave --seed out to take it)", si.Seed, latest, si.Name, shards[0].Seed))
			}
			run, seed = latest, shards[0].Seed
		}
	}
	if seed == 0 {
		seed = si.Seed
		if seed == 0 {
			seed = scan.NewSeed()
		}
	}
	si.Run, si.Seed = run, seed
	if err := s.insertScan(ctx, tx, &si); err != nil {
		return fail(err)
	}
	if err := tx.Commit(); err != nil {
		return fail(err)
	}
	return si, nil
}

// settled is the status of shard sh with lease l, as Scan reports it.
func (s *Store) settled(sh ScanInfo, l lease) Status {
	if sh.Status == Running && !s.mine(l) && !s.alive(l) {
		return Interrupted
	}
	return sh.Status
}

// mismatch says how si differs from a shard of the run it would join, or
// "".
func mismatch(run, si ScanInfo) string {
	switch {
	case run.ShardCount != si.ShardCount:
		return fmt.Sprintf("has %d shards, not %d", max(run.ShardCount, 1), max(si.ShardCount, 1))
	case run.Targets != si.Targets:
		return fmt.Sprintf("scans targets %q, not %q", run.Targets, si.Targets)
	case portSetText(run.PortSet) != portSetText(si.PortSet):
		return fmt.Sprintf("scans ports %s, not %s", portSetText(run.PortSet), portSetText(si.PortSet))
	case run.Space != si.Space:
		return fmt.Sprintf("has a space of %d probes, not %d", run.Space, si.Space)
	case run.Prober != si.Prober:
		return fmt.Sprintf("uses the %s prober, not %s", run.Prober, si.Prober)
	}
	return ""
}

func shardText(i, n int) string {
	if n == 0 {
		return "1/1"
	}
	return fmt.Sprintf("%d/%d", i, n)
}

// shardRows reads the shards of run of name, by shard index.
func (s *Store) shardRows(ctx context.Context, q interface {
	QueryContext(context.Context, string, ...any) (*sql.Rows, error)
}, name string, run int) ([]ScanInfo, error) {
	rows, err := q.QueryContext(ctx, s.q(`SELECT `+scanColumns+` FROM scans WHERE name = ? AND run = ? ORDER BY shard_index`), name, run)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []ScanInfo
	for rows.Next() {
		si, err := scanRow(rows)
		if err != nil {
			return nil, err
		}
		out = append(out, si)
	}
	return out, rows.Err()
}

// missingShards returns the shard indexes of a run that no row has.
func missingShards(shards []ScanInfo) []int {
	if len(shards) == 0 {
		return nil
	}
	n := 0
	for _, sh := range shards {
		n = max(n, sh.ShardCount)
	}
	if n == 0 {
		return nil // one unsharded row: the whole scan
	}
	var missing []int
	for i := 1; i <= n; i++ {
		if !slices.ContainsFunc(shards, func(sh ScanInfo) bool { return sh.ShardIndex == i }) {
			missing = append(missing, i)
		}
	}
	return missing
}

// Named returns run of the named scan (0: its latest run) with its shards
// merged: the parameters of its first shard, the totals of all, Shards and
// Missing. Its Status is Done when every shard is, Running while any runs,
// Failed when one failed, else Interrupted (a shard is missing or dead).
// A name without runs is an error wrapping ErrNotFound.
func (s *Store) Named(ctx context.Context, name string, run int) (ScanInfo, error) {
	fail := func(err error) (ScanInfo, error) {
		if run > 0 {
			return ScanInfo{}, fmt.Errorf("scan %s@%d: %w", name, run, err)
		}
		return ScanInfo{}, fmt.Errorf("scan %s: %w", name, err)
	}
	if run <= 0 {
		if err := s.db.QueryRowContext(ctx, s.q(`SELECT COALESCE(MAX(run), 0) FROM scans WHERE name = ?`), name).Scan(&run); err != nil {
			return fail(err)
		}
		if run == 0 {
			return fail(ErrNotFound)
		}
	}
	shards, err := s.shardRows(ctx, s.db, name, run)
	if err != nil {
		return fail(err)
	}
	if len(shards) == 0 {
		return fail(ErrNotFound)
	}
	for i := range shards {
		if err := s.settle(ctx, &shards[i]); err != nil {
			return fail(err)
		}
	}
	m := shards[0]
	m.ID, m.Shards, m.Missing = 0, shards, missingShards(shards)
	m.ShardIndex, m.ShardCount = 0, 0
	m.Host, m.LeaseUntil, m.Finished, m.Checkpointed = "", time.Time{}, time.Time{}, time.Time{}
	m.RunStarted, m.Earlier, m.Checkpoint = time.Time{}, 0, 0
	m.Counts = Counts{}
	statuses := map[Status]int{}
	for _, sh := range shards {
		m.ShardCount = max(m.ShardCount, sh.ShardCount)
		if sh.Started.Before(m.Started) {
			m.Started = sh.Started
		}
		if sh.Finished.After(m.Finished) {
			m.Finished = sh.Finished
		}
		if sh.Checkpointed.After(m.Checkpointed) {
			m.Checkpointed = sh.Checkpointed
		}
		m.Counts.Probes += sh.Counts.Probes
		m.Counts.Open += sh.Counts.Open
		m.Counts.Closed += sh.Counts.Closed
		m.Counts.Filtered += sh.Counts.Filtered
		m.Counts.OpenFiltered += sh.Counts.OpenFiltered
		m.Counts.HostsUp += sh.Counts.HostsUp // an upper bound: shards share hosts
		statuses[sh.Status]++
	}
	switch {
	case statuses[Running] > 0:
		m.Status = Running
	case statuses[Done] == len(shards) && len(m.Missing) == 0:
		m.Status = Done
	case statuses[Failed] > 0:
		m.Status = Failed
	default:
		m.Status = Interrupted
	}
	if m.Status != Done {
		m.Finished = time.Time{}
	}
	return m, nil
}

// ResolveScan reads the scan ref names: a scan id ("17"), a named scan's
// latest run ("weekly-443") or one of its runs ("weekly-443@2"), merged.
// A ref that names nothing is an error wrapping ErrNotFound.
func (s *Store) ResolveScan(ctx context.Context, ref string) (ScanInfo, error) {
	if id, err := strconv.ParseInt(ref, 10, 64); err == nil && id > 0 {
		return s.Scan(ctx, id)
	}
	name, run, err := ParseRef(ref)
	if err != nil {
		return ScanInfo{}, err
	}
	return s.Named(ctx, name, run)
}

// ParseRef splits a named scan's reference NAME[@RUN]; run 0 means the
// latest.
func ParseRef(ref string) (name string, run int, err error) {
	name, r, ok := strings.Cut(ref, "@")
	if ok {
		n, err := strconv.Atoi(r)
		if err != nil || n < 1 {
			return "", 0, fmt.Errorf("scan %q: at %d: run %q is not a number from 1", ref, len(name)+2, r)
		}
		run = n
	}
	if err := ValidName(name); err != nil {
		return "", 0, err
	}
	return name, run, nil
}

// ScanResultsSeq yields the results of si as ResultsSeq does: of its
// shards merged for a named scan from Named or ResolveScan (each port once,
// its latest result), else of scan si.ID.
func (s *Store) ScanResultsSeq(ctx context.Context, si ScanInfo, f Filter) iter.Seq2[scan.Result, error] {
	if len(si.Shards) == 0 {
		return s.ResultsSeq(ctx, si.ID, f)
	}
	ids := make([]int64, len(si.Shards))
	for i, sh := range si.Shards {
		ids[i] = sh.ID
	}
	return func(yield func(scan.Result, error) bool) {
		for r, err := range s.resultsOf(ctx, ids, f) {
			if err != nil {
				yield(r, fmt.Errorf("read results of scan %s@%d: %w", si.Name, si.Run, err))
				return
			}
			if !yield(r, nil) {
				return
			}
		}
	}
}

// ScanResults is ScanResultsSeq gathered.
func (s *Store) ScanResults(ctx context.Context, si ScanInfo, f Filter) ([]scan.Result, error) {
	var out []scan.Result
	for r, err := range s.ScanResultsSeq(ctx, si, f) {
		if err != nil {
			return nil, err
		}
		out = append(out, r)
	}
	return out, nil
}

// ShardByIndex returns the shard of run of name (0: the latest run) with
// shard index i (0 for an unsharded named scan), as Scan reads it.
func (s *Store) ShardByIndex(ctx context.Context, name string, run, i int) (ScanInfo, error) {
	m, err := s.Named(ctx, name, run)
	if err != nil {
		return ScanInfo{}, err
	}
	for _, sh := range m.Shards {
		if sh.ShardIndex == i {
			return sh, nil
		}
	}
	return ScanInfo{}, fmt.Errorf("shard %s of scan %s@%d: %w (no process started it)", shardText(i, m.ShardCount), name, m.Run, ErrNotFound)
}
