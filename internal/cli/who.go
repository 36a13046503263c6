package cli

import (
	"context"
	"errors"
	"fmt"
	"io"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"portolan/internal/owners"
	"portolan/internal/portspec"
	"portolan/internal/sockets"
)

func init() { register(newWhoCmd) }

// WhoOptions are the inputs of `portolan who`.
type WhoOptions struct {
	Port     string // PORT[/proto]: a number or a service name, with an optional protocol
	All      bool   // connections too, not only listeners and bound UDP sockets
	Netns    string // network namespace name or path; empty means ours
	First    bool   // stop the search of /proc at the first process holding each socket
	Tree     bool   // show the process tree of the holders
	AllNetns bool   // look in every network namespace
	watchOptions
}

func newWhoCmd(g *Globals) *cobra.Command {
	var opts WhoOptions
	cmd := &cobra.Command{
		Use:   "who PORT[/PROTO] | PATH | @NAME",
		Short: "Show who holds a port: process, command line, user, unit or container",
		Long: `Show the holders of a local port: the listening TCP sockets and the UDP sockets
bound to it, each with its process (pid, command line, user, start time) and
what runs it (the systemd unit or the container, from the cgroup).

Without a protocol both TCP and UDP are checked. Exit status 0 when the port
is held, 1 when it is free ("port 8080/tcp is free" on stderr), 2 on bad
input. With --all, connections that use the port are shown too.

--tree draws the holders' process tree; --watch follows the port until
Ctrl-C, as ls --watch does (JSON Lines of appear/disappear events when piped).

A path (absolute, or starting with ./) or an @abstract name asks about a unix socket:
the listener bound to it, and with --all the connections it accepted.

Without root the processes of other users cannot be seen; who then says
whose socket it is (the user and cgroup the kernel reports) and why the
process is missing. Every process holding a socket is named (a pre-forked
server's master and workers, a daemon and the shell that started it);
--first stops the search of /proc at the first process found holding each
socket (usually the lowest pid: /proc is searched from both ends at once),
which is faster on a machine with many processes.`,
		Example: `  portolan who 8080
  portolan who 53/udp
  portolan who ssh --json
  portolan who 5432 --all
  portolan who 80 --netns blue
  portolan who 8080 --tree
  portolan who 8080 --watch
  portolan who /run/docker.sock
  portolan who @/tmp/.X11-unix/X0`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			opts.Port = args[0]
			return runWho(cmd.Context(), g, opts)
		},
	}
	f := cmd.Flags()
	f.BoolVarP(&opts.All, "all", "a", false, "also show connections using the port, in every state")
	f.StringVar(&opts.Netns, "netns", "", "inspect network namespace `NAME` (under /run/netns) or PATH")
	f.BoolVar(&opts.Watch, "watch", false, "refresh until Ctrl-C: in place on a terminal, else JSON Lines of sockets that appear and disappear")
	f.DurationVar(&opts.Interval, "interval", time.Second, "with --watch, the time between refreshes")
	f.BoolVar(&opts.AllNetns, "all-netns", false, "look in every network namespace (named, and those of containers and other processes)")
	f.BoolVar(&opts.Tree, "tree", false, "show the holders' process tree (a pre-forked server's master and workers)")
	f.BoolVar(&opts.First, "first", false, "name only the first process found holding each socket (a faster search of /proc)")
	return cmd
}

// whoTarget is the port asked about and its protocols.
type whoTarget struct {
	port   uint16
	protos []portspec.Proto
}

func (w whoTarget) String() string {
	var s []string
	for _, p := range w.protos {
		s = append(s, fmt.Sprintf("%d/%s", w.port, p))
	}
	return strings.Join(s, " and ")
}

