package sockets

import (
	"testing"

	"portolan/internal/portspec"
)

// BenchmarkParseDiag parses a 32 KiB read of a dump (about 330 IPv4
// sockets with a cgroup attribute), as the table does for each read.
func BenchmarkParseDiag(b *testing.B) {
	var buf []byte
	for len(buf) < 32<<10-200 {
		buf = append(buf, msg(sockDiagByFamily, diagBody(IPv4, Established, attr(attrCgroupID, make([]byte, 8))))...)
	}
	dst := make([]Socket, 0, 1024)
	b.SetBytes(int64(len(buf)))
	b.ReportAllocs()
	for b.Loop() {
		out, _, err := parseDiag(buf, portspec.TCP, dst[:0])
		if err != nil || len(out) == 0 {
			b.Fatal(err)
		}
	}
}
