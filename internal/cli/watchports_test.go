package cli

import (
	"net/netip"
	"testing"
	"time"

	"portolan/internal/portspec"
	"portolan/internal/watch"
)

// TestEventLine: the plain line of each event type, as `portolan watch`
// writes them when stdout is not a terminal.
func TestEventLine(t *testing.T) {
	at := time.Date(2026, 12, 7, 16, 4, 35, 123_000_000, time.UTC)
	a := watch.Attempt{Time: at, Src: netip.MustParseAddr("198.18.0.1"), SrcPort: 49809, Dst: netip.MustParseAddr("198.18.0.2"), Proto: portspec.TCP, Port: 1148, Kind: watch.KindSYN}
	a6 := watch.Attempt{Time: at, Src: netip.MustParseAddr("fd00::1"), SrcPort: 5, Dst: netip.MustParseAddr("fd00::2"), Proto: portspec.TCP, Port: 22, Kind: watch.KindFIN}
	ping := watch.Attempt{Time: at, Src: a.Src, Dst: a.Dst, Kind: watch.KindEcho}
	det := watch.DetectionEvent(watch.Detection{Source: netip.MustParsePrefix("198.18.0.1/32"), Kind: watch.Vertical, Score: 1, Offence: 2, Trigger: a})
	blk := det
	blk.Type, blk.Action, blk.Ban = watch.TypeBlock, "blocked", 20*time.Minute
	cases := []struct {
		e    watch.Event
		want string
	}{
		{watch.AttemptEvent(a), "2026-12-07T16:04:35.123Z attempt syn 198.18.0.1:49809 -> 198.18.0.2:1148/tcp\n"},
		{det, "2026-12-07T16:04:35.123Z detection 198.18.0.1/32 vertical scan score 1.00 offence 2 (last probe 198.18.0.2:1148/tcp)\n"},
		{blk, "2026-12-07T16:04:35.123Z block 198.18.0.1/32 blocked for 20m0s\n"},
		{watch.AttemptEvent(a6), "2026-12-07T16:04:35.123Z attempt fin [fd00::1]:5 -> [fd00::2]:22/tcp\n"},
		{watch.AttemptEvent(ping), "2026-12-07T16:04:35.123Z attempt echo 198.18.0.1 -> 198.18.0.2\n"},
	}
	for _, c := range cases {
		if got := string(appendEventLine(nil, c.e)); got != c.want {
			t.Errorf("appendEventLine(%s) = %q; want %q", c.e.Type, got, c.want)
		}
	}
}
