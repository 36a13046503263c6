package bindcheck

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"strings"
	"syscall"
	"unsafe"

	"golang.org/x/sys/unix"

	"portolan/internal/freeport"
	"portolan/internal/owners"
	"portolan/internal/portspec"
	"portolan/internal/sockets"
)

// Why tries the bind req describes, for real: a fresh socket with the
// requested options, bound (and for TCP put to listen) in the requested
// namespace as the requested user, then closed. It then reads every socket
// on the port, in both families and every state, with their owners, and
// explains the outcome by the kernel's rules. When the bind fails it also
// tries the variants that might work (SO_REUSEADDR, SO_REUSEPORT,
// IPV6_V6ONLY, a loopback address instead of the wildcard), so the fixes it
// offers are ones the kernel accepted, and looks for the nearest free
// ports.
//
// The error is for what stopped the question being answered (a namespace
// that does not exist, a user switch without root); a failing bind is a
// Verdict with OK false.
func Why(ctx context.Context, req Request) (*Verdict, error) {
	if err := req.check(); err != nil {
		return nil, err
	}
	log := req.logger()
	o := &observation{
		proto:    req.proto(),
		opts:     bindOpts{req.ReuseAddr, req.ReusePort, req.V6Only},
		alt:      map[string]error{},
		bpfProgs: -1,
	}
	err := asUser(req.Netns, req.As, func() error {
		addr := req.Addr
		if !addr.IsValid() {
			addr = netip.IPv6Unspecified()
			if !ipv6Works() {
				addr = netip.IPv4Unspecified()
			}
		}
		o.local = netip.AddrPortFrom(addr, uint16(req.Port))
		o.as = threadIdentity()
		o.step, o.err = tryBind(o.proto, o.local, o.opts)
		log.Debug("bind attempt", "addr", o.local, "proto", o.proto, "step", o.step, "err", o.err)
		readBindSysctls(o)
		o.isLocal, o.tentative = isLocalAddr(addr)
		o.special = specialAddr(addr)
		if errors.Is(o.err, syscall.EACCES) || errors.Is(o.err, syscall.EPERM) {
			o.seccomp = threadSeccomp()
			o.lsms = activeLSMs()
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("why %s: %w", req.label(), err)
	}

	if req.Port != 0 {
		q := sockets.Query{Proto: o.proto, States: sockets.AllStates, Ports: []sockets.PortRange{{Lo: req.Port, Hi: req.Port}}}
		socks, err := (&sockets.Table{Netns: req.Netns, Logger: req.Logger}).List(ctx, q)
		if err != nil {
			return nil, fmt.Errorf("why %v/%v: %w", o.local, o.proto, err)
		}
		sockets.SortByPort(socks)
		if len(socks) > 0 {
			// Every owner: the fix must stop all the processes holding a
			// socket in the way (a pre-forked server's workers too).
			if err := sockets.FindOwners(ctx, socks, owners.Options{Details: true}); err != nil {
				if ctx.Err() != nil {
					return nil, err
				}
				log.Debug("owners", "err", err)
			}
		}
		o.socks = socks
	}

	if errors.Is(o.err, syscall.EADDRINUSE) {
		if err := asUser(req.Netns, req.As, func() error { tryAlternatives(o); return nil }); err != nil {
			return nil, fmt.Errorf("why %v/%v: %w", o.local, o.proto, err)
		}
	}
	if errors.Is(o.err, syscall.EACCES) || errors.Is(o.err, syscall.EPERM) {
		o.bpfProgs, o.cgroup = bindHookPrograms(o.local.Addr().Is4())
	}
	v := judge(o)
	if !v.OK && req.nearest() > 0 && req.Port != 0 && wantsNearest(v.Rule) {
		floor := 1
		if !o.as.CapNetBindService && o.unprivMin > 0 {
			floor = o.unprivMin
		}
		err := asUser(req.Netns, req.As, func() error {
			v.Nearest = nearestFree(ctx, req.Port, floor, req.nearest(), o.proto, log)
			return nil
		})
		if err != nil {
			return nil, fmt.Errorf("why %v/%v: nearest free ports: %w", o.local, o.proto, err)
		}
	}
	return v, nil
}

// wantsNearest reports whether another port is a sensible way around rule.
func wantsNearest(r Rule) bool {
	switch r {
	case RuleNonLocal, RuleDenied, RuleOther:
		return false
	}
	return true
}

// tryBind binds (and for TCP listens on) a fresh socket and closes it. It
// returns the call that failed and its error.
func tryBind(proto portspec.Proto, ap netip.AddrPort, o bindOpts) (step string, err error) {
	family, sa, err := sockaddr(ap)
	if err != nil {
		return "bind", err
	}
	typ := unix.SOCK_STREAM
	if proto == portspec.UDP {
		typ = unix.SOCK_DGRAM
	}
	fd, err := unix.Socket(family, typ|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return "socket", err
	}
	defer unix.Close(fd)
	if family == unix.AF_INET6 {
		if err := unix.SetsockoptInt(fd, unix.IPPROTO_IPV6, unix.IPV6_V6ONLY, boolInt(o.v6only)); err != nil {
			return "setsockopt IPV6_V6ONLY", err
		}
	}
	if o.reuseAddr {
		if err := unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_REUSEADDR, 1); err != nil {
			return "setsockopt SO_REUSEADDR", err
		}
	}
	if o.reusePort {
		if err := unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_REUSEPORT, 1); err != nil {
			return "setsockopt SO_REUSEPORT", err
		}
	}
	if err := unix.Bind(fd, sa); err != nil {
		return "bind", err
	}
	if proto == portspec.TCP {
		if err := unix.Listen(fd, 1); err != nil {
			return "listen", err
		}
	}
	return "", nil
}

