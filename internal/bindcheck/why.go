package bindcheck

// Why a bind succeeds or fails. Why (why_linux.go) tries the bind for
// real and reads the socket table; this file holds what is portable: the
// kernel's rules for which sockets get in each other's way, and the
// explanation and fixes built from what was observed.
//
// The rules follow net/ipv4/inet_connection_sock.c (inet_bind_conflict,
// inet_csk_get_port) for TCP and net/ipv4/udp.c (udp_lib_lport_inuse) for
// UDP, and net/ipv4/af_inet.c (__inet_bind) and net/ipv6/af_inet6.c for the
// privileged-port and local-address checks.

import (
	"cmp"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"net/netip"
	"os/user"
	"slices"
	"strconv"
	"strings"
	"syscall"

	"portolan/internal/owners"
	"portolan/internal/portspec"
	"portolan/internal/sockets"
)

// Rule is a kernel rule that decides, or bears on, a bind.
type Rule uint8

// The rules. A Verdict names the one that decided; Notes name the others
// that apply without deciding.
const (
	// RuleNone: nothing is in the way; the bind succeeds.
	RuleNone Rule = iota
	// RuleInUse: another socket is bound to the same address and port.
	RuleInUse
	// RuleWildcard: a wildcard address (0.0.0.0, ::) and a specific one of
	// the same family overlap: on Linux 0.0.0.0:80 and 127.0.0.1:80
	// exclude each other.
	RuleWildcard
	// RuleDualStack: an IPv6 wildcard socket without IPV6_V6ONLY also
	// holds the port on every IPv4 address.
	RuleDualStack
	// RuleReuseAddrListening: SO_REUSEADDR never shares a port with a
	// listening TCP socket.
	RuleReuseAddrListening
	// RuleReuseAddrBoth: SO_REUSEADDR shares a port only when both
	// sockets set it.
	RuleReuseAddrBoth
	// RuleReusePort: SO_REUSEPORT shares a port only when both sockets set
	// it and belong to the same effective uid.
	RuleReusePort
	// RuleTimeWait: a closed connection in TIME_WAIT still holds the port;
	// Linux lets a bind through only when both the new socket and the one
	// that closed set SO_REUSEADDR.
	RuleTimeWait
	// RuleConnection: a connection (usually outgoing) uses the port as its
	// local port.
	RuleConnection
	// RulePrivileged: the port is below net.ipv4.ip_unprivileged_port_start
	// and the caller lacks CAP_NET_BIND_SERVICE.
	RulePrivileged
	// RuleReserved: the port is in net.ipv4.ip_local_reserved_ports, which
	// only keeps the kernel from choosing it (connect, bind to port 0); it
	// never makes an explicit bind fail.
	RuleReserved
	// RuleNonLocal: the address is not one of this host (EADDRNOTAVAIL),
	// unless IP_FREEBIND or net.ipv4.ip_nonlocal_bind allow it.
	RuleNonLocal
	// RuleDenied: the bind was refused (EACCES, EPERM) for none of the
	// reasons above: an LSM (SELinux, AppArmor, Landlock), a BPF program on
	// the cgroup's bind hook, or a seccomp filter.
	RuleDenied
	// RuleOther: an error none of the rules explains.
	RuleOther
)

var ruleNames = [...]string{
	RuleNone:               "ok",
	RuleInUse:              "in-use",
	RuleWildcard:           "wildcard-overlap",
	RuleDualStack:          "dual-stack-overlap",
	RuleReuseAddrListening: "reuseaddr-vs-listener",
	RuleReuseAddrBoth:      "reuseaddr-needs-both",
	RuleReusePort:          "reuseport",
	RuleTimeWait:           "time-wait",
	RuleConnection:         "connection-local-port",
	RulePrivileged:         "privileged-port",
	RuleReserved:           "reserved-port",
	RuleNonLocal:           "non-local-address",
	RuleDenied:             "denied",
	RuleOther:              "other",
}

func (r Rule) String() string {
	if int(r) < len(ruleNames) {
		return ruleNames[r]
	}
	return fmt.Sprintf("rule(%d)", uint8(r))
}

// MarshalText writes the rule's name ("wildcard-overlap").
func (r Rule) MarshalText() ([]byte, error) { return []byte(r.String()), nil }

// Credential is a user to try a bind as.
type Credential struct {
	UID, GID uint32
	Groups   []uint32 // supplementary groups
	Name     string   // for messages; the uid when empty
}

func (c *Credential) String() string {
	if c.Name != "" {
		return c.Name
	}
	return strconv.FormatUint(uint64(c.UID), 10)
}

