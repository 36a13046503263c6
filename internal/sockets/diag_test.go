package sockets

import (
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"

	"portolan/internal/portspec"
)

// capturedSocket is what testdata/diag-want.json says a captured reply
// holds: the fields a test can predict about the sockets it made.
type capturedSocket struct {
	Proto  string
	Family string
	State  string
	Local  netip.AddrPort
	Remote netip.AddrPort
	V6Only bool
	UID    uint32
	Inode  uint32
	Cookie uint64 // 0 for listeners: see listenerCookies
}

func captured(s *Socket) capturedSocket {
	c := capturedSocket{Proto: s.Proto.String(), Family: s.Family.String(), State: s.State.String(),
		Local: s.Local, Remote: s.Remote, V6Only: s.V6Only, UID: s.UID, Inode: s.Inode, Cookie: s.Cookie}
	if s.State == Listen {
		c.Cookie = 0
	}
	return c
}

func readCaptures(t testing.TB) map[string][]byte {
	t.Helper()
	files, _ := filepath.Glob("testdata/diag-*.bin")
	if len(files) == 0 {
		t.Fatal("no testdata/diag-*.bin captures")
	}
	out := make(map[string][]byte)
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		out[f] = b
	}
	return out
}

// TestParseDiagCaptured parses replies captured from Linux 6.18 about
// sockets a test made, and finds exactly those sockets.
func TestParseDiagCaptured(t *testing.T) {
	var want []capturedSocket
	b, err := os.ReadFile("testdata/diag-want.json")
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(b, &want); err != nil {
		t.Fatal(err)
	}
	var got []capturedSocket
	for name, reply := range readCaptures(t) {
		proto := portspec.TCP
		if strings.Contains(name, "udp") {
			proto = portspec.UDP
		}
		socks, done, err := parseDiag(reply, proto, nil)
		if err != nil || !done {
			t.Fatalf("parseDiag(%s) = done %v, err %v; want done, no error", name, done, err)
		}
		for i := range socks {
			got = append(got, captured(&socks[i]))
		}
	}
	less := func(a, b capturedSocket) bool {
		if a.Local != b.Local {
			return a.Local.Compare(b.Local) < 0
		}
		if a.Proto != b.Proto {
			return a.Proto < b.Proto
		}
		return a.Remote.Compare(b.Remote) < 0
	}
	if d := cmp.Diff(want, got, cmpopts.SortSlices(less), cmpopts.EquateComparable(netip.AddrPort{})); d != "" {
		t.Errorf("parsed captures differ from the sockets made (-made +parsed):\n%s", d)
	}
}

// msg builds a netlink message of type typ around body.
func msg(typ uint16, body []byte) []byte {
	b := make([]byte, nlmsgHdrLen+align4(len(body)))
	ne.PutUint32(b, uint32(nlmsgHdrLen+len(body)))
	ne.PutUint16(b[4:], typ)
	copy(b[nlmsgHdrLen:], body)
	return b
}

// diagBody is an inet_diag_msg for a TCP socket in state st on IPv4 with
// local port 80, followed by attrs.
func diagBody(fam Family, st State, attrs ...[]byte) []byte {
	m := make([]byte, diagMsgLen)
	m[0], m[1] = uint8(fam), uint8(st)
	binary.BigEndian.PutUint16(m[4:], 80)
	copy(m[8:], []byte{127, 0, 0, 1})
	ne.PutUint32(m[44:], ^uint32(0))
	ne.PutUint32(m[48:], ^uint32(0))
	ne.PutUint32(m[64:], 1000)
	ne.PutUint32(m[68:], 4242)
	for _, a := range attrs {
		m = append(m, a...)
	}
	return m
}

func attr(typ uint16, data []byte) []byte {
	a := make([]byte, align4(4+len(data)))
	ne.PutUint16(a, uint16(4+len(data)))
	ne.PutUint16(a[2:], typ)
	copy(a[4:], data)
	return a
}

func le32(v int32) []byte { b := make([]byte, 4); ne.PutUint32(b, uint32(v)); return b }

