package netlab

import (
	"testing"

	"portolan/internal/testenv"
)

// This file imports "testing" into the package. That is harmless: netlab is
// imported only by tests and benchmarks (TestProductDoesNotImport checks
// cmd/portolan), and since Go 1.13 importing "testing" registers no flags.
// A separate netlabtest package would buy nothing but a second import.

// NewT returns a lab that is closed when the test ends (also when it fails
// or panics). It skips the test without root, or fails it under CI=true.
func NewT(t testing.TB) *Lab {
	t.Helper()
	testenv.RequireRoot(t)
	l, err := New()
	if err != nil {
		t.Fatalf("netlab.New: %v", err)
	}
	t.Cleanup(func() {
		if err := l.Close(); err != nil {
			t.Errorf("netlab: close lab: %v", err)
		}
	})
	return l
}

// NewPair is the usual two-host network: hosts "a" and "b" of a new lab
// (closed with the test) joined by one link, a at 198.18.0.1 and fd00::1,
// b at 198.18.0.2 and fd00::2.
func NewPair(t testing.TB) (a, b *Host, lk *Link) {
	t.Helper()
	l := NewT(t)
	a, err := l.AddHost("a")
	if err != nil {
		t.Fatal(err)
	}
	b, err = l.AddHost("b")
	if err != nil {
		t.Fatal(err)
	}
	lk, err = l.Link(a, b)
	if err != nil {
		t.Fatal(err)
	}
	return a, b, lk
}