// LookupCredential finds a user by name or number in the user database
// (/etc/passwd and /etc/group), with its primary and supplementary groups.
func LookupCredential(name string) (Credential, error) {
	u, err := user.Lookup(name)
	if err != nil {
		var unknown user.UnknownUserError
		if _, nerr := strconv.ParseUint(name, 10, 32); nerr == nil && errors.As(err, &unknown) {
			u, err = user.LookupId(name)
		}
		if err != nil {
			if _, nerr := strconv.ParseUint(name, 10, 32); nerr == nil {
				// A uid without a passwd entry is still a uid (containers).
				uid, _ := strconv.ParseUint(name, 10, 32)
				return Credential{UID: uint32(uid), GID: uint32(uid)}, nil
			}
			return Credential{}, fmt.Errorf("user %q: %w", name, err)
		}
	}
	uid, err := strconv.ParseUint(u.Uid, 10, 32)
	if err != nil {
		return Credential{}, fmt.Errorf("user %q: uid %q: %w", name, u.Uid, err)
	}
	gid, err := strconv.ParseUint(u.Gid, 10, 32)
	if err != nil {
		return Credential{}, fmt.Errorf("user %q: gid %q: %w", name, u.Gid, err)
	}
	c := Credential{UID: uint32(uid), GID: uint32(gid), Name: u.Username}
	if ids, err := u.GroupIds(); err == nil {
		for _, s := range ids {
			if g, err := strconv.ParseUint(s, 10, 32); err == nil {
				c.Groups = append(c.Groups, uint32(g))
			}
		}
	}
	return c, nil
}

// Request is a bind to try. The zero value (with a Port) asks about TCP
// on the dual-stack IPv6 wildcard, which is what a server listening on
// ":PORT" binds.
type Request struct {
	// Addr is the local address; the zero Addr means [::] (dual-stack,
	// holding every IPv4 and IPv6 address), or 0.0.0.0 where IPv6 is off.
	Addr netip.Addr
	// Port is the local port; 0 asks whether the kernel can pick one.
	Port portspec.Port
	// Proto is TCP or UDP; zero means TCP.
	Proto portspec.Proto
	// ReuseAddr, ReusePort and V6Only set SO_REUSEADDR, SO_REUSEPORT and
	// IPV6_V6ONLY on the socket. V6Only is always set explicitly on an IPv6
	// socket (false means dual-stack), whatever net.ipv6.bindv6only says.
	ReuseAddr, ReusePort, V6Only bool
	// As tries the bind as this user; nil means as the caller. Switching
	// needs root (CAP_SETUID, CAP_SETGID).
	As *Credential
	// Netns is the network namespace to bind in (a name under /run/netns or
	// a path); empty means the caller's.
	Netns string
	// Nearest is how many free ports near Port to suggest when the bind
	// fails; zero means 3, negative none.
	Nearest int
	// Logger receives debug records; nil discards them.
	Logger *slog.Logger
}

func (r *Request) proto() portspec.Proto {
	if r.Proto == 0 {
		return portspec.TCP
	}
	return r.Proto
}

func (r *Request) logger() *slog.Logger { return orDiscard(r.Logger) }

// label is the bind asked about, for messages: "[::]:9999/tcp" when no
// address was given (the wildcard it stands for), never "invalid IP".
func (r *Request) label() string {
	a := r.Addr
	if !a.IsValid() {
		a = netip.IPv6Unspecified()
	}
	return fmt.Sprintf("%v/%v", netip.AddrPortFrom(a, uint16(r.Port)), r.proto())
}

// orDiscard is l, or a logger that discards when l is nil.
func orDiscard(l *slog.Logger) *slog.Logger {
	if l == nil {
		return slog.New(slog.DiscardHandler)
	}
	return l
}

func (r *Request) nearest() int {
	switch {
	case r.Nearest == 0:
		return 3
	case r.Nearest < 0:
		return 0
	}
	return r.Nearest
}

// check refuses requests the kernel would reject as malformed rather than
// explain.
func (r *Request) check() error {
	switch p := r.proto(); p {
	case portspec.TCP, portspec.UDP:
	default:
		return fmt.Errorf("why: protocol %v not supported (want tcp or udp)", p)
	}
	if r.Addr.IsValid() && r.V6Only && r.Addr.Is4() {
		return fmt.Errorf("why %v: IPV6_V6ONLY applies to IPv6 addresses only", r.Addr)
	}
	if r.Addr.IsValid() && r.Addr.IsMulticast() && r.proto() == portspec.TCP {
		return fmt.Errorf("why %v: TCP cannot bind a multicast address", r.Addr)
	}
	return nil
}

// Note is a rule that applies to the bind without deciding it.
type Note struct {
	Rule Rule   `json:"rule"`
	Text string `json:"text"`
}

// Identity is who the bind was tried as.
type Identity struct {
	UID  uint32 `json:"uid"`
	User string `json:"user"`
	// CapNetBindService says whether the effective capabilities held
	// CAP_NET_BIND_SERVICE.
	CapNetBindService bool `json:"cap_net_bind_service"`
}

