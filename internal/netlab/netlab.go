package netlab

import (
	"context"
	"errors"
	"fmt"
	"math"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
)

const (
	// Prefix starts the name of every namespace the package makes.
	Prefix = "pl-"
	// RunDir is where namespaces are bind-mounted, where iproute2 looks.
	RunDir = "/run/netns"
	// MaxLinks is how many links one lab can hold: each takes a /24 of
	// 198.18.0.0/15.
	MaxLinks = 512
	// maxHostName bounds host names; they end up in namespace names.
	maxHostName = 32
)

// ErrNotSupported is returned on systems without network namespaces.
var ErrNotSupported = errors.New("netlab: network namespaces are not supported on " + runtime.GOOS)

// Address ranges a lab may use; everything else is refused.
var (
	bench4 = netip.MustParsePrefix("198.18.0.0/15")
	ula6   = netip.MustParsePrefix("fd00::/8")
	loop4  = netip.MustParsePrefix("127.0.0.0/8")
	loop6  = netip.MustParsePrefix("::1/128")
)

// labSeq numbers the labs of this process.
var labSeq atomic.Uint64

// Lab is a set of hosts and links that are torn down together.
// Its methods are safe for concurrent use.
type Lab struct {
	prefix string // "pl-<pid>-<start>-<seq>-"

	mu     sync.Mutex
	hosts  []*Host
	links  int
	closed atomic.Bool
}

// Host is one network namespace of a lab.
type Host struct {
	lab    *Lab
	name   string // as given to AddHost
	netns  string // namespace name under RunDir
	fd     int    // open namespace file, valid until Lab.Close
	ifaces int    // interfaces made so far, for naming eth<n>; under lab.mu
	sys    hostSys
}

// Link is a veth pair between two hosts, with one IPv4 and one IPv6 address
// at each end. Link number n (from 0, in creation order within the lab) gets
// 198.18.n.0/24 (198.19.(n-256).0/24 from n=256) and fd00:0:0:n::/64; end A
// is .1 and ::1, end B is .2 and ::2. MAC addresses are fixed too
// (02:70:6c:HH:LL:01 and :02, HH:LL being n), which raw-socket tools need.
type Link struct {
	A, B       *Host
	ADev, BDev string // interface names inside A and B ("eth0", "eth1", ...)
	AMAC, BMAC net.HardwareAddr
	A4, B4     netip.Addr
	A6, B6     netip.Addr
	Net4, Net6 netip.Prefix // the link's subnets, e.g. 198.18.0.0/24, fd00::/64
}

// Name returns the host's name as given to AddHost.
func (h *Host) Name() string { return h.name }

// Netns returns the namespace name, for `ip netns exec NAME ...`.
func (h *Host) Netns() string { return h.netns }

// Path returns the namespace's bind mount, /run/netns/NAME.
func (h *Host) Path() string { return RunDir + "/" + h.netns }

// FD returns an open file descriptor of the namespace, valid until the lab
// is closed, for APIs that take one (setns, nftables.WithNetNSFd,
// netlink.NewHandleAt).
func (h *Host) FD() int { return h.fd }

// Do runs fn on the calling goroutine's OS thread switched into the host's
// namespace and switches the thread back afterwards. Sockets fn creates
// stay in the namespace; goroutines fn starts do not run in it. Inside fn,
// /proc/net still shows the process's main thread: read
// /proc/thread-self/net instead. Since fn runs on the caller's goroutine,
// t.Fatal inside it works, and a panic in fn propagates after the switch
// back. If the thread cannot be switched back, Do panics rather than let
// the goroutine run on in the wrong namespace.
func (h *Host) Do(fn func() error) error {
	if h.lab.closed.Load() {
		return fmt.Errorf("host %s: lab closed", h.name)
	}
	return doIn(h.fd, fn)
}

