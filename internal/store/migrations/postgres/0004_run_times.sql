-- a resumed scan's runs (see SQLite's version 4).
ALTER TABLE scans ADD COLUMN run_started BIGINT;
ALTER TABLE scans ADD COLUMN prior_ns    BIGINT NOT NULL DEFAULT 0;
