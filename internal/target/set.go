package target

import (
	"fmt"
	"math"
	"math/big"
	"math/bits"
	"net/netip"
	"slices"
	"strconv"
	"strings"
)

// u128 is an address as a 128-bit number, for range arithmetic. IPv4
// addresses use the low 32 bits; a range never mixes families.
type u128 struct{ hi, lo uint64 }

func toU128(a netip.Addr) u128 {
	if a.Is4() {
		b := a.As4()
		return u128{lo: uint64(b[0])<<24 | uint64(b[1])<<16 | uint64(b[2])<<8 | uint64(b[3])}
	}
	b := a.As16()
	var u u128
	for i := 0; i < 8; i++ {
		u.hi = u.hi<<8 | uint64(b[i])
		u.lo = u.lo<<8 | uint64(b[i+8])
	}
	return u
}

func (u u128) addr(is4 bool) netip.Addr {
	if is4 {
		v := uint32(u.lo)
		return netip.AddrFrom4([4]byte{byte(v >> 24), byte(v >> 16), byte(v >> 8), byte(v)})
	}
	var b [16]byte
	for i := 0; i < 8; i++ {
		b[7-i] = byte(u.hi >> (8 * i))
		b[15-i] = byte(u.lo >> (8 * i))
	}
	return netip.AddrFrom16(b)
}

func (u u128) add64(n uint64) u128 {
	lo, carry := bits.Add64(u.lo, n, 0)
	return u128{u.hi + carry, lo}
}

func (u u128) sub(v u128) u128 {
	lo, borrow := bits.Sub64(u.lo, v.lo, 0)
	return u128{u.hi - v.hi - borrow, lo}
}

func (u u128) and(v u128) u128 { return u128{u.hi & v.hi, u.lo & v.lo} }

func (u u128) isZero() bool { return u.hi == 0 && u.lo == 0 }

// Range is an inclusive range of addresses of one family: First <= Last.
type Range struct {
	First netip.Addr `json:"first"`
	Last  netip.Addr `json:"last"`
}

// RangeOf returns the range covered by prefix p (host bits ignored).
func RangeOf(p netip.Prefix) Range {
	p = p.Masked()
	first := p.Addr()
	span := hostMask(first.BitLen() - p.Bits())
	return Range{first, toU128(first).or(span).addr(first.Is4())}
}

func (u u128) or(v u128) u128 { return u128{u.hi | v.hi, u.lo | v.lo} }

// hostMask returns a number with the low n bits set.
func hostMask(n int) u128 {
	switch {
	case n <= 0:
		return u128{}
	case n < 64:
		return u128{lo: 1<<uint(n) - 1}
	case n < 128:
		return u128{hi: 1<<uint(n-64) - 1, lo: math.MaxUint64}
	}
	return u128{math.MaxUint64, math.MaxUint64}
}

// Len is the number of addresses in r, saturating at math.MaxUint64.
func (r Range) Len() uint64 {
	d := toU128(r.Last).sub(toU128(r.First))
	if d.hi != 0 || d.lo == math.MaxUint64 {
		return math.MaxUint64
	}
	return d.lo + 1
}

// BigLen is the exact number of addresses in r.
func (r Range) BigLen() *big.Int {
	d := toU128(r.Last).sub(toU128(r.First))
	n := new(big.Int).SetUint64(d.hi)
	n.Lsh(n, 64)
	n.Add(n, new(big.Int).SetUint64(d.lo))
	return n.Add(n, big.NewInt(1))
}

// Contains reports whether a lies in r.
func (r Range) Contains(a netip.Addr) bool {
	return a.Is4() == r.First.Is4() && r.First.Compare(a) <= 0 && a.Compare(r.Last) <= 0
}

// Prefix returns the CIDR prefix equal to r, if there is one.
func (r Range) Prefix() (netip.Prefix, bool) {
	d := toU128(r.Last).sub(toU128(r.First))
	// r is a prefix when its size is a power of two (d = 2^k-1) and First
	// is aligned to it.
	if !d.and(d.add64(1)).isZero() || !toU128(r.First).and(d).isZero() {
		return netip.Prefix{}, false
	}
	k := bits.Len64(d.lo)
	if d.hi != 0 {
		k = 64 + bits.Len64(d.hi)
	}
	return netip.PrefixFrom(r.First, r.First.BitLen()-k), true
}

