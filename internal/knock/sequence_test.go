package knock

import (
	"net/netip"
	"slices"
	"testing"
	"time"

	"portolan/internal/portspec"
)

func TestTracker(t *testing.T) {
	seq, err := ParseSequence("7000,8000/udp,9000")
	if err != nil {
		t.Fatal(err)
	}
	tcp := func(p int) DoorPort { return DoorPort{Proto: portspec.TCP, Port: portspec.Port(p)} }
	udp := func(p int) DoorPort { return DoorPort{Proto: portspec.UDP, Port: portspec.Port(p)} }
	type kn struct {
		at    time.Duration
		sport uint16
		k     DoorPort
	}
	for _, tc := range []struct {
		name   string
		knocks []kn
		opens  bool
	}{
		{"in order", []kn{{0, 1, tcp(7000)}, {time.Second, 2, udp(8000)}, {2 * time.Second, 3, tcp(9000)}}, true},
		{"retransmitted syn", []kn{{0, 1, tcp(7000)}, {time.Second, 1, tcp(7000)}, {time.Second, 2, udp(8000)}, {2 * time.Second, 2, udp(8000)}, {2 * time.Second, 3, tcp(9000)}}, true},
		{"wrong order", []kn{{0, 1, tcp(9000)}, {0, 2, udp(8000)}, {0, 3, tcp(7000)}}, false},
		{"wrong port resets", []kn{{0, 1, tcp(7000)}, {0, 2, tcp(7001)}, {0, 3, udp(8000)}, {0, 4, tcp(9000)}}, false},
		{"wrong protocol", []kn{{0, 1, tcp(7000)}, {0, 2, tcp(8000)}, {0, 3, tcp(9000)}}, false},
		{"stage timeout", []kn{{0, 1, tcp(7000)}, {6 * time.Second, 2, udp(8000)}, {6 * time.Second, 3, tcp(9000)}}, false},
		{"restart from the first knock", []kn{{0, 1, tcp(7000)}, {0, 2, tcp(7000)}, {0, 3, udp(8000)}, {0, 4, tcp(9000)}}, true},
		{"first knock repeated with a new port restarts", []kn{{0, 1, tcp(7000)}, {0, 2, udp(8000)}, {0, 5, tcp(7000)}, {0, 6, tcp(9000)}}, false},
	} {
		tr := newTracker([]Door{{Name: "ssh", Sequence: seq}}, 10)
		src := netip.MustParseAddr("198.18.0.2")
		t0 := time.Unix(1000, 0)
		opened := false
		for _, k := range tc.knocks {
			o, _ := tr.knock(t0.Add(k.at), src, k.sport, k.k)
			if slices.Contains(o, 0) {
				opened = true
			}
		}
		if opened != tc.opens {
			t.Errorf("%s: opened = %v; want %v", tc.name, opened, tc.opens)
		}
	}
}

// TestTrackerSources checks two sources' progress is separate and that the
// table has a bound.
func TestTrackerSources(t *testing.T) {
	seq, _ := ParseSequence("1,2")
	tr := newTracker([]Door{{Name: "d", Sequence: seq}}, 1)
	a, b := netip.MustParseAddr("198.18.0.2"), netip.MustParseAddr("198.18.0.3")
	now := time.Unix(1000, 0)
	tr.knock(now, a, 1, seq[0])
	if _, full := tr.knock(now, b, 1, seq[0]); !full {
		t.Error("second source fit in a table of one")
	}
	if o, _ := tr.knock(now, b, 2, seq[1]); len(o) != 0 {
		t.Error("b opened without its first knock")
	}
	if o, _ := tr.knock(now, a, 2, seq[1]); len(o) != 1 {
		t.Error("a did not open")
	}
}
