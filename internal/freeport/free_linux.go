package freeport

import (
	"os"

	"portolan/internal/procstat"
	"portolan/internal/sockets"
)

// readKernelPortPolicy reads the ephemeral and reserved port ranges of this
// network namespace. What it cannot read falls back to the Linux defaults:
// a missing /proc must not stop a search, only make it less careful.
func readKernelPortPolicy() *kernelPortPolicy {
	k := &kernelPortPolicy{ephLo: 32768, ephHi: 60999}
	if b, err := os.ReadFile("/proc/sys/net/ipv4/ip_local_port_range"); err == nil {
		if lo, hi, err := sockets.ParseLocalPortRange(string(b)); err == nil {
			k.ephLo, k.ephHi = lo, hi
		}
	}
	if b, err := os.ReadFile("/proc/sys/net/ipv4/ip_local_reserved_ports"); err == nil {
		if s, err := sockets.ParseReservedPorts(string(b)); err == nil {
			k.reserved = s
		}
	}
	return k
}

// holderStart returns the start time of process pid (clock ticks after
// boot), which tells a live holder from a new process that got its pid.
// Zero means unknown.
func holderStart(pid int) uint64 {
	st, err := procstat.Read(pid)
	if err != nil {
		return 0
	}
	return st.StartTicks
}
