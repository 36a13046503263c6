package cli

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/netip"
	"os"
	"slices"
	"strconv"
	"strings"
	"time"
	"unsafe"

	"github.com/spf13/cobra"

	"portolan/internal/bindcheck"
	"portolan/internal/output"
	"portolan/internal/owners"
	"portolan/internal/portspec"
	"portolan/internal/registry"
	"portolan/internal/sockets"
)

func init() { register(newLsCmd) }

// LsOptions are the inputs of `portolan ls`.
type LsOptions struct {
	All        bool     // every state, not only listening TCP and unconnected UDP
	TCP, UDP   bool     // only these protocols; neither means both
	IPv4, IPv6 bool     // only these families; neither means both
	Ports      string   // port spec; empty means every port
	States     []string // state names; empty means the default (or every one with All)
	NoOwner    bool     // skip the /proc walk
	Netns      string   // network namespace name or path; empty means ours
	Unix       bool     // unix domain sockets instead of TCP and UDP
	Users      []string // only sockets of these users (names or uids)
	PIDs       []int    // only sockets held by these processes
	AllNetns   bool     // every network namespace
	watchOptions
}

func newLsCmd(g *Globals) *cobra.Command {
	var opts LsOptions
	cmd := &cobra.Command{
		Use:   "ls",
		Short: "List local sockets with their process, user and service",
		Long: `List the listening TCP and bound UDP sockets of this host (or, with -a, every
socket in every state), with the service registered for the port and the
process and user holding it. --user and --pid keep the sockets of some users
or processes (as lsof -u and -p; -u and -p here are --udp and --port, as in ss).

With -x it lists unix domain sockets instead: listeners and bound datagram
sockets (-a: every one), with their path or @abstract name, the peer of a
connection (by name, or socket:[INODE] for an unnamed one) and the queue.

An IPv6 wildcard socket is marked: ":: (dual-stack)" also takes IPv4 peers,
":: (v6only)" does not. With -4 the IPv6 sockets that carry IPv4 are listed
too: dual-stack listeners, sockets bound to an IPv4-mapped address
(::ffff:127.0.0.1), and the IPv4 connections a dual-stack listener accepted.
The SERVICE of a socket does not depend on the filters.

Filters run in the kernel (sock_diag bytecode), so --port on a busy host costs
almost nothing. Owners are found by reading /proc/*/fd; without root the
processes of other users cannot be seen: their sockets show the user and, on
stderr, why the process is missing. --no-owner skips that walk.

--watch refreshes every --interval until Ctrl-C: in place on a terminal;
piped, one JSON line per socket that appears or disappears
({"time":...,"event":"appear","socket":{...}}), the sockets there at the
start appearing first.

Exit status: 0 when sockets are listed (and when a watch ends), 3 when none
match (said on stderr), 2 on bad input.`,
		Example: `  portolan ls
  portolan ls -a --port 5432 --json
  portolan ls -tl --port 8000-8100
  portolan ls -a --state established,time-wait -4
  portolan ls --netns blue --no-owner
  portolan ls -x -a
  portolan ls --user www-data --pid 1234
  portolan ls --watch --port 8000-8100 | jq .`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return runLs(cmd.Context(), g, opts)
		},
	}
	f := cmd.Flags()
	f.BoolVarP(&opts.All, "all", "a", false, "every socket in every state, connections included")
	f.BoolVarP(&opts.TCP, "tcp", "t", false, "TCP sockets only")
	f.BoolVarP(&opts.UDP, "udp", "u", false, "UDP sockets only")
	f.BoolVarP(&opts.IPv4, "ipv4", "4", false, "IPv4 sockets only (and IPv6 sockets carrying IPv4: dual-stack, IPv4-mapped)")
	f.BoolVarP(&opts.IPv6, "ipv6", "6", false, "IPv6 sockets only")
	f.BoolVar(&opts.AllNetns, "all-netns", false, "every network namespace (named, and those of containers and other processes), in a NETNS column")
	f.StringSliceVar(&opts.Users, "user", nil, "only sockets of these `USERS` (names or uids; the socket's owner or a holding process's user)")
	f.IntSliceVar(&opts.PIDs, "pid", nil, "only sockets held by these `PIDS`")
	f.BoolVar(&opts.Watch, "watch", false, "refresh until Ctrl-C: in place on a terminal, else JSON Lines of sockets that appear and disappear")
	f.DurationVar(&opts.Interval, "interval", time.Second, "with --watch, the time between refreshes")
	f.BoolVarP(&opts.Unix, "unix", "x", false, "unix domain sockets instead (paths, @abstract names, peers), as ss -x")
	f.StringVarP(&opts.Ports, "port", "p", "", "local ports: `SPEC` such as 80, 8000-8100, 22,443 or U:53 (bare ports: TCP and UDP)")
	f.StringSliceVar(&opts.States, "state", nil, "only sockets in these `STATES` (listen, established, time-wait, close-wait, unconn, ...)")
	f.BoolVar(&opts.NoOwner, "no-owner", false, "do not look up the owning processes (faster; no /proc walk)")
	f.StringVar(&opts.Netns, "netns", "", "inspect network namespace `NAME` (under /run/netns) or PATH")
	// -l is what ss and netstat users type for "listening": it is the default.
	f.BoolP("listening", "l", false, "listening sockets only (the default without -a)")
	return cmd
}

