package netlab

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"portolan/internal/procstat"
	"portolan/internal/testenv"
)

// guard bounds any single wait so that a broken lab fails a test instead of
// hanging it; it never decides pass or fail on its own.
const guard = 20 * time.Second

func TestMain(m *testing.M) {
	// Helper mode for TestSweepAfterKill: build a lab, report it, wait to
	// be killed.
	if os.Getenv("NETLAB_LEAK_HELPER") == "1" {
		leakHelper()
		return
	}
	os.Exit(m.Run())
}

func TestTCPAndUDPBetweenHosts(t *testing.T) {
	a, b, lk := NewPair(t)
	for _, fam := range []struct {
		name       string
		from, to   netip.Addr
		tcp, udp   string
		wantRemote netip.Addr
	}{
		{"ipv4", lk.A4, lk.B4, "tcp4", "udp4", lk.A4},
		{"ipv6", lk.A6, lk.B6, "tcp6", "udp6", lk.A6},
	} {
		t.Run(fam.name+"/tcp", func(t *testing.T) {
			ln, err := b.Listen(fam.tcp, netip.AddrPortFrom(fam.to, 0).String())
			if err != nil {
				t.Fatal(err)
			}
			defer ln.Close()
			remote := make(chan netip.Addr, 1)
			go func() {
				c, err := ln.Accept()
				if err != nil {
					remote <- netip.Addr{}
					return
				}
				defer c.Close()
				remote <- c.RemoteAddr().(*net.TCPAddr).AddrPort().Addr()
				io.Copy(c, c) // echo until the client half-closes
			}()
			ctx, cancel := context.WithTimeout(t.Context(), guard)
			defer cancel()
			c, err := a.DialContext(ctx, fam.tcp, ln.Addr().String())
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			c.SetDeadline(time.Now().Add(guard))
			if _, err := c.Write([]byte("ping over tcp")); err != nil {
				t.Fatal(err)
			}
			c.(*net.TCPConn).CloseWrite()
			got, err := io.ReadAll(c)
			if err != nil || string(got) != "ping over tcp" {
				t.Errorf("echo = %q, %v; want %q", got, err, "ping over tcp")
			}
			if r := <-remote; r != fam.wantRemote {
				t.Errorf("server saw client %v; want %v (the other end of the link)", r, fam.wantRemote)
			}
		})
		t.Run(fam.name+"/udp", func(t *testing.T) {
			pc, err := b.ListenPacket(fam.udp, netip.AddrPortFrom(fam.to, 0).String())
			if err != nil {
				t.Fatal(err)
			}
			defer pc.Close()
			pc.SetDeadline(time.Now().Add(guard))
			from := make(chan netip.Addr, 1)
			go func() {
				buf := make([]byte, 64)
				n, addr, err := pc.ReadFrom(buf)
				if err != nil {
					from <- netip.Addr{}
					return
				}
				from <- addr.(*net.UDPAddr).AddrPort().Addr()
				pc.WriteTo(buf[:n], addr)
			}()
			ctx, cancel := context.WithTimeout(t.Context(), guard)
			defer cancel()
			c, err := a.DialContext(ctx, fam.udp, pc.LocalAddr().String())
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			c.SetDeadline(time.Now().Add(guard))
			if _, err := c.Write([]byte("ping over udp")); err != nil {
				t.Fatal(err)
			}
			buf := make([]byte, 64)
			n, err := c.Read(buf)
			if err != nil || string(buf[:n]) != "ping over udp" {
				t.Errorf("echo = %q, %v; want %q", buf[:n], err, "ping over udp")
			}
			if f := <-from; f != fam.wantRemote {
				t.Errorf("server saw client %v; want %v", f, fam.wantRemote)
			}
		})
	}
}

