// Package sockets owns the local socket table: the TCP and UDP sockets of a
// network namespace as the kernel reports them over netlink sock_diag, the
// processes holding them (from /proc, only when asked), bind rules, free
// ports and the ephemeral range.
//
// Filters (protocol, family, states, local and remote ports and addresses)
// are compiled into the request and run in the kernel, so a question about
// one port reads one or two messages, not the whole table.
package sockets

import (
	"cmp"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"runtime"
	"slices"
	"strconv"
	"strings"

	"portolan/internal/owners"
	"portolan/internal/portspec"
)

// ErrNotSupported is returned where the socket table cannot be read: on
// systems other than Linux.
var ErrNotSupported = errors.New("socket table: not supported on " + runtime.GOOS + " (needs Linux sock_diag)")

// Family is an address family of a socket.
type Family uint8

// The families; the values are the kernel's AF_INET and AF_INET6.
const (
	IPv4 Family = 2
	IPv6 Family = 10
)

func (f Family) String() string {
	switch f {
	case IPv4:
		return "ipv4"
	case IPv6:
		return "ipv6"
	}
	return fmt.Sprintf("family(%d)", uint8(f))
}

// MarshalText writes "ipv4" or "ipv6".
func (f Family) MarshalText() ([]byte, error) { return []byte(f.String()), nil }

// State is a socket state, numbered as the kernel numbers TCP states. UDP
// sockets are Close when unconnected and Established when connected.
type State uint8

// The states, with the kernel's numbers (include/net/tcp_states.h).
const (
	Established   State = 1
	SynSent       State = 2
	SynRecv       State = 3
	FinWait1      State = 4
	FinWait2      State = 5
	TimeWait      State = 6
	Close         State = 7
	CloseWait     State = 8
	LastAck       State = 9
	Listen        State = 10
	Closing       State = 11
	NewSynRecv    State = 12 // a pending connection; only asked for, reported as SynRecv
	BoundInactive State = 13 // TCP bound but idle (Linux 6.5+); only asked for, reported as Close
)

var stateNames = [...]string{
	Established:   "ESTABLISHED",
	SynSent:       "SYN_SENT",
	SynRecv:       "SYN_RECV",
	FinWait1:      "FIN_WAIT1",
	FinWait2:      "FIN_WAIT2",
	TimeWait:      "TIME_WAIT",
	Close:         "CLOSE",
	CloseWait:     "CLOSE_WAIT",
	LastAck:       "LAST_ACK",
	Listen:        "LISTEN",
	Closing:       "CLOSING",
	NewSynRecv:    "NEW_SYN_RECV",
	BoundInactive: "BOUND_INACTIVE",
}

func (s State) String() string {
	if int(s) < len(stateNames) && stateNames[s] != "" {
		return stateNames[s]
	}
	return fmt.Sprintf("STATE(%d)", uint8(s))
}

// MarshalText writes the state name.
func (s State) MarshalText() ([]byte, error) { return []byte(s.String()), nil }

// stateAliases are the other names people type: ss's names and short forms.
// Keys are folded as foldState does.
var stateAliases = map[string]State{
	"ESTAB": Established, "UNCONN": Close, "LISTENING": Listen, "BOUND": BoundInactive,
}

// foldState is a state name without case, '-' and '_': "fin-wait-2",
// "fin_wait2" and "FINWAIT2" are one name.
func foldState(s string) string {
	return strings.Map(func(r rune) rune {
		if r == '-' || r == '_' {
			return -1
		}
		return r
	}, strings.ToUpper(strings.TrimSpace(s)))
}

// ParseState reads a state name, case-insensitively and with or without
// '-' and '_' between its words: the kernel's names ("TIME_WAIT"), ss's
// ("time-wait", "fin-wait-2", "estab", "unconn") and "listening".
func ParseState(s string) (State, error) {
	u := foldState(s)
	if u != "" {
		for i, n := range stateNames {
			if n != "" && foldState(n) == u {
				return State(i), nil
			}
		}
		if st, ok := stateAliases[u]; ok {
			return st, nil
		}
	}
	return 0, fmt.Errorf("unknown socket state %q (want listen, established, time_wait, close_wait, syn_sent, syn_recv, fin_wait1, fin_wait2, last_ack, closing, close or unconn, bound_inactive)", s)
}

// StateSet is a set of states; the zero value means every state.
type StateSet uint32

// States returns the set holding states.
func States(states ...State) StateSet {
	var s StateSet
	for _, st := range states {
		s |= 1 << st
	}
	return s
}

// AllStates holds every state, including BoundInactive.
const AllStates StateSet = 1<<(BoundInactive+1) - 2

