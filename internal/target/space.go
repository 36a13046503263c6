package target

import (
	"errors"
	"fmt"
	"math/bits"
	"net/netip"
	"slices"

	"portolan/internal/portspec"
)

// MaxSpace is the largest Space NewSpace builds. It leaves headroom so the
// engine's index arithmetic (sums, a power-of-two domain above the size)
// cannot overflow a uint64.
const MaxSpace = 1 << 62

// Space is the product of a host set and a port set: every (address, port,
// protocol) a scan probes, addressed by an index in [0, Size). Indexes are
// host-major: i = host*PortCount() + port, hosts in address order, ports
// grouped by protocol (tcp, udp, sctp) and ascending within each. A Space
// is immutable and safe for concurrent use.
type Space struct {
	hosts  *Set
	protos []portspec.Proto
	starts []int           // ports of protos[k] are ports[starts[k]:starts[k+1]]
	ports  []portspec.Port // about 384 KiB at most (3 x 65536)
	size   uint64
}

// NewSpace returns the space of hosts x ports. It refuses empty sides and
// products above MaxSpace.
func NewSpace(hosts *Set, ports *portspec.Set) (*Space, error) {
	if hosts.Len() == 0 {
		return nil, errors.New("target space: no addresses")
	}
	if ports.Len() == 0 {
		return nil, errors.New("target space: no ports")
	}
	sp := &Space{hosts: hosts, starts: []int{0}}
	for _, proto := range ports.Protos() {
		sp.protos = append(sp.protos, proto)
		sp.ports = append(sp.ports, ports.Ports(proto)...)
		sp.starts = append(sp.starts, len(sp.ports))
	}
	hi, lo := bits.Mul64(hosts.Len(), uint64(len(sp.ports)))
	if hi != 0 || lo > MaxSpace {
		return nil, fmt.Errorf("target space: %s addresses x %d ports is more than %d probes", hosts.BigLen(), len(sp.ports), uint64(MaxSpace))
	}
	sp.size = lo
	return sp, nil
}

// Size is the number of (address, port, protocol) triples.
func (sp *Space) Size() uint64 { return sp.size }

// Hosts is the number of addresses.
func (sp *Space) Hosts() uint64 { return sp.hosts.Len() }

// HostSet returns the addresses of the space.
func (sp *Space) HostSet() *Set { return sp.hosts }

// PortCount is the number of (port, protocol) pairs per address.
func (sp *Space) PortCount() int { return len(sp.ports) }

// At returns the triple at index i, for i < Size(); it panics otherwise.
func (sp *Space) At(i uint64) (netip.Addr, portspec.Port, portspec.Proto) {
	if i >= sp.size {
		panic(fmt.Sprintf("target: Space.At(%d) out of range [0,%d)", i, sp.size))
	}
	n := uint64(len(sp.ports))
	h, j := i/n, int(i%n)
	k := 0
	for j >= sp.starts[k+1] {
		k++
	}
	return sp.hosts.At(h), sp.ports[j], sp.protos[k]
}

// Index returns the index of a triple (the inverse of At), and whether it
// is in the space.
func (sp *Space) Index(a netip.Addr, p portspec.Port, proto portspec.Proto) (uint64, bool) {
	k := slices.Index(sp.protos, proto)
	if k < 0 {
		return 0, false
	}
	lo, hi := sp.starts[k], sp.starts[k+1]
	j, ok := slices.BinarySearch(sp.ports[lo:hi], p)
	if !ok {
		return 0, false
	}
	h, ok := sp.hosts.Index(a)
	if !ok {
		return 0, false
	}
	return h*uint64(len(sp.ports)) + uint64(lo+j), true
}
