//go:build !linux

package testenv

import (
	"runtime"
	"testing"
)

// PG is a throwaway PostgreSQL server; the helpers need Linux.
type PG struct {
	Dir  string
	Port int
}

// StartPostgres needs Linux.
func StartPostgres(t testing.TB) *PG {
	t.Helper()
	skipOrFail(t, "a throwaway PostgreSQL needs Linux, not "+runtime.GOOS)
	return nil
}

// Postgres needs Linux.
func Postgres(t testing.TB) string {
	t.Helper()
	skipOrFail(t, "a throwaway PostgreSQL needs Linux, not "+runtime.GOOS)
	return ""
}

// StopPostgres has nothing to stop.
func StopPostgres() {}
