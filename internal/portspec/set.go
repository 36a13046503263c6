package portspec

import (
	"fmt"
	"iter"
	"math/bits"
	"slices"
	"strconv"
	"strings"
)

// words is the number of 64-bit words in a bitmap of all 65536 ports.
const words = 65536 / 64

// bitmap holds one bit per port: 8 KiB.
type bitmap [words]uint64

// maxSpans is how many runs of ports a protocol keeps in a short sorted
// list before they move into a bitmap. Most sets are a port or a range or
// two (a firewall rule's "22/tcp"): as a list they cost a few bytes where
// a bitmap costs 8 KiB to allocate, clear and fault in, and a 10,000-rule
// firewall profile holds a set per rule.
const maxSpans = 8

// span is a run of ports lo..hi.
type span struct{ lo, hi Port }

// Set is a set of (protocol, port) pairs for TCP, UDP and SCTP. Each
// protocol's ports are kept as up to maxSpans sorted runs, or, beyond
// that, as an 8 KiB bitmap. The zero value is an empty set ready to use.
// A Set must not be copied after first use (copies share storage); use
// Clone.
//
// Reading methods (Has, Len, Ports, ...) accept a nil *Set and protocols
// outside Protos, and treat them as empty. Adding to a protocol outside
// Protos panics: it is a programming error, and parsers reject such input
// before it gets here.
type Set struct {
	bits  [3]*bitmap
	spans [3][]span // sorted, disjoint and not adjacent; only while bits[i] is nil
	n     [3]int    // cached population count per protocol
}

// slot returns the storage index for proto, or -1.
func slot(proto Proto) int {
	if proto >= TCP && proto <= SCTP {
		return int(proto - TCP)
	}
	return -1
}

// mustSlot returns the storage index for proto.
func mustSlot(proto Proto) int {
	i := slot(proto)
	if i < 0 {
		panic(fmt.Sprintf("portspec: a Set holds tcp, udp and sctp ports, not %v", proto))
	}
	return i
}

// index returns the storage index for proto, or -1 when s holds no port of
// it.
func (s *Set) index(proto Proto) int {
	i := slot(proto)
	if s == nil || i < 0 || s.n[i] == 0 {
		return -1
	}
	return i
}

// promote moves protocol i's spans into a bitmap.
func (s *Set) promote(i int) {
	b := new(bitmap)
	for _, r := range s.spans[i] {
		b.set(r.lo, r.hi, true)
	}
	s.bits[i], s.spans[i] = b, nil
}

// setSpans stores sp as protocol i's ports, in a bitmap when they are too
// many runs for a list.
func (s *Set) setSpans(i int, sp []span) {
	n := 0
	for _, r := range sp {
		n += int(r.hi-r.lo) + 1
	}
	s.spans[i], s.n[i] = sp, n
	if len(sp) > maxSpans {
		s.promote(i)
	}
}

// Add adds port p of proto.
func (s *Set) Add(proto Proto, p Port) {
	i := mustSlot(proto)
	if b := s.bits[i]; b != nil {
		w, m := p>>6, uint64(1)<<(p&63)
		if b[w]&m == 0 {
			b[w] |= m
			s.n[i]++
		}
		return
	}
	s.setSpans(i, addSpan(s.spans[i], p, p))
}

// AddRange adds ports lo through hi of proto. It adds nothing when lo > hi.
func (s *Set) AddRange(proto Proto, lo, hi Port) {
	if lo > hi {
		return
	}
	i := mustSlot(proto)
	if s.bits[i] != nil {
		s.n[i] += s.bits[i].set(lo, hi, true)
		return
	}
	s.setSpans(i, addSpan(s.spans[i], lo, hi))
}

// addSpan adds lo..hi to the runs sp, merging those it overlaps or
// touches.
func addSpan(sp []span, lo, hi Port) []span {
	j := 0
	for j < len(sp) && int(sp[j].hi)+1 < int(lo) {
		j++
	}
	k := j
	for k < len(sp) && int(sp[k].lo) <= int(hi)+1 {
		lo, hi = min(lo, sp[k].lo), max(hi, sp[k].hi)
		k++
	}
	return slices.Replace(sp, j, k, span{lo, hi})
}

// removeSpan removes lo..hi from the runs sp.
func removeSpan(sp []span, lo, hi Port) []span {
	var out []span
	for j, r := range sp {
		if r.hi < lo || r.lo > hi {
			if out != nil {
				out = append(out, r)
			}
			continue
		}
		if out == nil {
			out = append(make([]span, 0, len(sp)+1), sp[:j]...)
		}
		if r.lo < lo {
			out = append(out, span{r.lo, lo - 1})
		}
		if r.hi > hi {
			out = append(out, span{hi + 1, r.hi})
		}
	}
	if out == nil {
		return sp // nothing overlapped
	}
	return out
}