// Listen is net.Listen inside the host's namespace. The host part of addr
// must be empty or a literal IP address: name resolution would run in other
// goroutines, outside the namespace.
func (h *Host) Listen(network, addr string) (net.Listener, error) {
	if err := checkLiteral(network, addr, true); err != nil {
		return nil, err
	}
	var ln net.Listener
	err := h.Do(func() (err error) {
		ln, err = net.Listen(network, addr)
		return err
	})
	return ln, err
}

// ListenPacket is net.ListenPacket inside the host's namespace; addr as for
// Listen.
func (h *Host) ListenPacket(network, addr string) (net.PacketConn, error) {
	if err := checkLiteral(network, addr, true); err != nil {
		return nil, err
	}
	var pc net.PacketConn
	err := h.Do(func() (err error) {
		pc, err = net.ListenPacket(network, addr)
		return err
	})
	return pc, err
}

// DialContext dials from inside the host's namespace. The host part of addr
// must be a literal IP address (see Listen).
func (h *Host) DialContext(ctx context.Context, network, addr string) (net.Conn, error) {
	if err := checkLiteral(network, addr, false); err != nil {
		return nil, err
	}
	var c net.Conn
	err := h.Do(func() (err error) {
		var d net.Dialer
		c, err = d.DialContext(ctx, network, addr)
		return err
	})
	return c, err
}

// Command returns a command that runs name with args inside the host's
// namespace. It runs as `ip netns exec NETNS name args...`: ip enters the
// namespace, remounts /sys so that /sys/class/net shows the namespace's
// interfaces, and then execs name, so the process (and cmd.Process.Pid) is
// the program itself. It needs iproute2's ip on PATH; if it is missing,
// cmd.Err says so and Start returns it. Processes still in the namespace
// when the lab closes are killed.
func (h *Host) Command(ctx context.Context, name string, args ...string) *exec.Cmd {
	cmd := exec.CommandContext(ctx, "ip", append([]string{"netns", "exec", h.netns, name}, args...)...)
	if h.lab.closed.Load() && cmd.Err == nil {
		cmd.Err = fmt.Errorf("host %s: lab closed", h.name)
	}
	return cmd
}

// SetSysctl writes a network sysctl inside the host's namespace. key is
// dotted ("net.ipv4.ip_forward") or a path under /proc/sys
// ("net/ipv4/conf/eth0.5/rp_filter"); only net.* keys are accepted, since
// the others are global to the machine.
func (h *Host) SetSysctl(key, value string) error {
	p := key
	if !strings.Contains(p, "/") {
		p = strings.ReplaceAll(p, ".", "/")
	}
	if !strings.HasPrefix(p, "net/") || strings.Contains(p, "..") {
		return fmt.Errorf("sysctl %s on %s: only net.* keys are per namespace", key, h.name)
	}
	return h.Do(func() error {
		if err := os.WriteFile("/proc/sys/"+p, []byte(value), 0); err != nil {
			return fmt.Errorf("sysctl %s on %s: %w", key, h.name, err)
		}
		return nil
	})
}

// allowed reports whether a lab may use addresses of p.
func allowed(p netip.Prefix) bool {
	for _, r := range []netip.Prefix{bench4, ula6, loop4, loop6} {
		if p.Bits() >= r.Bits() && r.Contains(p.Addr()) {
			return true
		}
	}
	return false
}

// checkLiteral refuses addresses whose host part would need name
// resolution. Unix sockets are fine: abstract ones are per namespace.
func checkLiteral(network, addr string, emptyOK bool) error {
	switch network {
	case "unix", "unixgram", "unixpacket":
		return nil
	}
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return fmt.Errorf("address %q: %w", addr, err)
	}
	if host == "" && emptyOK {
		return nil
	}
	if _, err := netip.ParseAddr(host); err != nil {
		return fmt.Errorf("address %q: host must be a literal IP address in a lab", addr)
	}
	return nil
}

// checkHostName keeps host names short and safe in file and namespace names.
func checkHostName(name string) error {
	if name == "" || len(name) > maxHostName {
		return fmt.Errorf("host name %q: want 1 to %d characters", name, maxHostName)
	}
	for i, r := range name {
		if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '-' || r == '_') {
			return fmt.Errorf("host name %q: character %q at column %d: want letters, digits, '-' or '_'", name, r, i+1)
		}
	}
	return nil
}