// Verdict is the answer to a Request.
type Verdict struct {
	// Local is the address and port tried (the wildcard filled in).
	Local netip.AddrPort
	Proto portspec.Proto
	// ReuseAddr, ReusePort, V6Only are the options the socket had.
	ReuseAddr, ReusePort, V6Only bool
	// As is who tried.
	As Identity
	// OK says whether the bind (and, for TCP, listen) succeeded.
	OK bool
	// Step is the call that failed: "bind" or "listen"; empty when OK.
	Step string
	// Errno is the kernel's answer; 0 when OK.
	Errno syscall.Errno
	// Rule is the rule that decided.
	Rule Rule
	// Explanation says, in a sentence or three, what happened and why.
	Explanation string
	// Conflicts are the sockets in the way (with their owners), the one
	// that decided first. Empty when OK.
	Conflicts []sockets.Socket
	// Others are sockets on the port that did not get in the way (another
	// address, or shared by SO_REUSEADDR/SO_REUSEPORT).
	Others []sockets.Socket
	// Notes are the rules that apply without deciding.
	Notes []Note
	// Fixes are concrete things to do, best first.
	Fixes []string
	// Nearest are free ports near the one asked for, nearest first.
	Nearest []portspec.Port
	// UnprivilegedPortStart is net.ipv4.ip_unprivileged_port_start of the
	// namespace (-1 when unreadable).
	UnprivilegedPortStart int
}

// bindOpts are the socket options of a bind attempt.
type bindOpts struct {
	reuseAddr, reusePort, v6only bool
}

// observation is what the attempts and the namespace showed: the input
// of judge, gathered by the platform code.
type observation struct {
	local     netip.AddrPort
	proto     portspec.Proto
	opts      bindOpts
	as        Identity
	step      string // failing call
	err       error  // the attempt's error (nil: success)
	unprivMin int    // ip_unprivileged_port_start; -1 unknown
	reserved  *portspec.Set
	nonlocal  bool // ip_nonlocal_bind (of the address's family) is on
	isLocal   bool // the address is one of the namespace's (or a wildcard)
	tentative bool // it is, but IPv6 duplicate address detection holds it
	// special is "multicast" or "broadcast" for an address that is no
	// host's own but that the kernel lets any socket bind.
	special string
	// reservedList is net.ipv4.ip_local_reserved_ports as the kernel
	// writes it ("" when empty or unread); a fix that adds a port must
	// keep it, since writing the sysctl replaces the list.
	reservedList string
	// ephLo, ephHi are net.ipv4.ip_local_port_range (0, 0 unknown).
	ephLo, ephHi portspec.Port
	socks        []sockets.Socket
	// alternatives: the same bind with one thing changed, tried for real
	// after a failure. Keys: "reuseaddr", "reuseport", "v6only", and
	// "addr:<ADDR>".
	alt map[string]error
	// denial: what could refuse a bind besides the kernel's own checks.
	lsms     []string // from /sys/kernel/security/lsm
	seccomp  bool     // a seccomp filter is installed on the thread
	bpfProgs int      // BPF programs effective on the cgroup's bind hook (-1 unknown)
	cgroup   string   // the cgroup they were looked up for
}

// overlap says how a socket's address overlaps the one asked for.
type overlap uint8

const (
	noOverlap overlap = iota
	sameAddr
	wildcardOverlap  // one is the wildcard of the other's family
	dualStackOverlap // through a dual-stack IPv6 wildcard
)

// bound is an address as the kernel compares bound sockets: the IPv4 and
// IPv6 addresses it holds (invalid: none of that family; unspecified: all).
type bound struct {
	v4, v6    netip.Addr
	dualStack bool // v4 comes from an IPv6 wildcard without IPV6_V6ONLY
}

func boundOf(a netip.Addr, v6only bool) bound {
	a = a.WithZone("")
	switch {
	case a.Is4():
		return bound{v4: a}
	case a.Is4In6():
		return bound{v4: a.Unmap()}
	case a.IsUnspecified() && !v6only:
		return bound{v4: netip.IPv4Unspecified(), v6: a, dualStack: true}
	}
	return bound{v6: a}
}

func addrsMeet(x, y netip.Addr) bool {
	return x.IsValid() && y.IsValid() && (x == y || x.IsUnspecified() || y.IsUnspecified())
}

// overlapOf is the kernel's inet_rcv_saddr_equal with wildcards matching:
// do two bound addresses get in each other's way?
func overlapOf(a, b bound) overlap {
	if addrsMeet(a.v6, b.v6) {
		if a.v6 == b.v6 {
			return sameAddr
		}
		return wildcardOverlap
	}
	if addrsMeet(a.v4, b.v4) {
		switch {
		case a.dualStack != b.dualStack:
			return dualStackOverlap
		case a.v4 == b.v4:
			return sameAddr
		}
		return wildcardOverlap
	}
	return noOverlap
}

// socketBound is the bound address of s. Only listening and bound sockets
// can sit on the IPv6 wildcard, and the kernel reports V6Only for those.
func socketBound(s *sockets.Socket) bound { return boundOf(s.Local.Addr(), s.V6Only) }

// conflict is a socket that overlaps the bind, with how.
type conflict struct {
	s  *sockets.Socket
	ov overlap
	r  sockets.Role
}

