package registry

import (
	"bytes"
	"flag"
	"math/rand/v2"
	"os"
	"testing"

	"portolan/internal/portspec"
)

var updateNames = flag.Bool("update-names", false, "rewrite names.idx from the embedded CSV")

// TestNameIndex keeps names.idx in step with the CSV: it must be exactly
// what buildNameIndex makes of the parsed registry, and PortName must answer
// as Name for every port and protocol.
func TestNameIndex(t *testing.T) {
	want, err := buildNameIndex(Default())
	if err != nil {
		t.Fatal(err)
	}
	if *updateNames {
		if err := os.WriteFile("names.idx", want, 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	if !bytes.Equal([]byte(nameIndex), want) {
		t.Fatalf("names.idx (%d bytes) does not match the embedded CSV (%d bytes): run go generate ./internal/registry", len(nameIndex), len(want))
	}
	r := Default()
	for proto := portspec.Proto(0); proto <= portspec.DCCP+1; proto++ {
		for p := 0; p < 1<<16; p++ {
			if got, want := PortName(portspec.Port(p), proto), r.Name(portspec.Port(p), proto); got != want {
				t.Fatalf("PortName(%d, %v) = %q; want %q", p, proto, got, want)
			}
		}
	}
}

func TestPortName(t *testing.T) {
	tests := []struct {
		name  string
		port  portspec.Port
		proto portspec.Proto
		want  string
	}{
		{"ssh", 22, portspec.TCP, "ssh"},
		{"http", 80, portspec.TCP, "http"},
		{"domain udp", 53, portspec.UDP, "domain"},
		{"nfs primary", 2049, portspec.TCP, "nfs"},
		{"any proto", 443, 0, "https"},
		{"port zero", 0, portspec.TCP, ""},
		{"dynamic", 60000, portspec.TCP, ""},
		{"last port", 65535, portspec.UDP, ""},
		{"bad proto", 80, portspec.DCCP + 1, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := PortName(tt.port, tt.proto); got != tt.want {
				t.Errorf("PortName(%d, %v) = %q; want %q", tt.port, tt.proto, got, tt.want)
			}
		})
	}
}

func TestIndexNameShort(t *testing.T) {
	for _, idx := range []string{"", "PN", nameIndexMagic + "\x00\x00", nameIndexMagic + "\x00\x00\x00\x09"} {
		if _, err := parseNameTable(idx); err == nil {
			t.Errorf("parseNameTable(%q): no error", idx)
		}
	}
	// No runs at all: every port is nameless.
	tb, err := parseNameTable(nameIndexMagic + "\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00")
	if err != nil {
		t.Fatal(err)
	}
	if got := tb.name(80, portspec.TCP); got != "" {
		t.Errorf("an empty index names port 80 %q; want empty", got)
	}
}

func BenchmarkPortName(b *testing.B) {
	for i := 0; b.Loop(); i++ {
		PortName(portspec.Port(i), portspec.TCP)
	}
}

// BenchmarkPortNameRandom names ports in a scan's order: random.
func BenchmarkPortNameRandom(b *testing.B) {
	ports := rand.New(rand.NewPCG(1, 2)).Perm(65536)
	for i := 0; b.Loop(); i++ {
		PortName(portspec.Port(ports[i&0xffff]), portspec.TCP)
	}
}