// A host reaches nothing of the root namespace: not even its loopback.
func TestHostIsIsolated(t *testing.T) {
	a, _, _ := NewPair(t)
	ln, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	ctx, cancel := context.WithTimeout(t.Context(), guard)
	defer cancel()
	c, err := a.DialContext(ctx, "tcp4", ln.Addr().String())
	if err == nil {
		c.Close()
		t.Fatalf("dial %s from the lab reached the root namespace's listener", ln.Addr())
	}
	if !errors.Is(err, syscall.ECONNREFUSED) {
		t.Errorf("dial root loopback from the lab: %v; want connection refused", err)
	}
}

func TestCommandRunsInNamespace(t *testing.T) {
	testenv.RequireCommand(t, "ip")
	a, _, lk := NewPair(t)
	ctx, cancel := context.WithTimeout(t.Context(), guard)
	defer cancel()
	out, err := a.Command(ctx, "ip", "-o", "addr", "show").Output()
	if err != nil {
		t.Fatalf("ip -o addr show in %s: %v", a.Netns(), err)
	}
	var devs []string
	for _, line := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		if f := strings.Fields(line); len(f) > 1 && !slices.Contains(devs, f[1]) {
			devs = append(devs, f[1])
		}
	}
	if d := cmp.Diff([]string{"lo", "eth0"}, devs); d != "" {
		t.Errorf("interfaces seen by ip in %s (-want +got):\n%s\n%s", a.Netns(), d, out)
	}
	for _, want := range []string{lk.A4.String() + "/24", lk.A6.String() + "/64", "127.0.0.1/8"} {
		if !strings.Contains(string(out), " "+want+" ") {
			t.Errorf("ip -o addr show in %s lacks %s:\n%s", a.Netns(), want, out)
		}
	}
	// /sys is remounted for the namespace, which tools reading
	// /sys/class/net rely on.
	out, err = a.Command(ctx, "ls", "/sys/class/net").Output()
	if err != nil {
		t.Fatal(err)
	}
	if got := strings.Fields(string(out)); !cmp.Equal(got, []string{"eth0", "lo"}) {
		t.Errorf("ls /sys/class/net in %s = %q; want [eth0 lo]", a.Netns(), got)
	}
}

// connect makes one TCP connection from host from to a listener of host to
// on addr.
func connect(t *testing.T, from, to *Host, addr netip.Addr) {
	t.Helper()
	ln, err := to.Listen("tcp", netip.AddrPortFrom(addr, 0).String())
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		if s, err := ln.Accept(); err == nil {
			s.Close()
		}
	}()
	ctx, cancel := context.WithTimeout(t.Context(), guard)
	defer cancel()
	c, err := from.DialContext(ctx, "tcp", ln.Addr().String())
	if err != nil {
		t.Errorf("dial %s on %s from %s: %v", ln.Addr(), to.Name(), from.Name(), err)
		return
	}
	c.Close()
}

// routes returns every route of every table in h, via netlink.
func routes(t *testing.T, h *Host) []netlink.Route {
	t.Helper()
	var all []netlink.Route
	err := h.Do(func() error {
		rs, err := netlink.RouteListFiltered(netlink.FAMILY_ALL, &netlink.Route{Table: unix.RT_TABLE_UNSPEC}, netlink.RT_FILTER_TABLE)
		all = rs
		return err
	})
	if err != nil {
		t.Fatalf("list routes in %s: %v", h.Netns(), err)
	}
	return all
}

func isDefault(r netlink.Route) bool {
	if r.Dst == nil {
		return true
	}
	ones, _ := r.Dst.Mask.Size()
	return ones == 0
}

