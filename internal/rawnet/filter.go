package rawnet

import (
	"fmt"

	"golang.org/x/net/bpf"
)

// SnapLen is how much of a packet the filter keeps: the IP and TCP headers,
// or an ICMP error with the headers it quotes.
const SnapLen = 256

// skfAdPkttype is SKF_AD_PKTTYPE, the packet type (PACKET_OUTGOING: a
// packet we sent, seen again on a packet socket bound to all interfaces).
const (
	skfAdPkttype   = 4
	packetOutgoing = 4
)

// Filter is the classic BPF program for a cooked (SOCK_DGRAM) AF_PACKET
// socket: it passes incoming TCP segments to ports [lo, hi] (IPv4
// unfragmented, IPv6 without extension headers) and ICMP or ICMPv6
// destination unreachables, truncated to SnapLen, and drops everything
// else in the kernel, so a busy host costs the scanner nothing.
func Filter(lo, hi uint16) ([]bpf.Instruction, error) {
	if lo > hi {
		return nil, fmt.Errorf("bpf filter: port range %d-%d", lo, hi)
	}
	core := filterCore(lo, hi)
	prog := append([]bpf.Instruction{
		bpf.LoadExtension{Num: bpf.Extension(skfAdPkttype)},
		bpf.JumpIf{Cond: bpf.JumpEqual, Val: packetOutgoing, SkipTrue: uint8(len(core) - 1)}, // to the final drop
	}, core...)
	return prog, nil
}

// filterCore is the filter without the packet-type test, which only the
// kernel can run (bpf.VM lacks the extension); tests run this part.
func filterCore(lo, hi uint16) []bpf.Instruction {
	accept, drop := bpf.RetConstant{Val: SnapLen}, bpf.RetConstant{Val: 0}
	// The program, with its jump targets by label; the offsets are
	// resolved below so that no hand-counted skip goes stale.
	type ins struct {
		i      bpf.Instruction
		jt, jf string // labels for JumpIf/JumpIfX
		label  string
	}
	p := []ins{
		{i: bpf.LoadAbsolute{Off: 0, Size: 1}},
		{i: bpf.ALUOpConstant{Op: bpf.ALUOpShiftRight, Val: 4}},
		{i: bpf.JumpIf{Cond: bpf.JumpEqual, Val: 4}, jt: "v4", jf: "next"},
		{label: "next", i: bpf.JumpIf{Cond: bpf.JumpEqual, Val: 6}, jt: "v6", jf: "drop"},

		{label: "v4", i: bpf.LoadAbsolute{Off: 6, Size: 2}},
		{i: bpf.JumpIf{Cond: bpf.JumpBitsSet, Val: 0x1fff}, jt: "drop", jf: "v4proto"},
		{label: "v4proto", i: bpf.LoadAbsolute{Off: 9, Size: 1}},
		{i: bpf.LoadMemShift{Off: 0}},
		{i: bpf.JumpIf{Cond: bpf.JumpEqual, Val: 6}, jt: "tcp4", jf: "icmp4?"},
		{label: "icmp4?", i: bpf.JumpIf{Cond: bpf.JumpEqual, Val: 1}, jt: "icmp4", jf: "drop"},
		{label: "icmp4", i: bpf.LoadIndirect{Off: 0, Size: 1}},
		{i: bpf.JumpIf{Cond: bpf.JumpEqual, Val: ICMPUnreach}, jt: "accept", jf: "drop"},
		{label: "tcp4", i: bpf.LoadIndirect{Off: 2, Size: 2}},
		{i: bpf.JumpIf{Cond: bpf.JumpGreaterOrEqual, Val: uint32(lo)}, jt: "hi", jf: "drop"},

		{label: "v6", i: bpf.LoadAbsolute{Off: 6, Size: 1}},
		{i: bpf.JumpIf{Cond: bpf.JumpEqual, Val: 6}, jt: "tcp6", jf: "icmp6?"},
		{label: "icmp6?", i: bpf.JumpIf{Cond: bpf.JumpEqual, Val: 58}, jt: "icmp6", jf: "drop"},
		{label: "icmp6", i: bpf.LoadAbsolute{Off: ipv6Len, Size: 1}},
		{i: bpf.JumpIf{Cond: bpf.JumpEqual, Val: ICMP6Unreach}, jt: "accept", jf: "drop"},
		{label: "tcp6", i: bpf.LoadAbsolute{Off: ipv6Len + 2, Size: 2}},
		{i: bpf.JumpIf{Cond: bpf.JumpGreaterOrEqual, Val: uint32(lo)}, jt: "hi", jf: "drop"},

		{label: "hi", i: bpf.JumpIf{Cond: bpf.JumpGreaterThan, Val: uint32(hi)}, jt: "drop", jf: "accept"},
		{label: "accept", i: accept},
		{label: "drop", i: drop},
	}
	at := map[string]int{}
	for n, x := range p {
		if x.label != "" {
			at[x.label] = n
		}
	}
	out := make([]bpf.Instruction, len(p))
	for n, x := range p {
		if j, ok := x.i.(bpf.JumpIf); ok {
			j.SkipTrue = uint8(at[x.jt] - n - 1)
			j.SkipFalse = uint8(at[x.jf] - n - 1)
			x.i = j
		}
		out[n] = x.i
	}
	return out
}
