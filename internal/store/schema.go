package store

import (
	"context"
	"database/sql"
	"fmt"
)

// migrations are the schema changes in order; migrations[i] takes the schema
// from version i to i+1. Append, never edit: files in the field have run the
// old ones. Later issues add their tables here.
//
// The SQL sticks to what SQLite and PostgreSQL share (RETURNING, plain
// types) except for column types; a PostgreSQL backend brings its own list
// with the same versions.
var migrations = []string{
	// 1: scans and their port results.
	`CREATE TABLE scans (
		id            INTEGER PRIMARY KEY AUTOINCREMENT, -- never reused: users type these ids
		started       INTEGER NOT NULL,                  -- unix nanoseconds
		finished      INTEGER,                           -- unix nanoseconds; NULL while running
		status        TEXT    NOT NULL CHECK (status IN ('running', 'done', 'interrupted', 'failed')),
		command       TEXT    NOT NULL DEFAULT '',       -- the command line, for people
		version       TEXT    NOT NULL DEFAULT '',       -- portolan's version that ran it
		targets       TEXT    NOT NULL DEFAULT '',       -- target spec as given
		ports         TEXT    NOT NULL DEFAULT '',       -- port spec as given
		port_set      TEXT    NOT NULL DEFAULT '',       -- resolved ports, canonical spec (portspec.Set)
		prober        TEXT    NOT NULL DEFAULT '',
		seed          INTEGER NOT NULL DEFAULT 0,        -- uint64 stored bit for bit
		shard_index   INTEGER NOT NULL DEFAULT 0,
		shard_count   INTEGER NOT NULL DEFAULT 0,
		rate          INTEGER NOT NULL DEFAULT 0,        -- probes per second; 0 unlimited
		hosts         INTEGER NOT NULL DEFAULT 0,        -- addresses in the target space
		space         INTEGER NOT NULL DEFAULT 0,        -- addresses x ports; uint64 bit for bit
		options       TEXT    NOT NULL DEFAULT '{}',     -- JSON, whatever else the scan needs to resume
		checkpoint    INTEGER NOT NULL DEFAULT 0,        -- permutation position done; uint64 bit for bit
		checkpointed  INTEGER,                           -- unix nanoseconds of the last checkpoint
		probes        INTEGER NOT NULL DEFAULT 0,
		open          INTEGER NOT NULL DEFAULT 0,
		closed        INTEGER NOT NULL DEFAULT 0,
		filtered      INTEGER NOT NULL DEFAULT 0,
		open_filtered INTEGER NOT NULL DEFAULT 0,
		hosts_up      INTEGER NOT NULL DEFAULT 0
	);
	CREATE INDEX scans_started ON scans (started);

	-- Rows are appended as results arrive. The scan order is random, and a
	-- table clustered on (addr, proto, port) rewrote pages all over the file
	-- on every batch: 1.5-2x the CPU of appending plus one index. pos is the
	-- position in the scan's permutation: resuming from a checkpoint deletes
	-- the rows at or past it, since those ports are probed again.
	-- addr is 0x04 + 4 bytes or 0x06 + 16 bytes (+ zone), so the index orders
	-- IPv4 before IPv6 and each numerically, as netip.Addr.Compare does.
	CREATE TABLE results (
		id      INTEGER PRIMARY KEY,
		scan_id INTEGER NOT NULL REFERENCES scans (id) ON DELETE CASCADE,
		pos     INTEGER NOT NULL DEFAULT 0,                -- below 2^63, or resume compares wrong
		addr    BLOB    NOT NULL,
		proto   TEXT    NOT NULL,
		port    INTEGER NOT NULL,
		state   TEXT    NOT NULL,
		reason  TEXT    NOT NULL DEFAULT '',
		rtt_us  INTEGER NOT NULL DEFAULT 0,
		service TEXT    NOT NULL DEFAULT '',
		banner  TEXT    NOT NULL DEFAULT '',
		time    INTEGER NOT NULL DEFAULT 0                 -- unix nanoseconds
	);
	CREATE INDEX results_port ON results (scan_id, addr, proto, port);`,

	// 2: ports in the common states as one row per group, like nmap's
	// <extraports>. A -p- scan of one host is 65535 results, nearly all
	// closed; a row each cost ~10 µs of CPU, a third of the scan. Each row
	// holds the ports of one (host, protocol, state, reason) that arrived in
	// one AddResults call, with each port's position, RTT and time packed in
	// blobs (see encodeGroup), so nothing is lost and a resume can still
	// drop exactly the ports at or past its checkpoint. pos is the lowest
	// position in the group, max_pos the highest.
	`CREATE TABLE port_groups (
		id      INTEGER PRIMARY KEY,
		scan_id INTEGER NOT NULL REFERENCES scans (id) ON DELETE CASCADE,
		pos     INTEGER NOT NULL,
		max_pos INTEGER NOT NULL,
		addr    BLOB    NOT NULL,
		proto   TEXT    NOT NULL,
		state   TEXT    NOT NULL,
		reason  TEXT    NOT NULL DEFAULT '',
		base    INTEGER NOT NULL DEFAULT 0, -- unix nanoseconds of the earliest result
		ports   BLOB    NOT NULL,           -- ascending ports as uvarint deltas
		detail  BLOB    NOT NULL            -- per port: uvarint position-pos, RTT µs, time-base+1 (0: none)
	);
	CREATE INDEX port_groups_addr ON port_groups (scan_id, addr, proto);`,

	// 3: the process running a scan, so two cannot resume the same one.
	// Cleared when the scan finishes; a dead owner does not count.
	`ALTER TABLE scans ADD COLUMN owner_pid   INTEGER NOT NULL DEFAULT 0;
	ALTER TABLE scans ADD COLUMN owner_start INTEGER NOT NULL DEFAULT 0;`,

	// 4: a resumed scan's duration counts its runs, not the gap between
	// them: when the latest run started, and how long the earlier ran.
	`ALTER TABLE scans ADD COLUMN run_started INTEGER;            -- unix nanoseconds; NULL: started
	ALTER TABLE scans ADD COLUMN prior_ns    INTEGER NOT NULL DEFAULT 0;`,

	// knock: the nonces of accepted SPA requests, kept while their
	// timestamps are acceptable, so a restart does not reopen the replay
	// window; and what the doors did (knock.go).
	`CREATE TABLE knock_nonces (
		nonce   BLOB    PRIMARY KEY,
		expires INTEGER NOT NULL -- unix nanoseconds
	);
	CREATE TABLE knock_events (
		id      INTEGER PRIMARY KEY,
		time    INTEGER NOT NULL,            -- unix nanoseconds
		type    TEXT    NOT NULL,            -- opened, closed, rejected
		via     TEXT    NOT NULL DEFAULT '', -- spa, sequence
		door    TEXT    NOT NULL DEFAULT '',
		src     TEXT    NOT NULL DEFAULT '',
		allow   TEXT    NOT NULL DEFAULT '',
		key     TEXT    NOT NULL DEFAULT '',
		ports   TEXT    NOT NULL DEFAULT '', -- port spec
		until   INTEGER NOT NULL DEFAULT 0,  -- unix nanoseconds; opened only
		reason  TEXT    NOT NULL DEFAULT ''
	);
	CREATE INDEX knock_events_time ON knock_events (time);`,

	// 6: what `portolan watch` saw (events.go): attempts, detections,
	// blocks. src is an addrKey, so a prefix is a range of it.
	`CREATE TABLE events (
		id       INTEGER PRIMARY KEY,
		time     INTEGER NOT NULL,            -- unix nanoseconds
		type     TEXT    NOT NULL,            -- attempt, detection, block
		src      BLOB    NOT NULL,
		src_port INTEGER NOT NULL DEFAULT 0,
		dst      BLOB    NOT NULL,
		proto    TEXT    NOT NULL DEFAULT '',
		port     INTEGER NOT NULL DEFAULT 0,
		kind     TEXT    NOT NULL DEFAULT '', -- syn, fin, null, xmas, odd, udp
		flags    INTEGER NOT NULL DEFAULT 0,
		source   TEXT    NOT NULL DEFAULT '', -- detections: the prefix scored and banned
		scan     TEXT    NOT NULL DEFAULT '',
		score    REAL    NOT NULL DEFAULT 0,
		offence  INTEGER NOT NULL DEFAULT 0,
		ban_ns   INTEGER NOT NULL DEFAULT 0,
		action   TEXT    NOT NULL DEFAULT ''
	);
	CREATE INDEX events_time ON events (time);
	CREATE INDEX events_src ON events (src, time);`,
}

