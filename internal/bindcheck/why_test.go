package bindcheck

import (
	"net/netip"
	"slices"
	"strings"
	"syscall"
	"testing"

	"portolan/internal/owners"
	"portolan/internal/portspec"
	"portolan/internal/sockets"
)

func TestOverlapOf(t *testing.T) {
	a := netip.MustParseAddr
	cases := []struct {
		name       string
		ours       netip.Addr
		oursV6only bool
		theirs     netip.Addr
		theirsV6o  bool
		want       overlap
	}{
		{"same v4", a("127.0.0.1"), false, a("127.0.0.1"), false, sameAddr},
		{"other v4", a("127.0.0.1"), false, a("127.0.0.2"), false, noOverlap},
		{"v4 wildcard over specific", a("0.0.0.0"), false, a("127.0.0.1"), false, wildcardOverlap},
		{"v4 specific under wildcard", a("127.0.0.1"), false, a("0.0.0.0"), false, wildcardOverlap},
		{"both v4 wildcards", a("0.0.0.0"), false, a("0.0.0.0"), false, sameAddr},
		{"dual-stack over v4 wildcard", a("::"), false, a("0.0.0.0"), false, dualStackOverlap},
		{"dual-stack over v4 specific", a("::"), false, a("127.0.0.1"), false, dualStackOverlap},
		{"v4 under dual-stack", a("127.0.0.1"), false, a("::"), false, dualStackOverlap},
		{"v6only leaves v4", a("::"), true, a("0.0.0.0"), false, noOverlap},
		{"v4 beside v6only", a("0.0.0.0"), false, a("::"), true, noOverlap},
		{"both dual-stack", a("::"), false, a("::"), false, sameAddr},
		{"dual-stack and v6only", a("::"), false, a("::"), true, sameAddr},
		{"v6 wildcard over ::1", a("::"), true, a("::1"), false, wildcardOverlap},
		{"::1 under dual-stack", a("::1"), false, a("::"), false, wildcardOverlap},
		{"::1 and v4 wildcard", a("::1"), false, a("0.0.0.0"), false, noOverlap},
		{"mapped is v4", a("::ffff:127.0.0.1"), false, a("127.0.0.1"), false, sameAddr},
		{"mapped under v4 wildcard", a("::ffff:127.0.0.1"), false, a("0.0.0.0"), false, wildcardOverlap},
		{"zone ignored", a("fe80::1%eth0"), false, a("fe80::1"), false, sameAddr},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			got := overlapOf(boundOf(c.ours, c.oursV6only), boundOf(c.theirs, c.theirsV6o))
			if got != c.want {
				t.Errorf("overlapOf(%v v6only=%v, %v v6only=%v) = %v; want %v", c.ours, c.oursV6only, c.theirs, c.theirsV6o, got, c.want)
			}
		})
	}
}

func TestOverlappingOrder(t *testing.T) {
	ap := netip.MustParseAddrPort
	o := &observation{local: ap("0.0.0.0:80"), proto: portspec.TCP, socks: []sockets.Socket{
		{Proto: portspec.TCP, Family: sockets.IPv4, State: sockets.TimeWait, Local: ap("127.0.0.1:80"), Remote: ap("127.0.0.1:5000")},
		{Proto: portspec.TCP, Family: sockets.IPv4, State: sockets.Established, Local: ap("127.0.0.1:80"), Remote: ap("127.0.0.1:5001")},
		{Proto: portspec.TCP, Family: sockets.IPv6, State: sockets.Listen, Local: ap("[::]:80"), V6Only: true},
		{Proto: portspec.TCP, Family: sockets.IPv4, State: sockets.Listen, Local: ap("127.0.0.1:80")},
		{Proto: portspec.TCP, Family: sockets.IPv4, State: sockets.SynRecv, Local: ap("127.0.0.1:80"), Remote: ap("127.0.0.1:5002")},
		{Proto: portspec.UDP, Family: sockets.IPv4, State: sockets.Close, Local: ap("0.0.0.0:80")},
		{Proto: portspec.TCP, Family: sockets.IPv4, State: sockets.Listen, Local: ap("0.0.0.0:81")},
	}}
	in, out := overlapping(o)
	var got []sockets.State
	for _, c := range in {
		got = append(got, c.s.State)
	}
	if want := []sockets.State{sockets.Listen, sockets.Established, sockets.TimeWait}; !slices.Equal(got, want) {
		t.Errorf("overlapping states = %v; want %v", got, want)
	}
	if len(out) != 2 { // the v6only listener and the pending connection
		t.Errorf("not in the way: %d sockets; want 2 (v6only [::], SYN_RECV)", len(out))
	}
}

