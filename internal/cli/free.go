package cli

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/spf13/cobra"

	"portolan/internal/freeport"
	"portolan/internal/portspec"
	"portolan/internal/sockets"
)

func init() { register(newFreeCmd) }

// FreeOptions are the inputs of `portolan free`.
type FreeOptions struct {
	Count   int
	Range   string // a port spec; empty: the default range
	Exclude string // a port spec; empty: none
	Prefer  []uint
	UDP     bool          // UDP only
	Both    bool          // TCP and UDP
	Reserve time.Duration // zero: no reservation
	PID     int           // with Reserve: also release when this process exits
	Hold    time.Duration // with PID: keep the ports this long after it exits
	Netns   string        // network namespace name or path; empty means ours
}

func newFreeCmd(g *Globals) *cobra.Command {
	var opts FreeOptions
	cmd := &cobra.Command{
		Use:   "free",
		Short: "Find free local ports, race-safe across processes",
		Long: `Find local ports that are free: a bind succeeds on 127.0.0.1, ::1, 0.0.0.0
and :: (dual-stack), for TCP (default), UDP (--udp) or both (--both). A port
free on 0.0.0.0 may still be held on ::, so every family is checked.

The default range is 1024-65535 without the kernel's ephemeral range
(net.ipv4.ip_local_port_range, 32768-60999 by default), so that an outgoing
connection does not take the port before you bind it; --range overrides it
with a port spec. Ports in net.ipv4.ip_local_reserved_ports are never given.
Ports are tried in random order, so parallel callers rarely race; --prefer
ports are tried first.

--reserve D records the ports in a registry (under $XDG_RUNTIME_DIR/portolan,
or /tmp/portolan-$UID) for D: no other portolan caller of this user gets them
meanwhile, which makes parallel test runners safe. With --pid the reservation
also ends when that process exits (then after --hold, as TCP's TIME_WAIT).
Every free call passes over reserved ports. Programs not using portolan are
not stopped from binding a port: bind it soon.

A --range that overlaps the ephemeral range gets a warning on stderr, and
--prefer ports must lie inside --range.

Prints the ports one per line; exits 1 when the range has too few free ports,
saying how many were in use or reserved.`,
		Example: `  portolan free
  portolan free -n 3 --range 20000-30000 --both
  portolan free --prefer 8080 --exclude 8081-8089
  PORT=$(portolan free --reserve 60s)
  portolan free -n 2 --reserve 10m --pid $$ --json`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return runFree(cmd.Context(), g, opts)
		},
	}
	f := cmd.Flags()
	f.IntVarP(&opts.Count, "count", "n", 1, "how many ports")
	f.StringVar(&opts.Range, "range", "", "ports to search, as a port spec (default: 1024-65535 outside the ephemeral range)")
	f.StringVar(&opts.Exclude, "exclude", "", "never give the ports of this spec")
	f.UintSliceVar(&opts.Prefer, "prefer", nil, "try these ports first, in order (comma-separated or repeated)")
	f.BoolVar(&opts.UDP, "udp", false, "UDP ports instead of TCP")
	f.BoolVar(&opts.Both, "both", false, "ports free for both TCP and UDP")
	f.DurationVar(&opts.Reserve, "reserve", 0, "reserve the ports for this long against other portolan callers")
	f.IntVar(&opts.PID, "pid", 0, "with --reserve: also end the reservation when this process exits")
	f.StringVar(&opts.Netns, "netns", "", "find ports free in network namespace `NAME` (under /run/netns) or PATH")
	f.DurationVar(&opts.Hold, "hold", 0, "with --pid: keep the ports from others this long after it exits")
	return cmd
}

// freeResult is the JSON form of the answer.
type freeResult struct {
	Ports    []portspec.Port  `json:"ports"`
	Protos   []portspec.Proto `json:"protos"`
	Expires  *time.Time       `json:"expires,omitempty"`  // with --reserve
	Registry string           `json:"registry,omitempty"` // with --reserve
}