// parseWhoTarget reads PORT[/PROTO]: one port, as a number or a service
// name. Without a protocol it is about TCP and UDP.
func parseWhoTarget(arg string) (whoTarget, error) {
	tcp, udp, err := portRanges(arg)
	if err != nil {
		return whoTarget{}, err
	}
	var w whoTarget
	var ports []uint16
	for _, c := range []struct {
		proto portspec.Proto
		rs    []sockets.PortRange
	}{{portspec.TCP, tcp}, {portspec.UDP, udp}} {
		for _, r := range c.rs {
			for p := int(r.Lo); p <= int(r.Hi); p++ {
				if !slices.Contains(ports, uint16(p)) {
					ports = append(ports, uint16(p))
				}
			}
		}
		if len(c.rs) > 0 {
			w.protos = append(w.protos, c.proto)
		}
	}
	switch {
	case len(ports) == 0:
		return w, fmt.Errorf("%q names no TCP or UDP port", arg)
	case len(ports) > 1:
		return w, fmt.Errorf("%q is %d ports; who takes one (portolan ls --port SPEC lists several)", arg, len(ports))
	}
	w.port = ports[0]
	if w.port == 0 {
		// No socket holds port 0: a bind to it asks the kernel for a port.
		return w, fmt.Errorf("%q: port 0 is not a port a socket holds (a bind to 0 asks the kernel to pick one); name a port from 1 to 65535", arg)
	}
	return w, nil
}

// whoResult is the JSON form of the answer.
type whoResult struct {
	Port    uint16           `json:"port"`
	Protos  []portspec.Proto `json:"protos"`
	Held    bool             `json:"held"`
	Sockets []socketJSON     `json:"sockets"`
	Tree    []*treeJSON      `json:"tree,omitempty"` // with --tree
}

// treeJSON is a process of the holders' tree.
type treeJSON struct {
	PID      int         `json:"pid"`
	Command  string      `json:"command"`
	Holds    bool        `json:"holds"`
	Children []*treeJSON `json:"children,omitempty"`
}

func newTreeJSON(ns []*owners.TreeNode) []*treeJSON {
	var out []*treeJSON
	for _, n := range ns {
		out = append(out, &treeJSON{PID: n.PID, Command: n.Comm, Holds: n.Holds, Children: newTreeJSON(n.Children)})
	}
	return out
}

// holderProcs are the distinct processes holding socks.
func holderProcs(socks []sockets.Socket) []*owners.Process {
	seen := map[int]bool{}
	var out []*owners.Process
	for i := range socks {
		for _, p := range socks[i].Procs {
			if !seen[p.PID] {
				seen[p.PID] = true
				out = append(out, p)
			}
		}
	}
	return out
}

// writeTree draws the tree with box-drawing branches; holders are marked.
func writeTree(w io.Writer, ns []*owners.TreeNode, prefix string, top bool) {
	for i, n := range ns {
		branch, next := "├─ ", "│  "
		if i == len(ns)-1 {
			branch, next = "└─ ", "   "
		}
		if top {
			branch, next = "", ""
		}
		mark := ""
		if n.Holds {
			mark = "  (holds the port)"
		}
		fmt.Fprintf(w, "  %s%s%d %s%s\n", prefix, branch, n.PID, n.Comm, mark)
		writeTree(w, n.Children, prefix+next, false)
	}
}