// ownerFilter keeps the sockets of some users or processes (--user,
// --pid), as lsof -u and -p do.
type ownerFilter struct {
	uids map[uint32]bool
	pids map[int]bool
}

func newOwnerFilter(opts LsOptions) (ownerFilter, error) {
	var f ownerFilter
	if len(opts.PIDs) > 0 && opts.NoOwner {
		return f, errors.New("--pid needs the owners: it does not go with --no-owner")
	}
	for _, u := range opts.Users {
		c, err := bindcheck.LookupCredential(u)
		if err != nil {
			return f, fmt.Errorf("--user: %w", err)
		}
		if f.uids == nil {
			f.uids = map[uint32]bool{}
		}
		f.uids[c.UID] = true
	}
	for _, p := range opts.PIDs {
		if p < 1 {
			return f, fmt.Errorf("--pid %d: want a process id", p)
		}
		if f.pids == nil {
			f.pids = map[int]bool{}
		}
		f.pids[p] = true
	}
	return f, nil
}

func (f ownerFilter) active() bool { return f.uids != nil || f.pids != nil }

// keep reports whether a socket of user uid held by procs passes: every
// filter given must match (a user: the socket's or a holder's; a pid: a
// holder's).
func (f ownerFilter) keep(uid uint32, procs []*owners.Process) bool {
	if f.pids != nil && !slices.ContainsFunc(procs, func(p *owners.Process) bool { return f.pids[p.PID] }) {
		return false
	}
	if f.uids != nil && !f.uids[uid] && !slices.ContainsFunc(procs, func(p *owners.Process) bool { return f.uids[p.UID] }) {
		return false
	}
	return true
}

// sockQuery is one kernel question: the sockets of one protocol.
type sockQuery struct {
	q            sockets.Query
	dualStackFor bool // -4: an extra IPv6 query that keeps dual-stack listeners only
}

