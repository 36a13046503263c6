package firewall

import (
	"encoding/binary"
	"hash/maphash"
	"net/netip"
)

// digest returns a hash of every field of k, for pairing the live kernel
// rules with the compiled ones (incremental) without rendering each in
// nft syntax, which cost a large re-apply a tenth of its time. Equal
// rules hash equal; the pairs are checked with reflect.DeepEqual, so a
// collision costs a full write of the chain, never a wrong one.
func (k *krule) digest(seed maphash.Seed) uint64 {
	var h maphash.Hash
	h.SetSeed(seed)
	var b [16]byte
	u64 := func(v uint64) {
		binary.LittleEndian.PutUint64(b[:8], v)
		h.Write(b[:8])
	}
	str := func(s string) {
		u64(uint64(len(s)))
		h.WriteString(s)
	}
	bytes := func(p []byte) {
		u64(uint64(len(p)))
		h.Write(p)
	}
	addr := func(a netip.Addr) {
		b = a.As16()
		h.Write(b[:])
		u64(uint64(a.BitLen()))
	}
	ranges := func(rs []addrRange) {
		u64(uint64(len(rs)))
		for _, r := range rs {
			addr(r.lo)
			addr(r.hi)
		}
	}
	meter := func(m *meter) {
		if m == nil {
			u64(0)
			return
		}
		u64(1)
		str(m.set)
		u64(m.rate)
		u64(m.unit)
		u64(uint64(m.burst))
		bytes(m.mask)
	}
	flag := func(v bool) uint64 {
		if v {
			return 1
		}
		return 0
	}
	u64(uint64(k.dir) | uint64(k.kind)<<8 | uint64(k.id)<<16 | uint64(k.hopLimit)<<48 | uint64(k.verdict)<<56)
	u64(uint64(k.expires))
	u64(uint64(k.iif) | uint64(k.ctState)<<32)
	u64(uint64(k.family) | uint64(k.logGroup)<<32 | flag(k.origPorts)<<48 | flag(k.logLimit)<<49)
	str(k.comment)
	str(k.iface)
	str(k.expireSet)
	str(k.logPrefix)
	ranges(k.saddr)
	ranges(k.daddr)
	bytes(k.protos)
	bytes(k.icmpTypes)
	u64(uint64(len(k.ports)))
	for _, p := range k.ports {
		u64(uint64(p.lo) | uint64(p.hi)<<16)
	}
	meter(k.meter)
	meter(k.notIn)
	return h.Sum64()
}