// labPrefix names the namespaces of lab number seq of the process pid that
// started at start (clock ticks after boot, from /proc/PID/stat): the start
// time tells a reused pid from the lab's creator.
func labPrefix(pid int, start uint64, seq uint64) string {
	return fmt.Sprintf("%s%d-%d-%d-", Prefix, pid, start, seq)
}

// parseName returns the creator of a namespace named by labPrefix, or
// ok=false for names that are not ours. Numbers must be canonical, so that
// a name parses only if labPrefix could have made it.
func parseName(ns string) (pid int, start uint64, ok bool) {
	rest, found := strings.CutPrefix(ns, Prefix)
	if !found {
		return 0, 0, false
	}
	f := strings.SplitN(rest, "-", 4)
	if len(f) != 4 || f[3] == "" {
		return 0, 0, false
	}
	var n [3]uint64
	for i := range n {
		v, err := strconv.ParseUint(f[i], 10, 64)
		if err != nil || strconv.FormatUint(v, 10) != f[i] {
			return 0, 0, false
		}
		n[i] = v
	}
	if n[0] == 0 || n[0] > math.MaxInt32 {
		return 0, 0, false
	}
	return int(n[0]), n[1], true
}

// linkPlan fills in the addresses of link number n (see Link).
func linkPlan(n int) Link {
	hi, lo := byte(n>>8), byte(n)
	v4 := netip.AddrFrom4([4]byte{198, 18 + hi, lo, 0})
	v6 := netip.AddrFrom16([16]byte{0: 0xfd, 6: hi, 7: lo})
	a6, b6 := v6.As16(), v6.As16()
	a6[15], b6[15] = 1, 2
	return Link{
		AMAC: net.HardwareAddr{0x02, 0x70, 0x6c, hi, lo, 0x01},
		BMAC: net.HardwareAddr{0x02, 0x70, 0x6c, hi, lo, 0x02},
		A4:   netip.AddrFrom4([4]byte{198, 18 + hi, lo, 1}),
		B4:   netip.AddrFrom4([4]byte{198, 18 + hi, lo, 2}),
		A6:   netip.AddrFrom16(a6),
		B6:   netip.AddrFrom16(b6),
		Net4: netip.PrefixFrom(v4, 24),
		Net6: netip.PrefixFrom(v6, 64),
	}
}

// New returns an empty lab, after sweeping away what dead processes left
// (SweepStale). Close it when done: defer lab.Close(), or use NewT in tests.
func New() (*Lab, error) {
	if err := SweepStale(); err != nil {
		return nil, err
	}
	pid, start, err := self()
	if err != nil {
		return nil, err
	}
	return &Lab{prefix: labPrefix(pid, start, labSeq.Add(1)-1)}, nil
}

// SweepStale removes the namespaces under /run/netns that this package
// named and whose creating process (same pid and start time) no longer runs,
// first killing any process still inside them. It leaves live labs of other
// processes alone, so concurrent test binaries may all call it.
func SweepStale() error { return sweepStale() }

// Prefix returns the start of the names of the lab's namespaces,
// "pl-<pid>-<starttime>-<lab>-".
func (l *Lab) Prefix() string { return l.prefix }