func runWho(ctx context.Context, g *Globals, opts WhoOptions) error {
	if isUnixName(opts.Port) {
		return runWhoUnix(ctx, g, opts)
	}
	w, err := parseWhoTarget(opts.Port)
	if err != nil {
		return usageErr(err)
	}
	qs := whoQueries(w, opts.All)
	if err := opts.watchOptions.check(); err != nil {
		return usageErr(err)
	}
	if opts.Watch {
		var socks []sockets.Socket
		snap := func(ctx context.Context) ([]watchItem, error) {
			var err error
			if socks, err = listSockets(ctx, g, opts.Netns, qs); err != nil {
				return nil, err
			}
			if err := sockets.FindOwners(ctx, socks, owners.Options{First: opts.First, Details: true}); err != nil && ctx.Err() != nil {
				return nil, err
			}
			items := make([]watchItem, len(socks))
			for i := range socks {
				s := &socks[i]
				items[i] = watchItem{fmt.Sprintf("%d %s %v %v", s.Cookie, s.State, s.Local, s.Remote), newSocketJSON(s, serviceName(s.Local.Port(), s.Proto), true)}
			}
			return items, nil
		}
		return runWatch(ctx, g, opts.Interval, snap, func(out io.Writer) error {
			if len(socks) == 0 {
				_, err := fmt.Fprintf(out, "%v is free\n", w)
				return err
			}
			writeHolders(out, socks, time.Now())
			return nil
		})
	}
	var socks []sockets.Socket
	switch {
	case opts.AllNetns && opts.Netns != "":
		return usageErr(errors.New("--all-netns and --netns: pick one"))
	case opts.AllNetns:
		socks, err = allNetnsSockets(ctx, g, qs)
	default:
		socks, err = listSockets(ctx, g, opts.Netns, qs)
	}
	if err != nil {
		return err
	}
	if len(socks) > 0 {
		if err := sockets.FindOwners(ctx, socks, owners.Options{First: opts.First, Details: true}); err != nil {
			if ctx.Err() != nil {
				return err
			}
			fmt.Fprintf(g.io.ErrOut, "portolan: owners: %v\n", err)
		}
	}
	if g.JSON {
		res := whoResult{Port: w.port, Protos: w.protos, Held: len(socks) > 0, Sockets: []socketJSON{}}
		if opts.Tree {
			res.Tree = newTreeJSON(owners.Tree(holderProcs(socks)))
		}
		for i := range socks {
			res.Sockets = append(res.Sockets, newSocketJSON(&socks[i], serviceName(socks[i].Local.Port(), socks[i].Proto), true))
		}
		if err := writeJSON(g, res); err != nil {
			return err
		}
	} else {
		writeHolders(g.io.Out, socks, time.Now())
		if hs := holderProcs(socks); opts.Tree && len(hs) > 0 {
			fmt.Fprintln(g.io.Out, "\nprocess tree:")
			writeTree(g.io.Out, owners.Tree(hs), "", true)
		}
	}
	if len(socks) == 0 {
		for _, proto := range w.protos {
			fmt.Fprintf(g.io.ErrOut, "port %d/%s is free%s\n", w.port, proto, usedBy(ctx, g, opts, w.port, proto))
		}
		return silentExit(ExitError)
	}
	return nil
}

// whoQueries asks for the listening TCP sockets and every UDP socket on the
// port (a UDP socket holds its port whether connected or not).
func whoQueries(w whoTarget, all bool) []sockQuery {
	var qs []sockQuery
	for _, proto := range w.protos {
		q := sockets.Query{Proto: proto, Ports: []sockets.PortRange{{Lo: portspec.Port(w.port), Hi: portspec.Port(w.port)}}, States: sockets.AllStates}
		if proto == portspec.TCP && !all {
			q.States = sockets.States(sockets.Listen)
		}
		qs = append(qs, sockQuery{q: q})
	}
	return qs
}

// usedBy tells, for a TCP port nothing listens on, whether connections
// still use it as their local port: a bind may fail because of them.
func usedBy(ctx context.Context, g *Globals, opts WhoOptions, port uint16, proto portspec.Proto) string {
	if opts.All || proto != portspec.TCP {
		return ""
	}
	q := sockets.Query{Proto: proto, Ports: []sockets.PortRange{{Lo: portspec.Port(port), Hi: portspec.Port(port)}}}
	socks, err := (&sockets.Table{Netns: opts.Netns, Logger: g.Logger()}).List(ctx, q)
	if err != nil || len(socks) == 0 {
		return ""
	}
	verb := "use"
	if len(socks) == 1 {
		verb = "uses"
	}
	return fmt.Sprintf(" (nothing listens; %s still %s it as local port: see --all, and `portolan why` for a bind)", plural(len(socks), "connection"), verb)
}

// endpointLabel is a socket's local end with its port, and the IPv6
// wildcard's dual-stack or v6only mark.
func endpointLabel(s *sockets.Socket) string {
	a := addrLabel(s)
	host, mark, _ := strings.Cut(a, " ")
	if s.Local.Addr().Is6() {
		host = "[" + host + "]"
	}
	out := host + ":" + strconv.Itoa(int(s.Local.Port()))
	if mark != "" {
		out += " " + mark
	}
	return out
}