// Has reports whether the set holds st; the zero set holds every state.
func (s StateSet) Has(st State) bool { return s == 0 || s&(1<<st) != 0 }

// mask is the kernel's idiag_states bitmap for the set. A TCP socket that
// is bound but idle is dumped only when BoundInactive is asked for, and then
// reported as Close; asking for one asks for the other.
func (s StateSet) mask() uint32 {
	if s == 0 {
		return ^uint32(0)
	}
	if s&(1<<Close|1<<BoundInactive) != 0 {
		s |= 1<<Close | 1<<BoundInactive
	}
	if s&(1<<SynRecv) != 0 {
		s |= 1 << NewSynRecv
	}
	return uint32(s)
}

// PortRange is the ports Lo through Hi, inclusive.
type PortRange struct{ Lo, Hi portspec.Port }

func (r PortRange) String() string {
	if r.Lo == r.Hi {
		return fmt.Sprint(r.Lo)
	}
	return fmt.Sprintf("%d-%d", r.Lo, r.Hi)
}

// RangesOf returns the runs of consecutive ports of proto in set, for a
// Query. A nil set gives nil (any port).
func RangesOf(set *portspec.Set, proto portspec.Proto) []PortRange {
	var rs []PortRange
	for _, p := range set.Ports(proto) {
		if n := len(rs); n > 0 && rs[n-1].Hi+1 == p {
			rs[n-1].Hi = p
			continue
		}
		rs = append(rs, PortRange{p, p})
	}
	return rs
}

// Query selects sockets. Every field is a filter the kernel applies; the
// zero Query selects every TCP and UDP socket.
type Query struct {
	// Proto is TCP or UDP; zero means both.
	Proto portspec.Proto
	// Family is IPv4 or IPv6; zero means both. IPv4 leaves out dual-stack
	// IPv6 sockets even though they accept IPv4 peers: callers who want
	// them ask for both and keep Socket.DualStack ones.
	Family Family
	// States selects states; zero means every state.
	States StateSet
	// Ports selects the local port; empty means any.
	Ports []PortRange
	// RemotePorts selects the remote port; empty means any.
	RemotePorts []PortRange
	// Local selects the local address; the zero Prefix means any. An IPv4
	// prefix also matches IPv4-mapped addresses of IPv6 sockets, but not
	// the IPv6 wildcard of a dual-stack socket.
	Local netip.Prefix
	// Remote selects the remote address, as Local does.
	Remote netip.Prefix
}

// Table reads the socket table of a network namespace. The zero value reads
// the caller's own namespace.
type Table struct {
	// Netns is the namespace to read: a name (a file under /run/netns, as
	// `ip netns` makes) or a path (/proc/PID/ns/net). Empty means the
	// caller's own.
	Netns string
	// Logger receives debug messages; nil discards them.
	Logger *slog.Logger
}

func (t *Table) logger() *slog.Logger {
	if t == nil || t.Logger == nil {
		return slog.New(slog.DiscardHandler)
	}
	return t.Logger
}

// NetnsPath returns the file of network namespace name: name itself when it
// holds a '/', else /run/netns/name.
func NetnsPath(name string) string {
	if strings.ContainsRune(name, '/') {
		return name
	}
	return "/run/netns/" + name
}

// Socket is one TCP or UDP socket.
type Socket struct {
	Proto  portspec.Proto
	Family Family
	State  State
	Local  netip.AddrPort
	Remote netip.AddrPort // zero port and unspecified address when unconnected
	// V6Only is IPV6_V6ONLY of an IPv6 socket that is listening or
	// unconnected (the kernel reports it for no other state); a wildcard
	// socket without it is dual-stack.
	V6Only bool
	// UID is the user owning the socket (the creator's fsuid); 0 for
	// TIME_WAIT and pending connections.
	UID uint32
	// Inode is the socket's inode, what /proc/PID/fd links name
	// ("socket:[Inode]"); 0 when no file refers to it (TIME_WAIT, pending
	// connections, orphans).
	Inode uint32
	// Cookie is the kernel's unique id of the socket.
	Cookie uint64
	// RxQueue and TxQueue are the bytes queued; for a listener, the accept
	// queue length and its limit (the backlog).
	RxQueue, TxQueue uint32
	// IfIndex is the interface the socket is bound to (SO_BINDTODEVICE or
	// an IPv6 scope), 0 when none; Interface is its name, when known.
	IfIndex   uint32
	Interface string
	// CgroupID is the cgroup v2 id of the process that created the socket
	// (0 when the kernel does not say).
	CgroupID uint64
	// Netns names the network namespace the socket was read from, when
	// the caller reads several (Namespace.Label); empty otherwise.
	Netns string

	// Procs are the processes holding the socket open, filled by
	// FindOwners: the lowest pid first.
	Procs []*owners.Process
	// Unseen says why Procs is empty after FindOwners.
	Unseen owners.Unseen
	// Cgroup is the socket's cgroup (from CgroupID), filled by FindOwners
	// when no process could be seen, so there is still a unit or container
	// to show.
	Cgroup *owners.Cgroup
}

