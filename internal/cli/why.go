package cli

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/netip"
	"strings"

	"github.com/spf13/cobra"

	"portolan/internal/bindcheck"
	"portolan/internal/output"
	"portolan/internal/portspec"
	"portolan/internal/sockets"
)

func init() { register(newWhyCmd) }

// WhyOptions are the inputs of `portolan why`.
type WhyOptions struct {
	Target    string // [ADDR]:PORT[/PROTO]
	AsUser    string // user name or uid; empty: the caller
	ReuseAddr bool
	ReusePort bool
	V6Only    bool
	Netns     string // network namespace name or path; empty means ours
	Nearest   int    // free ports to suggest; 0 none
}

func newWhyCmd(g *Globals) *cobra.Command {
	var opts WhyOptions
	cmd := &cobra.Command{
		Use:   "why [ADDR]:PORT[/PROTO]",
		Short: "Would this bind succeed? If not, the kernel rule, the sockets in the way, the fixes",
		Long: `Try a bind for real (and listen, for TCP) with the options you give, then
explain the result by the kernel's rules: the sockets on that port in both
families and every state, with their processes; which rule decided
(wildcard or dual-stack overlap, SO_REUSEADDR and SO_REUSEPORT semantics,
TIME_WAIT, a connection's local port, privileged ports, a non-local
address, or a denial by an LSM or BPF program); and what to do about it,
with the fixes the kernel accepted when tried, and the nearest free ports.

ADDR is an IP address (IPv6 in brackets); without it, [::] without
IPV6_V6ONLY, which also holds 0.0.0.0, as servers listening on ":PORT"
do. PROTO is tcp (default) or udp. --as-user tries as that user (needs
root): the bind runs on one thread switched to the user's credentials.

Exit status: 0 if the bind would succeed, 1 if not, 2 on bad input.`,
		Example: `  portolan why 0.0.0.0:8080/tcp
  portolan why :80 --as-user nobody
  portolan why 127.0.0.1:5353/udp --reuseaddr
  portolan why [::]:443 --v6only --json
  portolan why :8080 --reuseport --netns blue`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			opts.Target = args[0]
			return runWhy(cmd.Context(), g, opts)
		},
	}
	f := cmd.Flags()
	f.StringVar(&opts.AsUser, "as-user", "", "try as this `USER` (name or uid; needs root)")
	f.BoolVar(&opts.ReuseAddr, "reuseaddr", false, "set SO_REUSEADDR on the socket")
	f.BoolVar(&opts.ReusePort, "reuseport", false, "set SO_REUSEPORT on the socket")
	f.BoolVar(&opts.V6Only, "v6only", false, "set IPV6_V6ONLY (an IPv6 socket that leaves IPv4 alone)")
	f.StringVar(&opts.Netns, "netns", "", "bind in network namespace `NAME` (under /run/netns) or PATH")
	f.IntVar(&opts.Nearest, "nearest", 3, "how many free ports nearby to suggest when the bind fails")
	return cmd
}

// parseBindTarget reads [ADDR]:PORT[/PROTO] (or PORT[/PROTO]): an IP
// address (IPv6 in brackets, with an optional zone), a port number or
// service name, tcp or udp.
func parseBindTarget(arg string) (netip.Addr, portspec.Port, portspec.Proto, error) {
	var addr netip.Addr
	proto := portspec.TCP
	rest := arg
	if i := strings.LastIndexByte(rest, '/'); i >= 0 {
		p, err := portspec.ParseProto(rest[i+1:])
		if err != nil || p != portspec.TCP && p != portspec.UDP {
			return addr, 0, 0, fmt.Errorf("%q: protocol %q: want tcp or udp", arg, rest[i+1:])
		}
		proto, rest = p, rest[:i]
	}
	host, portStr := "", rest
	if strings.Contains(rest, ":") {
		var err error
		host, portStr, err = net.SplitHostPort(rest)
		if err != nil {
			return addr, 0, 0, fmt.Errorf("%q: want [ADDR]:PORT[/PROTO], with IPv6 addresses in brackets ([::1]:80)", arg)
		}
	}
	if host != "" && host != "*" {
		a, err := netip.ParseAddr(host)
		if err != nil {
			return addr, 0, 0, fmt.Errorf("%q: %q is not an IP address", arg, host)
		}
		addr = a
	}
	if portStr == "" {
		return addr, 0, 0, fmt.Errorf("%q: no port", arg)
	}
	p := portParser()
	p.Default = proto
	set, err := p.Parse(portStr)
	if err != nil {
		return addr, 0, 0, fmt.Errorf("%q: %w", arg, err)
	}
	ports := set.Ports(proto)
	if len(ports) != 1 {
		return addr, 0, 0, fmt.Errorf("%q: %q is %d %v ports; want one", arg, portStr, len(ports), proto)
	}
	return addr, ports[0], proto, nil
}

