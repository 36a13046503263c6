// Package bpfasm assembles classic BPF programs whose jumps name labels
// instead of counting instructions, so that no hand-counted skip goes
// stale when a program changes (the packet filters of the SYN scanner and
// of knockd's AF_PACKET capture).
package bpfasm

import (
	"fmt"

	"golang.org/x/net/bpf"
)

// Ins is one instruction. Label names it as a jump target; True and False
// name the targets of a bpf.JumpIf (True alone for a bpf.Jump).
type Ins struct {
	Label       string
	I           bpf.Instruction
	True, False string
}

// Assemble resolves the labels into skips. Classic BPF jumps only
// forward, a conditional one by at most 255 instructions: a label that is
// missing, behind, or too far is an error naming it.
func Assemble(p []Ins) ([]bpf.Instruction, error) {
	at := make(map[string]int, len(p))
	for n, x := range p {
		if x.Label == "" {
			continue
		}
		if _, dup := at[x.Label]; dup {
			return nil, fmt.Errorf("bpf program: label %q at instructions %d and %d", x.Label, at[x.Label], n)
		}
		at[x.Label] = n
	}
	skip := func(n int, label string, limit int) (int, error) {
		to, ok := at[label]
		switch {
		case !ok:
			return 0, fmt.Errorf("bpf program: instruction %d jumps to unknown label %q", n, label)
		case to <= n:
			return 0, fmt.Errorf("bpf program: instruction %d jumps back to %q (%d)", n, label, to)
		case to-n-1 > limit:
			return 0, fmt.Errorf("bpf program: instruction %d jumps %d instructions to %q; at most %d", n, to-n-1, label, limit)
		}
		return to - n - 1, nil
	}
	out := make([]bpf.Instruction, len(p))
	for n, x := range p {
		switch j := x.I.(type) {
		case bpf.JumpIf:
			t, err := skip(n, x.True, 255)
			if err != nil {
				return nil, err
			}
			f, err := skip(n, x.False, 255)
			if err != nil {
				return nil, err
			}
			j.SkipTrue, j.SkipFalse = uint8(t), uint8(f)
			x.I = j
		case bpf.Jump:
			s, err := skip(n, x.True, 1<<31)
			if err != nil {
				return nil, err
			}
			j.Skip = uint32(s)
			x.I = j
		}
		out[n] = x.I
	}
	return out, nil
}

// IPHeader is the start of a filter on packets that begin with their IP
// header (a cooked AF_PACKET socket), which the SYN scanner's and knockd's
// captures share. It jumps to v6 for IPv6, to drop for anything that is not
// IP or is an IPv4 fragment other than the first (it has no ports), and
// otherwise goes on at v4 with X = the IPv4 header's length and A = its
// protocol. v4 is the label of the instruction that follows.
func IPHeader(v4, v6, drop string) []Ins {
	return []Ins{
		{I: bpf.LoadAbsolute{Off: 0, Size: 1}},
		{I: bpf.ALUOpConstant{Op: bpf.ALUOpShiftRight, Val: 4}},
		{I: bpf.JumpIf{Cond: bpf.JumpEqual, Val: 4}, True: v4 + ".frag", False: v4 + ".v6?"},
		{Label: v4 + ".v6?", I: bpf.JumpIf{Cond: bpf.JumpEqual, Val: 6}, True: v6, False: drop},
		{Label: v4 + ".frag", I: bpf.LoadAbsolute{Off: 6, Size: 2}},
		{I: bpf.JumpIf{Cond: bpf.JumpBitsSet, Val: 0x1fff}, True: drop, False: v4 + ".len"},
		{Label: v4 + ".len", I: bpf.LoadMemShift{Off: 0}},
		{I: bpf.LoadAbsolute{Off: 9, Size: 1}},
	}
}
