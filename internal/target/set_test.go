package target

import (
	"math"
	"net/netip"
	"testing"
)

func r(first, last string) Range {
	return Range{netip.MustParseAddr(first), netip.MustParseAddr(last)}
}

func TestRange(t *testing.T) {
	tests := []struct {
		name       string
		r          Range
		wantString string
		wantLen    uint64
		wantBig    string
		wantPrefix string // "" when not a prefix
	}{
		{"single v4", r("198.18.0.1", "198.18.0.1"), "198.18.0.1", 1, "1", "198.18.0.1/32"},
		{"prefix v4", r("198.18.0.0", "198.18.0.255"), "198.18.0.0/24", 256, "256", "198.18.0.0/24"},
		{"unaligned v4", r("198.18.0.1", "198.18.0.2"), "198.18.0.1-2", 2, "2", ""},
		{"short v4", r("198.18.0.0", "198.18.0.2"), "198.18.0.0-2", 3, "3", ""},
		{"full v4", r("198.18.0.255", "198.18.1.0"), "198.18.0.255-198.18.1.0", 2, "2", ""},
		{"all v4", r("0.0.0.0", "255.255.255.255"), "0.0.0.0/0", 1 << 32, "4294967296", "0.0.0.0/0"},
		{"short v6", r("fd00::10", "fd00::20"), "fd00::10-20", 17, "17", ""},
		{"full v6", r("fd00::ffff", "fd00::1:0"), "fd00::ffff-fd00::1:0", 2, "2", ""},
		{"prefix /64", r("fd00::", "fd00::ffff:ffff:ffff:ffff"), "fd00::/64", math.MaxUint64, "18446744073709551616", "fd00::/64"},
		{"prefix /65", r("fd00::", "fd00::7fff:ffff:ffff:ffff"), "fd00::/65", 1 << 63, "9223372036854775808", "fd00::/65"},
		{"almost /64", r("fd00::", "fd00::ffff:ffff:ffff:fffe"), "fd00::-fd00::ffff:ffff:ffff:fffe", math.MaxUint64, "18446744073709551615", ""},
		{"all v6", r("::", "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff"), "::/0", math.MaxUint64, "340282366920938463463374607431768211456", "::/0"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := tt.r.String(); got != tt.wantString {
				t.Errorf("%v.String() = %q; want %q", tt.r, got, tt.wantString)
			}
			if got := tt.r.Len(); got != tt.wantLen {
				t.Errorf("%v.Len() = %d; want %d", tt.r, got, tt.wantLen)
			}
			if got := tt.r.BigLen().String(); got != tt.wantBig {
				t.Errorf("%v.BigLen() = %s; want %s", tt.r, got, tt.wantBig)
			}
			p, ok := tt.r.Prefix()
			if got := map[bool]string{true: p.String(), false: ""}[ok]; got != tt.wantPrefix {
				t.Errorf("%v.Prefix() = %q; want %q", tt.r, got, tt.wantPrefix)
			}
			if ok && RangeOf(p) != tt.r {
				t.Errorf("RangeOf(%v) = %v; want %v", p, RangeOf(p), tt.r)
			}
		})
	}
}

