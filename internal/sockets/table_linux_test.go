package sockets

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
	"golang.org/x/sys/unix"

	"portolan/internal/portspec"
	"portolan/internal/testenv"
)

// fixture is a set of real sockets on loopback that the tests look for:
// listeners of both families (IPv6 bound to ::1, v6only and dual-stack
// wildcards), UDP sockets, an established pair and a TIME_WAIT.
type fixture struct {
	socks []Socket // what the test made, as the table should show it
	ports []PortRange
}

func (f *fixture) port(r PortRange) { f.ports = append(f.ports, r) }

func inode(t testing.TB, c syscall.Conn) (uint32, uint64) {
	t.Helper()
	rc, err := c.SyscallConn()
	if err != nil {
		t.Fatal(err)
	}
	var ino uint32
	var cookie uint64
	rc.Control(func(fd uintptr) {
		var st unix.Stat_t
		if err := unix.Fstat(int(fd), &st); err != nil {
			t.Fatal(err)
		}
		ino = uint32(st.Ino)
		cookie, _ = unix.GetsockoptUint64(int(fd), unix.SOL_SOCKET, unix.SO_COOKIE)
	})
	return ino, cookie
}

func newFixture(t testing.TB) *fixture {
	t.Helper()
	f := &fixture{}
	uid := uint32(os.Geteuid())
	ctx := context.Background()
	listen := func(network, addr string) *net.TCPListener {
		l, err := net.Listen(network, addr)
		if err != nil {
			t.Fatalf("listen %s %s: %v", network, addr, err)
		}
		t.Cleanup(func() { l.Close() })
		return l.(*net.TCPListener)
	}
	addListener := func(l *net.TCPListener, v6only bool) netip.AddrPort {
		ap := l.Addr().(*net.TCPAddr).AddrPort()
		ap = netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port())
		if ap.Addr().Is6() && ap.Addr().IsUnspecified() && !v6only {
			ap = netip.AddrPortFrom(netip.IPv6Unspecified(), ap.Port()) // Go reports [::] for a dual-stack listener
		}
		ino, _ := inode(t, l)
		fam, remote := IPv4, netip.AddrPortFrom(netip.IPv4Unspecified(), 0)
		if ap.Addr().Is6() {
			fam, remote = IPv6, netip.AddrPortFrom(netip.IPv6Unspecified(), 0)
		}
		f.socks = append(f.socks, Socket{Proto: portspec.TCP, Family: fam, State: Listen, Local: ap, Remote: remote,
			V6Only: v6only, UID: uid, Inode: ino})
		f.port(PortRange{portspec.Port(ap.Port()), portspec.Port(ap.Port())})
		return ap
	}
	l4 := listen("tcp4", "127.0.0.1:0")
	srv4 := addListener(l4, false)
	addListener(listen("tcp6", "[::1]:0"), true) // the kernel sets v6only on a socket bound to an IPv6 address
	addListener(listen("tcp6", "[::]:0"), true)  // Go sets IPV6_V6ONLY for "tcp6" on the wildcard
	addListener(listen("tcp", "[::]:0"), false)  // and not for "tcp": dual-stack

	for _, c := range []struct{ network, addr string }{{"udp4", "127.0.0.1:0"}, {"udp6", "[::1]:0"}} {
		pc, err := net.ListenPacket(c.network, c.addr)
		if err != nil {
			t.Fatalf("listen %s %s: %v", c.network, c.addr, err)
		}
		t.Cleanup(func() { pc.Close() })
		ap := pc.LocalAddr().(*net.UDPAddr).AddrPort()
		ino, cookie := inode(t, pc.(*net.UDPConn))
		fam, remote := IPv4, netip.AddrPortFrom(netip.IPv4Unspecified(), 0)
		if ap.Addr().Is6() {
			fam, remote = IPv6, netip.AddrPortFrom(netip.IPv6Unspecified(), 0)
		}
		f.socks = append(f.socks, Socket{Proto: portspec.UDP, Family: fam, State: Close, Local: ap, Remote: remote,
			V6Only: fam == IPv6, UID: uid, Inode: ino, Cookie: cookie})
		f.port(PortRange{portspec.Port(ap.Port()), portspec.Port(ap.Port())})
	}

	// An established pair: both ends are ours.
	var d net.Dialer
	c, err := d.DialContext(ctx, "tcp4", srv4.String())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	s, err := l4.Accept()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	cap := c.LocalAddr().(*net.TCPAddr).AddrPort()
	cino, ccookie := inode(t, c.(*net.TCPConn))
	sino, scookie := inode(t, s.(*net.TCPConn))
	f.socks = append(f.socks,
		Socket{Proto: portspec.TCP, Family: IPv4, State: Established, Local: cap, Remote: srv4, UID: uid, Inode: cino, Cookie: ccookie},
		Socket{Proto: portspec.TCP, Family: IPv4, State: Established, Local: srv4, Remote: cap, UID: uid, Inode: sino, Cookie: scookie})
	f.port(PortRange{portspec.Port(cap.Port()), portspec.Port(cap.Port())})

	// TIME_WAIT: the side that closes first keeps it.
	tc, err := d.DialContext(ctx, "tcp4", srv4.String())
	if err != nil {
		t.Fatal(err)
	}
	ts, err := l4.Accept()
	if err != nil {
		t.Fatal(err)
	}
	twLocal := tc.LocalAddr().(*net.TCPAddr).AddrPort()
	_, twCookie := inode(t, tc.(*net.TCPConn))
	tc.Close()
	ts.Close()
	f.socks = append(f.socks, Socket{Proto: portspec.TCP, Family: IPv4, State: TimeWait, Local: twLocal, Remote: srv4, Cookie: twCookie})
	f.port(PortRange{portspec.Port(twLocal.Port()), portspec.Port(twLocal.Port())})
	waitFor(t, func() bool {
		got, err := (&Table{}).List(ctx, Query{Proto: portspec.TCP, States: States(TimeWait), Ports: f.ports[len(f.ports)-1:]})
		return err == nil && len(f.ours(got)) == 1
	})
	SortByPort(f.socks)
	return f
}

