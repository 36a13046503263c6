-- a resumed scan's duration counts its runs, not the gap between
-- them: when the latest run started, and how long the earlier ran.
ALTER TABLE scans ADD COLUMN run_started INTEGER;            -- unix nanoseconds; NULL: started
ALTER TABLE scans ADD COLUMN prior_ns    INTEGER NOT NULL DEFAULT 0;