func boolInt(b bool) int {
	if b {
		return 1
	}
	return 0
}

// sockaddr is the family and address of ap; a zone names an interface of
// the current namespace.
func sockaddr(ap netip.AddrPort) (int, unix.Sockaddr, error) {
	a := ap.Addr()
	if a.Is4() {
		return unix.AF_INET, &unix.SockaddrInet4{Port: int(ap.Port()), Addr: a.As4()}, nil
	}
	sa := &unix.SockaddrInet6{Port: int(ap.Port()), Addr: a.As16()}
	if z := a.Zone(); z != "" {
		ifi, err := net.InterfaceByName(z)
		if err != nil {
			return 0, nil, fmt.Errorf("zone %q: %w", z, err)
		}
		sa.ZoneId = uint32(ifi.Index)
	}
	return unix.AF_INET6, sa, nil
}

// ipv6Works reports whether IPv6 sockets can be made here.
func ipv6Works() bool {
	fd, err := unix.Socket(unix.AF_INET6, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return false
	}
	unix.Close(fd)
	return true
}

// threadIdentity is who the calling thread is, with its effective
// capabilities (of this thread: /proc/thread-self, not /proc/self).
func threadIdentity() Identity {
	uid := uint32(unix.Geteuid())
	id := Identity{UID: uid, User: owners.LookupUser(uid)}
	if b, err := os.ReadFile("/proc/thread-self/status"); err == nil {
		if caps, err := parseCapEff(b); err == nil {
			id.CapNetBindService = caps&(1<<capNetBindService) != 0
		}
	}
	return id
}

// threadSeccomp reports whether a seccomp filter runs on this thread.
func threadSeccomp() bool {
	b, err := os.ReadFile("/proc/thread-self/status")
	if err != nil {
		return false
	}
	for line := range strings.SplitSeq(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "Seccomp:"); ok {
			return strings.TrimSpace(v) == "2"
		}
	}
	return false
}

// activeLSMs lists the security modules in use, when securityfs says.
func activeLSMs() []string {
	b, err := os.ReadFile("/sys/kernel/security/lsm")
	if err != nil {
		return nil
	}
	return strings.Split(strings.TrimSpace(string(b)), ",")
}