// ours keeps the sockets the fixture made. Tests running at the same time
// (other packages, other runs) make sockets too, and an ephemeral port of
// ours may be another's as well: a socket is ours by its inode, or for
// TIME_WAIT (inode 0) by its two ends.
func (f *fixture) ours(socks []Socket) []Socket {
	var out []Socket
	for _, s := range socks {
		if slices.ContainsFunc(f.socks, func(m Socket) bool {
			return m.Proto == s.Proto && m.Local == s.Local && m.Remote == s.Remote && m.Inode == s.Inode
		}) {
			out = append(out, s)
		}
	}
	return out
}

// waitFor polls cond for up to 5 s: the kernel moves sockets between
// states asynchronously (FIN handshakes on loopback take microseconds).
func waitFor(t testing.TB, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); time.Sleep(5 * time.Millisecond) {
		if cond() {
			return
		}
	}
	t.Fatal("condition not met within 5s")
}

// ignoreOwners leaves out what the fixture does not predict.
var ignoreOwners = cmp.Options{
	cmpopts.IgnoreFields(Socket{}, "Procs", "Unseen", "Cgroup", "CgroupID", "RxQueue", "TxQueue", "IfIndex", "Interface"),
	cmpopts.EquateComparable(netip.AddrPort{}, netip.Addr{}),
}

// listenerCookies drops the cookies of listeners: on Linux 6.18 sock_diag
// reports another cookie for a listener than SO_COOKIE does (stable, and
// the one ss shows), so the fixture cannot predict it.
func listenerCookies(socks []Socket) []Socket {
	out := slices.Clone(socks)
	for i := range out {
		if out[i].State == Listen {
			out[i].Cookie = 0
		}
	}
	return out
}

func TestListFixture(t *testing.T) {
	f := newFixture(t)
	got, err := (&Table{}).List(context.Background(), Query{Ports: f.ports})
	if err != nil {
		t.Fatal(err)
	}
	got = f.ours(got)
	SortByPort(got)
	if d := cmp.Diff(f.socks, listenerCookies(got), ignoreOwners); d != "" {
		t.Errorf("List(ports %v) differs from the sockets made (-made +listed):\n%s", f.ports, d)
	}
	for _, s := range got {
		if s.Inode != 0 && s.CgroupID == 0 {
			t.Errorf("%v %v: no cgroup id", s.Proto, s.Local)
		}
	}
}

var _ = exec.Command
var _ = strings.Fields
var _ = testenv.RequireRoot

