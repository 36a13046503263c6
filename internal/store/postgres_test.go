package store

import (
	"context"
	"testing"
	"time"

	"portolan/internal/testenv"
)

// TestPostgresToastCompression: a sweep's port groups are written asking
// for lz4, and a server that refuses the method (here: one that does not
// exist) still gets every result, in its default, from then on without
// asking again.
func TestPostgresToastCompression(t *testing.T) {
	rs := sweepResults()[:8192]
	for _, method := range []string{"lz4", "nonesuch"} {
		t.Run(method, func(t *testing.T) {
			old := toastCompression
			toastCompression = method
			t.Cleanup(func() { toastCompression = old })
			ctx := context.Background()
			s := openerOf(testenv.Postgres(t))(t)
			id, err := s.CreateScan(ctx, ScanInfo{Started: time.Now(), Status: Running, Targets: "198.18.0.2", Ports: "-"})
			if err != nil {
				t.Fatal(err)
			}
			for i := 0; i < len(rs); i += 4096 {
				if err := s.AddResults(ctx, id, rs[i:i+4096]); err != nil {
					t.Fatalf("AddResults with %s: %v", method, err)
				}
			}
			got, err := s.Results(ctx, id, Filter{})
			if err != nil || len(got) != len(rs) {
				t.Fatalf("Results = %d results, %v; want %d", len(got), err, len(rs))
			}
			refused := s.d.(postgresDialect).plainTOAST.Load()
			if want := method == "nonesuch"; refused != want {
				t.Errorf("compression %q: refusal remembered = %v; want %v", method, refused, want)
			}
		})
	}
}

// TestAppendCopy: rows of the wrong shape are refused before anything is
// sent; the binary COPY itself is checked by every write to a real server
// (TestPostgresToastCompression and the dialect tests read them back).
func TestAppendCopy(t *testing.T) {
	tests := []struct {
		name  string
		types string
		rows  [][]any
		ok    bool
	}{
		{"good", "litb", [][]any{{int64(-1), 443, "tcp", []byte{4, 198, 18, 0, 1}}}, true},
		{"no rows", "l", nil, true},
		{"short row", "li", [][]any{{int64(1)}}, false},
		{"text for an integer", "l", [][]any{{"1"}}, false},
		{"integer for text", "t", [][]any{{int64(1)}}, false},
		{"integer out of range", "i", [][]any{{int64(1) << 40}}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := appendCopy(nil, tt.types, tt.rows)
			if (err == nil) != tt.ok {
				t.Errorf("appendCopy(%q, %v) = %v; want ok %v", tt.types, tt.rows, err, tt.ok)
			}
		})
	}
}
