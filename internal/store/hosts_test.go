package store

import (
	"context"
	"fmt"
	"net/netip"
	"testing"
	"time"

	"portolan/internal/portspec"
	"portolan/internal/registry"
	"portolan/internal/scan"
)

// TestScanHosts checks that ScanHosts gives, host by host, the ports
// ResultsSeq gives, whether stored as rows or in groups, across protocols
// and families, in the same order.
func TestScanHosts(t *testing.T) {
	eachDialect(t, func(t *testing.T, open opener) {
		ctx := context.Background()
		s := open(t)
		id, err := s.CreateScan(ctx, ScanInfo{Targets: "x"})
		if err != nil {
			t.Fatal(err)
		}
		var rs []scan.Result
		for i, a := range []string{"198.18.0.9", "198.18.0.10", "fd00::1"} {
			addr := netip.MustParseAddr(a)
			for _, proto := range []portspec.Proto{portspec.UDP, portspec.TCP} {
				for p := portspec.Port(1); p <= 40; p++ {
					r := scan.Result{Addr: addr, Port: p, Proto: proto, State: scan.Closed, Reason: scan.ReasonConnRefused,
						Service: registry.PortName(p, proto), Pos: uint64(len(rs))}
					switch {
					case int(p)%(7+i) == 0:
						r.State, r.Reason, r.Banner = scan.Open, scan.ReasonSynAck, "hello"
					case p > 30:
						r.State, r.Reason = scan.Filtered, scan.ReasonNoResponse
					}
					rs = append(rs, r)
				}
			}
		}
		// Two batches: a host's groups come in more than one row.
		if err := s.AddResults(ctx, id, rs[:100]); err != nil {
			t.Fatal(err)
		}
		if err := s.AddResults(ctx, id, rs[100:]); err != nil {
			t.Fatal(err)
		}
		var want, got []string
		for r, err := range s.ResultsSeq(ctx, id, Filter{}) {
			if err != nil {
				t.Fatal(err)
			}
			want = append(want, fmt.Sprintf("%s %d/%s %s %s %s", r.Addr, r.Port, r.Proto, r.State, r.Reason, r.Banner))
		}
		hosts := 0
		for h, err := range s.ScanHosts(ctx, id) {
			if err != nil {
				t.Fatal(err)
			}
			hosts++
			for _, p := range h.Ports {
				banner := ""
				if p.Row >= 0 {
					r := h.Rows[p.Row]
					banner = r.Banner
					if r.Port != p.Port || r.Proto != p.Proto || r.State != p.State {
						t.Errorf("%s %d/%s: row %d is %+v", h.Addr, p.Port, p.Proto, p.Row, r)
					}
				}
				got = append(got, fmt.Sprintf("%s %d/%s %s %s %s", h.Addr, p.Port, p.Proto, p.State, p.Reason, banner))
			}
		}
		if hosts != 3 || len(got) != len(want) {
			t.Fatalf("ScanHosts: %d hosts, %d ports; want 3 hosts, %d ports", hosts, len(got), len(want))
		}
		for i := range want {
			if got[i] != want[i] {
				t.Fatalf("port %d: ScanHosts %q, ResultsSeq %q", i, got[i], want[i])
			}
		}
		for _, err := range s.ScanHosts(ctx, id+1) {
			if err == nil {
				t.Fatal("ScanHosts of a missing scan: no error")
			}
		}
		// An import of the same results in one transaction reads back the same,
		// and Sightings finds the host in both scans.
		id2, err := s.ImportScan(ctx, ScanInfo{Targets: "x", Prober: "connect", Started: time.Now()}, rs)
		if err != nil {
			t.Fatal(err)
		}
		var again []string
		for r, err := range s.ResultsSeq(ctx, id2, Filter{}) {
			if err != nil {
				t.Fatal(err)
			}
			again = append(again, fmt.Sprintf("%s %d/%s %s %s %s", r.Addr, r.Port, r.Proto, r.State, r.Reason, r.Banner))
		}
		if fmt.Sprint(again) != fmt.Sprint(want) {
			t.Errorf("imported scan reads back differently:\n%v\nwant\n%v", again, want)
		}
		seen, err := s.Sightings(ctx, netip.MustParseAddr("198.18.0.9"), 7, portspec.TCP)
		if err != nil || len(seen) != 2 || seen[0].Result.State != scan.Open {
			t.Errorf("Sightings of 198.18.0.9 7/tcp = %+v, %v; want open in both scans", seen, err)
		}
	})
}
