package portspec

import (
	"fmt"
	"iter"
	"math/bits"
	"strconv"
	"strings"
)

// words is the number of 64-bit words in a bitmap of all 65536 ports.
const words = 65536 / 64

// bitmap holds one bit per port: 8 KiB.
type bitmap [words]uint64

// Set is a set of (protocol, port) pairs for TCP, UDP and SCTP, kept as one
// 8 KiB bitmap per protocol, allocated on first use. The zero value is an
// empty set ready to use. A Set must not be copied after first use (copies
// share bitmaps); use Clone.
//
// Reading methods (Has, Len, Ports, ...) accept a nil *Set and protocols
// outside Protos, and treat them as empty. Adding to a protocol outside
// Protos panics: it is a programming error, and parsers reject such input
// before it gets here.
type Set struct {
	bits [3]*bitmap
	n    [3]int // cached population count per bitmap
}

// slot returns the bitmap index for proto, or -1.
func slot(proto Proto) int {
	if proto >= TCP && proto <= SCTP {
		return int(proto - TCP)
	}
	return -1
}

// mustSlot returns the bitmap index for proto, allocating its bitmap.
func (s *Set) mustSlot(proto Proto) int {
	i := slot(proto)
	if i < 0 {
		panic(fmt.Sprintf("portspec: a Set holds tcp, udp and sctp ports, not %v", proto))
	}
	if s.bits[i] == nil {
		s.bits[i] = new(bitmap)
	}
	return i
}

// get returns the bitmap of proto, or nil when there is none.
func (s *Set) get(proto Proto) *bitmap {
	i := slot(proto)
	if s == nil || i < 0 {
		return nil
	}
	return s.bits[i]
}

// Add adds port p of proto.
func (s *Set) Add(proto Proto, p Port) {
	i := s.mustSlot(proto)
	w, m := p>>6, uint64(1)<<(p&63)
	if s.bits[i][w]&m == 0 {
		s.bits[i][w] |= m
		s.n[i]++
	}
}

// AddRange adds ports lo through hi of proto. It adds nothing when lo > hi.
func (s *Set) AddRange(proto Proto, lo, hi Port) {
	if lo > hi {
		return
	}
	s.setRange(s.mustSlot(proto), lo, hi, true)
}

// AddSet adds every port of o.
func (s *Set) AddSet(o *Set) {
	if o == nil {
		return
	}
	for i, ob := range o.bits {
		if ob == nil || o.n[i] == 0 {
			continue
		}
		s.mustSlot(Protos[i]) // allocates; the slot of Protos[i] is i
		b := s.bits[i]
		n := 0
		for w := range b {
			b[w] |= ob[w]
			n += bits.OnesCount64(b[w])
		}
		s.n[i] = n
	}
}

// Remove removes port p of proto.
func (s *Set) Remove(proto Proto, p Port) {
	b := s.get(proto)
	if b == nil {
		return
	}
	w, m := p>>6, uint64(1)<<(p&63)
	if b[w]&m != 0 {
		b[w] &^= m
		s.n[slot(proto)]--
	}
}

// RemoveRange removes ports lo through hi of proto. It removes nothing when
// lo > hi.
func (s *Set) RemoveRange(proto Proto, lo, hi Port) {
	if lo > hi || s.get(proto) == nil {
		return
	}
	s.setRange(slot(proto), lo, hi, false)
}

// RemoveSet removes every port of o.
func (s *Set) RemoveSet(o *Set) {
	if o == nil {
		return
	}
	for i, ob := range o.bits {
		b := s.bits[i]
		if b == nil || ob == nil {
			continue
		}
		n := 0
		for w := range b {
			b[w] &^= ob[w]
			n += bits.OnesCount64(b[w])
		}
		s.n[i] = n
	}
}

// setRange sets or clears the bits lo..hi of bitmap i a word at a time,
// keeping the cached count right.
func (s *Set) setRange(i int, lo, hi Port, on bool) {
	b := s.bits[i]
	for w := int(lo >> 6); w <= int(hi>>6); w++ {
		mask := rangeMask(w, lo, hi)
		old := b[w]
		if on {
			b[w] |= mask
		} else {
			b[w] &^= mask
		}
		s.n[i] += bits.OnesCount64(b[w]) - bits.OnesCount64(old)
	}
}

// Has reports whether port p of proto is in the set.
func (s *Set) Has(proto Proto, p Port) bool {
	b := s.get(proto)
	return b != nil && b[p>>6]&(1<<(p&63)) != 0
}

// Len returns the number of (protocol, port) pairs in the set.
func (s *Set) Len() int {
	if s == nil {
		return 0
	}
	return s.n[0] + s.n[1] + s.n[2]
}

// LenProto returns the number of ports of proto in the set.
func (s *Set) LenProto(proto Proto) int {
	i := slot(proto)
	if s == nil || i < 0 {
		return 0
	}
	return s.n[i]
}

// LenRange returns the number of ports of proto from lo through hi in the
// set; LenRange(TCP, Registered.Range()) counts the registered TCP ports.
func (s *Set) LenRange(proto Proto, lo, hi Port) int {
	b := s.get(proto)
	if b == nil || lo > hi {
		return 0
	}
	n := 0
	for w := int(lo >> 6); w <= int(hi>>6); w++ {
		n += bits.OnesCount64(b[w] & rangeMask(w, lo, hi))
	}
	return n
}

