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

// TestImportScan stores a whole scan in one go and reads it back: by
// ScanHosts, and as one port's sightings across two scans.
func TestImportScan(t *testing.T) { eachDialect(t, testImportScan) }

func testImportScan(t *testing.T, open opener) {
	ctx := context.Background()
	s := open(t)
	addr := netip.MustParseAddr("198.18.0.4")
	start := time.Date(2026, 12, 1, 10, 0, 0, 0, time.UTC)
	var ids []int64
	for i, st := range []scan.State{scan.Closed, scan.Open} {
		var rs []scan.Result
		for p := portspec.Port(1); p <= 30; p++ {
			r := scan.Result{Addr: addr, Port: p, Proto: portspec.TCP, State: scan.Closed, Reason: scan.ReasonConnRefused,
				Service: registry.PortName(p, portspec.TCP), Pos: uint64(p)}
			if p == 22 {
				r.State, r.Banner = st, "SSH-2.0-OpenSSH_9.2p1"
			}
			rs = append(rs, r)
		}
		id, err := s.ImportScan(ctx, ScanInfo{Started: start.Add(time.Duration(i) * time.Hour), Targets: "198.18.0.4",
			Options: []byte(`{"versions":{"198.18.0.4 22/tcp":{"product":"OpenSSH","version":"9.2p1","extrainfo":"Debian"}}}`)}, rs)
		if err != nil {
			t.Fatal(err)
		}
		ids = append(ids, id)
	}
	si, err := s.Scan(ctx, ids[1])
	if err != nil || si.Status != Done || !si.Started.Equal(start.Add(time.Hour)) {
		t.Fatalf("imported scan = %+v, %v; want done, started an hour after the first", si, err)
	}
	n := 0
	for h, err := range s.ScanHosts(ctx, ids[1]) {
		if err != nil {
			t.Fatal(err)
		}
		n += len(h.Ports)
	}
	if n != 30 {
		t.Errorf("ScanHosts of the import: %d ports; want 30", n)
	}
	ss, err := s.Sightings(ctx, addr, 22, portspec.TCP)
	if err != nil {
		t.Fatal(err)
	}
	if len(ss) != 2 || ss[0].Result.State != scan.Closed || ss[1].Result.State != scan.Open || ss[1].Version.Extra != "Debian" {
		t.Errorf("Sightings of 22/tcp = %+v; want closed then open, with the recorded version", ss)
	}
	if _, err := s.ImportScan(ctx, ScanInfo{Started: start}, []scan.Result{{Port: 1, Proto: portspec.TCP, State: scan.Open}}); err == nil {
		t.Error("ImportScan of a result without an address: no error")
	}
	if scans, err := s.Scans(ctx, 0); err != nil || len(scans) != 2 {
		t.Errorf("after a refused import: %d scans, %v; want the 2 from before", len(scans), err)
	}
}

// TestScanHostsRepeat stores a batch twice, as a scan does when a commit's
// answer was lost and it writes the batch again: each port comes once.
func TestScanHostsRepeat(t *testing.T) {
	ctx := context.Background()
	s, _ := openTemp(t)
	id, err := s.CreateScan(ctx, ScanInfo{Targets: "x"})
	if err != nil {
		t.Fatal(err)
	}
	addr := netip.MustParseAddr("198.18.0.3")
	var rs []scan.Result
	for p := portspec.Port(1); p <= 5; p++ {
		r := scan.Result{Addr: addr, Port: p, Proto: portspec.TCP, State: scan.Closed, Reason: scan.ReasonConnRefused,
			Service: registry.PortName(p, portspec.TCP), Pos: uint64(p)}
		if p == 2 {
			r.State, r.Reason, r.Banner = scan.Open, scan.ReasonSynAck, "hi"
		}
		rs = append(rs, r)
	}
	for range 2 {
		if err := s.AddResults(ctx, id, rs); err != nil {
			t.Fatal(err)
		}
	}
	var got []string
	for h, err := range s.ScanHosts(ctx, id) {
		if err != nil {
			t.Fatal(err)
		}
		for _, p := range h.Ports {
			got = append(got, fmt.Sprintf("%d %s", p.Port, p.State))
		}
	}
	if want := "[1 closed 2 open 3 closed 4 closed 5 closed]"; fmt.Sprint(got) != want {
		t.Errorf("ScanHosts of a batch stored twice = %v; want %s", got, want)
	}
}
