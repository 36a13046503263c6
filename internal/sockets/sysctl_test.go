package sockets

import (
	"strings"
	"testing"

	"portolan/internal/portspec"
)

func TestParseLocalPortRange(t *testing.T) {
	tests := []struct {
		in     string
		lo, hi portspec.Port
		err    bool
	}{
		{"32768\t60999\n", 32768, 60999, false},
		{"1024 65535", 1024, 65535, false},
		{"5 5", 5, 5, false},
		{"", 0, 0, true},
		{"32768", 0, 0, true},
		{"60999 32768", 0, 0, true},
		{"1 70000", 0, 0, true},
		{"a b", 0, 0, true},
		{"1 2 3", 0, 0, true},
	}
	for _, tt := range tests {
		lo, hi, err := ParseLocalPortRange(tt.in)
		if (err != nil) != tt.err || lo != tt.lo || hi != tt.hi {
			t.Errorf("ParseLocalPortRange(%q) = %d, %d, %v; want %d, %d, error %v", tt.in, lo, hi, err, tt.lo, tt.hi, tt.err)
		}
	}
}

func FuzzParseLocalPortRange(f *testing.F) {
	for _, s := range []string{"32768\t60999\n", "1024 65535", "", "60999 32768", "1 70000"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		lo, hi, err := ParseLocalPortRange(s)
		if err == nil && lo > hi {
			t.Errorf("ParseLocalPortRange(%q) = %d > %d", s, lo, hi)
		}
	})
}

func TestParseReservedPorts(t *testing.T) {
	for _, tt := range []struct {
		in   string
		want string
	}{
		{"", ""},
		{"\n", ""},
		{"8080\n", "T:8080"},
		{"8080,9000-9010\n", "T:8080,9000-9010"},
	} {
		s, err := ParseReservedPorts(tt.in)
		if err != nil || s.String() != tt.want {
			t.Errorf("ParseReservedPorts(%q) = %v, %v; want %q", tt.in, s, err, tt.want)
		}
	}
	if _, err := ParseReservedPorts("9010-9000"); err == nil {
		t.Errorf("ParseReservedPorts(%q) = nil error; want one", "9010-9000")
	}
}

var sysctlIntCases = []struct {
	in   string
	want int
	ok   bool
}{
	{"1024\n", 1024, true},
	{"0", 0, true},
	{" 2 \n", 2, true},
	{"", 0, false},
	{"10 20\n", 0, false},
	{"x", 0, false},
}

func TestParseSysctlInt(t *testing.T) {
	for _, c := range sysctlIntCases {
		got, err := ParseSysctlInt("ip_unprivileged_port_start", c.in)
		if (err == nil) != c.ok || got != c.want {
			t.Errorf("ParseSysctlInt(%q) = %d, %v; want %d ok=%v", c.in, got, err, c.want, c.ok)
		}
		if err != nil && !strings.Contains(err.Error(), "ip_unprivileged_port_start") {
			t.Errorf("ParseSysctlInt(%q) error %q does not name the sysctl", c.in, err)
		}
	}
}

func FuzzParseSysctlInt(f *testing.F) {
	for _, c := range sysctlIntCases {
		f.Add(c.in)
	}
	f.Fuzz(func(t *testing.T, s string) {
		if _, err := ParseSysctlInt("x", s); err != nil && !strings.HasPrefix(err.Error(), "x ") {
			t.Errorf("ParseSysctlInt(%q) error %q does not name the input", s, err)
		}
	})
}