// String renders r compactly: an address, a prefix, the short form
// "198.18.0.10-20" / "fd00::1-ff" when only the last octet or group
// differs, and "first-last" otherwise. Parse reads every form back.
func (r Range) String() string {
	if r.First == r.Last {
		return r.First.String()
	}
	if p, ok := r.Prefix(); ok {
		return p.String()
	}
	f, l := toU128(r.First), toU128(r.Last)
	if r.First.Is4() {
		if f.lo>>8 == l.lo>>8 {
			return r.First.String() + "-" + strconv.FormatUint(l.lo&0xff, 10)
		}
	} else if f.hi == l.hi && f.lo>>16 == l.lo>>16 {
		return r.First.String() + "-" + strconv.FormatUint(l.lo&0xffff, 16)
	}
	return r.First.String() + "-" + r.Last.String()
}

// Set is a set of addresses kept as sorted, disjoint, non-adjacent ranges
// (IPv4 before IPv6). The zero value is the empty set. A Set is immutable
// once built and safe for concurrent use.
type Set struct {
	ranges []Range
	// ends[i] is the number of addresses in ranges[0..i], saturating; At
	// searches it.
	ends []uint64
	// names are the host names the addresses were given as (Parse).
	names map[netip.Addr]string
}

// Name returns the host name address a was given as, or "" for an
// address given as such.
func (s *Set) Name(a netip.Addr) string { return s.names[a] }

// Names returns every address given by name, with its name. The map is
// the set's: do not change it.
func (s *Set) Names() map[netip.Addr]string { return s.names }

// NewSet returns the set of addresses in ranges, which may overlap and come
// in any order. Ranges with an invalid address, mixed families or First
// after Last are an error.
func NewSet(ranges ...Range) (*Set, error) {
	rs := make([]Range, 0, len(ranges))
	for _, r := range ranges {
		r = Range{unmap(r.First), unmap(r.Last)}
		if !r.First.IsValid() || !r.Last.IsValid() || r.First.Is4() != r.Last.Is4() || r.Last.Less(r.First) {
			return nil, fmt.Errorf("bad range %v-%v", r.First, r.Last)
		}
		rs = append(rs, r)
	}
	return newSet(rs), nil
}

// unmap turns IPv4-mapped IPv6 addresses into IPv4 and drops zones: a set
// holds plain addresses.
func unmap(a netip.Addr) netip.Addr { return a.Unmap().WithZone("") }

// newSet sorts and merges valid ranges; it owns rs.
func newSet(rs []Range) *Set {
	slices.SortFunc(rs, func(a, b Range) int { return a.First.Compare(b.First) })
	out := rs[:0]
	for _, r := range rs {
		if n := len(out); n > 0 {
			last := &out[n-1]
			next := last.Last.Next() // invalid after the family's last address
			if r.First.Is4() == last.Last.Is4() && (r.First.Compare(last.Last) <= 0 || r.First == next) {
				if last.Last.Less(r.Last) {
					last.Last = r.Last
				}
				continue
			}
		}
		out = append(out, r)
	}
	s := &Set{ranges: slices.Clip(out), ends: make([]uint64, len(out))}
	var total uint64
	for i, r := range out {
		total = satAdd(total, r.Len())
		s.ends[i] = total
	}
	return s
}

func satAdd(a, b uint64) uint64 {
	s, c := bits.Add64(a, b, 0)
	if c != 0 {
		return math.MaxUint64
	}
	return s
}