// Three hosts a - r - c, r forwarding: routes work across a hop, and no host
// ever has a default route.
func TestRoutesAndNoDefaultRoute(t *testing.T) {
	l := NewT(t)
	var hs []*Host
	for _, n := range []string{"a", "r", "c"} {
		h, err := l.AddHost(n)
		if err != nil {
			t.Fatal(err)
		}
		hs = append(hs, h)
	}
	a, r, c := hs[0], hs[1], hs[2]
	ar, err := l.Link(a, r)
	if err != nil {
		t.Fatal(err)
	}
	rc, err := l.Link(r, c)
	if err != nil {
		t.Fatal(err)
	}
	if rc.ADev != "eth1" || rc.BDev != "eth0" {
		t.Errorf("second link devices = %s, %s; want eth1, eth0", rc.ADev, rc.BDev)
	}
	for _, kv := range [][2]string{{"net.ipv4.ip_forward", "1"}, {"net.ipv6.conf.all.forwarding", "1"}} {
		if err := r.SetSysctl(kv[0], kv[1]); err != nil {
			t.Fatal(err)
		}
	}
	for _, rt := range []struct {
		h   *Host
		dst netip.Prefix
		via netip.Addr
	}{
		{a, rc.Net4, ar.B4}, {a, rc.Net6, ar.B6},
		{c, ar.Net4, rc.A4}, {c, ar.Net6, rc.A6},
	} {
		if err := rt.h.AddRoute(rt.dst, rt.via); err != nil {
			t.Fatal(err)
		}
	}
	for _, bad := range []struct{ dst, via string }{
		{"0.0.0.0/0", "198.18.0.2"},
		{"::/0", "fd00::2"},
		{"8.8.8.0/24", "198.18.0.2"},
		{"198.18.5.0/24", "10.0.0.1"},
	} {
		if err := a.AddRoute(netip.MustParsePrefix(bad.dst), netip.MustParseAddr(bad.via)); err == nil {
			t.Errorf("AddRoute(%s, %s) = nil; want a refusal", bad.dst, bad.via)
		}
	}

	for _, to := range []netip.Addr{rc.B4, rc.B6} {
		connect(t, a, c, to)
	}

	for _, h := range hs {
		for _, rt := range routes(t, h) {
			if isDefault(rt) {
				t.Errorf("%s has a default route: %v", h.Netns(), rt)
			}
		}
	}
	if _, err := exec.LookPath("ip"); err == nil {
		ctx, cancel := context.WithTimeout(t.Context(), guard)
		defer cancel()
		for _, h := range hs {
			for _, fam := range []string{"-4", "-6"} {
				out, err := h.Command(ctx, "ip", fam, "route", "show", "default", "table", "all").CombinedOutput()
				if err != nil || len(strings.TrimSpace(string(out))) != 0 {
					t.Errorf("ip %s route show default table all in %s = %q, %v; want nothing", fam, h.Netns(), out, err)
				}
			}
		}
	}
}

// rootState describes the root namespace's links and addresses.
func rootState(t *testing.T) []string {
	t.Helper()
	links, err := netlink.LinkList()
	if err != nil {
		t.Fatal(err)
	}
	var s []string
	for _, l := range links {
		s = append(s, fmt.Sprintf("link %d %s %s", l.Attrs().Index, l.Attrs().Name, l.Type()))
		addrs, err := netlink.AddrList(l, netlink.FAMILY_ALL)
		if err != nil {
			t.Fatal(err)
		}
		for _, a := range addrs {
			s = append(s, fmt.Sprintf("addr %s %s", l.Attrs().Name, a.IPNet))
		}
	}
	return s
}

func TestRootNamespaceUntouched(t *testing.T) {
	testenv.RequireRoot(t)
	before := rootState(t)
	l, err := New()
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	var hs []*Host
	for _, n := range []string{"x", "y", "z"} {
		h, err := l.AddHost(n)
		if err != nil {
			t.Fatal(err)
		}
		hs = append(hs, h)
	}
	lk, err := l.Link(hs[0], hs[1])
	if err != nil {
		t.Fatal(err)
	}
	if _, err := l.Link(hs[1], hs[2]); err != nil {
		t.Fatal(err)
	}
	if err := lk.PinNeighbors(); err != nil {
		t.Fatal(err)
	}
	if err := hs[1].AddAddr("eth0", netip.MustParsePrefix("198.18.0.77/24")); err != nil {
		t.Fatal(err)
	}
	if d := cmp.Diff(before, rootState(t)); d != "" {
		t.Errorf("root namespace changed while the lab is up (-before +now):\n%s", d)
	}
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	if d := cmp.Diff(before, rootState(t)); d != "" {
		t.Errorf("root namespace changed after Close (-before +now):\n%s", d)
	}
}

