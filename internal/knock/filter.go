package knock

import (
	"fmt"
	"slices"

	"golang.org/x/net/bpf"

	"portolan/internal/bpfasm"
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
	p := append(bpfasm.IPHeader("v4", "v6", "drop"), []bpfasm.Ins{
		{Label: "v4", I: bpf.JumpIf{Cond: bpf.JumpEqual, Val: 6}, True: "tcp4", False: "udp4?"},
		{Label: "udp4?", I: bpf.JumpIf{Cond: bpf.JumpEqual, Val: 17}, True: "udp4", False: "drop"},
		{Label: "tcp4", I: bpf.LoadIndirect{Off: 2, Size: 2}},
		{I: bpf.Jump{}, True: "tcp"},
		{Label: "udp4", I: bpf.LoadIndirect{Off: 2, Size: 2}},
		{I: bpf.Jump{}, True: "udp"},

		{Label: "v6", I: bpf.LoadAbsolute{Off: 6, Size: 1}},
		{I: bpf.JumpIf{Cond: bpf.JumpEqual, Val: 6}, True: "tcp6", False: "udp6?"},
		{Label: "udp6?", I: bpf.JumpIf{Cond: bpf.JumpEqual, Val: 17}, True: "udp6", False: "drop"},
		{Label: "tcp6", I: bpf.LoadAbsolute{Off: 40 + 2, Size: 2}},
		{I: bpf.Jump{}, True: "tcp"},
		{Label: "udp6", I: bpf.LoadAbsolute{Off: 40 + 2, Size: 2}},
		{I: bpf.Jump{}, True: "udp"},
	}...)
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
			p = append(p, bpfasm.Ins{Label: label, I: bpf.Jump{}, True: "drop"})
			continue
		}
		for i, port := range ports {
			x := bpfasm.Ins{I: bpf.JumpIf{Cond: bpf.JumpEqual, Val: port}, True: "accept", False: "drop"}
			if i < len(ports)-1 {
				x.False = fmt.Sprintf("%s%d", label, i+1)
			}
			if i == 0 {
				x.Label = label
			} else {
				x.Label = fmt.Sprintf("%s%d", label, i)
			}
			p = append(p, x)
		}
	}
	p = append(p, bpfasm.Ins{Label: "accept", I: bpf.RetConstant{Val: captureSnap}}, bpfasm.Ins{Label: "drop", I: bpf.RetConstant{Val: 0}})

	prog, err := bpfasm.Assemble(p)
	if err != nil {
		// Only the jumps over many ports can be too long for classic BPF.
		return nil, fmt.Errorf("bpf filter for %d watched ports: %w", len(watch), err)
	}
	return prog, nil
}