// subtract returns s without the addresses in x.
func (s *Set) subtract(x *Set) *Set {
	var out []Range
	j := 0
	for _, r := range s.ranges {
		cur := r
		alive := true
		// Skip exclusions wholly before r.
		for j < len(x.ranges) && before(x.ranges[j], cur) {
			j++
		}
		for k := j; alive && k < len(x.ranges); k++ {
			e := x.ranges[k]
			if before(cur, e) {
				break
			}
			// e overlaps cur.
			if cur.First.Less(e.First) {
				out = append(out, Range{cur.First, e.First.Prev()})
			}
			if e.Last.Less(cur.Last) {
				cur.First = e.Last.Next()
			} else {
				alive = false
			}
		}
		if alive {
			out = append(out, cur)
		}
	}
	return newSet(out)
}

// before reports whether a lies wholly before b (in the family order).
func before(a, b Range) bool { return a.Last.Less(b.First) }

// Len is the number of addresses, saturating at math.MaxUint64 (a large
// IPv6 set can hold more).
func (s *Set) Len() uint64 {
	if s == nil || len(s.ends) == 0 {
		return 0
	}
	return s.ends[len(s.ends)-1]
}

// BigLen is the exact number of addresses.
func (s *Set) BigLen() *big.Int {
	n := new(big.Int)
	if s == nil {
		return n
	}
	for _, r := range s.ranges {
		n.Add(n, r.BigLen())
	}
	return n
}

// Ranges returns the merged ranges in order. The caller must not modify it.
func (s *Set) Ranges() []Range {
	if s == nil {
		return nil
	}
	return s.ranges
}

// At returns the i-th address in order, for i < Len(). It panics when i is
// out of range, like a slice index.
func (s *Set) At(i uint64) netip.Addr {
	if i >= s.Len() {
		panic(fmt.Sprintf("target: Set.At(%d) out of range [0,%d)", i, s.Len()))
	}
	k, _ := slices.BinarySearch(s.ends, i+1)
	r := s.ranges[k]
	var start uint64
	if k > 0 {
		start = s.ends[k-1]
	}
	return toU128(r.First).add64(i - start).addr(r.First.Is4())
}

// Index returns the position of a in the set (the inverse of At), and
// whether a is in it.
func (s *Set) Index(a netip.Addr) (uint64, bool) {
	k, ok := s.find(a)
	if !ok {
		return 0, false
	}
	var start uint64
	if k > 0 {
		start = s.ends[k-1]
	}
	d := toU128(unmap(a)).sub(toU128(s.ranges[k].First))
	if d.hi != 0 {
		return 0, false // beyond uint64 positions
	}
	i, c := bits.Add64(start, d.lo, 0)
	if c != 0 || (s.ends[k] == math.MaxUint64 && i == math.MaxUint64) {
		return 0, false
	}
	return i, true
}

// find returns the index of the range holding a.
func (s *Set) find(a netip.Addr) (int, bool) {
	if s == nil || !a.IsValid() {
		return 0, false
	}
	a = unmap(a)
	// The first range whose Last is >= a is the only candidate.
	k, _ := slices.BinarySearchFunc(s.ranges, a, func(r Range, a netip.Addr) int { return r.Last.Compare(a) })
	if k < len(s.ranges) && s.ranges[k].Contains(a) {
		return k, true
	}
	return 0, false
}

// Contains reports whether a is in the set.
func (s *Set) Contains(a netip.Addr) bool {
	_, ok := s.find(a)
	return ok
}

// overlaps returns the first address of r that is also in s.
func (s *Set) overlap(r Range) (netip.Addr, bool) {
	if s == nil {
		return netip.Addr{}, false
	}
	k, _ := slices.BinarySearchFunc(s.ranges, r.First, func(x Range, a netip.Addr) int { return x.Last.Compare(a) })
	if k == len(s.ranges) {
		return netip.Addr{}, false
	}
	x := s.ranges[k]
	if x.First.Is4() != r.First.Is4() || r.Last.Less(x.First) {
		return netip.Addr{}, false
	}
	if x.First.Less(r.First) {
		return r.First, true
	}
	return x.First, true
}

// String renders the set as a comma-separated list of its ranges in their
// compact forms; Parse of the result gives the same set back.
func (s *Set) String() string {
	var b strings.Builder
	for i, r := range s.Ranges() {
		if i > 0 {
			b.WriteByte(',')
		}
		b.WriteString(r.String())
	}
	return b.String()
}
