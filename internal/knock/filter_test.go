package knock

import (
	"encoding/binary"
	"testing"

	"golang.org/x/net/bpf"

	"portolan/internal/portspec"
)

// ip4 and ip6 build a packet from its network header: proto to dport,
// with an IPv4 fragment offset of frag.
func ip4(proto byte, dport uint16, frag uint16) []byte {
	b := make([]byte, 20+20)
	b[0] = 0x45
	binary.BigEndian.PutUint16(b[2:], uint16(len(b)))
	binary.BigEndian.PutUint16(b[6:], frag)
	b[9] = proto
	copy(b[12:], []byte{198, 18, 0, 2, 198, 18, 0, 1})
	binary.BigEndian.PutUint16(b[20:], 40000)
	binary.BigEndian.PutUint16(b[22:], dport)
	return b
}

func ip6(next byte, dport uint16) []byte {
	b := make([]byte, 40+20)
	b[0] = 0x60
	binary.BigEndian.PutUint16(b[4:], 20)
	b[6] = next
	binary.BigEndian.PutUint16(b[40:], 40000)
	binary.BigEndian.PutUint16(b[42:], dport)
	return b
}

func dp(proto portspec.Proto, port portspec.Port) DoorPort {
	return DoorPort{Proto: proto, Port: port}
}

func TestCaptureFilter(t *testing.T) {
	watch := []DoorPort{dp(portspec.TCP, 7000), dp(portspec.UDP, 8000), dp(portspec.TCP, 9000), dp(portspec.UDP, 62201), dp(portspec.TCP, 7000)}
	withOptions := ip4(6, 7000, 0)
	withOptions[0] = 0x46 // a 24-byte header: the ports move
	withOptions = append(withOptions[:20], append([]byte{1, 1, 1, 0}, withOptions[20:]...)...)
	tests := []struct {
		name  string
		watch []DoorPort
		pkt   []byte
		pass  bool
	}{
		{"tcp4 knock", watch, ip4(6, 7000, 0), true},
		{"tcp4 last port", watch, ip4(6, 9000, 0), true},
		{"udp4 knock", watch, ip4(17, 8000, 0), true},
		{"udp4 spa", watch, ip4(17, 62201, 0), true},
		{"tcp4 to a udp knock port", watch, ip4(6, 8000, 0), false},
		{"udp4 to a tcp knock port", watch, ip4(17, 7000, 0), false},
		{"tcp4 other port", watch, ip4(6, 22, 0), false},
		{"ipv4 options", watch, withOptions, true},
		{"later fragment", watch, ip4(6, 7000, 185), false},
		{"first fragment", watch, ip4(6, 7000, 0x2000), true},
		{"icmp", watch, ip4(1, 7000, 0), false},
		{"tcp6 knock", watch, ip6(6, 9000), true},
		{"udp6 spa", watch, ip6(17, 62201), true},
		{"tcp6 other port", watch, ip6(6, 22), false},
		{"ipv6 extension header", watch, ip6(0, 7000), false},
		{"no tcp ports", []DoorPort{dp(portspec.UDP, 62201)}, ip4(6, 62201, 0), false},
		{"no tcp ports, udp", []DoorPort{dp(portspec.UDP, 62201)}, ip4(17, 62201, 0), true},
		{"nothing watched", nil, ip4(17, 62201, 0), false},
		{"not ip", watch, []byte{0x20, 0, 0, 0}, false},
	}
	for _, tt := range tests {
		prog, err := captureFilterCore(tt.watch)
		if err != nil {
			t.Fatalf("%s: %v", tt.name, err)
		}
		vm, err := bpf.NewVM(prog)
		if err != nil {
			t.Fatalf("%s: bpf.NewVM: %v", tt.name, err)
		}
		n, err := vm.Run(tt.pkt)
		if err != nil {
			t.Fatalf("%s: run: %v", tt.name, err)
		}
		if got := n > 0; got != tt.pass {
			t.Errorf("%s: filter passes %v; want %v", tt.name, got, tt.pass)
		}
	}
	// The kernel's version assembles, with the packet-type test first.
	if _, err := captureFilter(watch); err != nil {
		t.Fatal(err)
	}
	if prog, _ := captureFilter(watch); len(prog) < 2 {
		t.Fatal("no packet-type test")
	} else if _, err := bpf.Assemble(prog); err != nil {
		t.Fatalf("assemble: %v", err)
	}
	many := make([]DoorPort, 300)
	for i := range many {
		many[i] = dp(portspec.TCP, portspec.Port(1000+i))
	}
	if _, err := captureFilter(many); err == nil {
		t.Error("captureFilter of 300 ports: no error")
	}
}
