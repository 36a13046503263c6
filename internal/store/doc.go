// Package store keeps scans and their results: the parameters of each scan
// (targets, ports, prober, seed, shard, rate), its checkpoints for resuming,
// its counts and every port result, so any scan can be listed, re-rendered
// or resumed later.
//
// The embedded default is one SQLite file (modernc.org/sqlite, pure Go) at
// DefaultPath, in WAL mode so readers never wait for a running scan. The
// schema is versioned: Open applies the migrations a file lacks, in order,
// and refuses a file written by a newer portolan. Ports in the states most
// of a scan shares (closed, filtered without an answer) are stored as one
// row per host and batch with the ports packed in a blob, so a -p- scan
// writes a handful of rows instead of 65535; reads give every port back.
//
// The Store API is the same whatever holds the data. All SQL goes through
// database/sql, written once with ? placeholders; a dialect (sqlite.go,
// postgres.go) keeps what differs: placeholders, listing tables, locks,
// snapshot reads, bulk writes (PostgreSQL's COPY) and each engine's
// migrations, embedded from migrations/sqlite and migrations/postgres with
// the same versions. A postgres:// URL opens PostgreSQL through pgx's
// database/sql driver: the database of a fleet, where many processes on many
// machines write the shards of one named scan (fleet.go). Whether a scan
// still runs is a lease (a host id and a heartbeat), which means something
// across machines, where a process id does not.
package store
