package atomicfile

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestWriteReplaces(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "state.json")
	if err := Write(path, []byte("old\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := Write(path, []byte("new\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(path)
	if err != nil || string(b) != "new\n" {
		t.Fatalf("read back %q, %v; want new", b, err)
	}
	if fi, _ := os.Stat(path); fi.Mode().Perm() != 0o644 {
		t.Errorf("mode %v; want 0644", fi.Mode().Perm())
	}
	if ents, _ := os.ReadDir(dir); len(ents) != 1 {
		t.Errorf("directory holds %d files; want only the file (no temporary left)", len(ents))
	}
}

// A write that cannot finish leaves the old file whole and no temporary
// file behind.
func TestFailedWriteKeepsTheOld(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "state.json")
	if err := Write(path, []byte("old\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	// A directory in the way of the rename: every step but the last works.
	blocked := filepath.Join(dir, "blocked")
	if err := os.Mkdir(blocked, 0o755); err != nil {
		t.Fatal(err)
	}
	os.WriteFile(filepath.Join(blocked, "x"), nil, 0o600)
	err := Write(blocked, []byte("new\n"), 0o600)
	if err == nil || !strings.Contains(err.Error(), blocked) {
		t.Fatalf("Write over a non-empty directory: %v; want an error naming it", err)
	}
	if b, _ := os.ReadFile(path); string(b) != "old\n" {
		t.Errorf("the other file changed: %q", b)
	}
	ents, _ := os.ReadDir(dir)
	for _, e := range ents {
		if strings.HasSuffix(e.Name(), ".tmp") {
			t.Errorf("temporary file %s left behind", e.Name())
		}
	}
	// A directory that does not exist: an error naming the file.
	if err := Write(filepath.Join(dir, "no", "such"), nil, 0o600); err == nil || !strings.Contains(err.Error(), "no/such") {
		t.Errorf("Write into a missing directory: %v", err)
	}
}
