package watch_test

import (
	"fmt"
	"net/netip"
	"time"

	"portolan/internal/portspec"
	"portolan/internal/watch"
)

// A client that tries port after port of one address is a vertical
// scan at its 12th distinct port; the one that crosses is the trigger.
func ExampleDetector() {
	d := watch.NewDetector(watch.Thresholds{})
	t0 := time.Date(2026, 12, 7, 16, 0, 0, 0, time.UTC)
	for i := range 100 {
		a := watch.Attempt{
			Time: t0.Add(time.Duration(i) * 10 * time.Millisecond),
			Src:  netip.MustParseAddr("198.18.0.9"), Dst: netip.MustParseAddr("198.18.0.1"),
			Proto: portspec.TCP, Port: portspec.Port(1000 + i), Kind: watch.KindSYN,
		}
		if det, ok := d.Observe(a); ok {
			fmt.Printf("%s scan from %s at port %d: score %.2f, offence %d\n", det.Kind, det.Source, det.Trigger.Port, det.Score, det.Offence)
		}
	}
	// Output: vertical scan from 198.18.0.9/32 at port 1011: score 1.00, offence 1
}

// IPv6 sources are scored and banned as their /64; bans of a prefix
// that holds a never-block entry are refused.
func ExampleNeverBlock() {
	var nb watch.NeverBlock
	nb.AddAddr(netip.MustParseAddr("fd00::53"), "resolver")
	p := watch.Thresholds{}.SourcePrefix(netip.MustParseAddr("fd00::1:2:3:4"))
	reason, refused := nb.Check(p)
	fmt.Println(p, refused, reason)
	// Output: fd00::/64 true resolver fd00::53/128
}
