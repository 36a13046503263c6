package firewall

import (
	"bytes"
	"context"
	"log/slog"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

// TestTableCache: a table read from the cache is the table the kernel
// holds, and any change by another tool (to portolan's table or another)
// sends the next read back to the kernel.
func TestTableCache(t *testing.T) {
	l := newLab(t)
	ctx := context.Background()
	var log bytes.Buffer
	fw := &Firewall{NetNS: l.srv.FD(), Cache: filepath.Join(t.TempDir(), "table.gob"),
		Logger: slog.New(slog.NewTextHandler(&log, &slog.HandlerOptions{Level: slog.LevelDebug}))}
	fresh := func() *Table { // the table read from the kernel
		t.Helper()
		tab, err := (&Firewall{NetNS: l.srv.FD()}).Read(ctx)
		if err != nil {
			t.Fatal(err)
		}
		return tab
	}
	cached := func(wantHit bool) *Table {
		t.Helper()
		log.Reset()
		tab, err := fw.Read(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if hit := strings.Contains(log.String(), "table read from the cache"); hit != wantHit {
			t.Errorf("read from the cache: %v; want %v", hit, wantHit)
		}
		return tab
	}
	same := func(what string, got, want *Table) {
		t.Helper()
		if diff := cmp.Diff(want.Ruleset, got.Ruleset, ruleCmp); diff != "" || got.Unmanaged != want.Unmanaged {
			t.Errorf("%s: cached read (-kernel +cache), unmanaged %d, %d:\n%s", what, want.Unmanaged, got.Unmanaged, diff)
		}
	}
	for name, rs := range roundTripCases(t) {
		if err := fw.Apply(ctx, &rs); err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		same(name, cached(true), fresh())
	}
	a := roundTripCases(t)["directions"]
	if err := fw.Apply(ctx, &a); err != nil {
		t.Fatal(err)
	}
	// One changed rule: an incremental write, recorded in the cache with
	// the new rules' handles.
	b := *a.Clone()
	b.Rules[1] = mustRule(t, RuleSpec{Action: "deny", Ports: "8081/tcp", Dir: "routed"})
	tab := cached(true)
	if err := fw.ApplyTo(ctx, tab, &b); err != nil {
		t.Fatal(err)
	}
	same("after one change", cached(true), fresh())
	before := handles(t, l)
	if err := fw.ApplyTo(ctx, cached(true), &b); err != nil {
		t.Fatal(err)
	}
	if after := handles(t, l); !cmp.Equal(before, after) {
		t.Errorf("re-applying from the cache changed the chain:\n%s", cmp.Diff(before, after))
	}

	// Another table changes: the generation moves, the kernel is read.
	nft(t, l.srv, "add", "table", "ip", "other")
	same("after another table changed", cached(false), fresh())
	cached(true)
	// A rule added to portolan's chain behind its back is seen.
	nft(t, l.srv, "add", "rule", "inet", TableName, ChainName, "tcp", "dport", "9", "drop")
	got := cached(false)
	if got.Unmanaged != 1 {
		t.Errorf("after nft add rule: %d unmanaged; want 1", got.Unmanaged)
	}
	cached(false) // a table with unmanaged rules is not cached
	if err := fw.Reset(ctx); err != nil {
		t.Fatal(err)
	}
	if tab := cached(false); tab.Exists {
		t.Errorf("after reset the table exists")
	}
}