// holderKey groups sockets with the same owners, so a server listening on
// both families is shown once.
func holderKey(s *sockets.Socket) string {
	if len(s.Procs) > 0 {
		k := s.Netns + " pid"
		for _, p := range s.Procs {
			k += " " + strconv.Itoa(p.PID)
		}
		return k
	}
	cg := ""
	if s.Cgroup != nil {
		cg = s.Cgroup.Path
	}
	return fmt.Sprintf("%s unseen %d %d %s", s.Netns, s.Unseen, s.UID, cg)
}

// writeHolders prints the holders, one block per owner.
func writeHolders(w io.Writer, socks []sockets.Socket, now time.Time) {
	var order []string
	groups := make(map[string][]*sockets.Socket)
	for i := range socks {
		k := holderKey(&socks[i])
		if _, ok := groups[k]; !ok {
			order = append(order, k)
		}
		groups[k] = append(groups[k], &socks[i])
	}
	for n, k := range order {
		if n > 0 {
			fmt.Fprintln(w)
		}
		g := groups[k]
		for _, s := range g {
			line := fmt.Sprintf("%s  %s  %s", s.Proto, s.StateName(), endpointLabel(s))
			if s.Remote.Port() != 0 {
				line += " <-> " + s.Remote.String()
			}
			fmt.Fprintln(w, line)
		}
		kv := func(k, v string) {
			if v != "" {
				fmt.Fprintf(w, "  %-9s %s\n", k, v)
			}
		}
		s := g[0]
		kv("netns", s.Netns)
		if len(s.Procs) == 0 {
			kv("owner", "unknown: "+sockets.ExplainUnseen(s))
			if s.Inode != 0 {
				kv("user", fmt.Sprintf("%s (%d)", owners.LookupUser(s.UID), s.UID))
			}
			writeCgroup(kv, s.Cgroup)
			continue
		}
		// Every process holding the socket: stopping one of a pre-forked
		// server's processes does not free the port.
		writeProcs(w, kv, s.Procs, now)
	}
}

// writeProcs describes each process holding a socket: pid, command line,
// user, start time, unit or container; "--" between them.
func writeProcs(w io.Writer, kv func(k, v string), procs []*owners.Process, now time.Time) {
	for i, p := range procs {
		if i > 0 {
			fmt.Fprintln(w, "  --")
		}
		kv("pid", strconv.Itoa(p.PID))
		cmd := strings.Join(p.Cmdline, " ")
		if cmd == "" {
			cmd = "[" + p.Comm + "]"
		}
		kv("command", cmd)
		kv("user", fmt.Sprintf("%s (%d)", p.User, p.UID))
		if !p.Start.IsZero() {
			kv("started", p.Start.Local().Format("2006-01-02 15:04:05 MST")+" ("+ago(now.Sub(p.Start))+")")
		}
		writeCgroup(kv, p.Cgroup)
	}
}

func writeCgroup(kv func(k, v string), c *owners.Cgroup) {
	if c == nil {
		return
	}
	kv("unit", c.Unit)
	if c.Container != "" {
		id := c.Container
		if len(id) == 64 {
			id = id[:12]
		}
		v := c.Runtime + " " + id
		if c.Pod != "" {
			v += " (pod " + c.Pod + ")"
		}
		kv("container", v)
	}
	if c.Path != "/" { // the root cgroup says nothing
		kv("cgroup", c.Path)
	}
}

// ago writes a duration the way people say it: "3h12m ago".
func ago(d time.Duration) string {
	switch {
	case d < 0:
		return "just now"
	case d < time.Minute:
		return fmt.Sprintf("%ds ago", int(d.Seconds()))
	case d < time.Hour:
		return fmt.Sprintf("%dm ago", int(d.Minutes()))
	case d < 48*time.Hour:
		return fmt.Sprintf("%dh%dm ago", int(d.Hours()), int(d.Minutes())%60)
	}
	return fmt.Sprintf("%dd%dh ago", int(d.Hours())/24, int(d.Hours())%24)
}
