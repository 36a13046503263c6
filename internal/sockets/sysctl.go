package sockets

// The kernel's port policy, as its sysctl files say it.

import (
	"fmt"
	"strconv"
	"strings"

	"portolan/internal/portspec"
)

// ParseLocalPortRange reads net.ipv4.ip_local_port_range ("32768\t60999\n").
func ParseLocalPortRange(s string) (lo, hi portspec.Port, err error) {
	f := strings.Fields(s)
	if len(f) != 2 {
		return 0, 0, fmt.Errorf("ip_local_port_range %q: want two numbers, got %d fields", s, len(f))
	}
	var v [2]portspec.Port
	for i, w := range f {
		n, err := strconv.ParseUint(w, 10, 16)
		if err != nil {
			return 0, 0, fmt.Errorf("ip_local_port_range %q: field %d %q: not a port number", s, i+1, w)
		}
		v[i] = portspec.Port(n)
	}
	if v[0] > v[1] {
		return 0, 0, fmt.Errorf("ip_local_port_range %q: first port %d above last %d", s, v[0], v[1])
	}
	return v[0], v[1], nil
}

// ParseReservedPorts reads net.ipv4.ip_local_reserved_ports ("8080,9000-9010"
// or empty).
func ParseReservedPorts(s string) (*portspec.Set, error) {
	s = strings.TrimSpace(s)
	if s == "" {
		return nil, nil
	}
	set, err := portspec.Parse(s)
	if err != nil {
		return nil, fmt.Errorf("ip_local_reserved_ports: %w", err)
	}
	return set, nil
}

// ParseSysctlInt reads a sysctl file holding one integer.
func ParseSysctlInt(name, s string) (int, error) {
	t := strings.TrimSpace(s)
	n, err := strconv.Atoi(t)
	if err != nil {
		return 0, fmt.Errorf("%s %q: not an integer", name, s)
	}
	return n, nil
}