// AddSet adds every port of o.
func (s *Set) AddSet(o *Set) {
	if o == nil || o == s {
		return
	}
	for i := range o.n {
		if o.n[i] == 0 {
			continue
		}
		ob := o.bits[i]
		if ob == nil {
			for _, r := range o.spans[i] {
				s.AddRange(Protos[i], r.lo, r.hi)
			}
			continue
		}
		if s.bits[i] == nil {
			s.promote(i)
		}
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
	s.RemoveRange(proto, p, p)
}

// RemoveRange removes ports lo through hi of proto. It removes nothing when
// lo > hi.
func (s *Set) RemoveRange(proto Proto, lo, hi Port) {
	i := s.index(proto)
	if i < 0 || lo > hi {
		return
	}
	if s.bits[i] != nil {
		s.n[i] += s.bits[i].set(lo, hi, false)
		return
	}
	s.setSpans(i, removeSpan(s.spans[i], lo, hi))
}

// RemoveSet removes every port of o.
func (s *Set) RemoveSet(o *Set) {
	if o == nil {
		return
	}
	if o == s {
		*s = Set{}
		return
	}
	for i := range s.n {
		if s.n[i] == 0 || o.n[i] == 0 {
			continue
		}
		b, ob := s.bits[i], o.bits[i]
		switch {
		case b != nil && ob != nil:
			n := 0
			for w := range b {
				b[w] &^= ob[w]
				n += bits.OnesCount64(b[w])
			}
			s.n[i] = n
		case ob == nil:
			for _, r := range o.spans[i] {
				s.RemoveRange(Protos[i], r.lo, r.hi)
			}
		default: // a list minus a bitmap: keep the gaps of ob within each run
			var out []span
			for _, r := range s.spans[i] {
				for p := int(r.lo); p <= int(r.hi); {
					a := ob.next(p, false)
					if a < 0 || a > int(r.hi) {
						break
					}
					e := ob.next(a, true)
					if e < 0 || e > int(r.hi)+1 {
						e = int(r.hi) + 1
					}
					out = append(out, span{Port(a), Port(e - 1)})
					p = e
				}
			}
			s.setSpans(i, out)
		}
	}
}

// set sets or clears the bits lo..hi a word at a time and returns how
// much the count of set bits changed.
func (b *bitmap) set(lo, hi Port, on bool) int {
	d := 0
	for w := int(lo >> 6); w <= int(hi>>6); w++ {
		mask := rangeMask(w, lo, hi)
		old := b[w]
		if on {
			b[w] |= mask
		} else {
			b[w] &^= mask
		}
		d += bits.OnesCount64(b[w]) - bits.OnesCount64(old)
	}
	return d
}

// Has reports whether port p of proto is in the set.
func (s *Set) Has(proto Proto, p Port) bool {
	i := s.index(proto)
	if i < 0 {
		return false
	}
	if b := s.bits[i]; b != nil {
		return b[p>>6]&(1<<(p&63)) != 0
	}
	for _, r := range s.spans[i] {
		if p < r.lo {
			return false
		}
		if p <= r.hi {
			return true
		}
	}
	return false
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
	i := s.index(proto)
	if i < 0 || lo > hi {
		return 0
	}
	n := 0
	if b := s.bits[i]; b != nil {
		for w := int(lo >> 6); w <= int(hi>>6); w++ {
			n += bits.OnesCount64(b[w] & rangeMask(w, lo, hi))
		}
		return n
	}
	for _, r := range s.spans[i] {
		if a, e := max(lo, r.lo), min(hi, r.hi); a <= e {
			n += int(e-a) + 1
		}
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
	i := s.index(proto)
	if i < 0 {
		return nil
	}
	out := make([]Port, 0, s.n[i])
	s.each(i, func(p Port) bool {
		out = append(out, p)
		return len(out) < cap(out) // the count is known: stop at the last port, not the end of the bitmap
	})
	return out
}

// each calls fn for every port of protocol i in ascending order until fn
// returns false, and reports whether it ran to the end.
func (s *Set) each(i int, fn func(Port) bool) bool {
	if b := s.bits[i]; b != nil {
		return b.each(fn)
	}
	for _, r := range s.spans[i] {
		for p := int(r.lo); p <= int(r.hi); p++ {
			if !fn(Port(p)) {
				return false
			}
		}
	}
	return true
}

// eachRun calls fn for every maximal run lo..hi of protocol i's ports, in
// ascending order.
func (s *Set) eachRun(i int, fn func(lo, hi int)) {
	if b := s.bits[i]; b != nil {
		b.runs(fn)
		return
	}
	for _, r := range s.spans[i] {
		fn(int(r.lo), int(r.hi))
	}
}

// Each calls fn for every pair in ascending order of protocol, then port,
// until fn returns false.
func (s *Set) Each(fn func(Proto, Port) bool) {
	for _, proto := range Protos {
		i := s.index(proto)
		if i < 0 {
			continue
		}
		if !s.each(i, func(p Port) bool { return fn(proto, p) }) {
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
		i := s.index(proto)
		if i < 0 {
			continue // the other has the same count: zero
		}
		a, b := s.bits[i], o.bits[i]
		switch {
		case a != nil && b != nil:
			if *a != *b {
				return false
			}
		case a == nil && b == nil:
			if !slices.Equal(s.spans[i], o.spans[i]) {
				return false
			}
		default: // a bitmap may hold few runs (after removals)
			if !slices.Equal(s.runList(i), o.runList(i)) {
				return false
			}
		}
	}
	return true
}

// runList returns protocol i's ports as runs.
func (s *Set) runList(i int) []span {
	if s.bits[i] == nil {
		return s.spans[i]
	}
	var out []span
	s.bits[i].runs(func(lo, hi int) { out = append(out, span{Port(lo), Port(hi)}) })
	return out
}

// Clone returns an independent copy of s.
func (s *Set) Clone() *Set {
	c := new(Set)
	if s == nil {
		return c
	}
	c.n = s.n
	for i, b := range s.bits {
		if s.n[i] == 0 {
			continue
		}
		if b != nil {
			nb := *b
			c.bits[i] = &nb
		} else {
			c.spans[i] = slices.Clone(s.spans[i])
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
		i := s.index(proto)
		if i < 0 {
			continue
		}
		if sb.Len() > 0 {
			sb.WriteByte(',')
		}
		sb.WriteString(prefixOf(proto))
		first := true
		s.eachRun(i, func(lo, hi int) {
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
	*s = *v // v is fresh: nothing else shares its storage
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