// whyJSON is the JSON form of a verdict.
type whyJSON struct {
	Address               netip.Addr         `json:"address"`
	Port                  uint16             `json:"port"`
	Proto                 portspec.Proto     `json:"proto"`
	ReuseAddr             bool               `json:"reuseaddr"`
	ReusePort             bool               `json:"reuseport"`
	V6Only                bool               `json:"v6only"`
	As                    bindcheck.Identity `json:"as"`
	OK                    bool               `json:"ok"`
	Step                  string             `json:"failed_step,omitempty"`
	Errno                 string             `json:"errno,omitempty"`
	Rule                  bindcheck.Rule     `json:"rule"`
	Explanation           string             `json:"explanation"`
	Conflicts             []socketJSON       `json:"conflicts"`
	Others                []socketJSON       `json:"others"`
	Notes                 []bindcheck.Note   `json:"notes"`
	Fixes                 []string           `json:"fixes"`
	Nearest               []portspec.Port    `json:"nearest_free"`
	UnprivilegedPortStart int                `json:"unprivileged_port_start"`
}

func newWhyJSON(v *bindcheck.Verdict) whyJSON {
	j := whyJSON{
		Address: v.Local.Addr(), Port: v.Local.Port(), Proto: v.Proto,
		ReuseAddr: v.ReuseAddr, ReusePort: v.ReusePort, V6Only: v.V6Only, As: v.As,
		OK: v.OK, Step: v.Step, Errno: bindcheck.ErrnoName(v.Errno), Rule: v.Rule, Explanation: v.Explanation,
		Conflicts: []socketJSON{}, Others: []socketJSON{}, Notes: v.Notes, Fixes: v.Fixes, Nearest: v.Nearest,
		UnprivilegedPortStart: v.UnprivilegedPortStart,
	}
	for i := range v.Conflicts {
		j.Conflicts = append(j.Conflicts, newSocketJSON(&v.Conflicts[i], serviceName(v.Conflicts[i].Local.Port(), v.Proto), true))
	}
	for i := range v.Others {
		j.Others = append(j.Others, newSocketJSON(&v.Others[i], serviceName(v.Others[i].Local.Port(), v.Proto), true))
	}
	if j.Notes == nil {
		j.Notes = []bindcheck.Note{}
	}
	if j.Fixes == nil {
		j.Fixes = []string{}
	}
	if j.Nearest == nil {
		j.Nearest = []portspec.Port{}
	}
	return j
}

func runWhy(ctx context.Context, g *Globals, opts WhyOptions) error {
	addr, port, proto, err := parseBindTarget(opts.Target)
	if err != nil {
		return usageErr(err)
	}
	if port == 0 {
		return usageErr(fmt.Errorf("%q: port 0 asks the kernel to pick one; name the port to check", opts.Target))
	}
	if opts.V6Only && addr.Is4() {
		return usageErr(fmt.Errorf("--v6only: %v is an IPv4 address", addr))
	}
	if opts.Nearest < 0 {
		return usageErr(fmt.Errorf("--nearest %d: want 0 or more", opts.Nearest))
	}
	req := bindcheck.Request{
		Addr: addr, Port: port, Proto: proto,
		ReuseAddr: opts.ReuseAddr, ReusePort: opts.ReusePort, V6Only: opts.V6Only,
		Netns: opts.Netns, Nearest: opts.Nearest, Logger: g.Logger(),
	}
	if opts.Nearest == 0 {
		req.Nearest = -1
	}
	if opts.AsUser != "" {
		c, err := bindcheck.LookupCredential(opts.AsUser)
		if err != nil {
			return usageErr(fmt.Errorf("--as-user: %w", err))
		}
		req.As = &c
	}
	v, err := bindcheck.Why(ctx, req)
	if err != nil {
		return socketsErr(opts.Netns, err)
	}
	if g.JSON {
		if err := writeJSON(g, newWhyJSON(v)); err != nil {
			return err
		}
	} else {
		writeVerdict(g.io.Out, v, textWidth(g))
	}
	if !v.OK {
		return silentExit(ExitError)
	}
	return nil
}

