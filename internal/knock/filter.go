package knock

import (
	"fmt"
	"slices"

	"golang.org/x/net/bpf"

	"portolan/internal/portspec"
)

// captureSnap is how much of a knock packet the AF_PACKET filter keeps,
// from its network header: what NFLOG copies too (an SPA datagram fits).
const captureSnap = 512

// SKF_AD_PKTTYPE and PACKET_HOST: a socket bound to every interface also
// sees the packets this host sends (PACKET_OUTGOING), broadcasts and, in
// promiscuous mode, other hosts' packets; knocks are addressed to us.
const (
	skfAdPkttype = 4
	packetHost   = 0
)

// captureFilter is the classic BPF program of the AF_PACKET capture, for
// a cooked (SOCK_DGRAM) socket: it passes incoming TCP and UDP packets to
// the watched ports (IPv4 first fragments or whole packets, IPv6 without
// extension headers), cut to captureSnap, and drops everything else in the
// kernel, as the doors' log rule picks what NFLOG sees.
func captureFilter(watch []DoorPort) ([]bpf.Instruction, error) {
	core, err := captureFilterCore(watch)
	if err != nil {
		return nil, err
	}
	return append([]bpf.Instruction{
		bpf.LoadExtension{Num: bpf.Extension(skfAdPkttype)},
		bpf.JumpIf{Cond: bpf.JumpEqual, Val: packetHost, SkipTrue: 1},
		bpf.RetConstant{Val: 0},
	}, core...), nil
}

// captureFilterCore is the filter without the packet-type test, which only
// the kernel runs (bpf.VM lacks the extension); tests run this part.
func captureFilterCore(watch []DoorPort) ([]bpf.Instruction, error) {
	type ins struct {
		i      bpf.Instruction
		jt, jf string // JumpIf targets; jt alone for Jump
		label  string
	}
	p := []ins{
		{i: bpf.LoadAbsolute{Off: 0, Size: 1}},
		{i: bpf.ALUOpConstant{Op: bpf.ALUOpShiftRight, Val: 4}},
		{i: bpf.JumpIf{Cond: bpf.JumpEqual, Val: 4}, jt: "v4", jf: "v6?"},
		{label: "v6?", i: bpf.JumpIf{Cond: bpf.JumpEqual, Val: 6}, jt: "v6", jf: "drop"},

		{label: "v4", i: bpf.LoadAbsolute{Off: 6, Size: 2}},
		{i: bpf.JumpIf{Cond: bpf.JumpBitsSet, Val: 0x1fff}, jt: "drop", jf: "v4proto"},
		{label: "v4proto", i: bpf.LoadMemShift{Off: 0}},
		{i: bpf.LoadAbsolute{Off: 9, Size: 1}},
		{i: bpf.JumpIf{Cond: bpf.JumpEqual, Val: 6}, jt: "tcp4", jf: "udp4?"},
		{label: "udp4?", i: bpf.JumpIf{Cond: bpf.JumpEqual, Val: 17}, jt: "udp4", jf: "drop"},
		{label: "tcp4", i: bpf.LoadIndirect{Off: 2, Size: 2}},
		{i: bpf.Jump{}, jt: "tcp"},
		{label: "udp4", i: bpf.LoadIndirect{Off: 2, Size: 2}},
		{i: bpf.Jump{}, jt: "udp"},

		{label: "v6", i: bpf.LoadAbsolute{Off: 6, Size: 1}},
		{i: bpf.JumpIf{Cond: bpf.JumpEqual, Val: 6}, jt: "tcp6", jf: "udp6?"},
		{label: "udp6?", i: bpf.JumpIf{Cond: bpf.JumpEqual, Val: 17}, jt: "udp6", jf: "drop"},
		{label: "tcp6", i: bpf.LoadAbsolute{Off: 40 + 2, Size: 2}},
		{i: bpf.Jump{}, jt: "tcp"},
		{label: "udp6", i: bpf.LoadAbsolute{Off: 40 + 2, Size: 2}},
		{i: bpf.Jump{}, jt: "udp"},
	}
	// The destination port is in A: compare it with the proto's ports.
	for _, proto := range []portspec.Proto{portspec.TCP, portspec.UDP} {
		label := proto.String()
		var ports []uint32
		for _, w := range watch {
			if w.Proto == proto && !slices.Contains(ports, uint32(w.Port)) {
				ports = append(ports, uint32(w.Port))
			}
		}
		if len(ports) == 0 {
			p = append(p, ins{label: label, i: bpf.Jump{}, jt: "drop"})
			continue
		}
		for i, port := range ports {
			x := ins{i: bpf.JumpIf{Cond: bpf.JumpEqual, Val: port}, jt: "accept", jf: "drop"}
			if i < len(ports)-1 {
				x.jf = fmt.Sprintf("%s%d", label, i+1)
			}
			if i == 0 {
				x.label = label
			} else {
				x.label = fmt.Sprintf("%s%d", label, i)
			}
			p = append(p, x)
		}
	}
	p = append(p, ins{label: "accept", i: bpf.RetConstant{Val: captureSnap}}, ins{label: "drop", i: bpf.RetConstant{Val: 0}})

	at := map[string]int{}
	for n, x := range p {
		if x.label != "" {
			at[x.label] = n
		}
	}
	out := make([]bpf.Instruction, len(p))
	for n, x := range p {
		switch j := x.i.(type) {
		case bpf.JumpIf:
			t, f := at[x.jt]-n-1, at[x.jf]-n-1
			if t > 255 || f > 255 {
				return nil, fmt.Errorf("bpf filter: %d watched ports are too many for a classic BPF jump", len(watch))
			}
			j.SkipTrue, j.SkipFalse = uint8(t), uint8(f)
			x.i = j
		case bpf.Jump:
			j.Skip = uint32(at[x.jt] - n - 1)
			x.i = j
		}
		out[n] = x.i
	}
	return out, nil
}
