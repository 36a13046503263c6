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