// SchemaVersion is the schema version this build writes.
var SchemaVersion = len(migrations)

// migrate brings the schema up to SchemaVersion, one migration per
// transaction. An up-to-date file is only read, so a store on read-only
// media still opens. Two processes migrating a new file at once are
// serialised by the immediate transaction; the second sees the first one's
// work.
func (s *Store) migrate(ctx context.Context) error {
	var n int
	if err := s.db.QueryRowContext(ctx, `SELECT COUNT(*) FROM sqlite_master WHERE type = 'table' AND name = 'schema_migrations'`).Scan(&n); err != nil {
		return err
	}
	if n > 0 {
		v, err := schemaVersion(ctx, s.db)
		if err != nil {
			return err
		}
		if v > SchemaVersion {
			return errNewer(v)
		}
		if v == SchemaVersion {
			return nil
		}
	}
	if _, err := s.db.ExecContext(ctx, `CREATE TABLE IF NOT EXISTS schema_migrations (
		version INTEGER PRIMARY KEY,
		applied INTEGER NOT NULL -- unix nanoseconds
	)`); err != nil {
		return err
	}
	for {
		done, err := s.migrateOne(ctx)
		if err != nil || done {
			return err
		}
	}
}

func errNewer(v int) error {
	return fmt.Errorf("schema version %d is newer than this portolan knows (%d): upgrade portolan", v, SchemaVersion)
}

// migrateOne applies the next migration, if any, and reports whether the
// schema is up to date.
func (s *Store) migrateOne(ctx context.Context) (bool, error) {
	tx, err := s.db.BeginTx(ctx, nil)
	if err != nil {
		return false, err
	}
	defer tx.Rollback()
	v, err := schemaVersion(ctx, tx)
	if err != nil {
		return false, err
	}
	switch {
	case v > SchemaVersion:
		return false, errNewer(v)
	case v == SchemaVersion:
		return true, nil
	}
	if _, err := tx.ExecContext(ctx, migrations[v]); err != nil {
		return false, fmt.Errorf("migrate schema to version %d: %w", v+1, err)
	}
	if _, err := tx.ExecContext(ctx, `INSERT INTO schema_migrations (version, applied) VALUES (?, ?)`, v+1, s.now().UnixNano()); err != nil {
		return false, fmt.Errorf("migrate schema to version %d: %w", v+1, err)
	}
	return false, tx.Commit()
}

// schemaVersion returns the version of the schema, 0 for a new file.
func schemaVersion(ctx context.Context, q interface {
	QueryRowContext(context.Context, string, ...any) *sql.Row
}) (int, error) {
	var v sql.NullInt64
	if err := q.QueryRowContext(ctx, `SELECT MAX(version) FROM schema_migrations`).Scan(&v); err != nil {
		return 0, err
	}
	return int(v.Int64), nil
}
