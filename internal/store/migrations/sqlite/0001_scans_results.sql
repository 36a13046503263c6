-- scans and their port results.
CREATE TABLE scans (
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
CREATE INDEX results_port ON results (scan_id, addr, proto, port);