// readBindSysctls reads the sysctls that bear on a bind, in the calling
// thread's network namespace.
func readBindSysctls(o *observation) {
	o.unprivMin = -1
	read := func(name string) (string, bool) {
		b, err := os.ReadFile("/proc/sys/" + strings.ReplaceAll(name, ".", "/"))
		return string(b), err == nil
	}
	if s, ok := read("net.ipv4.ip_unprivileged_port_start"); ok {
		if n, err := sockets.ParseSysctlInt("ip_unprivileged_port_start", s); err == nil {
			o.unprivMin = n
		}
	}
	if s, ok := read("net.ipv4.ip_local_reserved_ports"); ok {
		if set, err := sockets.ParseReservedPorts(s); err == nil {
			o.reserved = set
			o.reservedList = strings.TrimSpace(s)
		}
	}
	if s, ok := read("net.ipv4.ip_local_port_range"); ok {
		if lo, hi, err := sockets.ParseLocalPortRange(s); err == nil {
			o.ephLo, o.ephHi = lo, hi
		}
	}
	key := "net.ipv4.ip_nonlocal_bind"
	if o.local.Addr().Is6() && !o.local.Addr().Is4In6() {
		key = "net.ipv6.ip_nonlocal_bind"
	}
	if s, ok := read(key); ok {
		n, err := sockets.ParseSysctlInt(key, s)
		o.nonlocal = err == nil && n != 0
	}
}

// isLocalAddr reports whether a is an address of the calling thread's
// namespace: a wildcard, an interface address, or inside a loopback
// interface's prefix (127.0.0.0/8 is all local on Linux). found says the
// address is configured (an IPv6 address refused while configured is
// still in duplicate address detection).
func isLocalAddr(a netip.Addr) (local, found bool) {
	if a.IsUnspecified() {
		return true, true
	}
	a = a.Unmap().WithZone("")
	ifs, err := net.Interfaces()
	if err != nil {
		return true, false // unknown: do not claim otherwise
	}
	for _, ifi := range ifs {
		addrs, err := ifi.Addrs()
		if err != nil {
			continue
		}
		for _, ad := range addrs {
			ipn, ok := ad.(*net.IPNet)
			if !ok {
				continue
			}
			pa, ok := netip.AddrFromSlice(ipn.IP)
			if !ok {
				continue
			}
			pa = pa.Unmap()
			if pa == a {
				return true, true
			}
			bits, _ := ipn.Mask.Size()
			if ifi.Flags&net.FlagLoopback != 0 && netip.PrefixFrom(pa, bits).Contains(a) {
				return true, true
			}
		}
	}
	return false, false
}

// specialAddr is "multicast" or "broadcast" for an address any socket may
// bind though no interface has it (the kernel's RTN_MULTICAST and
// RTN_BROADCAST in __inet_bind, multicast in inet6_bind): a multicast
// group, 255.255.255.255, or the broadcast address of an IPv4 subnet of an
// interface of the calling thread's namespace. "" otherwise.
func specialAddr(a netip.Addr) string {
	a = a.Unmap().WithZone("")
	switch {
	case a.IsMulticast():
		return "multicast"
	case a == netip.AddrFrom4([4]byte{255, 255, 255, 255}):
		return "broadcast"
	case !a.Is4():
		return ""
	}
	ifs, err := net.Interfaces()
	if err != nil {
		return ""
	}
	for _, ifi := range ifs {
		if ifi.Flags&net.FlagBroadcast == 0 {
			continue
		}
		addrs, _ := ifi.Addrs()
		for _, ad := range addrs {
			ipn, ok := ad.(*net.IPNet)
			if !ok || ipn.IP.To4() == nil {
				continue
			}
			bits, _ := ipn.Mask.Size()
			if bits >= 31 {
				continue
			}
			if broadcastOf(netip.PrefixFrom(netip.AddrFrom4([4]byte(ipn.IP.To4())), bits)) == a {
				return "broadcast"
			}
		}
	}
	return ""
}