// overlapping returns the sockets of o that overlap the address tried,
// the most decisive first: listeners, then bound sockets, connections and
// TIME_WAIT; the same address before a wildcard before dual-stack.
func overlapping(o *observation) (in []conflict, out []*sockets.Socket) {
	me := boundOf(o.local.Addr(), o.opts.v6only)
	for i := range o.socks {
		s := &o.socks[i]
		if s.Proto != o.proto || s.Local.Port() != o.local.Port() {
			continue
		}
		r := sockets.RoleOf(s)
		ov := overlapOf(me, socketBound(s))
		if r == sockets.RolePending || ov == noOverlap {
			out = append(out, s)
			continue
		}
		in = append(in, conflict{s, ov, r})
	}
	slices.SortStableFunc(in, func(a, b conflict) int {
		return cmp.Or(cmp.Compare(a.r, b.r), cmp.Compare(a.ov, b.ov))
	})
	return in, out
}

// judge turns an observation into a verdict: the deciding rule, the
// explanation, the notes and the fixes.
func judge(o *observation) *Verdict {
	v := &Verdict{
		Local: o.local, Proto: o.proto, As: o.as,
		ReuseAddr: o.opts.reuseAddr, ReusePort: o.opts.reusePort, V6Only: o.opts.v6only,
		UnprivilegedPortStart: o.unprivMin,
	}
	in, out := overlapping(o)
	for _, s := range out {
		v.Others = append(v.Others, *s)
	}
	port := o.local.Port()
	privileged := port != 0 && o.unprivMin >= 0 && int(port) < o.unprivMin
	if o.reserved.Has(portspec.TCP, portspec.Port(port)) {
		v.Notes = append(v.Notes, Note{RuleReserved, fmt.Sprintf(
			"port %d is in net.ipv4.ip_local_reserved_ports: that only keeps the kernel from picking it for outgoing connections and binds to port 0; an explicit bind like this one is not affected", port)})
	}
	if o.err == nil {
		v.OK = true
		v.Rule = RuleNone
		v.Explanation = fmt.Sprintf("%s %s succeeds as %s.", o.what(), o.where(), o.as.User)
		v.Explanation = strings.ToUpper(v.Explanation[:1]) + v.Explanation[1:]
		if privileged {
			v.Notes = append(v.Notes, Note{RulePrivileged, fmt.Sprintf(
				"port %d is below net.ipv4.ip_unprivileged_port_start (%d); allowed because %s has CAP_NET_BIND_SERVICE", port, o.unprivMin, o.as.User)})
		}
		switch {
		case o.special == "multicast":
			v.Notes = append(v.Notes, Note{RuleNonLocal, fmt.Sprintf(
				"%v is a multicast group address: the kernel lets any socket bind it (ip_nonlocal_bind plays no part), and the socket then receives only datagrams sent to that group, once a socket on this host joins it (IP_ADD_MEMBERSHIP, IPV6_JOIN_GROUP)", o.local.Addr())})
		case o.special == "broadcast":
			v.Notes = append(v.Notes, Note{RuleNonLocal, fmt.Sprintf(
				"%v is a broadcast address: the kernel lets any socket bind it (ip_nonlocal_bind plays no part), and the socket then receives only datagrams broadcast to it", o.local.Addr())})
		case !o.isLocal && o.nonlocal:
			v.Notes = append(v.Notes, Note{RuleNonLocal, fmt.Sprintf(
				"%v is not an address of this host; the bind is allowed because net.ipv4.ip_nonlocal_bind (net.ipv6.ip_nonlocal_bind for IPv6) is on", o.local.Addr())})
		case !o.isLocal:
			v.Notes = append(v.Notes, Note{RuleNonLocal, fmt.Sprintf(
				"%v is not among this host's interface addresses as portolan reads them, yet the kernel accepted it (a route of type local covers it)", o.local.Addr())})
		}
		sharedNotes(o, v, in)
		return v
	}

	v.Step = o.step
	var errno syscall.Errno
	if errors.As(o.err, &errno) {
		v.Errno = errno
	}
	switch {
	case errno == syscall.EACCES && privileged && !o.as.CapNetBindService:
		privilegedVerdict(o, v)
		if len(in) > 0 {
			v.Notes = append(v.Notes, Note{RuleInUse, fmt.Sprintf(
				"even with the privilege the bind would fail: %s", describeConflict(o, &in[0]))})
			v.Conflicts = conflictSockets(in)
		}
	case errno == syscall.EACCES || errno == syscall.EPERM:
		deniedVerdict(o, v, privileged)
	case errno == syscall.EADDRNOTAVAIL:
		nonLocalVerdict(o, v)
	case errno == syscall.EADDRINUSE:
		inUseVerdict(o, v, in)
	default:
		v.Rule = RuleOther
		v.Explanation = fmt.Sprintf("%s of %s failed: %v. None of the usual rules explains it.", o.step, o.where(), o.err)
		switch errno {
		case syscall.EAFNOSUPPORT:
			v.Explanation = fmt.Sprintf("%s of %s failed: %v: IPv6 is disabled on this host or namespace (net.ipv6.conf.all.disable_ipv6, or ipv6.disable=1 at boot).", o.step, o.where(), o.err)
		case syscall.EINVAL:
			v.Explanation = fmt.Sprintf("%s of %s failed: %v: the kernel rejects this address for this socket (a link-local IPv6 address needs a zone such as %%eth0).", o.step, o.where(), o.err)
		}
	}
	return v
}

