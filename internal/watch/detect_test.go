package watch

import (
	"net/netip"
	"testing"
	"time"

	"portolan/internal/portspec"
)

var t0 = time.Date(2026, 12, 7, 16, 0, 0, 0, time.UTC)

func syn(src, dst string, port portspec.Port, at time.Duration) Attempt {
	return Attempt{Time: t0.Add(at), Src: netip.MustParseAddr(src), Dst: netip.MustParseAddr(dst), Proto: portspec.TCP, Port: port, Kind: KindSYN, Flags: flagSYN}
}

// feed observes attempts and returns the detections with the index of
// the attempt that made each.
func feed(d *Detector, as []Attempt) (dets []Detection, at []int) {
	for i, a := range as {
		if det, ok := d.Observe(a); ok {
			dets = append(dets, det)
			at = append(at, i)
		}
	}
	return dets, at
}

func TestDetect(t *testing.T) {
	th := DefaultThresholds
	cases := []struct {
		name     string
		attempts func() []Attempt
		kind     ScanKind
		at       int // index of the attempt that must cross; -1: none
	}{
		{"vertical", func() (as []Attempt) {
			for p := range 100 {
				as = append(as, syn("198.18.0.9", "198.18.0.1", portspec.Port(1000+p), time.Duration(p)*time.Millisecond))
			}
			return as
		}, Vertical, th.Ports - 1},
		{"one port 200 times", func() (as []Attempt) {
			for i := range 200 {
				as = append(as, syn("198.18.0.9", "198.18.0.1", 443, time.Duration(i)*time.Millisecond))
			}
			return as
		}, "", -1},
		{"two services all day", func() (as []Attempt) {
			for i := range 2000 {
				as = append(as, syn("198.18.0.9", "198.18.0.1", portspec.Port(80+363*(i%2)), time.Duration(i)*time.Minute))
			}
			return as
		}, "", -1},
		{"horizontal", func() (as []Attempt) {
			for h := range 50 {
				as = append(as, syn("198.18.0.9", netip.AddrFrom4([4]byte{198, 18, 1, byte(h)}).String(), 22, time.Duration(h)*time.Second))
			}
			return as
		}, Horizontal, th.Hosts - 1},
		{"slow", func() (as []Attempt) {
			// One new port every 30 s: 2 a minute, far under Ports.
			for p := range 100 {
				as = append(as, syn("198.18.0.9", "198.18.0.1", portspec.Port(1+p), time.Duration(p)*30*time.Second))
			}
			return as
		}, Slow, th.SlowPairs - 1},
		{"slower than the slow window", func() (as []Attempt) {
			for p := range 100 {
				as = append(as, syn("198.18.0.9", "198.18.0.1", portspec.Port(1+p), time.Duration(p)*3*time.Minute))
			}
			return as
		}, "", -1},
		{"vertical under the window", func() (as []Attempt) {
			// 11 ports a minute, then quiet: stays under Ports.
			for p := range th.Ports - 1 {
				as = append(as, syn("198.18.0.9", "198.18.0.1", portspec.Port(1+p), time.Duration(p)*time.Second))
			}
			return as
		}, "", -1},
		{"xmas", func() (as []Attempt) {
			for p := range 5 {
				a := syn("198.18.0.9", "198.18.0.1", 80, time.Duration(p)*time.Second)
				a.Kind, a.Flags = KindXmas, flagFIN|flagPSH|flagURG
				as = append(as, a)
			}
			return as
		}, OddProbe, th.Odd - 1},
		{"ipv6 hopping in a /64", func() (as []Attempt) {
			for p := range 100 {
				src := netip.AddrFrom16([16]byte{0xfd, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, byte(p + 1)})
				as = append(as, Attempt{Time: t0.Add(time.Duration(p) * time.Millisecond), Src: src, Dst: netip.MustParseAddr("fd00::1"), Proto: portspec.TCP, Port: portspec.Port(100 + p), Kind: KindSYN})
			}
			return as
		}, Vertical, th.Ports - 1},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			d := NewDetector(Thresholds{})
			dets, at := feed(d, c.attempts())
			if c.at < 0 {
				if len(dets) > 0 {
					t.Fatalf("detected %+v at attempt %d; want no detection", dets[0], at[0])
				}
				return
			}
			if len(dets) == 0 {
				t.Fatalf("no detection; want %s at attempt %d", c.kind, c.at)
			}
			if dets[0].Kind != c.kind || at[0] != c.at || dets[0].Score < 1 || dets[0].Offence != 1 {
				t.Fatalf("first detection %s (score %.2f, offence %d) at attempt %d; want %s at %d, score >= 1, offence 1", dets[0].Kind, dets[0].Score, dets[0].Offence, at[0], c.kind, c.at)
			}
		})
	}
}

