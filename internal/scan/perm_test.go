package scan

import (
	"math"
	"strings"
	"testing"
)

func TestPermutationIsBijection(t *testing.T) {
	sizes := []uint64{0, 1, 2, 3, 4, 5, 7, 8, 9, 16, 17, 31, 97, 1000, 1021, 4093, 4096, 65535, 65536, 100003}
	for _, n := range sizes {
		for _, seed := range []uint64{1, 42, 0xdeadbeef} {
			p := NewPermutation(n, seed)
			if p.Len() != n {
				t.Fatalf("NewPermutation(%d, %d).Len() = %d", n, seed, p.Len())
			}
			seen := make([]bool, n)
			for i := range n {
				v := p.At(i)
				if v >= n {
					t.Fatalf("NewPermutation(%d, %d).At(%d) = %d; out of range", n, seed, i, v)
				}
				if seen[v] {
					t.Fatalf("NewPermutation(%d, %d).At(%d) = %d; seen before", n, seed, i, v)
				}
				seen[v] = true
			}
		}
	}
}

func TestPermutationSeeded(t *testing.T) {
	const n = 1000
	a, b, c := NewPermutation(n, 7), NewPermutation(n, 7), NewPermutation(n, 8)
	same, fixed := 0, 0
	for i := range uint64(n) {
		if a.At(i) != b.At(i) {
			t.Fatalf("same seed: At(%d) = %d and %d", i, a.At(i), b.At(i))
		}
		if a.At(i) == c.At(i) {
			same++
		}
		if a.At(i) == i {
			fixed++
		}
	}
	// A random permutation agrees with another, or fixes a point, about
	// once per thousand; tens would mean the seed or the mixing is ignored.
	if same > 20 || fixed > 20 {
		t.Errorf("seeds 7 and 8 agree on %d positions, seed 7 fixes %d; want a few at most", same, fixed)
	}
}

// TestPermutationHuge checks the cycle walk stays in range and distinct
// at the top of the uint64 range, where the halves are 32 bits each.
func TestPermutationHuge(t *testing.T) {
	for _, n := range []uint64{math.MaxUint64, 1<<63 + 1, 1<<40 + 3, 10_000_000} {
		p := NewPermutation(n, 99)
		seen := map[uint64]bool{}
		for i := range uint64(20000) {
			pos := i * (n / 20000)
			v := p.At(pos)
			if v >= n || seen[v] {
				t.Fatalf("NewPermutation(%d).At(%d) = %d; out of range or repeated", n, pos, v)
			}
			seen[v] = true
		}
	}
}

func TestPermutationAtPanicsOutOfRange(t *testing.T) {
	defer func() {
		if recover() == nil {
			t.Error("At(3) on a permutation of 3 did not panic")
		}
	}()
	NewPermutation(3, 1).At(3)
}

func TestShardsPartition(t *testing.T) {
	for _, n := range []uint64{0, 1, 2, 3, 7, 10, 1000, 65535, math.MaxUint64} {
		for _, count := range []uint64{1, 2, 3, 7, 8, 64} {
			next := uint64(0)
			for i := uint64(1); i <= count; i++ {
				lo, hi := Shard{Index: i, Count: count}.Range(n)
				if lo != next || hi < lo {
					t.Fatalf("Shard{%d, %d}.Range(%d) = [%d, %d); want it to start at %d", i, count, n, lo, hi, next)
				}
				// Shards differ in size by at most one position.
				if size, fair := hi-lo, n/count; size != fair && size != fair+1 {
					t.Fatalf("Shard{%d, %d}.Range(%d) has %d positions; want %d or %d", i, count, n, size, fair, fair+1)
				}
				next = hi
			}
			if next != n {
				t.Fatalf("shards of %d over %d end at %d; want %d", count, n, next, n)
			}
		}
	}
	if lo, hi := (Shard{}).Range(10); lo != 0 || hi != 10 {
		t.Errorf("Shard{}.Range(10) = [%d, %d); want [0, 10)", lo, hi)
	}
}

