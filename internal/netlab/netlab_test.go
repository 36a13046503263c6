package netlab

import (
	"net"
	"net/netip"
	"os/exec"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

var parseNameCases = []struct {
	name      string
	in        string
	pid       int
	start     uint64
	wantMatch bool
}{
	{"ours", "pl-1234-98765-0-scanner", 1234, 98765, true},
	{"host with dashes", "pl-7-1-12-my-host-2", 7, 1, true},
	{"other prefix", "pk-target", 0, 0, false},
	{"no host", "pl-1234-98765-0-", 0, 0, false},
	{"too few fields", "pl-1234-98765", 0, 0, false},
	{"pid zero", "pl-0-5-0-a", 0, 0, false},
	{"leading zero", "pl-01-5-0-a", 0, 0, false},
	{"sign", "pl-+1-5-0-a", 0, 0, false},
	{"pid too big", "pl-99999999999-5-0-a", 0, 0, false},
	{"bad seq", "pl-1-5-x-a", 0, 0, false},
	{"empty", "", 0, 0, false},
}

func TestParseName(t *testing.T) {
	for _, tc := range parseNameCases {
		t.Run(tc.name, func(t *testing.T) {
			pid, start, ok := parseName(tc.in)
			if ok != tc.wantMatch || pid != tc.pid || start != tc.start {
				t.Errorf("parseName(%q) = %d, %d, %v; want %d, %d, %v", tc.in, pid, start, ok, tc.pid, tc.start, tc.wantMatch)
			}
		})
	}
}

func FuzzParseName(f *testing.F) {
	for _, tc := range parseNameCases {
		f.Add(tc.in)
	}
	f.Fuzz(func(t *testing.T, in string) {
		pid, start, ok := parseName(in)
		if !ok {
			return
		}
		// Whatever parses must be a name labPrefix makes.
		rest := strings.SplitN(in, "-", 5)
		if len(rest) != 5 {
			t.Fatalf("parseName(%q) ok with %d dash-separated fields", in, len(rest))
		}
		if p := labPrefix(pid, start, 0); !strings.HasPrefix(p, strings.Join(rest[:3], "-")+"-") {
			t.Errorf("parseName(%q) = %d, %d; labPrefix gives %q", in, pid, start, p)
		}
	})
}

func TestLabPrefixRoundTrip(t *testing.T) {
	name := labPrefix(4242, 171717, 3) + "target"
	if name != "pl-4242-171717-3-target" {
		t.Errorf("labPrefix(4242, 171717, 3) + \"target\" = %q", name)
	}
	pid, start, ok := parseName(name)
	if !ok || pid != 4242 || start != 171717 {
		t.Errorf("parseName(%q) = %d, %d, %v; want 4242, 171717, true", name, pid, start, ok)
	}
}

func TestLinkPlan(t *testing.T) {
	tests := []struct {
		n    int
		want Link
	}{
		{0, Link{
			AMAC: net.HardwareAddr{2, 0x70, 0x6c, 0, 0, 1}, BMAC: net.HardwareAddr{2, 0x70, 0x6c, 0, 0, 2},
			A4: netip.MustParseAddr("198.18.0.1"), B4: netip.MustParseAddr("198.18.0.2"),
			A6: netip.MustParseAddr("fd00::1"), B6: netip.MustParseAddr("fd00::2"),
			Net4: netip.MustParsePrefix("198.18.0.0/24"), Net6: netip.MustParsePrefix("fd00::/64"),
		}},
		{255, Link{
			AMAC: net.HardwareAddr{2, 0x70, 0x6c, 0, 255, 1}, BMAC: net.HardwareAddr{2, 0x70, 0x6c, 0, 255, 2},
			A4: netip.MustParseAddr("198.18.255.1"), B4: netip.MustParseAddr("198.18.255.2"),
			A6: netip.MustParseAddr("fd00:0:0:ff::1"), B6: netip.MustParseAddr("fd00:0:0:ff::2"),
			Net4: netip.MustParsePrefix("198.18.255.0/24"), Net6: netip.MustParsePrefix("fd00:0:0:ff::/64"),
		}},
		{MaxLinks - 1, Link{
			AMAC: net.HardwareAddr{2, 0x70, 0x6c, 1, 255, 1}, BMAC: net.HardwareAddr{2, 0x70, 0x6c, 1, 255, 2},
			A4: netip.MustParseAddr("198.19.255.1"), B4: netip.MustParseAddr("198.19.255.2"),
			A6: netip.MustParseAddr("fd00:0:0:1ff::1"), B6: netip.MustParseAddr("fd00:0:0:1ff::2"),
			Net4: netip.MustParsePrefix("198.19.255.0/24"), Net6: netip.MustParsePrefix("fd00:0:0:1ff::/64"),
		}},
	}
	cmpAddrs := cmp.Comparer(func(a, b netip.Addr) bool { return a == b })
	cmpPrefixes := cmp.Comparer(func(a, b netip.Prefix) bool { return a == b })
	for _, tc := range tests {
		got := linkPlan(tc.n)
		if d := cmp.Diff(tc.want, got, cmpAddrs, cmpPrefixes); d != "" {
			t.Errorf("linkPlan(%d) mismatch (-want +got):\n%s", tc.n, d)
		}
	}
	// Every address of every link stays inside the lab's ranges.
	for n := range MaxLinks {
		lk := linkPlan(n)
		for _, p := range []netip.Prefix{lk.Net4, lk.Net6, netip.PrefixFrom(lk.A4, 32), netip.PrefixFrom(lk.B6, 128)} {
			if !allowed(p) {
				t.Fatalf("linkPlan(%d) uses %s, outside the lab ranges", n, p)
			}
		}
	}
}

func TestAllowed(t *testing.T) {
	tests := []struct {
		in   string
		want bool
	}{
		{"198.18.0.7/24", true},
		{"198.19.255.254/32", true},
		{"198.18.0.0/15", true},
		{"198.18.0.1/8", false}, // the on-link route would cover 198.0.0.0/8
		{"198.20.0.1/24", false},
		{"10.0.0.1/24", false},
		{"0.0.0.0/0", false},
		{"fd00::1/64", true},
		{"fdff:1::1/128", true},
		{"fc00::1/64", false},
		{"2001:db8::1/64", false},
		{"::/0", false},
		{"127.0.0.2/8", true},
		{"::1/128", true},
	}
	for _, tc := range tests {
		if got := allowed(netip.MustParsePrefix(tc.in)); got != tc.want {
			t.Errorf("allowed(%s) = %v; want %v", tc.in, got, tc.want)
		}
	}
}

func TestCheckLiteral(t *testing.T) {
	tests := []struct {
		network, addr string
		emptyOK       bool
		wantErr       bool
	}{
		{"tcp", "198.18.0.2:80", false, false},
		{"udp6", "[fd00::2]:53", false, false},
		{"tcp", "[fe80::1%eth0]:22", false, false},
		{"tcp", ":0", true, false},
		{"tcp", ":0", false, true},
		{"tcp", "localhost:80", false, true},
		{"tcp", "example.test:80", true, true},
		{"tcp", "198.18.0.2", false, true},
		{"unix", "@abstract", false, false},
	}
	for _, tc := range tests {
		err := checkLiteral(tc.network, tc.addr, tc.emptyOK)
		if (err != nil) != tc.wantErr {
			t.Errorf("checkLiteral(%q, %q, %v) = %v; want error %v", tc.network, tc.addr, tc.emptyOK, err, tc.wantErr)
		}
	}
}

func TestCheckHostName(t *testing.T) {
	tests := []struct {
		in      string
		wantErr string
	}{
		{"scanner", ""},
		{"target-2_b", ""},
		{"", "want 1 to 32 characters"},
		{strings.Repeat("x", 33), "want 1 to 32 characters"},
		{"a/b", `character '/' at column 2`},
		{"a b", `character ' ' at column 2`},
	}
	for _, tc := range tests {
		err := checkHostName(tc.in)
		if tc.wantErr == "" && err != nil || tc.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tc.wantErr)) {
			t.Errorf("checkHostName(%q) = %v; want error containing %q", tc.in, err, tc.wantErr)
		}
	}
}

