package rawnet

import (
	"fmt"

	"golang.org/x/net/bpf"

	"portolan/internal/bpfasm"
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
	core, err := filterCore(lo, hi)
	if err != nil {
		return nil, err
	}
	prog := append([]bpf.Instruction{
		bpf.LoadExtension{Num: bpf.Extension(skfAdPkttype)},
		bpf.JumpIf{Cond: bpf.JumpEqual, Val: packetOutgoing, SkipTrue: uint8(len(core) - 1)}, // to the final drop
	}, core...)
	return prog, nil
}

// filterCore is the filter without the packet-type test, which only the
// kernel can run (bpf.VM lacks the extension); tests run this part.
func filterCore(lo, hi uint16) ([]bpf.Instruction, error) {
	accept, drop := bpf.RetConstant{Val: SnapLen}, bpf.RetConstant{Val: 0}
	p := bpfasm.IPHeader("v4", "v6", "drop")
	return bpfasm.Assemble(append(p, []bpfasm.Ins{
		{Label: "v4", I: bpf.JumpIf{Cond: bpf.JumpEqual, Val: 6}, True: "tcp4", False: "icmp4?"},
		{Label: "icmp4?", I: bpf.JumpIf{Cond: bpf.JumpEqual, Val: 1}, True: "icmp4", False: "drop"},
		{Label: "icmp4", I: bpf.LoadIndirect{Off: 0, Size: 1}},
		{I: bpf.JumpIf{Cond: bpf.JumpEqual, Val: ICMPUnreach}, True: "accept", False: "drop"},
		{Label: "tcp4", I: bpf.LoadIndirect{Off: 2, Size: 2}},
		{I: bpf.JumpIf{Cond: bpf.JumpGreaterOrEqual, Val: uint32(lo)}, True: "hi", False: "drop"},

		{Label: "v6", I: bpf.LoadAbsolute{Off: 6, Size: 1}},
		{I: bpf.JumpIf{Cond: bpf.JumpEqual, Val: 6}, True: "tcp6", False: "icmp6?"},
		{Label: "icmp6?", I: bpf.JumpIf{Cond: bpf.JumpEqual, Val: 58}, True: "icmp6", False: "drop"},
		{Label: "icmp6", I: bpf.LoadAbsolute{Off: ipv6Len, Size: 1}},
		{I: bpf.JumpIf{Cond: bpf.JumpEqual, Val: ICMP6Unreach}, True: "accept", False: "drop"},
		{Label: "tcp6", I: bpf.LoadAbsolute{Off: ipv6Len + 2, Size: 2}},
		{I: bpf.JumpIf{Cond: bpf.JumpGreaterOrEqual, Val: uint32(lo)}, True: "hi", False: "drop"},

		{Label: "hi", I: bpf.JumpIf{Cond: bpf.JumpGreaterThan, Val: uint32(hi)}, True: "drop", False: "accept"},
		{Label: "accept", I: accept},
		{Label: "drop", I: drop},
	}...))
}