func TestAddAddrAndPinNeighbors(t *testing.T) {
	a, b, lk := NewPair(t)
	if err := lk.PinNeighbors(); err != nil {
		t.Fatal(err)
	}
	extra := []string{"198.18.0.77/24", "fd00::77/64"}
	for _, p := range extra {
		if err := b.AddAddr(lk.BDev, netip.MustParsePrefix(p)); err != nil {
			t.Fatal(err)
		}
	}
	for _, bad := range []string{"10.0.0.1/24", "198.18.0.1/8", "2001:db8::1/64"} {
		if err := b.AddAddr(lk.BDev, netip.MustParsePrefix(bad)); err == nil {
			t.Errorf("AddAddr(%s) = nil; want a refusal", bad)
		}
	}
	// The extra addresses answer at once (no DAD delay for the IPv6 one).
	for _, p := range extra {
		connect(t, a, b, netip.MustParsePrefix(p).Addr())
	}
	// The pinned entries are permanent, with the link's fixed MACs.
	var neighs []netlink.Neigh
	err := a.Do(func() (err error) {
		l, err := netlink.LinkByName(lk.ADev)
		if err != nil {
			return err
		}
		neighs, err = netlink.NeighList(l.Attrs().Index, netlink.FAMILY_ALL)
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	pinned := map[string]bool{}
	for _, n := range neighs {
		if n.State == netlink.NUD_PERMANENT && n.HardwareAddr.String() == lk.BMAC.String() {
			pinned[n.IP.String()] = true
		}
	}
	if !pinned[lk.B4.String()] || !pinned[lk.B6.String()] {
		t.Errorf("permanent neighbours on %s = %v; want %s and %s at %s", a.Netns(), neighs, lk.B4, lk.B6, lk.BMAC)
	}
}

// threadNetnsIno is the namespace inode of the calling thread.
func threadNetnsIno(t *testing.T) uint64 {
	t.Helper()
	var st unix.Stat_t
	if err := unix.Stat(threadNetns, &st); err != nil {
		t.Fatal(err)
	}
	return st.Ino
}

func TestDoSwitchesAndRestores(t *testing.T) {
	a, _, _ := NewPair(t)
	var hostSt unix.Stat_t
	if err := unix.Fstat(a.FD(), &hostSt); err != nil {
		t.Fatal(err)
	}
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	outside := threadNetnsIno(t)
	if outside == hostSt.Ino {
		t.Fatal("test thread already in the lab's namespace")
	}
	var inside uint64
	if err := a.Do(func() error { inside = threadNetnsIno(t); return nil }); err != nil {
		t.Fatal(err)
	}
	if inside != hostSt.Ino {
		t.Errorf("namespace inside Do = %d; want the host's %d", inside, hostSt.Ino)
	}
	if now := threadNetnsIno(t); now != outside {
		t.Errorf("namespace after Do = %d; want %d as before", now, outside)
	}

	wantErr := errors.New("from fn")
	if err := a.Do(func() error { return wantErr }); err != wantErr {
		t.Errorf("Do returned %v; want fn's error", err)
	}

	func() {
		defer func() {
			if r := recover(); r != "boom" {
				t.Errorf("recovered %v; want fn's panic", r)
			}
		}()
		a.Do(func() error { panic("boom") })
	}()
	if now := threadNetnsIno(t); now != outside {
		t.Errorf("namespace after a panic in Do = %d; want %d as before", now, outside)
	}
}

func TestSetSysctl(t *testing.T) {
	a, _, _ := NewPair(t)
	const key = "/proc/sys/net/ipv4/tcp_fin_timeout"
	rootBefore, err := os.ReadFile(key)
	if err != nil {
		t.Fatal(err)
	}
	want := "17"
	if strings.TrimSpace(string(rootBefore)) == want {
		want = "19"
	}
	if err := a.SetSysctl("net.ipv4.tcp_fin_timeout", want); err != nil {
		t.Fatal(err)
	}
	var got []byte
	if err := a.Do(func() (err error) { got, err = os.ReadFile(key); return err }); err != nil {
		t.Fatal(err)
	}
	if strings.TrimSpace(string(got)) != want {
		t.Errorf("tcp_fin_timeout in %s = %q; want %q", a.Netns(), got, want)
	}
	if rootNow, _ := os.ReadFile(key); string(rootNow) != string(rootBefore) {
		t.Errorf("root tcp_fin_timeout changed from %q to %q", rootBefore, rootNow)
	}
	for _, bad := range []string{"kernel.hostname", "vm/swappiness", "net/../kernel/hostname"} {
		if err := a.SetSysctl(bad, "1"); err == nil {
			t.Errorf("SetSysctl(%q) = nil; want a refusal", bad)
		}
	}
}

// labNamespaces lists the entries of RunDir that start with prefix, and
// the names `ip netns list` shows with it.
func labNamespaces(t *testing.T, prefix string) (files, ipList []string) {
	t.Helper()
	ents, err := os.ReadDir(RunDir)
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		t.Fatal(err)
	}
	for _, e := range ents {
		if strings.HasPrefix(e.Name(), prefix) {
			files = append(files, e.Name())
		}
	}
	if _, err := exec.LookPath("ip"); err == nil {
		out, err := exec.Command("ip", "netns", "list").Output()
		if err != nil {
			t.Fatalf("ip netns list: %v", err)
		}
		for _, line := range strings.Split(string(out), "\n") {
			if f := strings.Fields(line); len(f) > 0 && strings.HasPrefix(f[0], prefix) {
				ipList = append(ipList, f[0])
			}
		}
	}
	return files, ipList
}

func TestCloseRemovesEverything(t *testing.T) {
	testenv.RequireRoot(t)
	testenv.RequireCommand(t, "ip")
	l, err := New()
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	a, err := l.AddHost("a")
	if err != nil {
		t.Fatal(err)
	}
	b, err := l.AddHost("b")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := l.Link(a, b); err != nil {
		t.Fatal(err)
	}
	files, ipList := labNamespaces(t, l.Prefix())
	slices.Sort(files)
	slices.Sort(ipList)
	want := []string{a.Netns(), b.Netns()}
	if !cmp.Equal(files, want) || !cmp.Equal(ipList, want) {
		t.Fatalf("lab namespaces: files %v, ip netns list %v; want %v", files, ipList, want)
	}

	// A process left running inside is killed by Close.
	ctx, cancel := context.WithTimeout(t.Context(), guard)
	defer cancel()
	sleeper := b.Command(ctx, "sleep", "600")
	if err := sleeper.Start(); err != nil {
		t.Fatal(err)
	}
	waited := make(chan error, 1)
	go func() { waited <- sleeper.Wait() }()
	waitInside(t, b, sleeper.Process.Pid, "sleep")

	if err := l.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	select {
	case err := <-waited:
		var ee *exec.ExitError
		if !errors.As(err, &ee) || ee.Sys().(syscall.WaitStatus).Signal() != syscall.SIGKILL {
			t.Errorf("process in the closed lab ended with %v; want killed by SIGKILL", err)
		}
	case <-time.After(guard):
		t.Errorf("process in the closed lab still running after %v", guard)
	}
	if files, ipList := labNamespaces(t, l.Prefix()); len(files)+len(ipList) != 0 {
		t.Errorf("after Close: files %v, ip netns list %v; want none", files, ipList)
	}
	if err := l.Close(); err != nil {
		t.Errorf("second Close = %v; want nil", err)
	}
	if _, err := l.AddHost("c"); err == nil {
		t.Error("AddHost after Close = nil error; want lab closed")
	}
	if err := a.Do(func() error { return nil }); err == nil {
		t.Error("Do after Close = nil error; want lab closed")
	}
	if err := a.Command(ctx, "true").Run(); err == nil {
		t.Error("Command after Close ran; want lab closed")
	}
}

// isInside reports whether process pid runs the program comm inside h's
// namespace: `ip netns exec` takes a moment to get there.
func isInside(h *Host, pid int, comm string) bool {
	var want, st unix.Stat_t
	c, _ := os.ReadFile(fmt.Sprintf("/proc/%d/comm", pid))
	return strings.TrimSpace(string(c)) == comm &&
		unix.Fstat(h.FD(), &want) == nil &&
		unix.Stat(fmt.Sprintf("/proc/%d/ns/net", pid), &st) == nil && st.Ino == want.Ino
}

// waitInside waits (bounded) until isInside.
func waitInside(t *testing.T, h *Host, pid int, comm string) {
	t.Helper()
	for end := time.Now().Add(guard); time.Now().Before(end); time.Sleep(5 * time.Millisecond) {
		if isInside(h, pid, comm) {
			return
		}
	}
	t.Fatalf("process %d not running %s inside %s after %v", pid, comm, h.Netns(), guard)
}

// leakHelper runs in a child process: it builds a lab with a process
// inside, prints the namespace names and that process's pid, and waits to
// be killed without cleaning up.
func leakHelper() {
	l, err := New()
	if err != nil {
		fmt.Println("error", err)
		os.Exit(1)
	}
	a, err := l.AddHost("a")
	if err == nil {
		var b *Host
		if b, err = l.AddHost("b"); err == nil {
			_, err = l.Link(a, b)
		}
	}
	if err != nil {
		fmt.Println("error", err)
		os.Exit(1)
	}
	sleeper := a.Command(context.Background(), "sleep", "600")
	if err := sleeper.Start(); err != nil {
		fmt.Println("error", err)
		os.Exit(1)
	}
	for end := time.Now().Add(guard); !isInside(a, sleeper.Process.Pid, "sleep"); time.Sleep(5 * time.Millisecond) {
		if time.Now().After(end) {
			fmt.Println("error sleeper never got inside")
			os.Exit(1)
		}
	}
	fmt.Println("prefix", l.Prefix())
	fmt.Println("sleeper", sleeper.Process.Pid)
	time.Sleep(10 * time.Minute)
}

// A test killed with SIGKILL leaves its namespaces, with a process inside;
// SweepStale (as called by the next New) removes both.
func TestSweepAfterKill(t *testing.T) {
	testenv.RequireRoot(t)
	testenv.RequireCommand(t, "ip")
	testenv.RequireCommand(t, "sleep")
	ctx, cancel := context.WithTimeout(t.Context(), guard)
	defer cancel()
	child := exec.CommandContext(ctx, os.Args[0], "-test.run=^$")
	child.Env = append(os.Environ(), "NETLAB_LEAK_HELPER=1")
	out, err := child.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := child.Start(); err != nil {
		t.Fatal(err)
	}
	var prefix string
	var sleeper int
	sc := bufio.NewScanner(out)
	for (prefix == "" || sleeper == 0) && sc.Scan() {
		f := strings.Fields(sc.Text())
		switch {
		case len(f) == 2 && f[0] == "prefix":
			prefix = f[1]
		case len(f) == 2 && f[0] == "sleeper":
			sleeper, _ = strconv.Atoi(f[1])
		case len(f) > 0 && f[0] == "error":
			t.Fatalf("helper: %s", sc.Text())
		}
	}
	if prefix == "" || sleeper == 0 {
		t.Fatalf("helper gave prefix %q, sleeper %d", prefix, sleeper)
	}
	child.Process.Kill()
	child.Wait()

	// Namespaces of a live process survive a sweep; the dead helper's go
	// (another test binary running New may sweep them first: that is fine).
	own := NewT(t)
	if _, err := own.AddHost("alive"); err != nil {
		t.Fatal(err)
	}
	if err := SweepStale(); err != nil {
		t.Fatalf("SweepStale: %v", err)
	}
	if files, ipList := labNamespaces(t, prefix); len(files)+len(ipList) != 0 {
		t.Errorf("after SweepStale: files %v, ip netns list %v of the killed helper; want none", files, ipList)
	}
	if files, _ := labNamespaces(t, own.Prefix()); !cmp.Equal(files, []string{own.Prefix() + "alive"}) {
		t.Errorf("SweepStale touched a live lab: files %v", files)
	}
	// The helper's sleeper was killed (it may linger as a zombie until
	// init reaps it, but it is out of the namespace).
	if st, err := procstat.Read(sleeper); err == nil {
		if st.State != 'Z' && st.State != 'X' {
			// It may also be a new process that reused the pid.
			if cmdline, _ := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", sleeper)); strings.HasPrefix(string(cmdline), "sleep\x00600") {
				t.Errorf("sleeper %d in the stale namespace is still running (state %c)", sleeper, st.State)
			}
		}
	}
}