// DualStack reports whether s is an IPv6 wildcard socket that also takes
// IPv4 (IPV6_V6ONLY off): `[::]:80` that serves 0.0.0.0:80 as well.
func (s *Socket) DualStack() bool {
	return s.Family == IPv6 && !s.V6Only && s.Local.Addr().IsUnspecified() &&
		(s.State == Listen || s.State == Close || s.State == BoundInactive)
}

// StateName is the state as people read it: UNCONN (as ss says) for an
// unconnected UDP socket or a TCP socket bound but neither listening nor
// connected, the state name otherwise.
func (s *Socket) StateName() string {
	if s.State == Close {
		return "UNCONN"
	}
	return s.State.String()
}

// SortByPort orders sockets by local port, then protocol, family, local
// address, state and remote end: the order of `portolan ls`. It sorts small
// keys and moves each socket once: a Socket is large, and a table may hold
// tens of thousands.
func SortByPort(socks []Socket) {
	type key struct {
		k uint64 // port, proto, family, state: decides most comparisons
		i int32
	}
	keys := make([]key, len(socks))
	for i := range socks {
		s := &socks[i]
		keys[i] = key{uint64(s.Local.Port())<<48 | uint64(s.Proto)<<40 | uint64(s.Family)<<32, int32(i)}
	}
	slices.SortFunc(keys, func(a, b key) int {
		if c := cmp.Compare(a.k, b.k); c != 0 {
			return c
		}
		x, y := &socks[a.i], &socks[b.i]
		return cmp.Or(
			x.Local.Addr().Compare(y.Local.Addr()),
			cmp.Compare(x.State, y.State),
			x.Remote.Compare(y.Remote),
			cmp.Compare(x.Inode, y.Inode),
		)
	})
	// Apply the permutation in place, cycle by cycle: position i takes the
	// socket from keys[i].i.
	for i := range keys {
		if keys[i].i < 0 || int(keys[i].i) == i {
			continue
		}
		tmp := socks[i]
		j := i
		for {
			from := int(keys[j].i)
			keys[j].i = -1
			if from == i {
				socks[j] = tmp
				break
			}
			socks[j] = socks[from]
			j = from
		}
	}
}

// sizeHint estimates, from /proc/net/sockstat and sockstat6, how many
// sockets an unfiltered dump of proto (zero: both) returns: TCP sockets
// allocated plus TIME_WAIT, UDP in use. A dump of a large table then fills
// one allocation instead of growing and copying one. Zero when unknown.
func sizeHint(sockstat, sockstat6 []byte, proto portspec.Proto) int {
	n := 0
	for _, line := range strings.Split(string(sockstat)+"\n"+string(sockstat6), "\n") {
		name, rest, ok := strings.Cut(line, ": ")
		if !ok {
			continue
		}
		f := strings.Fields(rest)
		for i := 0; i+1 < len(f); i += 2 {
			v, err := strconv.Atoi(f[i+1])
			if err != nil || v < 0 {
				continue
			}
			switch {
			case (proto == 0 || proto == portspec.TCP) && name == "TCP" && (f[i] == "alloc" || f[i] == "tw"),
				(proto == 0 || proto == portspec.UDP) && (name == "UDP" || name == "UDP6") && f[i] == "inuse":
				n += v
			}
		}
	}
	return min(n, 1<<20)
}

// Role is what a socket is doing with its local port, as far as binds
// and the ephemeral range care.
type Role uint8

const (
	RoleListening  Role = iota // a TCP listener, or an unconnected UDP socket
	RoleBound                  // TCP, bound but neither listening nor connected
	RoleConnection             // a connection using the port as its local port
	RoleTimeWait               // a closed connection in TIME_WAIT
	RolePending                // a connection not yet accepted: its listener is what counts
)

// RoleOf is the role of s.
func RoleOf(s *Socket) Role {
	switch {
	case s.Proto == portspec.UDP && s.State == Close:
		return RoleListening
	case s.State == Listen:
		return RoleListening
	case s.State == Close || s.State == BoundInactive:
		return RoleBound
	case s.State == TimeWait:
		return RoleTimeWait
	case s.State == SynRecv || s.State == NewSynRecv:
		return RolePending
	}
	return RoleConnection
}