// TestProductDoesNotImport backs the choice to keep NewT in this package:
// the product binary must link neither netlab nor testing.
func TestProductDoesNotImport(t *testing.T) {
	if _, err := exec.LookPath("go"); err != nil {
		t.Skip("needs the go command")
	}
	out, err := exec.Command("go", "list", "-e", "-deps", "portolan/cmd/portolan").Output()
	if err != nil {
		t.Fatalf("go list -deps portolan/cmd/portolan: %v", err)
	}
	for _, p := range strings.Fields(string(out)) {
		if p == "portolan/internal/netlab" || p == "testing" {
			t.Errorf("cmd/portolan depends on %s", p)
		}
	}
}

func TestHasGroup(t *testing.T) {
	igmp6 := []byte(`1    lo              ff020000000000000000000000000001     1 0000000C 0
10000 eth0            ff0200000000000000000001ff000001     2 00000004 0
2    eth1            ff0200000000000000000001ff000102     1 00000004 0
`)
	tests := []struct {
		dev, group string
		want       bool
	}{
		{"eth0", "ff0200000000000000000001ff000001", true},
		{"eth1", "ff0200000000000000000001ff000102", true},
		{"eth1", "ff0200000000000000000001ff000001", false},
		{"eth2", "ff0200000000000000000001ff000001", false},
	}
	for _, tc := range tests {
		if got := hasGroup(igmp6, tc.dev, tc.group); got != tc.want {
			t.Errorf("hasGroup(%s, %s) = %v; want %v", tc.dev, tc.group, got, tc.want)
		}
	}
}