// lsQueries turns the options into kernel queries, one per protocol (their
// default states differ: a listening TCP socket, an unconnected UDP one).
func lsQueries(opts LsOptions) ([]sockQuery, error) {
	if opts.IPv4 && opts.IPv6 {
		opts.IPv4, opts.IPv6 = false, false
	}
	var states sockets.StateSet
	for _, list := range opts.States {
		for s := range strings.SplitSeq(list, ",") {
			st, err := sockets.ParseState(s)
			if err != nil {
				return nil, usageErr(fmt.Errorf("--state: %w", err))
			}
			states |= sockets.States(st)
		}
	}
	var tcpPorts, udpPorts []sockets.PortRange
	if opts.Ports != "" {
		var err error
		if tcpPorts, udpPorts, err = portRanges(opts.Ports); err != nil {
			return nil, usageErr(fmt.Errorf("--port: %w", err))
		}
	}
	var out []sockQuery
	for _, proto := range []portspec.Proto{portspec.TCP, portspec.UDP} {
		if (opts.TCP || opts.UDP) && !(proto == portspec.TCP && opts.TCP || proto == portspec.UDP && opts.UDP) {
			continue
		}
		q := sockets.Query{Proto: proto, Ports: tcpPorts}
		if proto == portspec.UDP {
			q.Ports = udpPorts
		}
		if opts.Ports != "" && len(q.Ports) == 0 {
			continue // the spec names no port of this protocol
		}
		switch {
		case states != 0:
			q.States = states
			if proto == portspec.UDP && states&sockets.States(sockets.Listen) != 0 {
				q.States |= sockets.States(sockets.Close) // how a UDP server waits
			}
		case opts.All:
			q.States = sockets.AllStates
		case proto == portspec.TCP:
			q.States = sockets.States(sockets.Listen)
		default:
			q.States = sockets.States(sockets.Close)
		}
		switch {
		case opts.IPv4:
			q.Family = sockets.IPv4
			out = append(out, sockQuery{q: q})
			q.Family = sockets.IPv6
			out = append(out, sockQuery{q: q, dualStackFor: true})
		case opts.IPv6:
			q.Family = sockets.IPv6
			out = append(out, sockQuery{q: q})
		default:
			out = append(out, sockQuery{q: q})
		}
	}
	return out, nil
}

// portRanges reads a port spec into the local port ranges of TCP and UDP.
// A port written without a protocol applies to both: `ls --port 53` is
// about DNS over either.
func portRanges(spec string) (tcp, udp []sockets.PortRange, err error) {
	p := portParser()
	p.Default = portspec.TCP
	asTCP, err := p.Parse(spec)
	if err != nil {
		return nil, nil, err
	}
	p.Default = portspec.UDP
	asUDP, err := p.Parse(spec)
	if err != nil {
		return nil, nil, err
	}
	return sockets.RangesOf(asTCP, portspec.TCP), sockets.RangesOf(asUDP, portspec.UDP), nil
}

// listSockets runs the queries and returns the sockets sorted by port.
func listSockets(ctx context.Context, g *Globals, netns string, qs []sockQuery) ([]sockets.Socket, error) {
	t := &sockets.Table{Netns: netns, Logger: g.Logger()}
	qs = mergeQueries(qs)
	var all []sockets.Socket
	for _, sq := range qs {
		socks, err := t.List(ctx, sq.q)
		if err != nil {
			return nil, socketsErr(netns, err)
		}
		if sq.dualStackFor {
			// -4 keeps the IPv6 sockets that carry IPv4: dual-stack
			// listeners, and sockets on an IPv4-mapped address (bound to
			// one, or a connection a dual-stack listener accepted).
			kept := socks[:0]
			for _, s := range socks {
				if s.DualStack() || s.Local.Addr().Is4In6() {
					kept = append(kept, s)
				}
			}
			socks = kept
		}
		if all == nil {
			all = socks // the usual case, one query: no copy
		} else {
			all = append(all, socks...)
		}
	}
	sockets.SortByPort(all)
	return all, nil
}

// mergeQueries asks one question for TCP and UDP when they differ only in
// protocol (ls -a): one table, nothing to concatenate.
func mergeQueries(qs []sockQuery) []sockQuery {
	if len(qs) != 2 || qs[0].dualStackFor || qs[1].dualStackFor {
		return qs
	}
	a, b := qs[0].q, qs[1].q
	a.Proto, b.Proto = 0, 0
	if a.Family != b.Family || a.States != b.States || a.Local != b.Local || a.Remote != b.Remote ||
		!slices.Equal(a.Ports, b.Ports) || !slices.Equal(a.RemotePorts, b.RemotePorts) {
		return qs
	}
	return []sockQuery{{q: a}}
}

