package store

import (
	"cmp"
	"math/rand/v2"
	"slices"
	"testing"

	gocmp "github.com/google/go-cmp/cmp"

	"portolan/internal/portspec"
)

func TestGroupEncoding(t *testing.T) {
	tests := []struct {
		name string
		es   []groupEntry
	}{
		{"one", []groupEntry{{port: 22, pos: 7, rttUs: 150, time: 1_700_000_000_000_000_000}}},
		{"no time, zero rtt", []groupEntry{{port: 1, pos: 3}, {port: 65535, pos: 2}}},
		{"mixed", []groupEntry{{port: 0, pos: 1 << 40, time: 5}, {port: 80, pos: 9, rttUs: 1 << 20, time: 3}, {port: 81, pos: 10}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			g := encodeGroup(tt.es)
			got, err := decodeGroup(g)
			if err != nil {
				t.Fatalf("decodeGroup(encodeGroup(%v)) = %v", tt.es, err)
			}
			if diff := gocmp.Diff(tt.es, got, gocmp.AllowUnexported(groupEntry{})); diff != "" {
				t.Errorf("decodeGroup(encodeGroup(...)) (-want +got):\n%s", diff)
			}
		})
	}
}

// FuzzDecodeGroup: a stored group, however damaged, decodes to an error or
// to entries that encode and decode to themselves; it never panics.
func FuzzDecodeGroup(f *testing.F) {
	f.Add([]byte{22}, []byte{0, 150, 1, 0}, uint64(7), int64(0))
	g := encodeGroup([]groupEntry{{port: 1, pos: 3}, {port: 443, pos: 9, rttUs: 200, time: 12}})
	f.Add(g.ports, g.detail, g.lo, g.base)
	f.Add([]byte{0xff, 0xff, 0xff}, []byte{}, uint64(0), int64(0))
	f.Fuzz(func(t *testing.T, ports, detail []byte, lo uint64, base int64) {
		es, err := decodeGroup(encodedGroup{lo: lo, base: base, ports: ports, detail: detail})
		if err != nil || len(es) == 0 {
			return
		}
		again, err := decodeGroup(encodeGroup(es))
		if err != nil {
			t.Fatalf("re-decode: %v", err)
		}
		if diff := gocmp.Diff(es, again, gocmp.AllowUnexported(groupEntry{})); diff != "" {
			t.Errorf("decode, encode, decode differs (-first +second):\n%s", diff)
		}
	})
}

// TestSortByPort: the radix sort orders as a stable sort by port does,
// duplicates (a port reported twice) kept in the order they came.
func TestSortByPort(t *testing.T) {
	rnd := rand.New(rand.NewPCG(3, 4))
	tests := []struct {
		name string
		es   []groupEntry
	}{
		{"empty", nil},
		{"one", []groupEntry{{port: 443, pos: 1}}},
		{"bytes", []groupEntry{{port: 0x0100, pos: 1}, {port: 0x00ff, pos: 2}, {port: 0xff00, pos: 3}, {port: 0, pos: 4}, {port: 65535, pos: 5}}},
		{"duplicates", []groupEntry{{port: 80, pos: 1}, {port: 22, pos: 2}, {port: 80, pos: 3}, {port: 22, pos: 4}}},
	}
	var big []groupEntry
	for i := range 5000 {
		big = append(big, groupEntry{port: portspec.Port(rnd.IntN(65536)), pos: uint64(i)})
	}
	tests = append(tests, struct {
		name string
		es   []groupEntry
	}{"random", big})
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			want := slices.Clone(tt.es)
			slices.SortStableFunc(want, func(a, b groupEntry) int { return cmp.Compare(a.port, b.port) })
			got := slices.Clone(tt.es)
			sortByPort(got, make([]groupEntry, len(got)))
			if !slices.Equal(got, want) {
				t.Errorf("sortByPort(%d entries) differs from a stable sort by port", len(tt.es))
			}
		})
	}
}