// AddHost makes a host: a new namespace named Prefix()+name, loopback up,
// IPv6 duplicate address detection off, no other interface yet. Names are
// unique in a lab and made of up to 32 letters, digits, '-' and '_'.
func (l *Lab) AddHost(name string) (*Host, error) {
	if err := checkHostName(name); err != nil {
		return nil, err
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.closed.Load() {
		return nil, fmt.Errorf("add host %s: lab closed", name)
	}
	for _, h := range l.hosts {
		if h.name == name {
			return nil, fmt.Errorf("add host %s: already in the lab", name)
		}
	}
	h := &Host{lab: l, name: name, netns: l.prefix + name, fd: -1}
	if err := createHost(h); err != nil {
		return nil, errors.Join(fmt.Errorf("add host %s: %w", name, err), closeHost(h))
	}
	l.hosts = append(l.hosts, h)
	return h, nil
}

// Link joins a and b with a veth pair, addressed and up at both ends (see
// Link for the address plan). The hosts may already have other links.
func (l *Lab) Link(a, b *Host) (*Link, error) {
	if a == nil || b == nil || a.lab != l || b.lab != l {
		return nil, errors.New("link: hosts must belong to this lab")
	}
	if a == b {
		return nil, fmt.Errorf("link %s to itself: need two hosts", a.name)
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.closed.Load() {
		return nil, fmt.Errorf("link %s-%s: lab closed", a.name, b.name)
	}
	if l.links >= MaxLinks {
		return nil, fmt.Errorf("link %s-%s: lab has its %d links", a.name, b.name, MaxLinks)
	}
	n := l.links
	lk := linkPlan(n)
	lk.A, lk.B = a, b
	lk.ADev, lk.BDev = "eth"+strconv.Itoa(a.ifaces), "eth"+strconv.Itoa(b.ifaces)
	// Counted before creating, so a half-made pair never blocks the next name.
	l.links++
	a.ifaces++
	b.ifaces++
	if err := createLink(&lk, n); err != nil {
		return nil, fmt.Errorf("link %s-%s: %w", a.name, b.name, err)
	}
	return &lk, nil
}

// Close kills every process still inside the lab's namespaces and removes
// the namespaces, and with them every interface, address and route of the
// lab. It is idempotent; hosts and links are unusable afterwards. Stop
// using the lab's hosts from other goroutines before calling it.
func (l *Lab) Close() error {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.closed.Swap(true) {
		return nil
	}
	var errs []error
	for _, h := range l.hosts {
		errs = append(errs, closeHost(h))
	}
	return errors.Join(errs...)
}

// AddAddr adds address p (say 198.18.0.7/24) to interface dev of the host,
// usable at once (no duplicate address detection). Only 198.18.0.0/15,
// fd00::/8 and loopback addresses are accepted, with a prefix no shorter
// than their range's.
func (h *Host) AddAddr(dev string, p netip.Prefix) error {
	if !p.IsValid() || !allowed(p) {
		return fmt.Errorf("add address %s to %s on %s: outside 198.18.0.0/15, fd00::/8 and loopback", p, dev, h.name)
	}
	if err := addAddr(h, dev, p); err != nil {
		return fmt.Errorf("add address %s to %s on %s: %w", p, dev, h.name, err)
	}
	return nil
}

// AddRoute routes dst via the gateway via, which must be on a link of the
// host. Both must lie in the lab's ranges, and dst may not be a default
// route.
func (h *Host) AddRoute(dst netip.Prefix, via netip.Addr) error {
	if !dst.IsValid() || dst.Bits() == 0 || !allowed(dst) || !via.IsValid() || !allowed(netip.PrefixFrom(via, via.BitLen())) {
		return fmt.Errorf("add route %s via %s on %s: outside 198.18.0.0/15 and fd00::/8, or a default route", dst, via, h.name)
	}
	if err := addRoute(h, dst.Masked(), via); err != nil {
		return fmt.Errorf("add route %s via %s on %s: %w", dst, via, h.name, err)
	}
	return nil
}

// PinNeighbors adds permanent ARP and NDP entries for both ends of the
// link, so tools that build their own frames need no address resolution.
func (lk *Link) PinNeighbors() error {
	if err := pinNeighbors(lk); err != nil {
		return fmt.Errorf("pin neighbours %s-%s: %w", lk.A.name, lk.B.name, err)
	}
	return nil
}

// hasGroup reports whether the /proc/net/igmp6 text lists dev as a member
// of group (32 hex digits). Lines are "index dev group users flags timer".
func hasGroup(igmp6 []byte, dev, group string) bool {
	for _, line := range strings.Split(string(igmp6), "\n") {
		f := strings.Fields(line)
		if len(f) >= 3 && f[1] == dev && f[2] == group {
			return true
		}
	}
	return false
}
