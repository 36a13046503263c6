//go:build !linux

package freeport

// readKernelPortPolicy assumes the IANA dynamic range (49152-65535) as the
// ephemeral range, which macOS, the BSDs and Windows use by default.
func readKernelPortPolicy() *kernelPortPolicy {
	return &kernelPortPolicy{ephLo: 49152, ephHi: 65535}
}

// holderStart is unknown off Linux: a pid alone identifies a holder.
func holderStart(pid int) uint64 { return 0 }
