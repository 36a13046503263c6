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
// database/sql with the differences between engines kept in a dialect, so a
// PostgreSQL backend for fleets (pgx's database/sql driver, chosen by a
// postgres:// path) can be added behind it without touching callers.
package store
