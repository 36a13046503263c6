package store

import (
	"context"
	"database/sql"
	"embed"
	"fmt"
	"io/fs"
	"path"
	"sort"
	"strconv"
	"strings"
	"sync"
)

// dialect is what differs between the engines behind the Store. The store's
// SQL is written once, with ? placeholders and the types both engines
// share; the dialect rewrites placeholders, lists tables, holds the
// migrations and writes results in bulk as its engine does fastest.
type dialect interface {
	// name is "sqlite" or "postgres"; migrations live under migrations/NAME.
	name() string
	// rebind rewrites ? placeholders to the engine's.
	rebind(q string) string
	// emptyWhat is what --db should name instead of a foreign database.
	emptyWhat() string
	// tables lists the tables of the store's schema.
	tables(ctx context.Context, db *sql.DB) ([]string, error)
	// lock serialises migrations and scan creation between processes
	// for the rest of tx; key names what is locked.
	lock(ctx context.Context, tx *sql.Tx, key string) error
	// lockLazy is lock for a transaction whose commit need not wait for
	// the disk: something committed later, durably, vouches for it.
	lockLazy(ctx context.Context, tx *sql.Tx, key string) error
	// readTx are the options of a transaction that reads one snapshot.
	readTx() *sql.TxOptions
	// transient reports whether err is the database being away for now
	// (worth retrying) rather than a failure that repeats.
	transient(err error) bool
	// addResults writes rows (resultColumns values each) and groups
	// (groupColumns values each) in one transaction.
	addResults(ctx context.Context, db *sql.DB, rows, groups [][]any) error
}

//go:embed migrations
var migrationFiles embed.FS

// loadMigrations returns the migrations of dialect name in order:
// migrations/NAME/0001_what.sql takes the schema from version 0 to 1, and so
// on. Files are appended, never edited: stores in the field have run the
// old ones. Both dialects have the same versions.
func loadMigrations(name string) []string {
	dir := path.Join("migrations", name)
	ents, err := fs.ReadDir(migrationFiles, dir)
	if err != nil {
		panic(err) // embedded: cannot happen in a build that compiled
	}
	sort.Slice(ents, func(i, j int) bool { return ents[i].Name() < ents[j].Name() })
	var out []string
	for i, e := range ents {
		v, _, _ := strings.Cut(e.Name(), "_")
		if n, err := strconv.Atoi(v); err != nil || n != i+1 {
			panic(fmt.Sprintf("migration %s/%s out of sequence: want version %d", dir, e.Name(), i+1))
		}
		b, err := migrationFiles.ReadFile(path.Join(dir, e.Name()))
		if err != nil {
			panic(err)
		}
		out = append(out, string(b))
	}
	return out
}

var migrationLists = sync.OnceValue(func() map[string][]string {
	return map[string][]string{"sqlite": loadMigrations("sqlite"), "postgres": loadMigrations("postgres")}
})

// migrationsOf returns the migrations of dialect d.
func migrationsOf(d dialect) []string { return migrationLists()[d.name()] }

// numberedRebind rewrites each ? to $1, $2, ... as PostgreSQL wants. The
// store's queries carry no ? inside literals.
func numberedRebind(q string) string {
	if !strings.Contains(q, "?") {
		return q
	}
	var b strings.Builder
	b.Grow(len(q) + 16)
	n := 0
	for i := 0; i < len(q); i++ {
		if q[i] == '?' {
			n++
			b.WriteByte('$')
			b.WriteString(strconv.Itoa(n))
			continue
		}
		b.WriteByte(q[i])
	}
	return b.String()
}
