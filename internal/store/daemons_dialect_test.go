package store

import (
	"context"
	"net/netip"
	"testing"
	"time"

	"portolan/internal/portspec"
	"portolan/internal/watch"
)

// The knock daemon's replay cache and events, and the watcher's events,
// work the same on both engines.
func TestDaemonTablesBothDialects(t *testing.T) {
	eachDialect(t, func(t *testing.T, open opener) {
		ctx := context.Background()
		s := open(t)
		exp := time.Now().Add(time.Minute)
		if fresh, err := s.AddKnockNonce(ctx, []byte("nonce-1"), exp); err != nil || !fresh {
			t.Fatalf("AddKnockNonce first = %v, %v; want new", fresh, err)
		}
		if fresh, err := open(t).AddKnockNonce(ctx, []byte("nonce-1"), exp); err != nil || fresh {
			t.Fatalf("AddKnockNonce again, from another open = %v, %v; want a replay", fresh, err)
		}
		if err := s.AddKnockEvents(ctx, []KnockEvent{{Time: time.Now(), Type: "opened", Door: "ssh", Src: "198.18.0.9"}}); err != nil {
			t.Fatal(err)
		}
		if evs, err := s.KnockEvents(ctx, 0); err != nil || len(evs) != 1 || evs[0].Door != "ssh" {
			t.Fatalf("KnockEvents = %+v, %v", evs, err)
		}

		src := netip.MustParseAddr("198.18.0.9")
		var evs []watch.Event
		for i := range 100 {
			evs = append(evs, watch.AttemptEvent(watch.Attempt{Time: time.Unix(1_800_000_000+int64(i), 0), Src: src, SrcPort: 40000,
				Dst: netip.MustParseAddr("198.18.0.1"), Proto: portspec.TCP, Port: portspec.Port(i + 1), Kind: watch.KindSYN, Flags: 2}))
		}
		if err := s.AddEvents(ctx, evs); err != nil {
			t.Fatal(err)
		}
		got, err := s.Events(ctx, EventQuery{Source: netip.MustParsePrefix("198.18.0.0/24"), Types: []string{"attempt"}, Limit: 10})
		if err != nil || len(got) != 10 || got[9].Port != 100 {
			t.Fatalf("Events latest 10 from 198.18.0.0/24 = %d events, %v", len(got), err)
		}
		if got, err := s.Events(ctx, EventQuery{Source: netip.MustParsePrefix("198.19.0.0/16")}); err != nil || len(got) != 0 {
			t.Fatalf("Events from elsewhere = %d, %v; want none", len(got), err)
		}
	})
}
