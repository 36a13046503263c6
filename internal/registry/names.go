package registry

import (
	_ "embed"
	"encoding/binary"
	"fmt"
	"slices"
	"sync"

	"portolan/internal/portspec"
)

// names.idx is the primary-name table of the embedded registry (what
// Registry.Name answers) in compact form, so that labelling a socket or a
// scan result needs no CSV parse: parsing costs a few milliseconds and
// megabytes, more than a whole `portolan ls` otherwise spends. It is
// generated from the CSV by the go:generate line below (go generate
// ./internal/registry), and TestNameIndex fails whenever it no longer
// matches the CSV.
//
//go:embed names.idx
var nameIndex string

//go:generate go test -run TestNameIndex -update-names .

// The index: "PNI1", then for TCP, UDP, SCTP and DCCP in turn a uint32
// count of runs and the runs, sorted and disjoint, each 8 bytes: first
// port, last port (uint16), the name's offset (uint24) and length (uint8)
// in the names that follow the last protocol. Integers are big-endian.
const (
	nameIndexMagic = "PNI1"
	nameRunSize    = 8
)

// PortName returns the primary service name assigned to port p for proto,
// exactly as Default().Name(p, proto) does, without parsing the registry.
func PortName(p portspec.Port, proto portspec.Proto) string {
	t := nameBlocks()
	if proto == 0 {
		for proto = portspec.TCP; proto <= portspec.DCCP; proto++ {
			if n := t.name(p, proto); n != "" {
				return n
			}
		}
		return ""
	}
	return t.name(p, proto)
}

// nameTable is the embedded index split for PortName: each protocol's runs
// and, per block of 256 ports, the first run that ends in or after it, and
// a bit per port that has a name. Most ports have none (59,394 of TCP's
// 65,536), and a scan names every port it probes and the store checks
// every name again: the bit answers those without a search.
type nameTable struct {
	names  string
	protos [portspec.DCCP - portspec.TCP + 1]struct {
		runs  string
		first [257]int32
		named [1 << 16 / 64]uint64
	}
}

// nameBlocks is the embedded index, parsed once; TestNameIndex keeps it
// whole.
var nameBlocks = sync.OnceValue(func() *nameTable {
	t, err := parseNameTable(nameIndex)
	if err != nil {
		panic(err)
	}
	return t
})

// parseNameTable reads an index in the form buildNameIndex writes.
func parseNameTable(idx string) (*nameTable, error) {
	if len(idx) < len(nameIndexMagic) || idx[:len(nameIndexMagic)] != nameIndexMagic {
		return nil, fmt.Errorf("port name index: not %q", nameIndexMagic)
	}
	t := &nameTable{}
	off := len(nameIndexMagic)
	for i := range t.protos {
		if len(idx) < off+4 {
			return nil, fmt.Errorf("port name index: cut at byte %d", off)
		}
		n := int(be32(idx[off:]))
		off += 4
		if len(idx) < off+n*nameRunSize {
			return nil, fmt.Errorf("port name index: %d runs at byte %d past its end", n, off)
		}
		pt := &t.protos[i]
		pt.runs = idx[off : off+n*nameRunSize]
		off += n * nameRunSize
		r := 0
		for b := range 257 {
			for r < n && int(be16(pt.runs[r*nameRunSize+2:])) < b<<8 {
				r++
			}
			pt.first[b] = int32(r)
		}
		for r := range n {
			run := pt.runs[r*nameRunSize:]
			for q := int(be16(run)); q <= int(be16(run[2:])); q++ {
				pt.named[q>>6] |= 1 << (q & 63)
			}
		}
	}
	t.names = idx[off:]
	return t, nil
}

// name is PortName for one protocol. The runs that can hold p: those that
// end in or after p's block of 256 ports, up to the first that ends after
// the block. A scan names every port it probes, in a random order: a
// binary search over all runs missed the cache at each step.
func (t *nameTable) name(p portspec.Port, proto portspec.Proto) string {
	if proto < portspec.TCP || proto > portspec.DCCP {
		return ""
	}
	pt := &t.protos[proto-portspec.TCP]
	if pt.named[p>>6]&(1<<(p&63)) == 0 {
		return ""
	}
	b := int(p >> 8)
	return findName(pt.runs, t.names, p, int(pt.first[b]), min(int(pt.first[b+1])+1, len(pt.runs)/nameRunSize))
}

// findName returns the name of p from runs (and the names they point
// into), searching runs lo to hi for the first whose last port is >= p.
func findName(runs, names string, p portspec.Port, lo, hi int) string {
	n := len(runs) / nameRunSize
	for lo < hi { // first run whose last port is >= p
		m := int(uint(lo+hi) >> 1)
		if portspec.Port(be16(runs[m*nameRunSize+2:])) < p {
			lo = m + 1
		} else {
			hi = m
		}
	}
	if lo == n {
		return ""
	}
	r := runs[lo*nameRunSize:]
	if portspec.Port(be16(r)) > p {
		return ""
	}
	start := int(r[4])<<16 | int(r[5])<<8 | int(r[6])
	return names[start : start+int(r[7])]
}

func be16(s string) uint16 { return uint16(s[0])<<8 | uint16(s[1]) }
func be32(s string) uint32 {
	return uint32(s[0])<<24 | uint32(s[1])<<16 | uint32(s[2])<<8 | uint32(s[3])
}

// buildNameIndex encodes the primary names of r in the form indexName reads.
func buildNameIndex(r *Registry) ([]byte, error) {
	type run struct {
		lo, hi portspec.Port
		name   string
	}
	var names []byte
	at := make(map[string]int)
	out := []byte(nameIndexMagic)
	for proto := portspec.TCP; proto <= portspec.DCCP; proto++ {
		var runs []run
		for p := 0; p < 1<<16; p++ {
			n := r.Name(portspec.Port(p), proto)
			if n == "" {
				continue
			}
			if k := len(runs) - 1; k >= 0 && runs[k].name == n && int(runs[k].hi) == p-1 {
				runs[k].hi = portspec.Port(p)
				continue
			}
			runs = append(runs, run{portspec.Port(p), portspec.Port(p), n})
		}
		out = binary.BigEndian.AppendUint32(out, uint32(len(runs)))
		for _, rn := range runs {
			if len(rn.name) > 255 {
				return nil, fmt.Errorf("service name %q longer than 255 bytes", rn.name)
			}
			off, ok := at[rn.name]
			if !ok {
				off = len(names)
				at[rn.name] = off
				names = append(names, rn.name...)
			}
			if off >= 1<<24 {
				return nil, fmt.Errorf("service names exceed %d bytes", 1<<24)
			}
			out = binary.BigEndian.AppendUint16(out, uint16(rn.lo))
			out = binary.BigEndian.AppendUint16(out, uint16(rn.hi))
			out = append(out, byte(off>>16), byte(off>>8), byte(off), byte(len(rn.name)))
		}
	}
	return slices.Concat(out, names), nil
}
