// Package ephemeral reports on the ephemeral port range: how many local ports outgoing connections can
// use, how many each destination uses, and how close any is to running
// out. Survey (ephemeral_linux.go) reads the kernel; this file holds
// the arithmetic, the advice, and the parser of the kernel's counters.
//
// How Linux picks a local port for connect() (__inet_hash_connect): it
// walks net.ipv4.ip_local_port_range, skips ports in
// ip_local_reserved_ports and ports some socket bound explicitly (a
// listener, a bind() without connect), and takes the first port whose
// 4-tuple (source address, source port, destination address, destination
// port) is unused; a TIME_WAIT 4-tuple counts as used unless tcp_tw_reuse
// allows taking it over. So one local port serves one connection per
// destination, and the range runs out per destination.
package ephemeral

import (
	"bufio"
	"bytes"
	"cmp"
	"fmt"
	"log/slog"
	"maps"
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"time"

	"portolan/internal/owners"
	"portolan/internal/portspec"
	"portolan/internal/sockets"
)

// timeWaitSeconds is how long Linux keeps a TIME_WAIT socket
// (TCP_TIMEWAIT_LEN, fixed at compile time).
const timeWaitSeconds = 60

// Request says what to report on.
type Request struct {
	// Dest keeps only destinations of this address; the zero Addr keeps
	// all.
	Dest netip.Addr
	// DestPort keeps only destinations on this port; zero keeps all.
	DestPort uint16
	// Netns is the network namespace to read (a name under /run/netns or a
	// path); empty means ours.
	Netns string
	// Sample, when positive, reads the kernel's TCP counters twice, this
	// far apart, for connection rates; zero skips it.
	Sample time.Duration
	// Top is how many processes to name for the busiest destination; zero
	// means 5, negative none.
	Top int
	// Logger receives debug records; nil discards them.
	Logger *slog.Logger
}

func (r *Request) logger() *slog.Logger { return orDiscard(r.Logger) }

func (r *Request) top() int {
	switch {
	case r.Top == 0:
		return 5
	case r.Top < 0:
		return 0
	}
	return r.Top
}

// StateCount is how many sockets are in a state.
type StateCount struct {
	State sockets.State `json:"state"`
	Count int           `json:"count"`
}

// Destination is one remote address and port that local ports of the
// range are connected to, from one local address.
type Destination struct {
	Local  netip.Addr     `json:"local_address"`
	Remote netip.AddrPort `json:"remote"`
	// InUse is how many local ports of the usable range connections from
	// Local to Remote take, in any state.
	InUse int `json:"in_use"`
	// States splits InUse by state, the largest first.
	States []StateCount `json:"states"`
	// TimeWait is InUse's TIME_WAIT part.
	TimeWait int `json:"time_wait"`
	// Headroom is how many more connections from Local to Remote can get a
	// local port now: the usable ports not yet taken toward Remote.
	Headroom int `json:"headroom"`
	// Sockets are the sockets counted (for owners).
	Sockets []sockets.Socket `json:"-"`
}

// ProcessCount is a process and how many sockets it has to a destination.
type ProcessCount struct {
	Process *owners.Process `json:"process"`
	Sockets int             `json:"sockets"`
}

// HeldPort is a port of the range that connections cannot use, because a
// socket bound it explicitly.
type HeldPort struct {
	Port  portspec.Port `json:"port"`
	State sockets.State `json:"state"` // LISTEN, or CLOSE for bound but idle
}

// Counters are the kernel's TCP counters (/proc/net/snmp Tcp:,
// /proc/net/netstat TcpExt:), as deltas over Interval.
type Counters struct {
	Interval time.Duration `json:"interval"`
	// ActiveOpens are connections this host opened (connect).
	ActiveOpens int64 `json:"active_opens"`
	// PassiveOpens are connections it accepted.
	PassiveOpens int64 `json:"passive_opens"`
	// TimeWaitEnded are TIME_WAIT sockets whose timer ran out (TcpExt TW).
	TimeWaitEnded int64 `json:"time_wait_ended"`
	// TimeWaitReused are TIME_WAIT 4-tuples taken over by tcp_tw_reuse
	// (TcpExt TWRecycled).
	TimeWaitReused int64 `json:"time_wait_reused"`
}

// PerSecond is n over the interval.
func (c *Counters) PerSecond(n int64) float64 {
	if c.Interval <= 0 {
		return 0
	}
	return float64(n) / c.Interval.Seconds()
}