// socketsErr adds what a person needs to a failure to read the table.
func socketsErr(netns string, err error) error {
	if netns != "" && errors.Is(err, os.ErrNotExist) {
		return usageErr(fmt.Errorf("%w (see `ip netns list`)", err))
	}
	return err
}

func runLs(ctx context.Context, g *Globals, opts LsOptions) error {
	filter, err := newOwnerFilter(opts)
	if err != nil {
		return usageErr(err)
	}
	if opts.Unix {
		if opts.TCP || opts.UDP || opts.IPv4 || opts.IPv6 || opts.Ports != "" || len(opts.States) > 0 {
			return usageErr(fmt.Errorf("-x (unix sockets) takes none of -t, -u, -4, -6, --port, --state"))
		}
		return runLsUnix(ctx, g, opts, filter)
	}
	qs, err := lsQueries(opts)
	if err != nil {
		return err
	}
	if opts.AllNetns && opts.Netns != "" {
		return usageErr(errors.New("--all-netns and --netns: pick one"))
	}
	if err := opts.watchOptions.check(); err != nil {
		return usageErr(err)
	}
	showState := opts.All || len(opts.States) > 0
	if opts.Watch {
		var socks []sockets.Socket
		var svc services
		snap := func(ctx context.Context) ([]watchItem, error) {
			var err error
			socks, svc, err = lsSnapshot(ctx, g, opts, qs, filter)
			items := make([]watchItem, len(socks))
			for i := range socks {
				s := &socks[i]
				items[i] = watchItem{fmt.Sprintf("%d %s %v %v", s.Cookie, s.State, s.Local, s.Remote), newSocketJSON(s, svc.name(s), !opts.NoOwner)}
			}
			return items, err
		}
		return runWatch(ctx, g, opts.Interval, snap, func(w io.Writer) error {
			if len(socks) == 0 {
				_, err := fmt.Fprintln(w, "no sockets match")
				return err
			}
			return writeLsTable(w, g.color(), socks, svc, showState, !opts.NoOwner)
		})
	}
	socks, svc, err := lsSnapshot(ctx, g, opts, qs, filter)
	if err != nil {
		return err
	}
	if g.JSON {
		out := make([]socketJSON, len(socks))
		for i := range socks {
			out[i] = newSocketJSON(&socks[i], svc.name(&socks[i]), !opts.NoOwner)
		}
		if err := writeJSON(g, out); err != nil {
			return err
		}
	} else if len(socks) > 0 {
		if err := writeLsTable(g.io.Out, g.color(), socks, svc, showState, !opts.NoOwner); err != nil {
			return err
		}
	}
	if !opts.NoOwner {
		noteUnseen(g, socks)
	}
	if len(socks) == 0 {
		fmt.Fprintln(g.io.ErrOut, "no sockets match")
		return silentExit(ExitNotFound)
	}
	return nil
}

// lsSnapshot reads the table once: the sockets, their owners (unless
// --no-owner) and services, filtered by user and pid.
func lsSnapshot(ctx context.Context, g *Globals, opts LsOptions, qs []sockQuery, filter ownerFilter) ([]sockets.Socket, services, error) {
	var socks []sockets.Socket
	var err error
	if opts.AllNetns {
		socks, err = allNetnsSockets(ctx, g, qs)
	} else {
		socks, err = listSockets(ctx, g, opts.Netns, qs)
	}
	if err != nil {
		return nil, services{}, err
	}
	if !opts.NoOwner {
		if err := sockets.FindOwners(ctx, socks, owners.Options{}); err != nil {
			if ctx.Err() != nil {
				return nil, services{}, err
			}
			fmt.Fprintf(g.io.ErrOut, "portolan: owners: %v\n", err)
		}
	}
	if filter.active() {
		kept := socks[:0]
		for i := range socks {
			if filter.keep(socks[i].UID, socks[i].Procs) {
				kept = append(kept, socks[i])
			}
		}
		socks = kept
	}
	svc := newServices(socks)
	if err := svc.addListeners(ctx, g, opts, qs); err != nil {
		return nil, services{}, err
	}
	return socks, svc, nil
}