// A namespace named for this pid but another start time is a leftover of
// an earlier process that had the same pid.
func TestSweepReusedPid(t *testing.T) {
	testenv.RequireRoot(t)
	pid, start, err := self()
	if err != nil {
		t.Fatal(err)
	}
	name := labPrefix(pid, start+1, 999) + "old"
	path := filepath.Join(RunDir, name)
	if err := os.MkdirAll(RunDir, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := createNetns(path); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { removeNetns(path) })
	// An empty file left between create and mount is swept too.
	half := filepath.Join(RunDir, labPrefix(pid, start+1, 999)+"half")
	if err := os.WriteFile(half, nil, 0o444); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.Remove(half) })
	if err := SweepStale(); err != nil {
		t.Fatalf("SweepStale: %v", err)
	}
	for _, p := range []string{path, half} {
		if _, err := os.Lstat(p); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("after SweepStale, stat %s = %v; want not exist", p, err)
		}
	}
}

// TestPanicHelper is run as a child by TestCleanupAfterPanic only.
func TestPanicHelper(t *testing.T) {
	if os.Getenv("NETLAB_PANIC_HELPER") != "1" {
		t.Skip("helper for TestCleanupAfterPanic")
	}
	a, b, _ := NewPair(t)
	fmt.Println("netns", a.Netns(), b.Netns())
	panic("deliberate panic with a lab up")
}

// A test that panics still has its lab removed by NewT's cleanup, in the
// same process, before the process dies.
func TestCleanupAfterPanic(t *testing.T) {
	testenv.RequireRoot(t)
	ctx, cancel := context.WithTimeout(t.Context(), guard)
	defer cancel()
	child := exec.CommandContext(ctx, os.Args[0], "-test.run=^TestPanicHelper$", "-test.v")
	child.Env = append(os.Environ(), "NETLAB_PANIC_HELPER=1")
	out, err := child.CombinedOutput()
	if err == nil || !strings.Contains(string(out), "deliberate panic") {
		t.Fatalf("helper = %v; want it to panic:\n%s", err, out)
	}
	var names []string
	for _, line := range strings.Split(string(out), "\n") {
		if f := strings.Fields(line); len(f) == 3 && f[0] == "netns" {
			names = f[1:]
		}
	}
	if len(names) != 2 {
		t.Fatalf("helper printed no namespace names:\n%s", out)
	}
	for _, n := range names {
		if _, err := os.Lstat(filepath.Join(RunDir, n)); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("after the helper panicked, %s: %v; want it removed", n, err)
		}
	}
}
