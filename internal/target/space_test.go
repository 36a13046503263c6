package target

import (
	"encoding/binary"
	"fmt"
	"net/netip"
	"testing"

	"portolan/internal/portspec"
)

func mustPorts(t testing.TB, spec string) *portspec.Set {
	t.Helper()
	p, err := portspec.Parse(spec)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func TestSpace(t *testing.T) {
	hosts, err := NewSet(r("198.18.0.1", "198.18.0.2"), r("fd00::5", "fd00::5"))
	if err != nil {
		t.Fatal(err)
	}
	sp, err := NewSpace(hosts, mustPorts(t, "80,22,U:53,S:9"))
	if err != nil {
		t.Fatal(err)
	}
	if sp.Size() != 12 || sp.Hosts() != 3 || sp.PortCount() != 4 || sp.HostSet() != hosts {
		t.Fatalf("Size, Hosts, PortCount = %d, %d, %d; want 12, 3, 4", sp.Size(), sp.Hosts(), sp.PortCount())
	}
	var got []string
	for i := range sp.Size() {
		a, p, proto := sp.At(i)
		got = append(got, fmt.Sprintf("%v %d/%v", a, p, proto))
		if j, ok := sp.Index(a, p, proto); !ok || j != i {
			t.Errorf("Index(At(%d)) = %d, %v; want %d, true", i, j, ok, i)
		}
	}
	want := []string{
		"198.18.0.1 22/tcp", "198.18.0.1 80/tcp", "198.18.0.1 53/udp", "198.18.0.1 9/sctp",
		"198.18.0.2 22/tcp", "198.18.0.2 80/tcp", "198.18.0.2 53/udp", "198.18.0.2 9/sctp",
		"fd00::5 22/tcp", "fd00::5 80/tcp", "fd00::5 53/udp", "fd00::5 9/sctp",
	}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("At(0..11) =\n%q\nwant\n%q", got, want)
	}
	for _, c := range []struct {
		addr  string
		port  portspec.Port
		proto portspec.Proto
	}{
		{"198.18.0.3", 22, portspec.TCP},
		{"198.18.0.1", 23, portspec.TCP},
		{"198.18.0.1", 53, portspec.TCP},
		{"198.18.0.1", 22, portspec.UDP},
		{"198.18.0.1", 22, portspec.DCCP},
		{"fd00::6", 9, portspec.SCTP},
	} {
		if i, ok := sp.Index(netip.MustParseAddr(c.addr), c.port, c.proto); ok {
			t.Errorf("Index(%s, %d, %v) = %d; want not found", c.addr, c.port, c.proto, i)
		}
	}
}

func TestSpaceLimits(t *testing.T) {
	hosts, _ := NewSet(r("198.18.0.1", "198.18.0.1"))
	huge, _ := NewSet(RangeOf(netip.MustParsePrefix("fd00::/64")))
	big, _ := NewSet(RangeOf(netip.MustParsePrefix("fd00::/80")))
	tests := []struct {
		name  string
		hosts *Set
		ports *portspec.Set
		want  string
	}{
		{"no hosts", &Set{}, mustPorts(t, "22"), "target space: no addresses"},
		{"nil hosts", nil, mustPorts(t, "22"), "target space: no addresses"},
		{"no ports", hosts, &portspec.Set{}, "target space: no ports"},
		{"overflow", huge, mustPorts(t, "22"), "target space: 18446744073709551616 addresses x 1 ports is more than 4611686018427387904 probes"},
		{"over the limit", big, mustPorts(t, "-"), "target space: 281474976710656 addresses x 65535 ports is more than 4611686018427387904 probes"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			sp, err := NewSpace(tt.hosts, tt.ports)
			if err == nil || err.Error() != tt.want {
				t.Errorf("NewSpace = %v, %v; want error %q", sp, err, tt.want)
			}
		})
	}
	// The largest allowed space still maps its last index.
	top, _ := NewSet(RangeOf(netip.MustParsePrefix("fd00::/66")))
	sp, err := NewSpace(top, mustPorts(t, "7"))
	if err != nil {
		t.Fatal(err)
	}
	a, p, _ := sp.At(sp.Size() - 1)
	if a != netip.MustParseAddr("fd00::3fff:ffff:ffff:ffff") || p != 7 {
		t.Errorf("At(last) = %v %d; want fd00::3fff:ffff:ffff:ffff 7", a, p)
	}
}

// FuzzSpace builds a space from fuzz bytes and checks that At and Index are
// inverse at an index derived from the input.
func FuzzSpace(f *testing.F) {
	f.Add([]byte{198, 18, 0, 1, 10, 1, 0, 22, 0, 80}, uint64(3))
	f.Add([]byte{0xfd, 0, 0, 1, 255, 2, 0, 53, 1, 0}, uint64(1<<40))
	f.Add([]byte{1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17, 18, 19, 20}, uint64(0))
	f.Fuzz(func(t *testing.T, data []byte, i uint64) {
		// Ranges from 5-byte chunks: 4 bytes of start (0xfd.. selects an
		// IPv6 start), 1 byte of length; ports from the 2-byte chunks after.
		var ranges []Range
		for len(data) >= 5 && len(ranges) < 8 {
			var start netip.Addr
			if data[0] == 0xfd {
				var b [16]byte
				b[0], b[13], b[14], b[15] = 0xfd, data[1], data[2], data[3]
				start = netip.AddrFrom16(b)
			} else {
				start = netip.AddrFrom4([4]byte(data[:4]))
			}
			first := toU128(start)
			ranges = append(ranges, Range{start, first.add64(uint64(data[4])).addr(start.Is4())})
			if last := ranges[len(ranges)-1].Last; last.Less(start) {
				ranges = ranges[:len(ranges)-1] // wrapped past the family's end
			}
			data = data[5:]
		}
		ports := &portspec.Set{}
		protos := []portspec.Proto{portspec.TCP, portspec.UDP, portspec.SCTP}
		for ; len(data) >= 2; data = data[2:] {
			v := binary.BigEndian.Uint16(data)
			ports.Add(protos[int(v)%3], portspec.Port(v))
		}
		hosts, err := NewSet(ranges...)
		if err != nil {
			t.Fatal(err)
		}
		sp, err := NewSpace(hosts, ports)
		if err != nil {
			return
		}
		i %= sp.Size()
		a, p, proto := sp.At(i)
		if !hosts.Contains(a) || !ports.Has(proto, p) {
			t.Fatalf("At(%d) = %v %d/%v, not in the space", i, a, p, proto)
		}
		if j, ok := sp.Index(a, p, proto); !ok || j != i {
			t.Fatalf("Index(At(%d) = %v %d/%v) = %d, %v", i, a, p, proto, j, ok)
		}
		// And the other way round: the index of a triple maps back to it.
		b := hosts.At(uint64(len(data)) % hosts.Len())
		if j, ok := sp.Index(b, p, proto); !ok {
			t.Fatalf("Index(%v %d/%v) not found", b, p, proto)
		} else if a2, p2, proto2 := sp.At(j); a2 != b || p2 != p || proto2 != proto {
			t.Fatalf("At(Index(%v %d/%v)) = %v %d/%v", b, p, proto, a2, p2, proto2)
		}
	})
}