func TestJudgeExplainsWithoutKernel(t *testing.T) {
	ap := netip.MustParseAddrPort
	holder := &owners.Process{PID: 4242, Comm: "nginx", User: "www-data", Cgroup: &owners.Cgroup{Path: "/system.slice/nginx.service", Unit: "nginx.service"}}
	o := &observation{
		local: ap("0.0.0.0:80"), proto: portspec.TCP, step: "bind", err: syscall.EADDRINUSE,
		as: Identity{UID: 0, User: "root", CapNetBindService: true}, unprivMin: 1024,
		socks: []sockets.Socket{{Proto: portspec.TCP, Family: sockets.IPv4, State: sockets.Listen, Local: ap("0.0.0.0:80"), Inode: 7, Procs: []*owners.Process{holder}}},
	}
	v := judge(o)
	if v.OK || v.Rule != RuleInUse {
		t.Fatalf("judge = ok %v rule %v; want in-use", v.OK, v.Rule)
	}
	if want := "held by pid 4242 (nginx, user www-data, unit nginx.service)"; !strings.Contains(v.Explanation, want) {
		t.Errorf("explanation %q lacks %q", v.Explanation, want)
	}
	if !slices.Contains(v.Fixes, "stop pid 4242 (nginx, unit nginx.service): systemctl stop nginx.service") {
		t.Errorf("fixes %q lack the systemctl stop", v.Fixes)
	}
}

func TestRuleNames(t *testing.T) {
	seen := map[string]bool{}
	for r := RuleNone; r <= RuleOther; r++ {
		n := r.String()
		if n == "" || strings.HasPrefix(n, "rule(") || seen[n] {
			t.Errorf("Rule(%d).String() = %q: missing or repeated", r, n)
		}
		seen[n] = true
	}
}

func TestNearCandidates(t *testing.T) {
	cases := []struct {
		name      string
		p         portspec.Port
		floor, n  int
		wantFirst []portspec.Port
	}{
		{"around", 8080, 1, 4, []portspec.Port{8081, 8079, 8082, 8078}},
		{"below floor", 80, 1024, 3, []portspec.Port{1024, 1025, 1026}},
		{"top edge", 65535, 1, 3, []portspec.Port{65534, 65533, 65532}},
		{"bottom edge", 1, 1, 3, []portspec.Port{2, 3, 4}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			if got := nearCandidates(c.p, c.floor, c.n); !slices.Equal(got, c.wantFirst) {
				t.Errorf("nearCandidates(%d, %d, %d) = %v; want %v", c.p, c.floor, c.n, got, c.wantFirst)
			}
		})
	}
}

var capEffCases = []struct {
	name    string
	in      string
	want    uint64
	wantErr string
}{
	{"root", "Name:\tx\nCapInh:\t0000000000000000\nCapEff:\t000001ffffffffff\n", 0x1ffffffffff, ""},
	{"none", "CapEff:\t0000000000000000\n", 0, ""},
	{"bind only", "CapPrm:\t0\nCapEff:\t0000000000000400\n", 1 << capNetBindService, ""},
	{"missing", "Name:\tx\n", 0, "no CapEff line"},
	{"garbage", "Uid:\t0\nCapEff:\tzz\n", 0, `line 2: CapEff "zz"`},
}

func TestParseCapEff(t *testing.T) {
	for _, c := range capEffCases {
		t.Run(c.name, func(t *testing.T) {
			got, err := parseCapEff([]byte(c.in))
			if c.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), c.wantErr) {
					t.Errorf("parseCapEff(%q) = %v, %v; want error with %q", c.in, got, err, c.wantErr)
				}
				return
			}
			if err != nil || got != c.want {
				t.Errorf("parseCapEff(%q) = %#x, %v; want %#x", c.in, got, err, c.want)
			}
		})
	}
}

func FuzzParseCapEff(f *testing.F) {
	for _, c := range capEffCases {
		f.Add(c.in)
	}
	f.Fuzz(func(t *testing.T, s string) {
		if _, err := parseCapEff([]byte(s)); err != nil && !strings.Contains(err.Error(), "CapEff") {
			t.Errorf("parseCapEff(%q) error %q does not name the field", s, err)
		}
	})
}