// ErrnoNote says what an error from running out of ports means.
type ErrnoNote struct {
	Errno   string `json:"errno"`
	Call    string `json:"call"`
	Meaning string `json:"meaning"`
}

// Errnos are the errors a program sees when local ports run out,
// and what each means.
var Errnos = []ErrnoNote{
	{"EADDRNOTAVAIL", "connect() (TCP)", "\"Cannot assign requested address\": no port of ip_local_port_range has a free 4-tuple toward that destination address and port. Other destinations may still connect."},
	{"EADDRINUSE", "bind() to port 0", "\"Address already in use\": bind picks a port before it knows the destination, so it needs a port no socket holds at all; it fails before connect() would. IP_BIND_ADDRESS_NO_PORT defers the choice to connect()."},
	{"EAGAIN", "sendto()/connect() on an unbound UDP socket", "\"Resource temporarily unavailable\": the automatic bind found no UDP port free; UDP ports are not shared between destinations."},
}

// Report is the state of the ephemeral range.
type Report struct {
	// Range is net.ipv4.ip_local_port_range (First and Last in JSON);
	// Size the ports in it.
	Range sockets.PortRange `json:"-"`
	First portspec.Port     `json:"first"`
	Last  portspec.Port     `json:"last"`
	Size  int               `json:"size"`
	// Reserved are the ports of the range in ip_local_reserved_ports
	// (never picked); ReservedSpec lists them.
	Reserved     int    `json:"reserved"`
	ReservedSpec string `json:"reserved_ports,omitempty"`
	// Held are the ports of the range bound explicitly by TCP sockets
	// (listeners, bound idle sockets): connections cannot use them.
	Held []HeldPort `json:"held"`
	// Usable is Size minus the reserved and held ports.
	Usable int `json:"usable"`
	// Destinations are the TCP destinations using ports of the range, the
	// busiest first.
	Destinations []Destination `json:"destinations"`
	// Connections is how many TCP connections use ports of the range.
	Connections int `json:"connections"`
	// TimeWait is how many of those are in TIME_WAIT.
	TimeWait int `json:"time_wait"`
	// ClosesPerSecond estimates the connections closed per second by this
	// host, over the last minute: TIME_WAIT lasts 60 s.
	ClosesPerSecond float64 `json:"closes_per_second"`
	// UDP is how many UDP sockets use ports of the range; each holds its
	// port toward every destination.
	UDP int `json:"udp"`
	// Counters are the sampled kernel counters (nil without a sample).
	Counters *Counters `json:"counters,omitempty"`
	// Top are the processes with the most sockets to the busiest
	// destination.
	Top []ProcessCount `json:"top_processes"`
	// TWReuse is net.ipv4.tcp_tw_reuse (0 off, 1 on, 2 loopback only; -1
	// unknown); Timestamps is net.ipv4.tcp_timestamps.
	TWReuse    int `json:"tcp_tw_reuse"`
	Timestamps int `json:"tcp_timestamps"`
	// Exhausted reports whether some destination has no headroom left.
	Exhausted bool `json:"exhausted"`
	// Advice is what to do, the most pressing first.
	Advice []string `json:"advice"`
	// Errnos explain the errors of running out.
	Errnos []ErrnoNote `json:"errnos"`
}

// ephemeralInput is what the kernel said, for analyze.
type ephemeralInput struct {
	lo, hi     portspec.Port
	reserved   *portspec.Set
	socks      []sockets.Socket // TCP and UDP sockets with a local port in the range
	twReuse    int
	timestamps int
	dest       netip.Addr
	destPort   uint16
	counters   *Counters
}