func TestSet(t *testing.T) {
	s, err := NewSet(r("fd00::8", "fd00::9"), r("198.18.0.10", "198.18.0.12"), r("198.18.0.1", "198.18.0.1"),
		r("198.18.0.11", "198.18.0.13"), r("::ffff:198.18.0.2", "::ffff:198.18.0.2"))
	if err != nil {
		t.Fatal(err)
	}
	if got, want := s.String(), "198.18.0.1-2,198.18.0.10-13,fd00::8/127"; got != want {
		t.Errorf("NewSet(...) = %q; want %q", got, want)
	}
	checkSet(t, s)
	want := []string{"198.18.0.1", "198.18.0.2", "198.18.0.10", "198.18.0.11", "198.18.0.12", "198.18.0.13", "fd00::8", "fd00::9"}
	if s.Len() != uint64(len(want)) {
		t.Fatalf("Len() = %d; want %d", s.Len(), len(want))
	}
	for i, w := range want {
		a := netip.MustParseAddr(w)
		if got := s.At(uint64(i)); got != a {
			t.Errorf("At(%d) = %v; want %v", i, got, a)
		}
		if got, ok := s.Index(a); !ok || got != uint64(i) {
			t.Errorf("Index(%v) = %d, %v; want %d, true", a, got, ok, i)
		}
	}
	for _, a := range []string{"198.18.0.0", "198.18.0.3", "198.18.0.9", "198.18.0.14", "fd00::7", "fd00::a", "::", "255.255.255.255", "::ffff:198.18.0.3"} {
		if s.Contains(netip.MustParseAddr(a)) {
			t.Errorf("Contains(%s) = true; want false", a)
		}
		if _, ok := s.Index(netip.MustParseAddr(a)); ok {
			t.Errorf("Index(%s) found; want not", a)
		}
	}
	if !s.Contains(netip.MustParseAddr("::ffff:198.18.0.12")) || !s.Contains(netip.MustParseAddr("fd00::9%eth0")) {
		t.Error("Contains does not unmap or drop zones")
	}
	if s.Contains(netip.Addr{}) {
		t.Error("Contains(zero Addr) = true")
	}

	for _, bad := range []Range{{}, r("198.18.0.2", "198.18.0.1"), r("198.18.0.1", "fd00::1")} {
		if _, err := NewSet(bad); err == nil {
			t.Errorf("NewSet(%v) = nil error; want one", bad)
		}
	}

	var empty *Set
	if empty.Len() != 0 || empty.String() != "" || empty.Contains(netip.MustParseAddr("198.18.0.1")) || empty.BigLen().Sign() != 0 {
		t.Error("nil *Set is not empty")
	}
}

func TestSetHuge(t *testing.T) {
	s, err := NewSet(r("198.18.0.0", "198.18.0.255"), RangeOf(netip.MustParsePrefix("fd00::/64")), RangeOf(netip.MustParsePrefix("fe00::/64")))
	if err != nil {
		t.Fatal(err)
	}
	if s.Len() != math.MaxUint64 {
		t.Errorf("Len() = %d; want saturation at MaxUint64", s.Len())
	}
	if got, want := s.BigLen().String(), "36893488147419103488"; got != want {
		t.Errorf("BigLen() = %s; want %s", got, want)
	}
	if got, want := s.At(256+1000), netip.MustParseAddr("fd00::3e8"); got != want {
		t.Errorf("At(1256) = %v; want %v", got, want)
	}
	if i, ok := s.Index(netip.MustParseAddr("fd00::3e8")); !ok || i != 1256 {
		t.Errorf("Index(fd00::3e8) = %d, %v; want 1256, true", i, ok)
	}
	// Addresses past the uint64 positions are in the set but have no index.
	if _, ok := s.Index(netip.MustParseAddr("fe00::1")); ok || !s.Contains(netip.MustParseAddr("fe00::1")) {
		t.Error("Index(fe00::1) has a position beyond uint64, or Contains is false")
	}
}

func TestSetAtPanics(t *testing.T) {
	s, _ := NewSet(r("198.18.0.1", "198.18.0.2"))
	defer func() {
		if recover() == nil {
			t.Error("At(2) on a set of 2 did not panic")
		}
	}()
	s.At(2)
}

func TestBlocklist(t *testing.T) {
	bl := Blocklist()
	bl[0].Name = "changed"
	if Blocklist()[0].Name == "changed" {
		t.Error("Blocklist returns the package's own slice")
	}
	for _, sp := range Blocklist() {
		if sp.Prefix != sp.Prefix.Masked() {
			t.Errorf("blocklist entry %v is not canonical", sp.Prefix)
		}
	}
	for _, ok := range []string{"198.18.0.1", "198.19.255.255", "127.0.0.1", "10.0.0.1", "192.168.1.1", "::1", "fd00::1", "fe80::1", "192.0.1.255", "192.0.3.0", "2001:db9::"} {
		if sp, found := specialOf(netip.MustParseAddr(ok)); found {
			t.Errorf("%s is blocked as %s (%v); want allowed", ok, sp.Name, sp.Prefix)
		}
	}
}
