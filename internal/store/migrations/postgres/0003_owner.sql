-- the process running a scan (see SQLite's version 3).
ALTER TABLE scans ADD COLUMN owner_pid   BIGINT NOT NULL DEFAULT 0;
ALTER TABLE scans ADD COLUMN owner_start BIGINT NOT NULL DEFAULT 0;
