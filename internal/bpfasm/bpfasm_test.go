package bpfasm

import (
	"strings"
	"testing"

	"golang.org/x/net/bpf"
)

func TestAssemble(t *testing.T) {
	// A = first byte; 4 -> accept, else drop, through an unconditional jump.
	p := []Ins{
		{I: bpf.LoadAbsolute{Off: 0, Size: 1}},
		{I: bpf.JumpIf{Cond: bpf.JumpEqual, Val: 4}, True: "accept", False: "no"},
		{Label: "no", I: bpf.Jump{}, True: "drop"},
		{Label: "accept", I: bpf.RetConstant{Val: 100}},
		{Label: "drop", I: bpf.RetConstant{Val: 0}},
	}
	prog, err := Assemble(p)
	if err != nil {
		t.Fatal(err)
	}
	if j := prog[1].(bpf.JumpIf); j.SkipTrue != 1 || j.SkipFalse != 0 {
		t.Errorf("JumpIf skips %d/%d; want 1/0", j.SkipTrue, j.SkipFalse)
	}
	if j := prog[2].(bpf.Jump); j.Skip != 1 {
		t.Errorf("Jump skips %d; want 1", j.Skip)
	}
	vm, err := bpf.NewVM(prog)
	if err != nil {
		t.Fatal(err)
	}
	for _, tt := range []struct {
		pkt  byte
		want int
	}{{4, 100}, {6, 0}} {
		if n, err := vm.Run([]byte{tt.pkt}); err != nil || n != tt.want {
			t.Errorf("packet %d: %d, %v; want %d", tt.pkt, n, err, tt.want)
		}
	}
}

func TestAssembleErrors(t *testing.T) {
	ret := Ins{Label: "end", I: bpf.RetConstant{}}
	far := []Ins{{I: bpf.JumpIf{}, True: "end", False: "end"}}
	for range 256 {
		far = append(far, Ins{I: bpf.LoadConstant{}})
	}
	for _, tt := range []struct {
		name string
		p    []Ins
		want string
	}{
		{"unknown", []Ins{{I: bpf.JumpIf{}, True: "x", False: "end"}, ret}, `unknown label "x"`},
		{"back", []Ins{ret, {I: bpf.Jump{}, True: "end"}}, `jumps back to "end"`},
		{"duplicate", []Ins{ret, ret}, `label "end" at instructions 0 and 1`},
		{"too far", append(far, ret), "jumps 256 instructions"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			if _, err := Assemble(tt.p); err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("Assemble = %v; want an error with %q", err, tt.want)
			}
		})
	}
}

// TestIPHeader runs the shared prologue with a tail that returns what it
// found: 1000 + protocol*100 + X at v4, 6 at v6, 0 at drop.
func TestIPHeader(t *testing.T) {
	p := append(IPHeader("v4", "v6", "drop"),
		Ins{Label: "v4", I: bpf.ALUOpConstant{Op: bpf.ALUOpMul, Val: 100}},
		Ins{I: bpf.ALUOpX{Op: bpf.ALUOpAdd}},
		Ins{I: bpf.ALUOpConstant{Op: bpf.ALUOpAdd, Val: 1000}},
		Ins{I: bpf.RetA{}},
		Ins{Label: "v6", I: bpf.RetConstant{Val: 6}},
		Ins{Label: "drop", I: bpf.RetConstant{Val: 0}},
	)
	prog, err := Assemble(p)
	if err != nil {
		t.Fatal(err)
	}
	vm, err := bpf.NewVM(prog)
	if err != nil {
		t.Fatal(err)
	}
	v4 := func(ihl, flagsFrag uint16, proto byte) []byte {
		b := make([]byte, 60)
		b[0] = 0x40 | byte(ihl)
		b[6], b[7] = byte(flagsFrag>>8), byte(flagsFrag)
		b[9] = proto
		return b
	}
	for _, tt := range []struct {
		name string
		pkt  []byte
		want int
	}{
		{"IPv4 TCP", v4(5, 0, 6), 1000 + 600 + 20},
		{"IPv4 UDP with options", v4(6, 0, 17), 1000 + 1700 + 24},
		{"IPv4 don't-fragment set", v4(5, 0x4000, 6), 1000 + 600 + 20},
		{"IPv4 first fragment", v4(5, 0x2000, 6), 1000 + 600 + 20},
		{"IPv4 later fragment", v4(5, 0x2001, 6), 0},
		{"IPv6", append([]byte{0x60}, make([]byte, 59)...), 6},
		{"version 5", append([]byte{0x50}, make([]byte, 59)...), 0},
	} {
		if n, err := vm.Run(tt.pkt); err != nil || n != tt.want {
			t.Errorf("%s: %d, %v; want %d", tt.name, n, err, tt.want)
		}
	}
}
