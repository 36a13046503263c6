package cli

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/netip"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"portolan/internal/ephemeral"
	"portolan/internal/output"
	"portolan/internal/sockets"
)

func init() { register(newEphemeralCmd) }

// EphemeralOptions are the inputs of `portolan ephemeral`.
type EphemeralOptions struct {
	Dest   string        // ADDR[:PORT]; empty: every destination
	Sample time.Duration // read the kernel counters over this long; 0: not
	Limit  int           // destinations shown; 0: all
	Netns  string
}

func newEphemeralCmd(g *Globals) *cobra.Command {
	var opts EphemeralOptions
	cmd := &cobra.Command{
		Use:   "ephemeral",
		Short: "The ephemeral port range: usable ports, use per destination, headroom, churn, advice",
		Long: `Show how many local ports outgoing connections can use, and how close any
destination is to running out.

The usable range is net.ipv4.ip_local_port_range minus
ip_local_reserved_ports minus the ports bound explicitly (listeners, bound
sockets), which connect() skips. Linux gives one local port to one
connection per destination (source address, destination address and port),
so ports run out per destination: the table shows, for each, the local
ports in use by state and the headroom left. Churn is estimated from the
TIME_WAIT count (a closed connection stays there 60 s); --sample reads the
kernel's connection counters over a short interval for rates. Then the
processes with the most sockets to the busiest destination, the advice,
and what each error of running out means.

Exit status: 0, or 1 when some destination has no headroom left (the next
connect() to it fails with EADDRNOTAVAIL); 2 on bad input.`,
		Example: `  portolan ephemeral
  portolan ephemeral --dest 10.0.0.5:5432
  portolan ephemeral --sample 2s --json
  portolan ephemeral --netns blue`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return runEphemeral(cmd.Context(), g, opts)
		},
	}
	f := cmd.Flags()
	f.StringVar(&opts.Dest, "dest", "", "only destinations at `ADDR[:PORT]` (IPv6 in brackets with a port)")
	f.DurationVar(&opts.Sample, "sample", 0, "read the kernel's TCP counters over this `DURATION` for rates")
	f.IntVar(&opts.Limit, "limit", 10, "destinations to show in the table (0: all)")
	f.StringVar(&opts.Netns, "netns", "", "inspect network namespace `NAME` (under /run/netns) or PATH")
	return cmd
}

// parseDest reads ADDR, ADDR:PORT, [V6ADDR]:PORT or [V6ADDR].
func parseDest(s string) (netip.Addr, uint16, error) {
	if a, err := netip.ParseAddr(strings.Trim(s, "[]")); err == nil {
		return a, 0, nil
	}
	host, port, err := net.SplitHostPort(s)
	if err != nil {
		return netip.Addr{}, 0, fmt.Errorf("--dest %q: want ADDR or ADDR:PORT", s)
	}
	a, err := netip.ParseAddr(host)
	if err != nil {
		return netip.Addr{}, 0, fmt.Errorf("--dest %q: %q is not an IP address", s, host)
	}
	p, err := strconv.ParseUint(port, 10, 16)
	if err != nil || p == 0 {
		return netip.Addr{}, 0, fmt.Errorf("--dest %q: port %q: want 1-65535", s, port)
	}
	return a, uint16(p), nil
}

// ephemeralJSON is the report with its destinations' top processes as
// plain records.
type ephemeralJSON struct {
	*ephemeral.Report
	Top []topJSON `json:"top_processes"`
}

type topJSON struct {
	PID     int    `json:"pid"`
	Command string `json:"command"`
	User    string `json:"user"`
	Sockets int    `json:"sockets"`
}

func runEphemeral(ctx context.Context, g *Globals, opts EphemeralOptions) error {
	req := ephemeral.Request{Netns: opts.Netns, Sample: opts.Sample, Logger: g.Logger()}
	if opts.Dest != "" {
		var err error
		if req.Dest, req.DestPort, err = parseDest(opts.Dest); err != nil {
			return usageErr(err)
		}
	}
	switch {
	case opts.Sample < 0:
		return usageErr(fmt.Errorf("--sample %v: want a positive duration", opts.Sample))
	case opts.Limit < 0:
		return usageErr(fmt.Errorf("--limit %d: want 0 (all) or more", opts.Limit))
	}
	r, err := ephemeral.Survey(ctx, req)
	if err != nil {
		return socketsErr(opts.Netns, err)
	}
	if g.JSON {
		j := ephemeralJSON{Report: r, Top: []topJSON{}}
		for _, t := range r.Top {
			j.Top = append(j.Top, topJSON{t.Process.PID, t.Process.Comm, t.Process.User, t.Sockets})
		}
		if err := writeJSON(g, j); err != nil {
			return err
		}
	} else if err := writeEphemeral(g.io.Out, r, opts.Limit, g.color(), textWidth(g)); err != nil {
		return err
	}
	if r.Exhausted {
		return silentExit(ExitError)
	}
	return nil
}