// tryAlternatives tries the bind again with one thing changed, to find
// the fixes the kernel accepts now.
func tryAlternatives(o *observation) {
	try := func(key string, ap netip.AddrPort, opts bindOpts) {
		_, err := tryBind(o.proto, ap, opts)
		o.alt[key] = err
	}
	if !o.opts.reuseAddr {
		opts := o.opts
		opts.reuseAddr = true
		try("reuseaddr", o.local, opts)
	}
	if !o.opts.reusePort {
		opts := o.opts
		opts.reusePort = true
		try("reuseport", o.local, opts)
	}
	a := o.local.Addr()
	if a.Is6() && a.IsUnspecified() && !o.opts.v6only {
		opts := o.opts
		opts.v6only = true
		try("v6only", o.local, opts)
	}
	if a.IsUnspecified() {
		lo := netip.AddrFrom4([4]byte{127, 0, 0, 1})
		if a.Is6() {
			lo = netip.IPv6Loopback()
		}
		try("addr:"+lo.String(), netip.AddrPortFrom(lo, o.local.Port()), o.opts)
	}
}

// nearestFree finds up to n free ports (free for proto on every loopback
// and wildcard address, as free does), nearest to p first, none below
// floor.
func nearestFree(ctx context.Context, p portspec.Port, floor, n int, proto portspec.Proto, log interface {
	Debug(string, ...any)
}) []portspec.Port {
	cands := nearCandidates(p, floor, 200)
	if len(cands) == 0 {
		return nil
	}
	rng := new(portspec.Set)
	for _, c := range cands {
		rng.Add(portspec.TCP, c)
	}
	opts := freeport.Options{Range: rng, Prefer: cands, Protos: []portspec.Proto{proto}}
	ports, err := freeport.FindN(ctx, n, opts)
	var nf *freeport.NoFreePortError
	if errors.As(err, &nf) && nf.Found > 0 {
		ports, err = freeport.FindN(ctx, nf.Found, opts)
	}
	if err != nil {
		log.Debug("nearest free ports", "err", err)
		return nil
	}
	return ports
}

// bindHookPrograms counts the BPF programs in effect on this process's
// cgroup (v2) for the inet4 or inet6 bind hook. It needs a mounted cgroup2
// hierarchy and root; -1 means unknown.
func bindHookPrograms(v4 bool) (int, string) {
	b, err := os.ReadFile("/proc/self/cgroup")
	if err != nil {
		return -1, ""
	}
	var path string
	for line := range strings.SplitSeq(string(b), "\n") {
		if p, ok := strings.CutPrefix(line, "0::"); ok {
			path = p
		}
	}
	mi, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil || path == "" {
		return -1, path
	}
	root := ""
	owners.ParseMountinfo(mi, func(point, fstype, _ string) {
		if fstype == "cgroup2" && root == "" {
			root = point
		}
	})
	if root == "" {
		return -1, path
	}
	fd, err := unix.Open(root+path, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return -1, path
	}
	defer unix.Close(fd)
	typ := uint32(unix.BPF_CGROUP_INET6_BIND)
	if v4 {
		typ = unix.BPF_CGROUP_INET4_BIND
	}
	// union bpf_attr, BPF_PROG_QUERY: target_fd, attach_type, query_flags,
	// attach_flags, prog_ids (u64), prog_cnt.
	var attr [40]byte
	ne.PutUint32(attr[0:], uint32(fd))
	ne.PutUint32(attr[4:], typ)
	ne.PutUint32(attr[8:], 1) // BPF_F_QUERY_EFFECTIVE
	_, _, errno := unix.Syscall(unix.SYS_BPF, unix.BPF_PROG_QUERY, uintptr(unsafe.Pointer(&attr[0])), unsafe.Sizeof(attr))
	if errno != 0 {
		return -1, path
	}
	return int(ne.Uint32(attr[24:])), path
}

var ne = binary.NativeEndian // bpf_attr is in host order
