-- What `portolan watch` saw (events.go): attempts, detections, blocks. src
-- is an addrKey, so a prefix is a range of it.
CREATE TABLE events (
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
CREATE INDEX events_src ON events (src, time);