// what is "bind" or "bind and listen".
func (o *observation) what() string {
	if o.proto == portspec.TCP {
		return "bind and listen on"
	}
	return "bind of"
}

// where is "0.0.0.0:80/tcp" or "[::]:80/tcp (dual-stack)".
func (o *observation) where() string {
	s := fmt.Sprintf("%v/%v", o.local, o.proto)
	if a := o.local.Addr(); a.Is6() && a.IsUnspecified() {
		if o.opts.v6only {
			s += " (IPv6 only)"
		} else {
			s += " (dual-stack: also 0.0.0.0)"
		}
	}
	return s
}

func conflictSockets(in []conflict) []sockets.Socket {
	out := make([]sockets.Socket, len(in))
	for i := range in {
		out[i] = *in[i].s
	}
	return out
}

// describeConflict is one conflicting socket in words.
func describeConflict(o *observation, c *conflict) string {
	var how string
	switch c.ov {
	case sameAddr:
		how = "on the same address"
	case wildcardOverlap:
		if c.s.Local.Addr().IsUnspecified() {
			how = "on the wildcard, which covers " + o.local.Addr().String()
		} else {
			how = "on " + c.s.Local.Addr().String() + ", which the wildcard covers"
		}
	case dualStackOverlap:
		if c.s.DualStack() {
			how = "on [::] without IPV6_V6ONLY, which covers every IPv4 address too"
		} else {
			how = "on IPv4 " + c.s.Local.Addr().String() + ", which a dual-stack [::] covers"
		}
	}
	return fmt.Sprintf("%s %s, held by %s", sockets.DescribeSocket(c.s), how, sockets.DescribeOwner(c.s))
}

func inUseVerdict(o *observation, v *Verdict, in []conflict) {
	if len(in) == 0 {
		v.Rule = RuleInUse
		v.Explanation = fmt.Sprintf("The kernel says %s is in use (%s failed with EADDRINUSE), but no socket on port %d is in the table now: it may have closed since.", o.where(), o.step, o.local.Port())
		v.Fixes = append(v.Fixes, "try again: the holder seems to be gone")
		return
	}
	v.Conflicts = conflictSockets(in)
	c := &in[0]
	first := describeConflict(o, c)
	port := o.local.Port()
	switch {
	case c.r == sockets.RoleTimeWait:
		v.Rule = RuleTimeWait
		if o.opts.reuseAddr {
			v.Explanation = fmt.Sprintf("A closed connection in TIME_WAIT still holds %v: %s. Linux lets a bind through TIME_WAIT only when both the new socket and the one that closed set SO_REUSEADDR; you did, the old one did not.", o.local, sockets.DescribeSocket(c.s))
		} else {
			v.Explanation = fmt.Sprintf("A closed connection in TIME_WAIT still holds %v: %s. The kernel keeps it for 60 s after an active close; Linux lets a new bind through it only with SO_REUSEADDR on the new socket (and on the one that closed).", o.local, sockets.DescribeSocket(c.s))
		}
	case c.r == sockets.RoleConnection:
		v.Rule = RuleConnection
		v.Explanation = fmt.Sprintf("A connection uses port %d as its local port: %s (%s). A port taken by a connection cannot be bound %s until the connection closes.", port, sockets.DescribeSocket(c.s), sockets.DescribeOwner(c.s), addrScope(c))
	case c.ov == dualStackOverlap:
		v.Rule = RuleDualStack
		v.Explanation = fmt.Sprintf("%s is taken through dual-stack overlap: %s. An IPv6 wildcard socket without IPV6_V6ONLY holds the port on every IPv4 address as well, so [::] and 0.0.0.0 (or any IPv4 address) cannot both be bound on Linux unless the [::] socket sets IPV6_V6ONLY.", o.where(), first)
	case c.ov == wildcardOverlap:
		v.Rule = RuleWildcard
		v.Explanation = fmt.Sprintf("%s overlaps a socket %s. On Linux a wildcard and a specific address of the same family exclude each other on one port (unlike BSD), unless both sockets set SO_REUSEPORT as the same user, or both set SO_REUSEADDR and neither listens.", o.where(), first)
	case o.opts.reusePort && c.r != sockets.RoleTimeWait && c.s.UID != o.as.UID && c.s.Inode != 0:
		v.Rule = RuleReusePort
		v.Explanation = fmt.Sprintf("%s is taken: %s. SO_REUSEPORT shares a port only between sockets of the same effective uid: it belongs to uid %d (%s), you are uid %d (%s).", o.where(), first, c.s.UID, owners.LookupUser(c.s.UID), o.as.UID, o.as.User)
	case o.opts.reusePort:
		v.Rule = RuleReusePort
		v.Explanation = fmt.Sprintf("%s is taken: %s. You set SO_REUSEPORT, and the socket belongs to the same uid, so it did not set SO_REUSEPORT: both sockets must.", o.where(), first)
	case o.opts.reuseAddr && c.r == sockets.RoleListening && o.proto == portspec.TCP:
		v.Rule = RuleReuseAddrListening
		v.Explanation = fmt.Sprintf("%s is taken: %s. SO_REUSEADDR does not let a socket share a port with a listening socket on Linux; it only passes sockets that are not listening (TIME_WAIT, bound or connected ones that set it too).", o.where(), first)
	case o.opts.reuseAddr:
		v.Rule = RuleReuseAddrBoth
		v.Explanation = fmt.Sprintf("%s is taken: %s. You set SO_REUSEADDR, but it shares a port only when both sockets set it: this one did not.", o.where(), first)
	default:
		v.Rule = RuleInUse
		v.Explanation = fmt.Sprintf("%s is taken: %s.", o.where(), first)
	}
	if o.step == "listen" {
		v.Explanation += " The bind itself succeeded; listen failed, because another socket of the group already listens."
	}
	inUseFixes(o, v, in)
}

