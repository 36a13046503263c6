package store

import (
	"context"
	"net/netip"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"portolan/internal/portspec"
	"portolan/internal/watch"
)

var cmpPrefix = cmp.Comparer(func(a, b netip.Prefix) bool { return a == b })

func TestEventsRoundTrip(t *testing.T) {
	s, _ := openTemp(t)
	ctx := context.Background()
	t0 := time.Unix(1_800_000_000, 0)
	att := func(src string, port portspec.Port, at time.Duration) watch.Attempt {
		return watch.Attempt{Time: t0.Add(at), Src: netip.MustParseAddr(src), SrcPort: 40000, Dst: netip.MustParseAddr("198.18.0.1"), Proto: portspec.TCP, Port: port, Kind: watch.KindSYN, Flags: 2}
	}
	var evs []watch.Event
	for i := range 100 {
		evs = append(evs, watch.AttemptEvent(att("198.18.0.9", portspec.Port(1000+i), time.Duration(i)*time.Second)))
	}
	evs = append(evs, watch.AttemptEvent(att("198.18.0.10", 22, 50*time.Second)))
	v6 := att("fd00::9", 22, 60*time.Second)
	v6.Dst = netip.MustParseAddr("fd00::1")
	evs = append(evs, watch.AttemptEvent(v6))
	det := watch.DetectionEvent(watch.Detection{Source: netip.MustParsePrefix("198.18.0.9/32"), Kind: watch.Vertical, Score: 1, Offence: 2, Trigger: att("198.18.0.9", 1011, 11*time.Second)})
	blk := det
	blk.Type, blk.Ban, blk.Action = watch.TypeBlock, 20*time.Minute, "blocked"
	evs = append(evs, det, blk)
	if err := s.AddEvents(ctx, evs); err != nil {
		t.Fatal(err)
	}

	cases := []struct {
		name string
		q    EventQuery
		want int
	}{
		{"all", EventQuery{}, 104},
		{"since", EventQuery{Since: t0.Add(90 * time.Second)}, 10},
		{"until", EventQuery{Until: t0.Add(10 * time.Second)}, 10},
		{"source", EventQuery{Source: netip.MustParsePrefix("198.18.0.9/32")}, 102},
		{"source prefix", EventQuery{Source: netip.MustParsePrefix("198.18.0.0/24")}, 103},
		{"source v6 /64", EventQuery{Source: netip.MustParsePrefix("fd00::/64")}, 1},
		{"source mapped", EventQuery{Source: netip.MustParsePrefix("::ffff:198.18.0.10/128")}, 1},
		{"types", EventQuery{Types: []string{watch.TypeDetection, watch.TypeBlock}}, 2},
		{"limit", EventQuery{Limit: 3}, 3},
	}
	for _, c := range cases {
		got, err := s.Events(ctx, c.q)
		if err != nil || len(got) != c.want {
			t.Errorf("%s: Events(%+v) = %d events, %v; want %d", c.name, c.q, len(got), err, c.want)
		}
		for i := 1; i < len(got); i++ {
			if got[i].Time.Before(got[i-1].Time) {
				t.Errorf("%s: event %d out of time order", c.name, i)
			}
		}
	}
	got, err := s.Events(ctx, EventQuery{Types: []string{watch.TypeBlock}})
	if err != nil || len(got) != 1 {
		t.Fatalf("Events(block) = %v, %v", got, err)
	}
	if d := cmp.Diff(blk, got[0], cmpAddr, cmpPrefix); d != "" {
		t.Errorf("block event round trip (-want +got):\n%s", d)
	}
	last, _ := s.Events(ctx, EventQuery{Limit: 1, Types: []string{watch.TypeAttempt}})
	if len(last) != 1 || last[0].Port != 1099 {
		t.Errorf("Events(Limit 1) = %+v; want the latest attempt, port 1099", last)
	}
}
