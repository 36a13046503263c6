-- knock: the nonces of accepted SPA requests, kept while their timestamps
-- are acceptable, so a restart does not reopen the replay window; and what
-- the doors did (knock.go).
CREATE TABLE knock_nonces (
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
CREATE INDEX knock_events_time ON knock_events (time);
