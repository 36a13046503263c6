-- ports in the common states as one row per group, like nmap's
-- <extraports>. A -p- scan of one host is 65535 results, nearly all
-- closed; a row each cost ~10 µs of CPU, a third of the scan. Each row
-- holds the ports of one (host, protocol, state, reason) that arrived in
-- one AddResults call, with each port's position, RTT and time packed in
-- blobs (see encodeGroup), so nothing is lost and a resume can still
-- drop exactly the ports at or past its checkpoint. pos is the lowest
-- position in the group, max_pos the highest.
CREATE TABLE port_groups (
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
CREATE INDEX port_groups_addr ON port_groups (scan_id, addr, proto);