// ssState is how ss names a state.
func ssState(s State) string {
	switch s {
	case Established:
		return "ESTAB"
	case Close:
		return "UNCONN"
	}
	return strings.ReplaceAll(strings.ReplaceAll(s.String(), "_", "-"), "WAIT1", "WAIT-1")
}

// ssAddr writes an address and port as ss does: "*" for a dual-stack
// wildcard and for port 0, brackets around IPv6.
func ssAddr(s *Socket, ap netip.AddrPort) string {
	port := "*"
	if ap.Port() != 0 {
		port = strconv.Itoa(int(ap.Port()))
	}
	switch a := ap.Addr(); {
	case s.DualStack() || a.Is6() && a.IsUnspecified() && s.State == Listen && !s.V6Only:
		return "*:" + port
	case a.Is6():
		return "[" + a.String() + "]:" + port
	default:
		return a.String() + ":" + port
	}
}

// TestListMatchesSS compares the table with ss's, socket by socket: state,
// addresses, inode and cookie.
func TestListMatchesSS(t *testing.T) {
	ss := testenv.RequireCommand(t, "ss")
	f := newFixture(t)
	// A UDP socket on the address of a TCP listener of the fixture, not
	// part of it, as another process may hold: ss lists it too, and the
	// comparison must leave it out.
	for _, s := range f.socks {
		if s.Proto == portspec.TCP && s.State == Listen && s.Local.Addr().Is4() {
			c, err := net.ListenUDP("udp", net.UDPAddrFromAddrPort(s.Local))
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			break
		}
	}
	got, err := (&Table{}).List(context.Background(), Query{Ports: f.ports})
	if err != nil {
		t.Fatal(err)
	}
	got = f.ours(got)
	var filter []string
	for _, r := range f.ports {
		filter = append(filter, "sport = :"+strconv.Itoa(int(r.Lo)))
	}
	out, err := exec.Command(ss, "-Htuane", "( "+strings.Join(filter, " or ")+" )").Output()
	if err != nil {
		t.Fatalf("ss: %v", err)
	}
	var fromSS []string
	for line := range strings.Lines(string(out)) {
		f := strings.Fields(line)
		if len(f) < 6 {
			continue
		}
		row := []string{f[0], f[1], f[4], f[5], "q:" + f[2] + "/" + f[3]}
		for _, x := range f[6:] {
			if strings.HasPrefix(x, "ino:") || strings.HasPrefix(x, "sk:") || strings.HasPrefix(x, "v6only:") {
				row = append(row, x)
			}
		}
		fromSS = append(fromSS, strings.Join(row, " "))
	}
	var ours []string
	// "proto local peer" of our sockets, to keep only those of ss's rows:
	// another process's UDP socket may share the address of our TCP one.
	mine := make(map[string]bool)
	for _, s := range got {
		mine[s.Proto.String()+" "+ssAddr(&s, s.Local)+" "+ssAddr(&s, s.Remote)] = true
	}
	fromSS = slices.DeleteFunc(fromSS, func(row string) bool {
		f := strings.Fields(row)
		return !mine[f[0]+" "+f[2]+" "+f[3]]
	})
	for _, s := range got {
		row := []string{s.Proto.String(), ssState(s.State), ssAddr(&s, s.Local), ssAddr(&s, s.Remote),
			fmt.Sprintf("q:%d/%d", s.RxQueue, s.TxQueue),
			"ino:" + strconv.FormatUint(uint64(s.Inode), 10), "sk:" + strconv.FormatUint(s.Cookie, 16)}
		if s.Family == IPv6 && (s.State == Listen || s.State == Close) {
			row = append(row, map[bool]string{false: "v6only:0", true: "v6only:1"}[s.V6Only])
		}
		ours = append(ours, strings.Join(row, " "))
	}
	slices.Sort(fromSS)
	slices.Sort(ours)
	if d := cmp.Diff(fromSS, ours); d != "" {
		t.Errorf("table differs from ss -Htuane (-ss +ours):\n%s", d)
	}
}

