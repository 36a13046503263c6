package scandiff

import (
	"context"
	"fmt"
	"net/netip"
	"path/filepath"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"portolan/internal/portspec"
	"portolan/internal/scan"
	"portolan/internal/store"
)

// TestTimeline stores four scans of a host in which 443 opens, closes and
// opens again, and 22 stays open; the timeline of each port says when it
// was first and last seen in each state.
func TestTimeline(t *testing.T) {
	ctx := context.Background()
	st, err := store.Open(ctx, filepath.Join(t.TempDir(), "p.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	const h = "198.18.0.7"
	start := time.Date(2026, 12, 1, 10, 0, 0, 0, time.UTC)
	states443 := []scan.State{scan.Closed, scan.Open, scan.Filtered, scan.Open}
	for i, s443 := range states443 {
		rs := with(closedHost(h, 440, 450), res(h, 22, scan.Open, fmt.Sprintf("SSH-2.0-OpenSSH_9.%dp1", i)), res(h, 443, s443, ""),
			res("198.18.0.8", 443, scan.Open, ""))
		storeScan(t, st, start.Add(time.Duration(i)*24*time.Hour), h, rs)
	}
	ss, err := st.Sightings(ctx, netip.MustParseAddr(h), 443, portspec.TCP)
	if err != nil {
		t.Fatal(err)
	}
	day := func(i int) time.Time { return start.Add(time.Duration(i)*24*time.Hour + time.Millisecond) }
	got := Timeline(ss)
	a := netip.MustParseAddr(h)
	want := []Span{
		{Addr: a, Port: 443, Proto: portspec.TCP, State: scan.Closed, First: Seen{1, day(0)}, Last: Seen{1, day(0)}, Scans: 1, Service: "https"},
		{Addr: a, Port: 443, Proto: portspec.TCP, State: scan.Open, First: Seen{2, day(1)}, Last: Seen{4, day(3)}, Scans: 2, Service: "https", Current: true},
		{Addr: a, Port: 443, Proto: portspec.TCP, State: scan.Filtered, First: Seen{3, day(2)}, Last: Seen{3, day(2)}, Scans: 1, Service: "https"},
	}
	if diff := cmp.Diff(want, got, cmp.Comparer(func(a, b netip.Addr) bool { return a == b })); diff != "" {
		t.Errorf("Timeline 443: (-want +got)\n%s", diff)
	}

	// Every port of the host: 22 open in all four, with the last banner.
	ss, err = st.Sightings(ctx, a, 0, 0)
	if err != nil {
		t.Fatal(err)
	}
	spans := Timeline(ss)
	if len(spans) != 1+10+3 { // 22 open; 440-450 but 443 closed; 443 closed, open and filtered
		t.Errorf("%d spans; want 14: %+v", len(spans), spans)
	}
	if s := spans[0]; s.Port != 22 || s.State != scan.Open || s.Scans != 4 || s.Banner != "SSH-2.0-OpenSSH_9.3p1" || s.Version.Version != "9.3p1" || !s.Current {
		t.Errorf("span 0 = %+v; want 22 open in 4 scans, last banner and version 9.3p1, current", s)
	}
	if ss, err := st.Sightings(ctx, netip.MustParseAddr("198.18.0.99"), 0, 0); err != nil || len(ss) != 0 {
		t.Errorf("Sightings of an unseen address = %v, %v; want none", ss, err)
	}
}