var parseCases = []struct {
	name    string
	in      []byte
	n       int  // sockets parsed
	done    bool // end of dump seen
	errText string
}{
	{"one socket then done", slices.Concat(msg(sockDiagByFamily, diagBody(IPv4, Listen)), msg(nlmsgDone, le32(0))), 1, true, ""},
	{"v6only attribute", msg(sockDiagByFamily, diagBody(IPv6, Listen, attr(attrSKV6Only, []byte{1}))), 1, false, ""},
	{"cgroup id", msg(sockDiagByFamily, diagBody(IPv4, Established, attr(attrCgroupID, make([]byte, 8)))), 1, false, ""},
	{"unknown attribute skipped", msg(sockDiagByFamily, diagBody(IPv4, Listen, attr(99, []byte{1, 2, 3}))), 1, false, ""},
	{"empty", nil, 0, false, ""},
	{"done without payload", msg(nlmsgDone, nil), 0, true, ""},
	{"kernel error", msg(nlmsgError, le32(-22)), 0, true, "*"},
	{"error without code", msg(nlmsgError, nil), 0, false, "at byte 0: error message without an error code"},
	{"short header", []byte{1, 2, 3}, 0, false, "at byte 0: 3 bytes left"},
	{"length below header", func() []byte { b := msg(nlmsgDone, nil); ne.PutUint32(b, 8); return b }(), 0, false, "message length 8 outside 16..16"},
	{"length past end", func() []byte { b := msg(nlmsgDone, nil); ne.PutUint32(b, 64); return b }(), 0, false, "message length 64 outside 16..16"},
	{"short inet_diag_msg", msg(sockDiagByFamily, make([]byte, 20)), 0, false, "at byte 16: inet_diag_msg of 20 bytes, want 72"},
	{"bad family", msg(sockDiagByFamily, diagBody(7, Listen)), 0, false, "at byte 16: address family 7"},
	{"attribute too long", msg(sockDiagByFamily, diagBody(IPv4, Listen, []byte{40, 0, 11, 0})), 0, false, "at byte 88: attribute 11 of length 40 outside 4..4"},
	{"attribute stub", msg(sockDiagByFamily, diagBody(IPv4, Listen, []byte{4, 0})), 0, false, "at byte 88: 2 trailing bytes"},
	{"empty v6only", msg(sockDiagByFamily, diagBody(IPv6, Listen, attr(attrSKV6Only, nil))), 0, false, "empty INET_DIAG_SKV6ONLY"},
	{"short cgroup id", msg(sockDiagByFamily, diagBody(IPv6, Listen, attr(attrCgroupID, []byte{1}))), 0, false, "INET_DIAG_CGROUP_ID of 1 bytes"},
	{"second message bad", slices.Concat(msg(sockDiagByFamily, diagBody(IPv4, Listen)), []byte{0, 0}), 1, false, "at byte 88: 2 bytes left"},
}

func TestParseDiag(t *testing.T) {
	for _, tc := range parseCases {
		t.Run(tc.name, func(t *testing.T) {
			got, done, err := parseDiag(tc.in, portspec.TCP, nil)
			if len(got) != tc.n || done != tc.done {
				t.Errorf("parseDiag(%x) = %d sockets, done %v; want %d, done %v", tc.in, len(got), done, tc.n, tc.done)
			}
			switch {
			case tc.errText == "" && err != nil:
				t.Errorf("parseDiag(%x) error %v; want none", tc.in, err)
			case tc.errText == "*" && err == nil:
				t.Errorf("parseDiag(%x) no error; want the kernel's", tc.in)
			case tc.errText != "" && tc.errText != "*" && (err == nil || !strings.Contains(err.Error(), tc.errText)):
				t.Errorf("parseDiag(%x) error %v; want one containing %q", tc.in, err, tc.errText)
			}
			var de *DiagError
			if err != nil && tc.errText != "*" && !errors.As(err, &de) {
				t.Errorf("parseDiag error %T; want *DiagError", err)
			}
		})
	}
}

func TestParseDiagFields(t *testing.T) {
	in := msg(sockDiagByFamily, diagBody(IPv6, Listen, attr(attrSKV6Only, []byte{1}), attr(attrCgroupID, []byte{7, 0, 0, 0, 0, 0, 0, 0})))
	got, _, err := parseDiag(in, portspec.UDP, nil)
	if err != nil {
		t.Fatal(err)
	}
	var a [16]byte
	copy(a[:], []byte{127, 0, 0, 1})
	want := Socket{Proto: portspec.UDP, Family: IPv6, State: Listen, Local: netip.AddrPortFrom(netip.AddrFrom16(a), 80),
		Remote: netip.AddrPortFrom(netip.IPv6Unspecified(), 0), V6Only: true, UID: 1000, Inode: 4242, CgroupID: 7}
	if d := cmp.Diff([]Socket{want}, got, cmpopts.EquateComparable(netip.AddrPort{})); d != "" {
		t.Errorf("parseDiag fields (-want +got):\n%s", d)
	}
}