// analyze computes the report from what the kernel said.
func analyze(in *ephemeralInput) *Report {
	r := &Report{
		Range: sockets.PortRange{Lo: in.lo, Hi: in.hi}, First: in.lo, Last: in.hi, Size: int(in.hi) - int(in.lo) + 1,
		TWReuse: in.twReuse, Timestamps: in.timestamps, Counters: in.counters,
		Held: []HeldPort{}, Destinations: []Destination{}, Top: []ProcessCount{}, Errnos: Errnos,
	}
	var reserved portspec.Set
	in.reserved.Each(func(_ portspec.Proto, p portspec.Port) bool {
		if p >= in.lo && p <= in.hi {
			reserved.Add(portspec.TCP, p)
		}
		return true
	})
	r.Reserved = reserved.Len()
	if r.Reserved > 0 {
		r.ReservedSpec = strings.TrimPrefix(reserved.String(), "T:")
	}
	// Ports bound explicitly: no connection may take them.
	held := map[uint16]sockets.State{}
	for i := range in.socks {
		s := &in.socks[i]
		if s.Proto == portspec.TCP && (s.State == sockets.Listen || sockets.RoleOf(s) == sockets.RoleBound) {
			if st, ok := held[s.Local.Port()]; !ok || st != sockets.Listen {
				held[s.Local.Port()] = s.State
			}
		}
	}
	for _, p := range slices.Sorted(maps.Keys(held)) {
		r.Held = append(r.Held, HeldPort{portspec.Port(p), held[p]})
	}
	heldFree := 0
	for p := range held {
		if !reserved.Has(portspec.TCP, portspec.Port(p)) {
			heldFree++
		}
	}
	r.Usable = max(r.Size-r.Reserved-heldFree, 0)

	type key struct {
		local  netip.Addr
		remote netip.AddrPort
	}
	dests := map[key]*Destination{}
	for i := range in.socks {
		s := &in.socks[i]
		p := s.Local.Port()
		if p < uint16(in.lo) || p > uint16(in.hi) {
			continue
		}
		if s.Proto == portspec.UDP {
			r.UDP++
			continue
		}
		if _, ok := held[p]; ok || sockets.RoleOf(s) != sockets.RoleConnection && sockets.RoleOf(s) != sockets.RoleTimeWait {
			continue // a listener's own connections, or not a connection
		}
		r.Connections++
		if s.State == sockets.TimeWait {
			r.TimeWait++
		}
		if reserved.Has(portspec.TCP, portspec.Port(p)) {
			continue // bound explicitly: not the range's doing
		}
		if in.dest.IsValid() && s.Remote.Addr().Unmap() != in.dest.Unmap() || in.destPort != 0 && s.Remote.Port() != in.destPort {
			continue
		}
		k := key{s.Local.Addr().Unmap(), netip.AddrPortFrom(s.Remote.Addr().Unmap(), s.Remote.Port())}
		d := dests[k]
		if d == nil {
			d = &Destination{Local: k.local, Remote: k.remote}
			dests[k] = d
		}
		d.InUse++
		d.Sockets = append(d.Sockets, *s)
		if s.State == sockets.TimeWait {
			d.TimeWait++
		}
		if j := slices.IndexFunc(d.States, func(c StateCount) bool { return c.State == s.State }); j >= 0 {
			d.States[j].Count++
		} else {
			d.States = append(d.States, StateCount{s.State, 1})
		}
	}
	r.ClosesPerSecond = float64(r.TimeWait) / timeWaitSeconds
	for _, d := range dests {
		d.Headroom = max(r.Usable-d.InUse, 0)
		r.Exhausted = r.Exhausted || d.Headroom == 0
		slices.SortFunc(d.States, func(a, b StateCount) int { return cmp.Or(b.Count-a.Count, cmp.Compare(a.State, b.State)) })
		r.Destinations = append(r.Destinations, *d)
	}
	slices.SortFunc(r.Destinations, func(a, b Destination) int {
		return cmp.Or(b.InUse-a.InUse, a.Remote.Compare(b.Remote), a.Local.Compare(b.Local))
	})
	r.Advice = advise(r, in)
	return r
}

// twReuseApplies reports whether tcp_tw_reuse lets connections to remote
// take over TIME_WAIT 4-tuples.
func twReuseApplies(mode int, remote netip.Addr) bool {
	return mode == 1 || mode == 2 && remote.Unmap().IsLoopback()
}