// writeLsTable lays the sockets out for people. Tables run to tens of
// thousands of rows, so no cell is kept: rows are made as they are written
// (output.WriteRows), the strings that repeat (addresses, ports, pids,
// users) are made once, and the rest (peers, "comm +N") are built in one
// reused buffer.
func writeLsTable(w io.Writer, color bool, socks []sockets.Socket, svc services, showState, withOwners bool) error {
	netns := len(socks) > 0 && socks[0].Netns != "" // --all-netns
	var header []string
	if netns {
		header = append(header, "NETNS")
	}
	header = append(header, "PROTO")
	if showState {
		header = append(header, "STATE")
	}
	header = append(header, "ADDRESS", "PORT")
	right := []int{len(header) - 1}
	if showState {
		header = append(header, "PEER")
	}
	header = append(header, "SERVICE")
	if withOwners {
		header = append(header, "PID", "PROCESS")
		right = append(right, len(header)-2)
	}
	header = append(header, "USER")
	addrs := make(map[addrKey]string)
	nums := make(map[int]string)
	num := func(n int) string {
		s, ok := nums[n]
		if !ok {
			s = strconv.Itoa(n)
			nums[n] = s
		}
		return s
	}
	users := make(map[uint32]string)
	var scratch []byte
	row := func(i int, row []string) []string {
		s := &socks[i]
		scratch = scratch[:0]
		if netns {
			row = append(row, s.Netns)
		}
		row = append(row, s.Proto.String())
		if showState {
			row = append(row, s.StateName())
		}
		k := addrKey{s.Local.Addr(), s.IfIndex, s.DualStack(), s.V6Only}
		a, ok := addrs[k]
		if !ok {
			a = addrLabel(s)
			addrs[k] = a
		}
		row = append(row, a, num(int(s.Local.Port())))
		if showState {
			var peer string
			peer, scratch = peerLabel(s, scratch)
			row = append(row, peer)
		}
		row = append(row, svc.name(s))
		if withOwners {
			var pid, proc string
			pid, proc, scratch = ownerCells(s, num, scratch)
			row = append(row, pid, proc)
		}
		user := "-" // TIME_WAIT and the like belong to no user
		if s.Inode != 0 {
			if user, ok = users[s.UID]; !ok {
				user = owners.LookupUser(s.UID)
				users[s.UID] = user
			}
		}
		return append(row, user)
	}
	return output.WriteRows(w, color, header, right, len(socks), row)
}

// scratchString appends b to buf and returns it as a string that shares
// buf's memory, with the grown buf. The string is valid until buf is
// reused: WriteRows writes each row before asking for the next.
func scratchString(buf []byte, b func([]byte) []byte) (string, []byte) {
	start := len(buf)
	buf = b(buf)
	if len(buf) == start {
		return "", buf
	}
	return unsafe.String(&buf[start], len(buf)-start), buf
}

// addrKey is what the ADDRESS cell depends on.
type addrKey struct {
	addr         netip.Addr
	ifIndex      uint32
	dual, v6only bool
}

// addrLabel is the local address as ls shows it: the wildcard of an IPv6
// socket says whether it also takes IPv4, and a bound interface follows a %.
func addrLabel(s *sockets.Socket) string {
	a := s.Local.Addr().String()
	if s.Interface != "" {
		a += "%" + s.Interface
	} else if s.IfIndex != 0 {
		a += "%" + strconv.Itoa(int(s.IfIndex))
	}
	if s.Family == sockets.IPv6 && s.Local.Addr().IsUnspecified() {
		switch {
		case s.DualStack():
			a += " (dual-stack)"
		case s.V6Only:
			a += " (v6only)"
		}
	}
	return a
}