// broadcastOf is the last address of IPv4 prefix p: its broadcast.
func broadcastOf(p netip.Prefix) netip.Addr {
	b := p.Masked().Addr().As4()
	v := uint32(b[0])<<24 | uint32(b[1])<<16 | uint32(b[2])<<8 | uint32(b[3])
	v |= 1<<(32-p.Bits()) - 1
	return netip.AddrFrom4([4]byte{byte(v >> 24), byte(v >> 16), byte(v >> 8), byte(v)})
}

// connectionFixes keeps connections off the port: through
// ip_local_reserved_ports when the kernel could pick it (it is in the
// ephemeral range), the existing list kept, since writing the sysctl
// replaces it. Outside the range the kernel never picks it, so the
// connection's program bound it explicitly, and only that program can stop.
func connectionFixes(o *observation) []string {
	port := portspec.Port(o.local.Port())
	if o.ephHi != 0 && (port < o.ephLo || port > o.ephHi) {
		return []string{fmt.Sprintf(
			"port %d is outside the ephemeral range (%d-%d), so the kernel never picks it for a connection: the connection's program chose it (a bind before connect); change that program's source port", port, o.ephLo, o.ephHi)}
	}
	list := strconv.Itoa(int(port))
	if o.reservedList != "" {
		list = o.reservedList + "," + list
	}
	return []string{fmt.Sprintf(
		"keep outgoing connections off port %d: sysctl -w net.ipv4.ip_local_reserved_ports=%s (the list there now, plus %d: the kernel then never picks it for a connection; explicit binds still work)", port, list, port)}
}

func addrScope(c *conflict) string {
	if c.ov == sameAddr {
		return "on its address"
	}
	return "on an address that covers it"
}

