// Package testenv says what a test may rely on here: root, a command on
// PATH. In CI (CI=true) a missing requirement fails the test instead of
// skipping it, so nothing is silently left untested.
package testenv

import (
	"os"
	"os/exec"
	"testing"
)

// InCI reports whether the tests run under CI (CI=true).
func InCI() bool { return os.Getenv("CI") == "true" }

// skipOrFail skips the test outside CI and fails it inside.
func skipOrFail(t testing.TB, why string) {
	t.Helper()
	if InCI() {
		t.Fatalf("%s (CI=true: required here)", why)
	}
	t.Skip(why)
}

// RequireRoot stops the test unless it runs as root.
func RequireRoot(t testing.TB) {
	t.Helper()
	if os.Geteuid() != 0 {
		skipOrFail(t, "needs root")
	}
}

// RequireCommand stops the test unless name is on PATH, and returns its path.
func RequireCommand(t testing.TB, name string) string {
	t.Helper()
	p, err := exec.LookPath(name)
	if err != nil {
		skipOrFail(t, "needs "+name+" on PATH (make deps installs it)")
	}
	return p
}