func writeEphemeral(w io.Writer, r *ephemeral.Report, limit int, color bool, width int) error {
	fmt.Fprintf(w, "range        %v (%d ports)", r.Range, r.Size)
	if r.Reserved > 0 {
		fmt.Fprintf(w, ", %d reserved (%s)", r.Reserved, r.ReservedSpec)
	}
	if len(r.Held) > 0 {
		fmt.Fprintf(w, ", %d bound by listeners or idle sockets", len(r.Held))
	}
	fmt.Fprintf(w, ": %d usable per destination\n", r.Usable)
	fmt.Fprintf(w, "connections  %d on ports of the range, %d in TIME_WAIT (about %.1f closed/s over the last minute)", r.Connections, r.TimeWait, r.ClosesPerSecond)
	if r.UDP > 0 {
		fmt.Fprintf(w, "; %d UDP sockets", r.UDP)
	}
	fmt.Fprintln(w)
	if c := r.Counters; c != nil {
		fmt.Fprintf(w, "counters     over %v: %.1f connects/s, %.1f accepts/s, %.1f TIME_WAIT ended/s, %d taken over by tcp_tw_reuse\n",
			c.Interval.Round(time.Millisecond), c.PerSecond(c.ActiveOpens), c.PerSecond(c.PassiveOpens), c.PerSecond(c.TimeWaitEnded), c.TimeWaitReused)
	}
	fmt.Fprintf(w, "tcp_tw_reuse %s, tcp_timestamps %s\n", twReuseLabel(r.TWReuse), sysctlLabel(r.Timestamps))

	if len(r.Destinations) > 0 {
		fmt.Fprintln(w)
		t := &output.Table{Header: []string{"DESTINATION", "FROM", "IN USE", "ESTAB", "TIME_WAIT", "OTHER", "HEADROOM"}, RightAlign: []int{2, 3, 4, 5, 6}}
		shown := r.Destinations
		if limit > 0 && len(shown) > limit {
			shown = shown[:limit]
		}
		for _, d := range shown {
			est, tw := 0, 0
			for _, s := range d.States {
				switch s.State {
				case sockets.Established:
					est = s.Count
				case sockets.TimeWait:
					tw = s.Count
				}
			}
			t.Add(d.Remote.String(), d.Local.String(), strconv.Itoa(d.InUse), strconv.Itoa(est), strconv.Itoa(tw), strconv.Itoa(d.InUse-est-tw), strconv.Itoa(d.Headroom))
		}
		if err := t.Write(w, color); err != nil {
			return err
		}
		if n := len(r.Destinations) - len(shown); n > 0 {
			fmt.Fprintf(w, "(%d more destinations: --limit 0 shows all)\n", n)
		}
	}
	if len(r.Top) > 0 {
		fmt.Fprintf(w, "\nmost sockets to %v:\n", r.Destinations[0].Remote)
		for _, p := range r.Top {
			fmt.Fprintf(w, "  pid %d (%s, user %s): %d\n", p.Process.PID, p.Process.Comm, p.Process.User, p.Sockets)
		}
	}
	fmt.Fprintln(w, "\nadvice:")
	for _, a := range r.Advice {
		fmt.Fprintln(w, wrapText(a, width, "  - "))
	}
	fmt.Fprintln(w, "\nwhen ports run out:")
	for _, e := range r.Errnos {
		fmt.Fprintln(w, wrapText(e.Errno+" from "+e.Call+": "+e.Meaning, width, "  "))
	}
	return nil
}

func twReuseLabel(v int) string {
	switch v {
	case 0:
		return "0 (off)"
	case 1:
		return "1 (on)"
	case 2:
		return "2 (loopback only)"
	}
	return sysctlLabel(v)
}

func sysctlLabel(v int) string {
	if v < 0 {
		return "unknown"
	}
	return strconv.Itoa(v)
}