// advise says what to do, the most pressing first.
func advise(r *Report, in *ephemeralInput) []string {
	var out []string
	if r.Usable == 0 {
		out = append(out, fmt.Sprintf("no port of %v is usable for outgoing connections (%d reserved, %d bound explicitly): every connect() fails with EADDRNOTAVAIL", r.Range, r.Reserved, len(r.Held)))
	}
	if len(r.Destinations) == 0 {
		if r.Usable > 0 {
			out = append(out, fmt.Sprintf("no outgoing TCP connection uses the range: %d ports usable per destination", r.Usable))
		}
		return append(out, sharedAdvice(r)...)
	}
	hot := &r.Destinations[0]
	used := float64(hot.InUse) / float64(max(r.Usable, 1))
	switch {
	case hot.Headroom == 0:
		out = append(out, fmt.Sprintf("exhausted: connections from %v to %v take all %d usable local ports; the next connect() there fails with EADDRNOTAVAIL (other destinations still work)", hot.Local, hot.Remote, r.Usable))
	case used >= 0.8:
		out = append(out, fmt.Sprintf("close to exhaustion: connections from %v to %v take %d of %d usable local ports (%d left)", hot.Local, hot.Remote, hot.InUse, r.Usable, hot.Headroom))
	default:
		out = append(out, fmt.Sprintf("no destination is near exhaustion: the busiest, %v, uses %d of %d usable local ports (%.0f%%)", hot.Remote, hot.InUse, r.Usable, used*100))
	}
	pressed := used >= 0.5
	if pressed && hot.TimeWait*2 >= hot.InUse {
		out = append(out, fmt.Sprintf("reuse connections to %v (HTTP keep-alive, a connection pool): %d of its %d ports sit in TIME_WAIT, about %.1f new connections/s each held 60 s after closing", hot.Remote, hot.TimeWait, hot.InUse, float64(hot.TimeWait)/timeWaitSeconds))
	}
	if pressed && hot.TimeWait > 0 {
		out = append(out, twReuseAdvice(r.TWReuse, r.Timestamps, hot.Remote.Addr()))
	}
	if pressed {
		lo, hi := r.Range.Lo, r.Range.Hi
		if lo > 10000 || hi < 65535 {
			out = append(out, fmt.Sprintf("widen the range: sysctl -w net.ipv4.ip_local_port_range='%d 65535' (now %d-%d, %d ports), and list the ports your servers listen on in net.ipv4.ip_local_reserved_ports so a connection never takes one before its server starts", min(lo, 10000), lo, hi, r.Size))
		}
		out = append(out, fmt.Sprintf("spread the load: each more destination address or port, or each more local source address (bind it with IP_BIND_ADDRESS_NO_PORT before connect), gives another %d ports", r.Usable))
	}
	return append(out, sharedAdvice(r)...)
}

// sharedAdvice is about what takes ports from every destination at once.
func sharedAdvice(r *Report) []string {
	var out []string
	var listen, bound []string
	for _, h := range r.Held {
		if h.State == sockets.Listen {
			listen = append(listen, strconv.Itoa(int(h.Port)))
		} else {
			bound = append(bound, strconv.Itoa(int(h.Port)))
		}
	}
	if len(listen) > 0 {
		out = append(out, fmt.Sprintf("%d listener(s) sit inside the ephemeral range (%s): connect() skips their ports, but a server restarting there may find its port taken by a connection; move them out, or add them to net.ipv4.ip_local_reserved_ports", len(listen), abbreviate(listen, 8)))
	}
	if len(bound) > 0 {
		out = append(out, fmt.Sprintf("%d TCP socket(s) are bound but neither listening nor connected (%s): each keeps its port from every destination; bind() before connect() should set IP_BIND_ADDRESS_NO_PORT", len(bound), abbreviate(bound, 8)))
	}
	if r.UDP > 0 && r.UDP*10 >= r.Usable {
		out = append(out, fmt.Sprintf("%d UDP sockets use ports of the range; a UDP port is not shared between destinations, so these ports are gone for every UDP destination", r.UDP))
	}
	return out
}

// twReuseAdvice describes tcp_tw_reuse as it is set, correctly: it lets
// connect() take over a TIME_WAIT 4-tuple of an outgoing connection.
func twReuseAdvice(mode, timestamps int, remote netip.Addr) string {
	const what = "tcp_tw_reuse lets a new outgoing connection take over a TIME_WAIT 4-tuple once it is older than tcp_tw_reuse_delay (1 s by default) and TCP timestamps are on at both ends; it does nothing for incoming connections or for ports held by open connections (tcp_tw_recycle, removed in Linux 4.12, is gone for good)"
	if timestamps == 0 {
		return what + "; here net.ipv4.tcp_timestamps is 0, so it cannot apply"
	}
	switch {
	case twReuseApplies(mode, remote):
		return fmt.Sprintf("%s; it is on for %v (net.ipv4.tcp_tw_reuse=%d), so these TIME_WAIT ports are reused already once old enough", what, remote, mode)
	case mode == 2:
		return what + fmt.Sprintf("; here it is 2 (loopback only), so it does not apply to %v: sysctl -w net.ipv4.tcp_tw_reuse=1 to allow it", remote)
	case mode == 0:
		return what + "; it is off: sysctl -w net.ipv4.tcp_tw_reuse=1"
	}
	return what
}