// writeVerdict prints a verdict for people, prose wrapped at width (0:
// not wrapped).
func writeVerdict(w io.Writer, v *bindcheck.Verdict, width int) {
	where := fmt.Sprintf("%v/%v", v.Local, v.Proto)
	var opts []string
	for _, o := range []struct {
		on   bool
		name string
	}{{v.ReuseAddr, "SO_REUSEADDR"}, {v.ReusePort, "SO_REUSEPORT"}, {v.V6Only, "IPV6_V6ONLY"}} {
		if o.on {
			opts = append(opts, o.name)
		}
	}
	if len(opts) > 0 {
		where += " with " + strings.Join(opts, ", ")
	}
	if v.OK {
		fmt.Fprintf(w, "%s as %s: succeeds\n", where, v.As.User)
	} else {
		fmt.Fprintf(w, "%s as %s: fails (%s at %s)\n", where, v.As.User, bindcheck.ErrnoName(v.Errno), v.Step)
		fmt.Fprintf(w, "rule: %v\n", v.Rule)
	}
	fmt.Fprintln(w)
	fmt.Fprintln(w, wrapText(v.Explanation, width, ""))
	section := func(title string, socks []sockets.Socket) {
		if len(socks) == 0 {
			return
		}
		fmt.Fprintf(w, "\n%s:\n", title)
		for i := range socks {
			fmt.Fprintf(w, "  %s\n    %s\n", sockets.DescribeSocket(&socks[i]), sockets.DescribeOwner(&socks[i]))
		}
	}
	section("in the way", v.Conflicts)
	section("also on the port, not in the way", v.Others)
	if len(v.Notes) > 0 {
		fmt.Fprintln(w, "\nnotes:")
		for _, n := range v.Notes {
			fmt.Fprintln(w, wrapText(n.Text, width, "  - "))
		}
	}
	if len(v.Fixes) > 0 {
		fmt.Fprintln(w, "\nfixes:")
		for _, f := range v.Fixes {
			fmt.Fprintln(w, wrapText(f, width, "  - "))
		}
	}
	if len(v.Nearest) > 0 {
		s := make([]string, len(v.Nearest))
		for i, p := range v.Nearest {
			s[i] = fmt.Sprint(p)
		}
		fmt.Fprintf(w, "\nnearest free ports: %s\n", strings.Join(s, " "))
	}
}

// textWidth is the width prose is wrapped at: 78 columns on a terminal,
// none when stdout is a pipe or file, so each paragraph is one line to grep.
func textWidth(g *Globals) int {
	if output.IsTerminal(g.io.Out) {
		return 78
	}
	return 0
}

// wrapText fills s into lines of at most width columns (a longer word
// gets a line of its own; width 0 means one line), the first led by lead,
// the rest indented to match.
func wrapText(s string, width int, lead string) string {
	if width <= 0 {
		return lead + strings.Join(strings.Fields(s), " ")
	}
	indent := strings.Repeat(" ", len(lead))
	var b strings.Builder
	b.WriteString(lead)
	col := len(lead)
	for i, word := range strings.Fields(s) {
		switch {
		case i > 0 && col+1+len(word) > width:
			b.WriteString("\n" + indent)
			col = len(indent)
		case i > 0:
			b.WriteByte(' ')
			col++
		}
		b.WriteString(word)
		col += len(word)
	}
	return b.String()
}