// peerLabel is the PEER cell: the remote end, "*" when unconnected,
// built in buf.
func peerLabel(s *sockets.Socket, buf []byte) (string, []byte) {
	r := s.Remote
	if r.Port() == 0 && r.Addr().IsUnspecified() {
		return "*", buf
	}
	return scratchString(buf, r.AppendTo)
}

// ownerCells are the PID and PROCESS cells: the first holder, "+N" when
// more share the socket (built in buf), and "-" or "?" when none can be
// seen.
func ownerCells(s *sockets.Socket, num func(int) string, buf []byte) (pid, proc string, _ []byte) {
	switch {
	case len(s.Procs) > 0:
		p := s.Procs[0]
		proc = p.Comm
		if n := len(s.Procs) - 1; n > 0 {
			proc, buf = scratchString(buf, func(b []byte) []byte {
				return strconv.AppendInt(append(append(b, p.Comm...), " +"...), int64(n), 10)
			})
		}
		return num(p.PID), proc, buf
	case s.Unseen == owners.NoProcess:
		return "-", "-", buf
	}
	return "-", "?", buf
}

// noteUnseen says on stderr why some owners are missing, once per reason.
func noteUnseen(g *Globals, socks []sockets.Socket) {
	var denied, hidden, gone int
	for i := range socks {
		switch socks[i].Unseen {
		case owners.Denied:
			denied++
		case owners.Hidden:
			hidden++
		case owners.NotFound:
			gone++
		}
	}
	if denied > 0 {
		fmt.Fprintf(g.io.ErrOut, "note: %s of other users: their processes are visible to root only (run with sudo)\n", plural(denied, "socket"))
	}
	if hidden > 0 {
		fmt.Fprintf(g.io.ErrOut, "note: %s of other users: /proc is mounted with hidepid, which hides their processes\n", plural(hidden, "socket"))
	}
	if gone > 0 {
		fmt.Fprintf(g.io.ErrOut, "note: %s held by no visible process (kernel sockets, processes in another PID namespace, or exited)\n", plural(gone, "socket"))
	}
}

func plural(n int, what string) string {
	if n == 1 {
		return "1 " + what
	}
	return strconv.Itoa(n) + " " + what + "s"
}

// services names the service of each socket: the local port's for a
// listener, and for a connection the port of whichever end listens here
// (an accepted connection shares its listener's port), else the peer's.
type services struct {
	listening map[uint32]bool // proto<<16 | port of every listener in the table
}

func newServices(socks []sockets.Socket) services {
	s := services{listening: make(map[uint32]bool)}
	for i := range socks {
		if socks[i].State == sockets.Listen || socks[i].State == sockets.Close {
			s.listening[uint32(socks[i].Proto)<<16|uint32(socks[i].Local.Port())] = true
		}
	}
	return s
}

// addListeners completes the listeners a connection's service is judged
// by, when filters (states, family) may have left them out of the table:
// the SERVICE of a socket must not change with the filter. A port filter
// needs nothing: it selects the local port, which a connection shares with
// its listener.
func (sv services) addListeners(ctx context.Context, g *Globals, opts LsOptions, qs []sockQuery) error {
	if len(opts.States) == 0 && !opts.IPv4 && !opts.IPv6 {
		return nil
	}
	t := &sockets.Table{Netns: opts.Netns, Logger: g.Logger()}
	done := map[portspec.Proto]bool{}
	for _, sq := range qs {
		q := sq.q
		if done[q.Proto] {
			continue
		}
		done[q.Proto] = true
		q.Family = 0
		q.States = sockets.States(sockets.Listen, sockets.Close)
		socks, err := t.List(ctx, q)
		if err != nil {
			return socketsErr(opts.Netns, err)
		}
		for i := range socks {
			sv.listening[uint32(socks[i].Proto)<<16|uint32(socks[i].Local.Port())] = true
		}
	}
	return nil
}

