package store

import (
	"testing"

	"github.com/google/go-cmp/cmp"
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
			if diff := cmp.Diff(tt.es, got, cmp.AllowUnexported(groupEntry{})); diff != "" {
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
		if diff := cmp.Diff(es, again, cmp.AllowUnexported(groupEntry{})); diff != "" {
			t.Errorf("decode, encode, decode differs (-first +second):\n%s", diff)
		}
	})
}
