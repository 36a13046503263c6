package rawnet

// sum16 adds b to the one's-complement sum s as big-endian 16-bit words
// (RFC 1071); it folds nothing, so callers may keep adding.
func sum16(s uint32, b []byte) uint32 {
	for len(b) >= 2 {
		s += uint32(b[0])<<8 | uint32(b[1])
		b = b[2:]
	}
	if len(b) == 1 {
		s += uint32(b[0]) << 8
	}
	return s
}

// fold reduces a running sum to 16 bits and complements it: the checksum
// field's value.
func fold(s uint32) uint16 {
	for s > 0xffff {
		s = s>>16 + s&0xffff
	}
	return ^uint16(s)
}

// Checksum is the Internet checksum of b (RFC 1071).
func Checksum(b []byte) uint16 { return fold(sum16(0, b)) }

// UpdateChecksum returns checksum c after a 16-bit word of the covered
// data changed from old to new (RFC 1624, eqn. 3: HC' = ~(~HC + ~m + m')).
func UpdateChecksum(c, old, new uint16) uint16 {
	s := uint32(^c) + uint32(^old) + uint32(new)
	return fold(s)
}