func (sv services) name(s *sockets.Socket) string {
	p := s.Local.Port()
	if s.State != sockets.Listen && s.State != sockets.Close && !sv.listening[uint32(s.Proto)<<16|uint32(p)] {
		p = s.Remote.Port()
	}
	return serviceName(p, s.Proto)
}

// serviceName is the IANA service registered for port p, from the
// registry's precomputed index: no CSV parse.
func serviceName(p uint16, proto portspec.Proto) string {
	return registry.PortName(portspec.Port(p), proto)
}

// socketJSON is the stable JSON form of a socket, shared by ls and who.
type socketJSON struct {
	Proto        portspec.Proto `json:"proto"`
	Family       sockets.Family `json:"family"`
	State        string         `json:"state"`
	Address      netip.Addr     `json:"address"`
	Port         uint16         `json:"port"`
	PeerAddress  netip.Addr     `json:"peer_address"`
	PeerPort     uint16         `json:"peer_port"`
	V6Only       bool           `json:"v6only"`
	DualStack    bool           `json:"dual_stack"`
	Interface    string         `json:"interface,omitempty"`
	Service      string         `json:"service,omitempty"`
	UID          *uint32        `json:"uid,omitempty"`
	User         string         `json:"user,omitempty"`
	Inode        uint32         `json:"inode,omitempty"`
	Cookie       uint64         `json:"cookie"`
	RxQueue      uint32         `json:"rx_queue"`
	TxQueue      uint32         `json:"tx_queue"`
	Processes    []processJSON  `json:"processes,omitempty"`
	OwnerUnknown owners.Unseen  `json:"owner_unknown,omitempty"` // why processes is empty
	OwnerNote    string         `json:"owner_note,omitempty"`
	Cgroup       *owners.Cgroup `json:"cgroup,omitempty"` // the socket's, when no process is seen
	Netns        string         `json:"netns,omitempty"`  // with --all-netns
}

type processJSON struct {
	PID       int       `json:"pid"`
	Command   string    `json:"command"`
	Cmdline   []string  `json:"cmdline,omitempty"`
	UID       uint32    `json:"uid"`
	User      string    `json:"user"`
	Start     time.Time `json:"start,omitzero"`
	Cgroup    string    `json:"cgroup,omitempty"`
	Unit      string    `json:"unit,omitempty"`
	Container string    `json:"container,omitempty"`
	Runtime   string    `json:"runtime,omitempty"`
	Pod       string    `json:"pod,omitempty"`
}

func newSocketJSON(s *sockets.Socket, service string, withOwners bool) socketJSON {
	j := socketJSON{
		Proto: s.Proto, Family: s.Family, State: s.StateName(),
		Address: s.Local.Addr(), Port: s.Local.Port(), PeerAddress: s.Remote.Addr(), PeerPort: s.Remote.Port(),
		V6Only: s.V6Only, DualStack: s.DualStack(), Interface: s.Interface, Service: service,
		Inode: s.Inode, Cookie: s.Cookie, RxQueue: s.RxQueue, TxQueue: s.TxQueue, Cgroup: s.Cgroup, Netns: s.Netns,
	}
	if s.Inode != 0 {
		uid := s.UID
		j.UID, j.User = &uid, owners.LookupUser(uid)
	}
	if withOwners {
		j.OwnerUnknown = s.Unseen
		j.OwnerNote = sockets.ExplainUnseen(s)
		for _, p := range s.Procs {
			j.Processes = append(j.Processes, newProcessJSON(p))
		}
	}
	return j
}

func newProcessJSON(p *owners.Process) processJSON {
	pj := processJSON{PID: p.PID, Command: p.Comm, Cmdline: p.Cmdline, UID: p.UID, User: p.User, Start: p.Start}
	if c := p.Cgroup; c != nil {
		pj.Cgroup, pj.Unit, pj.Container, pj.Runtime, pj.Pod = c.Path, c.Unit, c.Container, c.Runtime, c.Pod
	}
	return pj
}
