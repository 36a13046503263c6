package scan

import (
	"fmt"
	"math/bits"
	"strconv"
	"strings"
)

// feistelRounds is enough for load spreading; the permutation is not a
// cipher and needs no cryptographic strength, only a well-mixed order.
const feistelRounds = 4

// Permutation is a seeded pseudo-random bijection of [0, n). At(i) is the
// i-th index to visit. It keeps no table: each call runs a small Feistel
// network over the next power of two at or above n and walks the cycle
// until the value falls inside [0, n) (fewer than two steps on average),
// so a space of 2^64 indexes costs the same few dozen bytes as one of ten.
// The same n and seed always give the same order.
type Permutation struct {
	n            uint64
	lbits, rbits uint // sizes of the two Feistel halves; lbits >= rbits
	keys         [feistelRounds]uint64
}

// NewPermutation returns the permutation of [0, n) for seed.
func NewPermutation(n, seed uint64) *Permutation {
	p := &Permutation{n: n}
	b := uint(2) // two 1-bit halves at least, so every round mixes something
	if n > 4 {
		b = uint(bits.Len64(n - 1))
	}
	p.rbits = b / 2
	p.lbits = b - p.rbits
	s := seed
	for i := range p.keys {
		p.keys[i] = splitmix64(&s)
	}
	return p
}

// Len returns n, the size of the permuted range.
func (p *Permutation) Len() uint64 { return p.n }

// At returns the element at position i of the permuted sequence.
// It panics if i >= Len(), like an index out of range.
func (p *Permutation) At(i uint64) uint64 {
	if i >= p.n {
		panic(fmt.Sprintf("scan: permutation position %d out of range [0, %d)", i, p.n))
	}
	if p.n == 1 {
		return 0
	}
	x := i
	for {
		x = p.encrypt(x)
		if x < p.n {
			return x
		}
	}
}

// encrypt is one pass of an unbalanced Feistel network over lbits+rbits
// bits. The halves swap sizes every round; an even number of rounds brings
// them back, so the result is a bijection of [0, 2^(lbits+rbits)).
func (p *Permutation) encrypt(x uint64) uint64 {
	a, c := p.lbits, p.rbits
	l, r := x>>c, x&mask(c)
	for k := range feistelRounds {
		l, r = r, (l^mix64(r^p.keys[k]))&mask(a)
		a, c = c, a
	}
	return l<<c | r
}

func mask(n uint) uint64 { return 1<<n - 1 }

// splitmix64 advances s and returns the next value of the SplitMix64
// generator; it turns one seed into well-spread round keys.
func splitmix64(s *uint64) uint64 {
	*s += 0x9e3779b97f4a7c15
	return mix64(*s)
}

// mix64 is the SplitMix64 finalizer: every input bit affects every output bit.
func mix64(z uint64) uint64 {
	z = (z ^ z>>30) * 0xbf58476d1ce4e5b9
	z = (z ^ z>>27) * 0x94d049bb133111eb
	return z ^ z>>31
}

// Shard names one of Count disjoint slices of a scan, numbered from 1 as
// users write them ("2/8"). Shard i of n covers the positions
// [(i-1)*size/n, i*size/n) of the permuted sequence, so the n shards of one
// seed cover every position exactly once. The zero value (and any Count of
// 1) is the whole space.
type Shard struct {
	Index uint64 `json:"index"` // 1..Count
	Count uint64 `json:"count"` // 0 or 1: no sharding
}

// Range returns the positions [lo, hi) of the permuted sequence of a space
// of size n that belong to the shard.
func (s Shard) Range(n uint64) (lo, hi uint64) {
	if s.Count <= 1 {
		return 0, n
	}
	return mulDiv(n, s.Index-1, s.Count), mulDiv(n, s.Index, s.Count)
}

// mulDiv returns a*b/c without overflow; b <= c keeps the quotient in range.
func mulDiv(a, b, c uint64) uint64 {
	hi, lo := bits.Mul64(a, b)
	q, _ := bits.Div64(hi, lo, c)
	return q
}

// Validate reports whether the shard is usable.
func (s Shard) Validate() error {
	if s.Count == 0 && s.Index == 0 {
		return nil
	}
	if s.Count == 0 || s.Index < 1 || s.Index > s.Count {
		return fmt.Errorf("shard %d/%d: want i/n with 1 <= i <= n", s.Index, s.Count)
	}
	return nil
}

// String returns "i/n", or "" for the whole space.
func (s Shard) String() string {
	if s.Count == 0 {
		return ""
	}
	return fmt.Sprintf("%d/%d", s.Index, s.Count)
}

// ParseShard reads "i/n" (1 <= i <= n), the --shard syntax.
func ParseShard(text string) (Shard, error) {
	is, ns, ok := strings.Cut(text, "/")
	if !ok {
		return Shard{}, fmt.Errorf("shard %q: want i/n, such as 2/8", text)
	}
	i, err := strconv.ParseUint(is, 10, 64)
	if err != nil {
		return Shard{}, fmt.Errorf("shard %q: at 1: index %q is not a number", text, is)
	}
	n, err := strconv.ParseUint(ns, 10, 64)
	if err != nil {
		return Shard{}, fmt.Errorf("shard %q: at %d: count %q is not a number", text, len(is)+2, ns)
	}
	s := Shard{Index: i, Count: n}
	if n == 0 || i < 1 || i > n {
		return Shard{}, fmt.Errorf("shard %q: want i/n with 1 <= i <= n", text)
	}
	return s, nil
}