func runFree(ctx context.Context, g *Globals, opts FreeOptions) error {
	so, err := freeSearchOptions(opts)
	if err != nil {
		return usageErr(err)
	}
	so.Logger = g.Logger()
	so.Netns = opts.Netns
	if err := sockets.InNetns(opts.Netns, func() error { return nil }); err != nil {
		return socketsErr(opts.Netns, err)
	}
	if so.Range != nil {
		var eph sockets.PortRange
		if err := sockets.InNetns(opts.Netns, func() error { eph = freeport.EphemeralPorts(); return nil }); err != nil {
			return socketsErr(opts.Netns, err)
		}
		n := 0
		for p := int(eph.Lo); p <= int(eph.Hi); p++ {
			if so.Range.Has(portspec.TCP, portspec.Port(p)) || so.Range.Has(portspec.UDP, portspec.Port(p)) {
				n++
			}
		}
		if n > 0 {
			fmt.Fprintf(g.io.ErrOut, "portolan: warning: --range holds %s of the ephemeral range %v (net.ipv4.ip_local_port_range): an outgoing connection may take such a port before you bind it\n", plural(n, "port"), eph)
		}
	}
	res := freeResult{Protos: so.Protos}
	if opts.Reserve > 0 {
		r, err := freeport.Reserve(ctx, opts.Count, opts.Reserve, so)
		if err != nil {
			return freeErr(err)
		}
		res.Ports, res.Registry = r.Ports, r.Dir
		res.Expires = &r.Expires
	} else {
		res.Ports, err = freeport.FindN(ctx, opts.Count, so)
		if err != nil {
			return freeErr(err)
		}
	}
	if g.JSON {
		return writeJSON(g, res)
	}
	for _, p := range res.Ports {
		fmt.Fprintln(g.io.Out, p)
	}
	return nil
}

// freeErr makes an empty search space a usage error: the flags contradict.
func freeErr(err error) error {
	if errors.Is(err, freeport.ErrEmptyRange) {
		return usageErr(err)
	}
	return err
}

// freeSearchOptions checks the flags and turns them into the search's options.
func freeSearchOptions(opts FreeOptions) (freeport.Options, error) {
	so := freeport.Options{Protos: []portspec.Proto{portspec.TCP}, Holder: freeport.NoHolder, Hold: opts.Hold}
	switch {
	case opts.Count < 1:
		return so, fmt.Errorf("-n %d: want at least 1 port", opts.Count)
	case opts.Reserve < 0:
		return so, fmt.Errorf("--reserve %v: want a positive duration", opts.Reserve)
	case opts.Reserve == 0 && (opts.PID != 0 || opts.Hold != 0):
		return so, errors.New("--pid and --hold go with --reserve")
	case opts.Hold != 0 && opts.PID == 0:
		return so, errors.New("--hold needs --pid: it starts when that process exits")
	case opts.PID < 0:
		return so, fmt.Errorf("--pid %d: want a process id", opts.PID)
	}
	if opts.PID > 0 {
		so.Holder = opts.PID
	}
	switch {
	case opts.Both:
		so.Protos = []portspec.Proto{portspec.TCP, portspec.UDP}
	case opts.UDP:
		so.Protos = []portspec.Proto{portspec.UDP}
	}
	p := portParser()
	if opts.Range != "" {
		s, err := p.Parse(opts.Range)
		if err != nil {
			return so, fmt.Errorf("--range: %w", err)
		}
		so.Range = s
	}
	if opts.Exclude != "" {
		s, err := p.Parse(opts.Exclude)
		if err != nil {
			return so, fmt.Errorf("--exclude: %w", err)
		}
		so.Exclude = s
	}
	for _, v := range opts.Prefer {
		if v < 1 || v > 65535 {
			return so, fmt.Errorf("--prefer %d: out of range 1-65535", v)
		}
		if so.Range != nil && !slices.ContainsFunc(so.Protos, func(p portspec.Proto) bool { return so.Range.Has(p, portspec.Port(v)) }) {
			return so, fmt.Errorf("--prefer %d: outside --range %s (a preferred port is tried first, within the range)", v, opts.Range)
		}
		so.Prefer = append(so.Prefer, portspec.Port(v))
	}
	return so, nil
}