// TestKernelFilters checks that the kernel itself applies the filters:
// the dumps are read without the user-space guard of List.
func TestKernelFilters(t *testing.T) {
	f := newFixture(t)
	byState := func(st State) []Socket {
		var out []Socket
		for _, s := range f.socks {
			if s.State == st {
				out = append(out, s)
			}
		}
		return out
	}
	listeners := byState(Listen)
	srv := listeners[0].Local // 127.0.0.1
	for i := range listeners {
		if listeners[i].Family == IPv4 {
			srv = listeners[i].Local
		}
	}
	one := func(p uint16) PortRange { return PortRange{portspec.Port(p), portspec.Port(p)} }
	v6lo := netip.MustParsePrefix("::1/128")
	tests := []struct {
		name string
		q    Query
		want func(s *Socket) bool
	}{
		{"one local port", Query{Ports: []PortRange{one(srv.Port())}},
			func(s *Socket) bool { return s.Local.Port() == srv.Port() }},
		{"local port list, listeners only", Query{States: States(Listen), Ports: f.ports},
			func(s *Socket) bool { return s.State == Listen }},
		{"remote port", Query{Proto: portspec.TCP, RemotePorts: []PortRange{one(srv.Port())}},
			func(s *Socket) bool { return s.Remote.Port() == srv.Port() }},
		{"local ::1", Query{Ports: f.ports, Local: v6lo},
			func(s *Socket) bool { return s.Local.Addr() == v6lo.Addr() }},
		{"remote 127.0.0.1 and local port range", Query{Ports: f.ports, Remote: netip.MustParsePrefix("127.0.0.0/8")},
			func(s *Socket) bool { return s.Remote.Addr().Is4() && s.Remote.Addr().IsLoopback() }},
		{"udp ipv6", Query{Proto: portspec.UDP, Family: IPv6, Ports: f.ports},
			func(s *Socket) bool { return s.Proto == portspec.UDP && s.Family == IPv6 }},
		{"time-wait", Query{States: States(TimeWait), Ports: f.ports},
			func(s *Socket) bool { return s.State == TimeWait }},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := (&Table{}).dumpAll(context.Background(), &tc.q)
			if err != nil {
				t.Fatal(err)
			}
			var want []Socket
			for _, s := range f.socks {
				if tc.want(&s) {
					want = append(want, s)
				}
			}
			// Other processes' sockets may share a port range: keep what
			// is ours, but check that the kernel sent nothing the filter
			// excludes.
			for _, s := range got {
				if !tc.q.match(&s) {
					t.Errorf("the kernel sent %v %v %v -> %v, which %+v excludes", s.Proto, s.State, s.Local, s.Remote, tc.q)
				}
			}
			ours := f.ours(got)
			SortByPort(ours)
			SortByPort(want)
			if d := cmp.Diff(want, listenerCookies(ours), ignoreOwners); d != "" {
				t.Errorf("dump %+v (-want +got):\n%s", tc.q, d)
			}
		})
	}
}

// TestManyRanges uses more port ranges than the kernel program holds: the
// ports are then filtered in user space, with the same result.
func TestManyRanges(t *testing.T) {
	f := newFixture(t)
	var rs []PortRange
	for p := 1; len(rs) < maxKernelRanges+10; p += 2 {
		rs = append(rs, PortRange{portspec.Port(p), portspec.Port(p)})
	}
	rs = append(rs, f.ports...)
	q := Query{Ports: rs}
	if bc := compileFilter(&q); len(bc) != 0 {
		t.Fatalf("compileFilter with %d ranges = %d bytes; want none", len(rs), len(bc))
	}
	got, err := (&Table{}).List(context.Background(), q)
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range f.socks {
		if !slices.ContainsFunc(got, func(s Socket) bool { return s.Local == want.Local && s.Remote == want.Remote }) {
			t.Errorf("List with %d ranges misses %v %v -> %v", len(rs), want.State, want.Local, want.Remote)
		}
	}
}

// TestKernelRejectsBadBytecode: a program the kernel's audit refuses comes
// back as EINVAL, named with the dump it failed.
func TestKernelRejectsBadBytecode(t *testing.T) {
	fd, err := unix.Socket(unix.AF_NETLINK, unix.SOCK_RAW|unix.SOCK_CLOEXEC, unix.NETLINK_SOCK_DIAG)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Close(fd)
	bad := []byte{bcSGE, 8, 100, 0, 0, 0, 80, 0} // `no` jumps past the end + 4
	var spill []Socket
	err = dump(context.Background(), fd, make([]byte, recvBufSize), diagRequest(1, portspec.TCP, IPv4, ^uint32(0), bad), portspec.TCP, &collector{}, &spill)
	if err != unix.EINVAL {
		t.Fatalf("dump with bad bytecode: err = %v; want EINVAL", err)
	}
}