func FuzzParseDiag(f *testing.F) {
	for _, tc := range parseCases {
		f.Add(tc.in)
	}
	for _, b := range readCaptures(f) {
		f.Add(b)
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		socks, _, err := parseDiag(b, portspec.TCP, nil)
		if n := countDiag(b); err == nil && n != len(socks) || n < len(socks) {
			t.Fatalf("countDiag(%x) = %d; parseDiag found %d sockets (err %v)", b, n, len(socks), err)
		}
		for _, s := range socks {
			if s.Family == IPv4 && !s.Local.Addr().Is4() || s.Family == IPv6 && !s.Local.Addr().Is6() {
				t.Fatalf("parseDiag(%x): %v socket with local address %v", b, s.Family, s.Local)
			}
		}
	})
}

// The kernel's bytecode checker and interpreter (net/ipv4/inet_diag.c,
// inet_diag_bc_audit and inet_diag_bc_run), transcribed so that programs
// can be checked on every platform; TestKernelFilters runs them on Linux.

func validCC(bc []byte, cc int) bool {
	for l := len(bc); l >= 0; {
		if cc > l {
			return false
		}
		if cc == l {
			return true
		}
		yes := int(bc[len(bc)-l+1])
		if yes < 4 || yes&3 != 0 {
			return false
		}
		l -= yes
	}
	return false
}

func bcAudit(bc []byte) error {
	for l := len(bc); l > 0; {
		op := bc[len(bc)-l:]
		if l < 4 {
			return errors.New("truncated op")
		}
		code, yes, no := op[0], int(op[1]), int(ne.Uint16(op[2:]))
		minLen := 4
		switch code {
		case bcSCond, bcDCond:
			if l < 12 {
				return errors.New("short hostcond")
			}
			alen := map[byte]int{0: 0, 2: 4, 10: 16}
			n, ok := alen[op[4]]
			if !ok {
				return errors.New("hostcond family")
			}
			minLen += 8 + n
			if l < minLen || int(op[5]) > 8*n {
				return errors.New("hostcond length")
			}
		case bcSGE, bcSLE, bcDGE, bcDLE, bcSEQ, bcDEQ:
			if l < 8 {
				return errors.New("short port op")
			}
			minLen += 4
		case bcJmp, 0:
		default:
			return errors.New("unknown op")
		}
		if code != 0 {
			if no < minLen || no > l+4 || no&3 != 0 {
				return errors.New("bad no")
			}
			if no < l && !validCC(bc, l-no) {
				return errors.New("no not on the yes chain")
			}
		}
		if yes < minLen || yes > l+4 || yes&3 != 0 {
			return errors.New("bad yes")
		}
		l -= yes
	}
	return nil
}

type bcEntry struct {
	sport, dport uint16
	saddr, daddr netip.Addr
}

func bcMatchAddr(op []byte, a netip.Addr) bool {
	fam, bits := op[4], int(op[5])
	var p netip.Prefix
	switch {
	case fam == uint8(IPv4) && a.Is4In6():
		a = a.Unmap()
		fallthrough
	case fam == uint8(IPv4) && a.Is4():
		p = netip.PrefixFrom(netip.AddrFrom4([4]byte(op[12:16])), bits)
	case fam == uint8(IPv6) && a.Is6():
		p = netip.PrefixFrom(netip.AddrFrom16([16]byte(op[12:28])), bits)
	default:
		return false
	}
	return p.Contains(a)
}

func bcRun(bc []byte, e bcEntry) bool {
	l := len(bc)
	for l > 0 {
		op := bc[len(bc)-l:]
		yes := true
		port := func() uint16 { return ne.Uint16(op[6:]) }
		switch op[0] {
		case bcJmp:
			yes = false
		case bcSEQ:
			yes = e.sport == port()
		case bcSGE:
			yes = e.sport >= port()
		case bcSLE:
			yes = e.sport <= port()
		case bcDEQ:
			yes = e.dport == port()
		case bcDGE:
			yes = e.dport >= port()
		case bcDLE:
			yes = e.dport <= port()
		case bcSCond:
			yes = bcMatchAddr(op, e.saddr)
		case bcDCond:
			yes = bcMatchAddr(op, e.daddr)
		}
		if yes {
			l -= int(op[1])
		} else {
			l -= int(ne.Uint16(op[2:]))
		}
	}
	return l == 0
}