// inUseFixes lists what would make the bind succeed, those proven by a
// real attempt first.
func inUseFixes(o *observation, v *Verdict, in []conflict) {
	c := &in[0]
	ok := func(k string) bool { err, tried := o.alt[k]; return tried && err == nil }
	if !o.opts.reuseAddr && ok("reuseaddr") {
		v.Fixes = append(v.Fixes, "set SO_REUSEADDR on the new socket: tried, the bind then succeeds (the sockets in the way set it too and do not listen)")
	}
	if !o.opts.v6only && ok("v6only") {
		v.Fixes = append(v.Fixes, "set IPV6_V6ONLY on the [::] socket (--v6only) to leave IPv4 to the other socket: tried, it succeeds")
	}
	for _, k := range slices.Sorted(maps.Keys(o.alt)) {
		if a, isAddr := strings.CutPrefix(k, "addr:"); isAddr && o.alt[k] == nil {
			v.Fixes = append(v.Fixes, fmt.Sprintf("bind %s instead of the wildcard (local clients only): tried, it succeeds", a))
		}
	}
	if !o.opts.reusePort && ok("reuseport") {
		v.Fixes = append(v.Fixes, "set SO_REUSEPORT: tried, it succeeds, since the holder set it and runs as the same user; the kernel then spreads connections over both sockets (only if you mean to run two servers)")
	}
	switch v.Rule {
	case RuleTimeWait:
		if !ok("reuseaddr") {
			v.Fixes = append(v.Fixes, "wait for TIME_WAIT to end (at most 60 s after the connection closed)")
		}
		v.Fixes = append(v.Fixes, "set SO_REUSEADDR on the server's sockets before bind (most servers do): its TIME_WAIT connections then no longer block a restart")
	case RuleReuseAddrBoth:
		v.Fixes = append(v.Fixes, "set SO_REUSEADDR on both sockets")
	case RuleReuseAddrListening:
		v.Fixes = append(v.Fixes, "use SO_REUSEPORT on both sockets (same user) to run two listeners on one port")
	case RuleReusePort:
		if c.s.UID != o.as.UID && c.s.Inode != 0 {
			v.Fixes = append(v.Fixes, fmt.Sprintf("run the new socket as uid %d (%s), the holder's user", c.s.UID, owners.LookupUser(c.s.UID)))
		} else {
			v.Fixes = append(v.Fixes, "set SO_REUSEPORT on the socket already bound too")
		}
	case RuleDualStack:
		if c.s.DualStack() {
			v.Fixes = append(v.Fixes, "make the other server bind [::] with IPV6_V6ONLY (nginx: listen [::]:PORT ipv6only=on), or have it bind 0.0.0.0 and [::] separately")
		}
	case RuleConnection:
		v.Fixes = append(v.Fixes, connectionFixes(o)...)
	}
	// Every process holding a socket in the way, in one piece of advice:
	// the port is free only when all of them have let go.
	seen := map[int]bool{}
	var holders []*owners.Process
	for i := range in {
		s := in[i].s
		if in[i].r == sockets.RoleTimeWait {
			continue
		}
		if len(s.Procs) == 0 {
			if s.Unseen == owners.Denied || s.Unseen == owners.Hidden {
				v.Fixes = append(v.Fixes, fmt.Sprintf("run as root to see which process of uid %d (%s) holds %s", s.UID, owners.LookupUser(s.UID), sockets.DescribeSocket(s)))
			}
			continue
		}
		for _, p := range s.Procs {
			if !seen[p.PID] {
				seen[p.PID] = true
				holders = append(holders, p)
			}
		}
	}
	if len(holders) > 0 {
		slices.SortFunc(holders, func(a, b *owners.Process) int { return a.PID - b.PID })
		v.Fixes = append(v.Fixes, owners.StopAdvice(holders, portspec.Port(o.local.Port()), o.proto))
	}
	if len(v.Fixes) == 0 {
		v.Fixes = append(v.Fixes, "stop the process holding the port")
	}
}

// sharedNotes explains sockets that overlap a bind that succeeded.
func sharedNotes(o *observation, v *Verdict, in []conflict) {
	var tw, shared int
	for i := range in {
		v.Others = append(v.Others, *in[i].s)
		if in[i].r == sockets.RoleTimeWait {
			tw++
		} else {
			shared++
		}
	}
	if tw > 0 {
		v.Notes = append(v.Notes, Note{RuleTimeWait, fmt.Sprintf(
			"%d connection(s) in TIME_WAIT on the port did not block: SO_REUSEADDR was set on both sides", tw)})
	}
	if shared > 0 {
		switch {
		case o.opts.reusePort:
			v.Notes = append(v.Notes, Note{RuleReusePort, fmt.Sprintf(
				"the port is shared with %d socket(s) through SO_REUSEPORT (same user): the kernel spreads connections or datagrams over the group", shared)})
		case o.opts.reuseAddr && o.proto == portspec.UDP:
			v.Notes = append(v.Notes, Note{RuleReuseAddrBoth, fmt.Sprintf(
				"the port is shared with %d UDP socket(s) through SO_REUSEADDR on both: unicast datagrams go to one of them only (the last bound)", shared)})
		case o.opts.reuseAddr:
			v.Notes = append(v.Notes, Note{RuleReuseAddrBoth, fmt.Sprintf(
				"%d socket(s) on the port did not block: they set SO_REUSEADDR as well and are not listening; the first of you to listen wins", shared)})
		}
	}
}

func privilegedVerdict(o *observation, v *Verdict) {
	v.Rule = RulePrivileged
	port := o.local.Port()
	v.Explanation = fmt.Sprintf(
		"Port %d is privileged: it is below net.ipv4.ip_unprivileged_port_start (%d in this network namespace), and %s (uid %d) lacks CAP_NET_BIND_SERVICE in its effective capabilities, so the kernel refuses the bind with EACCES.",
		port, o.unprivMin, o.as.User, o.as.UID)
	v.Fixes = append(v.Fixes,
		"setcap cap_net_bind_service=+ep BINARY (lets that program bind low ports as any user)",
		"in a systemd unit: AmbientCapabilities=CAP_NET_BIND_SERVICE",
		fmt.Sprintf("sysctl -w net.ipv4.ip_unprivileged_port_start=%d (ports from %d up become unprivileged in this network namespace)", port, port),
		fmt.Sprintf("bind a port from %d up and forward %d to it", o.unprivMin, port),
	)
}

