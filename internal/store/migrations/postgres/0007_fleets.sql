-- fleets: a scan named with --scan-id runs as shards in many processes on
-- many machines. name and run say which named scan, and which run of it, a
-- shard's row belongs to ('' and 0: a plain scan); one row per shard of a
-- run. A shard is running while its lease holds: the host that runs it and
-- until when its last heartbeat vouches for it (unix nanoseconds).
ALTER TABLE scans ADD COLUMN name        TEXT    NOT NULL DEFAULT '';
ALTER TABLE scans ADD COLUMN run         BIGINT  NOT NULL DEFAULT 0;
ALTER TABLE scans ADD COLUMN lease_host  TEXT    NOT NULL DEFAULT '';
ALTER TABLE scans ADD COLUMN lease_until BIGINT  NOT NULL DEFAULT 0;
CREATE UNIQUE INDEX scans_shard ON scans (name, run, shard_index) WHERE name <> '';