// TestDetectAgainEscalates: a scanner is quiet for Window after a
// detection (its probes in flight are the same offence), then detected
// again after as many new ports, each time one more offence; after
// Forget its record starts over.
func TestDetectAgainEscalates(t *testing.T) {
	d := NewDetector(Thresholds{Ports: 5, Window: time.Second, Forget: time.Hour})
	var as []Attempt
	for p := range 45 {
		// 30 ports a second: 5 within 166 ms.
		as = append(as, syn("198.18.0.9", "198.18.0.1", portspec.Port(1+p), time.Duration(p)*time.Second/30))
	}
	dets, at := feed(d, as)
	if len(dets) != 2 || at[0] != 4 || at[1] != 38 {
		t.Fatalf("detections at %v; want at attempts 4, then (after 1 s of quiet) 38", at)
	}
	for i, det := range dets {
		if det.Offence != i+1 {
			t.Errorf("detection %d offence %d; want %d", i, det.Offence, i+1)
		}
	}
	as = as[:0]
	for p := range 5 {
		as = append(as, syn("198.18.0.9", "198.18.0.1", portspec.Port(100+p), 2*time.Hour+time.Duration(p)*time.Millisecond))
	}
	if dets, _ := feed(d, as); len(dets) != 1 || dets[0].Offence != 1 {
		t.Fatalf("after Forget: %+v; want one detection, offence 1", dets)
	}
}

// TestDetectSourcesApart: two sources that each stay under the
// threshold are not added up; IPv4 sources are not aggregated.
func TestDetectSourcesApart(t *testing.T) {
	d := NewDetector(Thresholds{})
	var as []Attempt
	for p := range 10 {
		as = append(as, syn("198.18.0.9", "198.18.0.1", portspec.Port(1+p), 0))
		as = append(as, syn("198.18.0.10", "198.18.0.1", portspec.Port(1+p), 0))
	}
	if dets, _ := feed(d, as); len(dets) != 0 {
		t.Fatalf("detected %+v; want none", dets[0])
	}
	if got := d.Score(netip.MustParseAddr("198.18.0.9")); got < 0.8 || got >= 1 {
		t.Errorf("Score = %.2f; want 10/12", got)
	}
}

func TestDetectMaxSources(t *testing.T) {
	d := NewDetector(Thresholds{MaxSources: 2})
	for i := range 5 {
		d.Observe(syn(netip.AddrFrom4([4]byte{198, 18, 0, byte(i)}).String(), "198.18.0.1", 1, 0))
	}
	if d.Sources() != 2 || d.Untracked() != 3 {
		t.Fatalf("Sources() = %d, Untracked() = %d; want 2, 3", d.Sources(), d.Untracked())
	}
}

func TestSourcePrefix(t *testing.T) {
	cases := []struct {
		th   Thresholds
		in   string
		want string
	}{
		{Thresholds{}, "198.18.0.9", "198.18.0.9/32"},
		{Thresholds{}, "::ffff:198.18.0.9", "198.18.0.9/32"},
		{Thresholds{}, "fd00::1:2:3:4", "fd00::/64"},
		{Thresholds{Prefix6: 48}, "fd00:1:2:3::9", "fd00:1:2::/48"},
		{Thresholds{Prefix4: 24}, "198.18.0.9", "198.18.0.0/24"},
	}
	for _, c := range cases {
		if got := c.th.SourcePrefix(netip.MustParseAddr(c.in)).String(); got != c.want {
			t.Errorf("SourcePrefix(%s) with %+v = %s; want %s", c.in, c.th, got, c.want)
		}
	}
}

func TestBanFor(t *testing.T) {
	cases := []struct {
		offence int
		want    time.Duration
	}{{1, 10 * time.Minute}, {2, 20 * time.Minute}, {3, 40 * time.Minute}, {10, 2 * time.Hour}}
	for _, c := range cases {
		if got := BanFor(10*time.Minute, 2*time.Hour, c.offence); got != c.want {
			t.Errorf("BanFor(10m, 2h, %d) = %v; want %v", c.offence, got, c.want)
		}
	}
}

func BenchmarkObserve(b *testing.B) {
	d := NewDetector(Thresholds{})
	as := make([]Attempt, 4096)
	for i := range as {
		as[i] = syn(netip.AddrFrom4([4]byte{198, 18, byte(i >> 8), byte(i)}).String(), "198.18.0.1", portspec.Port(i%7), time.Duration(i)*time.Microsecond)
	}
	b.ReportAllocs()
	for i := 0; b.Loop(); i++ {
		a := as[i%len(as)]
		a.Time = t0.Add(time.Duration(i) * time.Microsecond)
		d.Observe(a)
	}
}
