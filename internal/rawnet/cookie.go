package rawnet

import (
	"encoding/binary"
	"math/bits"
	"net/netip"
)

// Cookie is a secret key for SYN cookies: the sequence number of a probe
// is a keyed hash (SipHash-2-4) of its 4-tuple, and a reply is ours only if
// it acknowledges (or an ICMP error quotes) exactly that number. Without
// the key, a forged reply has one chance in 2^32 of passing. The zero
// value is a valid but public key: draw one with NewCookie.
type Cookie struct{ k0, k1 uint64 }

// NewCookie returns a cookie with the given key.
func NewCookie(k0, k1 uint64) Cookie { return Cookie{k0, k1} }

// SYN is the sequence number of a SYN from src to dst.
func (c Cookie) SYN(src, dst netip.Addr, sport, dport uint16) uint32 {
	var m [40]byte
	s, d := src.As16(), dst.As16()
	copy(m[0:16], s[:])
	copy(m[16:32], d[:])
	binary.LittleEndian.PutUint16(m[32:], sport)
	binary.LittleEndian.PutUint16(m[34:], dport)
	h := siphash24(c.k0, c.k1, &m, 36)
	return uint32(h) ^ uint32(h>>32)
}

// siphash24 is SipHash-2-4 of the first n bytes of m (n < 40, and m's
// bytes from n on zero), on a fixed array so it allocates nothing.
func siphash24(k0, k1 uint64, m *[40]byte, n int) uint64 {
	v0 := k0 ^ 0x736f6d6570736575
	v1 := k1 ^ 0x646f72616e646f6d
	v2 := k0 ^ 0x6c7967656e657261
	v3 := k1 ^ 0x7465646279746573
	round := func() {
		v0 += v1
		v1 = bits.RotateLeft64(v1, 13)
		v1 ^= v0
		v0 = bits.RotateLeft64(v0, 32)
		v2 += v3
		v3 = bits.RotateLeft64(v3, 16)
		v3 ^= v2
		v0 += v3
		v3 = bits.RotateLeft64(v3, 21)
		v3 ^= v0
		v2 += v1
		v1 = bits.RotateLeft64(v1, 17)
		v1 ^= v2
		v2 = bits.RotateLeft64(v2, 32)
	}
	full := n &^ 7
	for i := 0; i < full; i += 8 {
		w := binary.LittleEndian.Uint64(m[i:])
		v3 ^= w
		round()
		round()
		v0 ^= w
	}
	// The last block: the remaining bytes and the length in the top byte.
	var last [8]byte
	copy(last[:], m[full:n])
	w := binary.LittleEndian.Uint64(last[:]) | uint64(n)<<56
	v3 ^= w
	round()
	round()
	v0 ^= w
	v2 ^= 0xff
	round()
	round()
	round()
	round()
	return v0 ^ v1 ^ v2 ^ v3
}