func TestCompileFilter(t *testing.T) {
	r := func(lo, hi int) PortRange { return PortRange{portspec.Port(lo), portspec.Port(hi)} }
	var many []PortRange
	for p := 1000; p < 1000+2*200; p += 2 {
		many = append(many, r(p, p))
	}
	tests := []struct {
		name  string
		q     Query
		empty bool // no program at all
	}{
		{"nothing", Query{}, true},
		{"every port", Query{Ports: []PortRange{r(0, 65535)}}, true},
		{"one port", Query{Ports: []PortRange{r(8080, 8080)}}, false},
		{"range", Query{Ports: []PortRange{r(8000, 8100)}}, false},
		{"open ranges", Query{Ports: []PortRange{r(0, 100), r(60000, 65535)}}, false},
		{"list and ranges", Query{Ports: []PortRange{r(22, 22), r(80, 90), r(443, 443), r(8000, 8100)}}, false},
		{"200 ports: jumps past 255 bytes", Query{Ports: many}, false},
		{"remote ports", Query{RemotePorts: []PortRange{r(5432, 5432), r(6379, 6380)}}, false},
		{"local and remote", Query{Ports: []PortRange{r(80, 80), r(443, 443)}, RemotePorts: []PortRange{r(1024, 65535)}}, false},
		{"local address v4", Query{Local: netip.MustParsePrefix("127.0.0.0/8")}, false},
		{"local address v6", Query{Local: netip.MustParsePrefix("::1/128")}, false},
		{"everything", Query{Ports: []PortRange{r(80, 80), r(8000, 8100)}, RemotePorts: []PortRange{r(1, 1023)},
			Local: netip.MustParsePrefix("127.0.0.1/32"), Remote: netip.MustParsePrefix("10.0.0.0/8")}, false},
		{"too many ranges: none in the kernel", Query{Ports: make([]PortRange, maxKernelRanges+1)}, true},
	}
	sports := []uint16{0, 1, 22, 79, 80, 81, 90, 91, 100, 101, 443, 1000, 1002, 1003, 1398, 1399, 1400, 5432, 6379, 6380, 6381, 7999, 8000, 8050, 8080, 8100, 8101, 59999, 60000, 65535}
	addrs := []netip.Addr{netip.MustParseAddr("127.0.0.1"), netip.MustParseAddr("127.1.2.3"), netip.MustParseAddr("10.1.1.1"),
		netip.MustParseAddr("192.0.2.1"), netip.MustParseAddr("::1"), netip.MustParseAddr("::ffff:127.0.0.1"), netip.MustParseAddr("::ffff:10.0.0.1"), netip.MustParseAddr("2001:db8::1")}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			bc := compileFilter(&tc.q)
			if tc.empty != (len(bc) == 0) {
				t.Fatalf("compileFilter(%+v) = %d bytes; want empty %v", tc.q, len(bc), tc.empty)
			}
			if len(bc) == 0 {
				return
			}
			if err := bcAudit(bc); err != nil {
				t.Fatalf("compileFilter(%+v): the kernel would refuse the program: %v\n%x", tc.q, err, bc)
			}
			for _, sp := range sports {
				for _, dp := range []uint16{0, 22, 5432, 6380, 40000} {
					for _, sa := range addrs {
						for _, da := range []netip.Addr{addrs[2], addrs[0], addrs[6]} {
							if sa.Is4() != da.Is4() {
								continue
							}
							e := bcEntry{sp, dp, sa, da}
							want := inRanges(tc.q.Ports, sp) && inRanges(tc.q.RemotePorts, dp) && inPrefix(tc.q.Local, sa) && inPrefix(tc.q.Remote, da)
							if got := bcRun(bc, e); got != want {
								t.Errorf("program for %+v on %+v = %v; want %v", tc.q, e, got, want)
							}
						}
					}
				}
			}
		})
	}
}

