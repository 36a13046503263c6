package scan

import (
	"net/netip"
	"testing"
)

func TestAIMD(t *testing.T) {
	cases := []struct {
		name           string
		rate, min, max float64
		drops          uint64
		limited        bool
		probing        bool
		want           float64
	}{
		{"drops halve", 100_000, 0, 1_000_000, 3, true, false, 50_000},
		{"drops halve while probing too", 400_000, 0, 1_000_000, 3, true, true, 200_000},
		{"drops stop at the floor", 1_500, 0, 1_000_000, 1, false, false, synMinRate},
		{"drops stop at --min-rate", 100_000, 80_000, 1_000_000, 5, false, false, 80_000},
		{"--min-rate under the floor: the floor", 1_500, 500, 1_000_000, 1, false, false, synMinRate},
		{"--min-rate never above the cap", 3_000, 50_000, 20_000, 1, false, false, 20_000},
		{"clean and limited: add a fiftieth of the cap", 100_000, 0, 1_000_000, 0, true, false, 120_000},
		{"clean and limited before any drop: double", 100_000, 0, 1_000_000, 0, true, true, 200_000},
		{"doubling stops at the cap", 600_000, 0, 1_000_000, 0, true, true, 1_000_000},
		{"never above the cap", 990_000, 0, 1_000_000, 0, true, false, 1_000_000},
		{"clean, not limited: unchanged", 300_000, 0, 1_000_000, 0, false, false, 300_000},
		{"clean, not limited, probing: unchanged", 300_000, 0, 1_000_000, 0, false, true, 300_000},
	}
	for _, c := range cases {
		if got := aimd(c.rate, c.min, c.max, c.drops, c.limited, c.probing); got != c.want {
			t.Errorf("%s: aimd(%v, %v, %v, %d, %v, %v) = %v; want %v", c.name, c.rate, c.min, c.max, c.drops, c.limited, c.probing, got, c.want)
		}
	}
}

func TestBatchOf(t *testing.T) {
	cases := []struct {
		name    string
		n, room int
		tokens  float64
		partial bool
		k       int
		need    float64
	}{
		{"nothing queued", 0, 4096, 1000, true, 0, 0},
		{"a full batch", 100, 4096, 1000, false, synBatch, 0},
		{"short of a batch: wait for more", 10, 4096, 1000, false, 0, 0},
		{"short of a batch after a flush: send it", 10, 4096, 1000, true, 10, 0},
		{"the ring wraps: up to its end", 100, 3, 1000, false, 3, 0},
		{"the rate holds a batch back", 100, 4096, 20, false, 0, synBatch - 20},
		{"the rate holds a flushed batch back", 10, 4096, 4.5, true, 0, 5.5},
		{"tokens for exactly a batch", synBatch, 4096, synBatch, false, synBatch, 0},
	}
	for _, c := range cases {
		if k, need := batchOf(c.n, c.room, c.tokens, c.partial); k != c.k || need != c.need {
			t.Errorf("%s: batchOf(%d, %d, %v, %v) = %d, %v; want %d, %v", c.name, c.n, c.room, c.tokens, c.partial, k, need, c.k, c.need)
		}
	}
}

// TestSynTable fills the probe table past wrap-around and deletes in an
// order that moves entries back, checking every key stays findable; the
// table starts at 4 slots and grows to its limit of 64 on the way.
func TestSynTable(t *testing.T) {
	tb := newSynTable(4, 64)
	a := netip.MustParseAddr("198.18.0.2")
	var keys []synKey
	for i := range 32 {
		k := synKey{a, uint16(i * 7), 61000 + uint16(i%3)}
		keys = append(keys, k)
		tb.put(synEntry{key: k, id: uint64(i)})
		if tb.full() != (i == 31) {
			t.Fatalf("after %d puts: full() = %v (%d slots)", i+1, tb.full(), len(tb.e))
		}
		for j, k := range keys {
			if x := tb.find(k); x < 0 || tb.e[x].id != uint64(j) {
				t.Fatalf("after %d puts (%d slots): key %d not found", i+1, len(tb.e), j)
			}
		}
	}
	if len(tb.e) != 64 {
		t.Errorf("table of %d slots after 32 entries; want its limit, 64", len(tb.e))
	}
	if !tb.full() {
		t.Errorf("table of %d with %d entries not full", len(tb.e), tb.n)
	}
	for i := 0; i < len(keys); i += 2 {
		if e, ok := tb.take(keys[i]); !ok || e.id != uint64(i) {
			t.Fatalf("take(%v) = %v, %v; want id %d", keys[i], e.id, ok, i)
		}
	}
	for i, k := range keys {
		found := tb.find(k) >= 0
		if found != (i%2 == 1) {
			t.Errorf("find(%v) = %v after deleting the even keys", k, found)
		}
	}
	if tb.n != 16 {
		t.Errorf("%d entries; want 16", tb.n)
	}
}