func abbreviate(s []string, n int) string {
	if len(s) <= n {
		return strings.Join(s, ", ")
	}
	return strings.Join(s[:n], ", ") + fmt.Sprintf(", and %d more", len(s)-n)
}

// topProcesses counts sockets per process, the most first.
func topProcesses(socks []sockets.Socket, n int) []ProcessCount {
	counts := map[int]*ProcessCount{}
	for i := range socks {
		for _, p := range socks[i].Procs {
			c := counts[p.PID]
			if c == nil {
				c = &ProcessCount{Process: p}
				counts[p.PID] = c
			}
			c.Sockets++
		}
	}
	out := make([]ProcessCount, 0, len(counts))
	for _, c := range counts {
		out = append(out, *c)
	}
	slices.SortFunc(out, func(a, b ProcessCount) int { return cmp.Or(b.Sockets-a.Sockets, a.Process.PID-b.Process.PID) })
	if len(out) > n {
		out = out[:n]
	}
	return out
}

// parseSNMP reads the paired lines of /proc/net/snmp and /proc/net/netstat
// ("Tcp: RtoAlgorithm RtoMin ..." then "Tcp: 1 200 ...") into counters by
// group and name. name is the file, for errors.
func parseSNMP(name string, b []byte) (map[string]map[string]int64, error) {
	out := map[string]map[string]int64{}
	sc := bufio.NewScanner(bytes.NewReader(b))
	sc.Buffer(make([]byte, 0, 4096), 1<<20)
	var header []string
	var group string
	line := 0
	for sc.Scan() {
		line++
		text := sc.Text()
		if strings.TrimSpace(text) == "" {
			continue
		}
		g, rest, ok := strings.Cut(text, ":")
		if !ok || g == "" || strings.ContainsAny(g, " \t") {
			return nil, fmt.Errorf("%s line %d %.40q: want GROUP: FIELDS", name, line, text)
		}
		f := strings.Fields(rest)
		if header == nil {
			header, group = f, g
			continue
		}
		if g != group {
			return nil, fmt.Errorf("%s line %d: values for %q follow the names of %q", name, line, g, group)
		}
		if len(f) != len(header) {
			return nil, fmt.Errorf("%s line %d: %d values for %d names of %q", name, line, len(f), len(header), g)
		}
		m := out[g]
		if m == nil {
			m = map[string]int64{}
			out[g] = m
		}
		for i, v := range f {
			n, err := strconv.ParseInt(v, 10, 64)
			if err != nil {
				// Counters are unsigned in the kernel; the largest do not
				// fit an int64 but wrap the same way.
				u, uerr := strconv.ParseUint(v, 10, 64)
				if uerr != nil {
					return nil, fmt.Errorf("%s line %d: %s %s = %q: not a number", name, line, g, header[i], v)
				}
				n = int64(u)
			}
			m[header[i]] = n
		}
		header = nil
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("%s: %w", name, err)
	}
	if header != nil {
		return nil, fmt.Errorf("%s line %d: names of %q without a line of values", name, line, group)
	}
	return out, nil
}

// tcpCounters picks the counters the report uses from snmp and netstat.
func tcpCounters(snmp, netstat map[string]map[string]int64) Counters {
	return Counters{
		ActiveOpens:    snmp["Tcp"]["ActiveOpens"],
		PassiveOpens:   snmp["Tcp"]["PassiveOpens"],
		TimeWaitEnded:  netstat["TcpExt"]["TW"],
		TimeWaitReused: netstat["TcpExt"]["TWRecycled"],
	}
}

// delta is after minus before, over d.
func (c Counters) delta(before Counters, d time.Duration) *Counters {
	return &Counters{
		Interval:       d,
		ActiveOpens:    c.ActiveOpens - before.ActiveOpens,
		PassiveOpens:   c.PassiveOpens - before.PassiveOpens,
		TimeWaitEnded:  c.TimeWaitEnded - before.TimeWaitEnded,
		TimeWaitReused: c.TimeWaitReused - before.TimeWaitReused,
	}
}

// orDiscard is l, or a logger that discards when l is nil.
func orDiscard(l *slog.Logger) *slog.Logger {
	if l == nil {
		return slog.New(slog.DiscardHandler)
	}
	return l
}