// rangeMask returns the bits of word w that lie in lo..hi.
func rangeMask(w int, lo, hi Port) uint64 {
	mask := ^uint64(0)
	if w == int(lo>>6) {
		mask &= ^uint64(0) << (lo & 63)
	}
	if w == int(hi>>6) {
		mask &= ^uint64(0) >> (63 - hi&63)
	}
	return mask
}

// Protos returns the protocols that have at least one port in the set, in
// the order of Protos.
func (s *Set) Protos() []Proto {
	var out []Proto
	for _, p := range Protos {
		if s.LenProto(p) > 0 {
			out = append(out, p)
		}
	}
	return out
}

// Ports returns the ports of proto in ascending order.
func (s *Set) Ports(proto Proto) []Port {
	b := s.get(proto)
	if b == nil {
		return nil
	}
	out := make([]Port, 0, s.LenProto(proto))
	b.each(func(p Port) bool {
		out = append(out, p)
		return len(out) < cap(out) // the count is known: stop at the last port, not the end of the bitmap
	})
	return out
}

// Each calls fn for every pair in ascending order of protocol, then port,
// until fn returns false.
func (s *Set) Each(fn func(Proto, Port) bool) {
	for _, proto := range Protos {
		b := s.get(proto)
		if b == nil {
			continue
		}
		if !b.each(func(p Port) bool { return fn(proto, p) }) {
			return
		}
	}
}

// All iterates over the set in the order of Each.
func (s *Set) All() iter.Seq2[Proto, Port] { return s.Each }

// Equal reports whether s and o hold the same pairs.
func (s *Set) Equal(o *Set) bool {
	for _, proto := range Protos {
		if s.LenProto(proto) != o.LenProto(proto) {
			return false
		}
		a, b := s.get(proto), o.get(proto)
		if a == nil || b == nil {
			continue // the other has the same count: zero
		}
		if *a != *b {
			return false
		}
	}
	return true
}

// Clone returns an independent copy of s.
func (s *Set) Clone() *Set {
	c := new(Set)
	if s == nil {
		return c
	}
	c.n = s.n
	for i, b := range s.bits {
		if b != nil && s.n[i] > 0 {
			nb := *b
			c.bits[i] = &nb
		}
	}
	return c
}

// String returns the canonical compact spec of the set: each protocol with
// ports gets its prefix, followed by its ports and runs as ranges, for
// example "T:22,80,8000-8100,U:53". Parse reads it back to an equal set.
// The empty set is "", which Parse rejects as an empty spec.
func (s *Set) String() string {
	var sb strings.Builder
	var num [5]byte
	for _, proto := range Protos {
		b := s.get(proto)
		if b == nil || s.LenProto(proto) == 0 {
			continue
		}
		if sb.Len() > 0 {
			sb.WriteByte(',')
		}
		sb.WriteString(prefixOf(proto))
		first := true
		b.runs(func(lo, hi int) {
			if !first {
				sb.WriteByte(',')
			}
			first = false
			sb.Write(strconv.AppendUint(num[:0], uint64(lo), 10))
			if hi > lo {
				sb.WriteByte('-')
				sb.Write(strconv.AppendUint(num[:0], uint64(hi), 10))
			}
		})
	}
	return sb.String()
}

// MarshalText writes the canonical spec, so a Set in JSON reads "T:22,80".
func (s *Set) MarshalText() ([]byte, error) { return []byte(s.String()), nil }

// UnmarshalText parses a spec without service names (as MarshalText writes).
func (s *Set) UnmarshalText(b []byte) error {
	v, err := Parse(string(b))
	if err != nil {
		return err
	}
	*s = *v // v is fresh: nothing else shares its bitmaps
	return nil
}

// prefixOf returns the spec prefix of proto: "T:", "U:" or "S:".
func prefixOf(proto Proto) string {
	switch proto {
	case UDP:
		return "U:"
	case SCTP:
		return "S:"
	}
	return "T:"
}

// each calls fn for every set bit in ascending order until fn returns false,
// and reports whether it ran to the end.
func (b *bitmap) each(fn func(Port) bool) bool {
	for w, x := range b {
		for x != 0 {
			t := bits.TrailingZeros64(x)
			if !fn(Port(w<<6 | t)) {
				return false
			}
			x &= x - 1
		}
	}
	return true
}

// runs calls fn for every maximal run lo..hi of set bits, in ascending order.
func (b *bitmap) runs(fn func(lo, hi int)) {
	for i := 0; i < 65536; {
		lo := b.next(i, true)
		if lo < 0 {
			return
		}
		hi := b.next(lo, false)
		if hi < 0 {
			hi = 65536
		}
		fn(lo, hi-1)
		i = hi
	}
}

// next returns the first bit at or after from that is set (or clear, when
// set is false), or -1.
func (b *bitmap) next(from int, set bool) int {
	w := from >> 6
	x := b[w]
	if !set {
		x = ^x
	}
	x &= ^uint64(0) << (from & 63)
	for {
		if x != 0 {
			return w<<6 | bits.TrailingZeros64(x)
		}
		w++
		if w == words {
			return -1
		}
		x = b[w]
		if !set {
			x = ^x
		}
	}
}
