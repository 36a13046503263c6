package registry

import (
	"strings"
	"testing"

	"portolan/internal/portspec"
)

// These measure the costs a command pays: Parse runs once per process that
// touches the registry, Name once per socket or scan result.

func BenchmarkParse(b *testing.B) {
	b.ReportAllocs()
	b.SetBytes(int64(len(ianaCSV)))
	for b.Loop() {
		if _, err := Parse(strings.NewReader(ianaCSV)); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkName(b *testing.B) {
	r := Default()
	b.ReportAllocs()
	p := 0
	for b.Loop() {
		_ = r.Name(portspec.Port(p), portspec.TCP)
		p = (p + 1) & 0xffff
	}
}

func BenchmarkByPort(b *testing.B) {
	r := Default()
	b.ReportAllocs()
	for b.Loop() {
		_ = r.ByPort(80, 0)
	}
}

func BenchmarkByName(b *testing.B) {
	r := Default()
	b.ReportAllocs()
	for b.Loop() {
		_ = r.ByName("http*")
	}
}

func BenchmarkSearch(b *testing.B) {
	r := Default()
	b.ReportAllocs()
	for b.Loop() {
		_ = r.Search("kerberos")
	}
}