func TestRangesOf(t *testing.T) {
	for _, tc := range []struct {
		spec string
		want []PortRange
	}{
		{"80", []PortRange{{80, 80}}},
		{"80,81,82,443", []PortRange{{80, 82}, {443, 443}}},
		{"0-10,65535", []PortRange{{0, 10}, {65535, 65535}}},
		{"U:53", nil},
	} {
		set, err := portspec.Parse(tc.spec)
		if err != nil {
			t.Fatal(err)
		}
		if got := RangesOf(set, portspec.TCP); !slices.Equal(got, tc.want) {
			t.Errorf("RangesOf(%q, tcp) = %v; want %v", tc.spec, got, tc.want)
		}
	}
}

var sockstatCases = []struct {
	name   string
	v4, v6 string
	proto  portspec.Proto
	want   int
}{
	{"both", "sockets: used 20051\nTCP: inuse 11590 orphan 0 tw 4 alloc 19936 mem 68\nUDP: inuse 7 mem 0\n", "TCP6: inuse 0\nUDP6: inuse 3\n", 0, 19936 + 4 + 7 + 3},
	{"tcp", "TCP: inuse 1 orphan 0 tw 2 alloc 3 mem 4\nUDP: inuse 5 mem 6\n", "", portspec.TCP, 5},
	{"udp", "TCP: inuse 1 orphan 0 tw 2 alloc 3 mem 4\nUDP: inuse 5 mem 6\n", "UDP6: inuse 1\n", portspec.UDP, 6},
	{"missing", "", "", 0, 0},
	{"damaged", "TCP: alloc x tw -5 alloc\n", "", 0, 0},
}

func TestSizeHint(t *testing.T) {
	for _, tc := range sockstatCases {
		if got := sizeHint([]byte(tc.v4), []byte(tc.v6), tc.proto); got != tc.want {
			t.Errorf("%s: sizeHint(%q, %q, %v) = %d; want %d", tc.name, tc.v4, tc.v6, tc.proto, got, tc.want)
		}
	}
}

func FuzzSizeHint(f *testing.F) {
	for _, tc := range sockstatCases {
		f.Add(tc.v4, tc.v6)
	}
	f.Fuzz(func(t *testing.T, v4, v6 string) {
		if n := sizeHint([]byte(v4), []byte(v6), 0); n < 0 || n > 1<<20 {
			t.Fatalf("sizeHint(%q, %q) = %d", v4, v6, n)
		}
	})
}

func TestPlanDumps(t *testing.T) {
	type plan struct {
		proto  string
		fam    string
		states uint32
		ports  string // the local port range of the program, if any
	}
	summary := func(reqs []dumpReq) []plan {
		var out []plan
		for _, r := range reqs {
			p := plan{r.proto.String(), r.fam.String(), r.states, ""}
			if len(r.bc) == 8 {
				p.ports = fmt.Sprintf("op %d %d", r.bc[0], ne.Uint16(r.bc[6:]))
			}
			out = append(out, p)
		}
		return out
	}
	all := AllStates.mask()
	listen := States(Listen).mask()
	for _, tc := range []struct {
		name string
		q    Query
		want []plan
	}{
		{"listening tcp4", Query{Proto: portspec.TCP, Family: IPv4, States: States(Listen)},
			[]plan{{"tcp", "ipv4", listen, ""}}},
		{"every state: bound sockets in the same dump, UDP last", Query{States: AllStates},
			[]plan{{"tcp", "ipv4", all, ""}, {"tcp", "ipv6", all, ""}, {"udp", "ipv4", all, ""}, {"udp", "ipv6", all, ""}}},
		{"a port filter", Query{Proto: portspec.TCP, Family: IPv4, States: States(Listen), Ports: []PortRange{{8080, 8080}}},
			[]plan{{"tcp", "ipv4", listen, "op 11 8080"}}},
		{"unconn only: no separate bound dump", Query{Proto: portspec.TCP, Family: IPv4, States: States(Close)},
			[]plan{{"tcp", "ipv4", States(Close).mask(), ""}}},
		{"an IPv6 address filter skips IPv4", Query{Proto: portspec.UDP, Local: netip.MustParsePrefix("::1/128")},
			[]plan{{"udp", "ipv6", ^uint32(0), ""}}},
	} {
		if d := cmp.Diff(tc.want, summary(planDumps(&tc.q)), cmp.AllowUnexported(plan{})); d != "" {
			t.Errorf("%s: planDumps(%+v) (-want +got):\n%s", tc.name, tc.q, d)
		}
	}
}