// TestShardsCoverSpace checks the point of sharding end to end: the shards
// of one seed visit every index exactly once between them.
func TestShardsCoverSpace(t *testing.T) {
	const n, count = 1001, 7
	p := NewPermutation(n, 5)
	seen := make([]int, n)
	for i := uint64(1); i <= count; i++ {
		lo, hi := Shard{Index: i, Count: count}.Range(n)
		for pos := lo; pos < hi; pos++ {
			seen[p.At(pos)]++
		}
	}
	for v, k := range seen {
		if k != 1 {
			t.Fatalf("index %d visited %d times by %d shards; want once", v, k, count)
		}
	}
}

var shardCases = []struct {
	name, in string
	want     Shard
	err      string
}{
	{"first", "1/8", Shard{1, 8}, ""},
	{"last", "8/8", Shard{8, 8}, ""},
	{"whole", "1/1", Shard{1, 1}, ""},
	{"zero index", "0/8", Shard{}, `shard "0/8": want i/n with 1 <= i <= n`},
	{"past count", "9/8", Shard{}, `shard "9/8": want i/n with 1 <= i <= n`},
	{"zero count", "1/0", Shard{}, `shard "1/0": want i/n with 1 <= i <= n`},
	{"no slash", "3", Shard{}, `shard "3": want i/n, such as 2/8`},
	{"bad index", "x/8", Shard{}, `shard "x/8": at 1: index "x" is not a number`},
	{"bad count", "2/y", Shard{}, `shard "2/y": at 3: count "y" is not a number`},
	{"negative", "-1/8", Shard{}, `shard "-1/8": at 1: index "-1" is not a number`},
	{"empty", "", Shard{}, `shard "": want i/n, such as 2/8`},
}

func TestParseShard(t *testing.T) {
	for _, tc := range shardCases {
		t.Run(tc.name, func(t *testing.T) {
			got, err := ParseShard(tc.in)
			if tc.err != "" {
				if err == nil || err.Error() != tc.err {
					t.Fatalf("ParseShard(%q) = %v, %v; want error %q", tc.in, got, err, tc.err)
				}
				return
			}
			if err != nil || got != tc.want {
				t.Fatalf("ParseShard(%q) = %v, %v; want %v", tc.in, got, err, tc.want)
			}
			if got.String() != tc.in {
				t.Errorf("ParseShard(%q).String() = %q", tc.in, got.String())
			}
			if err := got.Validate(); err != nil {
				t.Errorf("ParseShard(%q).Validate() = %v", tc.in, err)
			}
		})
	}
}

func FuzzParseShard(f *testing.F) {
	for _, tc := range shardCases {
		f.Add(tc.in)
	}
	f.Fuzz(func(t *testing.T, in string) {
		s, err := ParseShard(in)
		if err != nil {
			if !strings.Contains(err.Error(), "shard ") {
				t.Fatalf("ParseShard(%q) error %q does not name the input", in, err)
			}
			return
		}
		if s.Validate() != nil {
			t.Fatalf("ParseShard(%q) = %v, which does not validate", in, s)
		}
		lo, hi := s.Range(1000)
		if lo > hi || hi > 1000 {
			t.Fatalf("ParseShard(%q).Range(1000) = [%d, %d)", in, lo, hi)
		}
	})
}

func BenchmarkPermutationAt(b *testing.B) {
	for _, n := range []uint64{65535, 10_000_000, 1 << 40} {
		b.Run(formatSize(n), func(b *testing.B) {
			p := NewPermutation(n, 42)
			var sink uint64
			i := uint64(0)
			for b.Loop() {
				sink += p.At(i)
				if i++; i == n {
					i = 0
				}
			}
			_ = sink
		})
	}
}

func formatSize(n uint64) string {
	switch {
	case n >= 1<<40:
		return "2^40"
	case n >= 1_000_000:
		return "10M"
	}
	return "65535"
}