var captureDiag = flag.Bool("capture-diag", false, "rewrite testdata/diag-*.bin from this kernel's replies about a fixture")

// TestCaptureDiag records real sock_diag replies (about the fixture's
// sockets only) for the parser tests, with what the fixture made as the
// expected result. Run with -capture-diag after changing the fixture.
func TestCaptureDiag(t *testing.T) {
	if !*captureDiag {
		t.Skip("run with -capture-diag to rewrite testdata")
	}
	f := newFixture(t)
	fd, err := unix.Socket(unix.AF_NETLINK, unix.SOCK_RAW|unix.SOCK_CLOEXEC, unix.NETLINK_SOCK_DIAG)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Close(fd)
	q := Query{Ports: f.ports}
	bc := compileFilter(&q)
	for _, proto := range []portspec.Proto{portspec.TCP, portspec.UDP} {
		for _, fam := range []Family{IPv4, IPv6} {
			req := diagRequest(1, proto, fam, ^uint32(0), bc)
			if err := unix.Sendto(fd, req, 0, &unix.SockaddrNetlink{Family: unix.AF_NETLINK}); err != nil {
				t.Fatal(err)
			}
			var reply []byte
			buf := make([]byte, recvBufSize)
			for {
				n, err := recvTrunc(fd, buf)
				if err != nil {
					t.Fatal(err)
				}
				reply = append(reply, buf[:n]...)
				if _, done, _ := parseDiag(buf[:n], proto, nil); done {
					break
				}
			}
			name := fmt.Sprintf("testdata/diag-%s%s.bin", proto, strings.TrimPrefix(fam.String(), "ipv"))
			if err := os.WriteFile(name, reply, 0o644); err != nil {
				t.Fatal(err)
			}
		}
	}
	var want []capturedSocket
	for _, s := range f.socks {
		want = append(want, captured(&s))
	}
	b, _ := json.MarshalIndent(want, "", "  ")
	if err := os.WriteFile("testdata/diag-want.json", append(b, '\n'), 0o644); err != nil {
		t.Fatal(err)
	}
}

// TestListParallel reads the whole table with several threads (as for a
// large table): every socket comes once, and the fixture's are all there.
func TestListParallel(t *testing.T) {
	if runtime.GOMAXPROCS(0) < 2 {
		t.Skip("needs two CPUs")
	}
	f := newFixture(t)
	defer func(old int) { largeTable = old }(largeTable)
	largeTable = 1
	got, err := (&Table{}).List(context.Background(), Query{})
	if err != nil {
		t.Fatal(err)
	}
	seen := make(map[uint64]bool)
	for _, s := range got {
		if seen[s.Cookie] {
			t.Errorf("%v %v %v -> %v (cookie %d) listed twice", s.Proto, s.State, s.Local, s.Remote, s.Cookie)
		}
		seen[s.Cookie] = true
	}
	ours := f.ours(got)
	SortByPort(ours)
	if d := cmp.Diff(f.socks, listenerCookies(ours), ignoreOwners); d != "" {
		t.Errorf("parallel List misses sockets (-made +listed):\n%s", d)
	}
}

// TestBoundInterface: a socket bound to a device (SO_BINDTODEVICE) reports
// its interface index, and List names it.
func TestBoundInterface(t *testing.T) {
	testenv.RequireRoot(t) // SO_BINDTODEVICE needs CAP_NET_RAW
	lc := net.ListenConfig{Control: func(_, _ string, c syscall.RawConn) error {
		var serr error
		err := c.Control(func(fd uintptr) { serr = unix.BindToDevice(int(fd), "lo") })
		return errors.Join(err, serr)
	}}
	l, err := lc.Listen(context.Background(), "tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	p := portspec.Port(l.Addr().(*net.TCPAddr).Port)
	lo, err := net.InterfaceByName("lo")
	if err != nil {
		t.Fatal(err)
	}
	socks, err := (&Table{}).List(context.Background(), Query{States: States(Listen), Ports: []PortRange{{p, p}}})
	if err != nil || len(socks) != 1 {
		t.Fatalf("List = %d sockets, %v; want 1", len(socks), err)
	}
	if s := socks[0]; s.IfIndex != uint32(lo.Index) || s.Interface != "lo" {
		t.Errorf("bound listener: IfIndex %d, Interface %q; want %d, lo", s.IfIndex, s.Interface, lo.Index)
	}
}