func deniedVerdict(o *observation, v *Verdict, privileged bool) {
	v.Rule = RuleDenied
	why := "port " + strconv.Itoa(int(o.local.Port())) + " is not privileged here"
	if privileged {
		why = "you have CAP_NET_BIND_SERVICE"
	}
	var by []string
	if o.bpfProgs > 0 {
		by = append(by, fmt.Sprintf("%d BPF program(s) attached to the bind hook of cgroup %s (or a parent): one returned deny", o.bpfProgs, o.cgroup))
	}
	if o.seccomp {
		by = append(by, "a seccomp filter on the process")
	}
	for _, l := range o.lsms {
		switch l {
		case "selinux", "apparmor", "smack", "tomoyo", "landlock":
			by = append(by, "the "+l+" LSM")
		}
	}
	src := "an LSM (SELinux, AppArmor, Landlock), a BPF program on the cgroup's bind hook, or a seccomp filter"
	if len(by) > 0 {
		src = strings.Join(by, "; or ")
	}
	v.Explanation = fmt.Sprintf("The bind was refused with %s, and not by the privileged-port rule (%s): the kernel's own checks did not decide it. Likely source: %s.", errnoName(v.Errno), why, src)
	if o.bpfProgs > 0 {
		v.Fixes = append(v.Fixes, fmt.Sprintf("list the cgroup's BPF programs: bpftool cgroup tree (look for bind4/bind6 on %s)", o.cgroup))
	}
	v.Fixes = append(v.Fixes,
		"look for the denial in the audit log: journalctl -k | grep -i -e avc -e apparmor, or ausearch -m avc -ts recent",
		"check the service's sandboxing (systemd RestrictAddressFamilies=, SocketBindDeny=, SystemCallFilter=)")
}

func nonLocalVerdict(o *observation, v *Verdict) {
	v.Rule = RuleNonLocal
	a := o.local.Addr()
	if o.tentative {
		v.Explanation = fmt.Sprintf("%v is configured here but not usable yet: IPv6 duplicate address detection still holds it (tentative) or found a duplicate, so the bind fails with EADDRNOTAVAIL.", a)
		v.Fixes = append(v.Fixes, "wait for duplicate address detection to finish (ip -6 addr shows it without 'tentative'), or add the address with nodad",
			"set IPV6_FREEBIND on the socket to bind before the address is ready")
		return
	}
	v.Explanation = fmt.Sprintf("%v is not an address of this host (network namespace), so the bind fails with EADDRNOTAVAIL. Linux allows it only with IP_FREEBIND on the socket or net.ipv4.ip_nonlocal_bind=1 (net.ipv6.ip_nonlocal_bind for IPv6).", a)
	fam := "0.0.0.0"
	if a.Is6() {
		fam = "[::]"
	}
	v.Fixes = append(v.Fixes,
		fmt.Sprintf("bind an address this host has (ip addr), or the wildcard %s", fam),
		"set IP_FREEBIND (IPV6_FREEBIND) on the socket, for an address that comes up later (VRRP, a VPN)",
		"sysctl -w net.ipv4.ip_nonlocal_bind=1 (or net.ipv6.ip_nonlocal_bind=1): every program may then bind addresses it does not have")
}

func errnoName(e syscall.Errno) string {
	switch e {
	case syscall.EACCES:
		return "EACCES"
	case syscall.EPERM:
		return "EPERM"
	case syscall.EADDRINUSE:
		return "EADDRINUSE"
	case syscall.EADDRNOTAVAIL:
		return "EADDRNOTAVAIL"
	case syscall.EINVAL:
		return "EINVAL"
	case syscall.EAFNOSUPPORT:
		return "EAFNOSUPPORT"
	case 0:
		return ""
	}
	return fmt.Sprintf("errno %d (%v)", int(e), e)
}

// ErrnoName is the C name of the errnos a bind fails with ("EADDRINUSE"),
// or "errno N (text)" for others; empty for 0.
func ErrnoName(e syscall.Errno) string { return errnoName(e) }

// nearCandidates lists up to n ports around p, nearest first, skipping p
// itself, 0, and ports below floor (for p below floor, the ports from floor
// up are the nearest).
func nearCandidates(p portspec.Port, floor, n int) []portspec.Port {
	var out []portspec.Port
	for d := 1; d < 65536 && len(out) < n; d++ {
		for _, q := range []int{int(p) + d, int(p) - d} {
			if q >= 1 && q <= 65535 && q >= floor && len(out) < n {
				out = append(out, portspec.Port(q))
			}
		}
	}
	return out
}

// parseCapEff reads the effective capability set from /proc/PID/status
// ("CapEff:\t000001ffffffffff").
func parseCapEff(b []byte) (uint64, error) {
	for i, line := range strings.Split(string(b), "\n") {
		v, ok := strings.CutPrefix(line, "CapEff:")
		if !ok {
			continue
		}
		v = strings.TrimSpace(v)
		c, err := strconv.ParseUint(v, 16, 64)
		if err != nil {
			return 0, fmt.Errorf("proc status line %d: CapEff %q: not a hexadecimal capability set", i+1, v)
		}
		return c, nil
	}
	return 0, errors.New("proc status: no CapEff line")
}

// capNetBindService is the capability's bit number (linux/capability.h).
const capNetBindService = 10
