-- the process running a scan, so two cannot resume the same one.
-- Cleared when the scan finishes; a dead owner does not count.
ALTER TABLE scans ADD COLUMN owner_pid   INTEGER NOT NULL DEFAULT 0;
ALTER TABLE scans ADD COLUMN owner_start INTEGER NOT NULL DEFAULT 0;
