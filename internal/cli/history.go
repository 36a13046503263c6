package cli

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"portolan/internal/output"
	"portolan/internal/portspec"
	"portolan/internal/scan"
	"portolan/internal/scandiff"
	"portolan/internal/store"
)

func init() { register(newHistoryCmd) }

// HistoryOptions are the inputs of `portolan history`.
type HistoryOptions struct {
	Limit  int    // newest scans to list; 0 means all
	Target string // --target ADDR: the port timeline of this address instead of the list
	Port   string // --port N[/PROTO]: only this port of Target; empty means all
	DB     DBFlags
}

func newHistoryCmd(g *Globals) *cobra.Command {
	opts := HistoryOptions{Limit: 20}
	cmd := &cobra.Command{
		Use:   "history",
		Short: "List stored scans, newest first",
		Long: `List the scans recorded in the scan database, newest first: id, start time,
duration, targets, ports, prober, status and the number of open ports.

A scan is "running" while it runs, or when its process died before it could
say otherwise; "interrupted" and "failed" scans can be continued with
portolan scan --resume ID. portolan show ID prints the results of one.

With --target ADDR it prints the port timeline of that address instead:
for each port and state, the first and the last scan that saw it so, and
how many did; NOW marks the state the newest scan saw. --port N (or
N/udp) keeps one port. Exit status 3 when no scan has the address.`,
		Example: `  portolan history
  portolan history --limit 5
  portolan history --json | jq '.[] | select(.status == "interrupted") | .id'
  portolan history --db ./fleet.db
  portolan history --target 198.18.0.5 --port 443
  portolan history --target 198.18.0.5 --json | jq '.[] | select(.state == "open")'`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if opts.Limit < 0 {
				return usageErr(fmt.Errorf("--limit %d: want 0 (all) or more", opts.Limit))
			}
			if opts.Port != "" && opts.Target == "" {
				return usageErr(errors.New("--port needs --target"))
			}
			if opts.Target != "" {
				return runTimeline(cmd.Context(), g, opts)
			}
			return runHistory(cmd.Context(), g, opts)
		},
	}
	cmd.Flags().IntVarP(&opts.Limit, "limit", "n", opts.Limit, "list the `N` newest scans (0: all)")
	cmd.Flags().StringVar(&opts.Target, "target", "", "print the port timeline of `ADDR` across stored scans")
	cmd.Flags().StringVarP(&opts.Port, "port", "p", "", "with --target: only port `N` (N/udp for UDP)")
	addDBFlags(cmd, &opts.DB)
	return cmd
}

func runHistory(ctx context.Context, g *Globals, opts HistoryOptions) error {
	var scans []store.ScanInfo
	st, err := opts.DB.open(ctx, false)
	switch {
	case errors.Is(err, errNoStore):
		// Nothing stored yet: an empty history, not a failure.
	case err != nil:
		return err
	default:
		defer st.Close()
		if scans, err = st.Scans(ctx, opts.Limit); err != nil {
			return err
		}
	}
	if g.JSON {
		if scans == nil {
			scans = []store.ScanInfo{}
		}
		return writeJSON(g, scans)
	}
	if len(scans) == 0 {
		fmt.Fprintln(g.io.ErrOut, "no scans stored yet")
		return nil
	}
	t := &output.Table{
		Header:     []string{"ID", "STARTED", "DURATION", "TARGETS", "PORTS", "PROBER", "STATUS", "OPEN"},
		RightAlign: []int{0, 2, 7},
	}
	// Shards of named scans (--scan-id) say whose they are, in a column
	// of their own only when there are any.
	named := slices.ContainsFunc(scans, func(si store.ScanInfo) bool { return si.Name != "" })
	if named {
		t.Header = slices.Insert(t.Header, 1, "SCAN")
		t.RightAlign = []int{0, 3, 8}
	}
	for _, si := range scans {
		row := []string{
			strconv.FormatInt(si.ID, 10), si.Started.Local().Format("2006-01-02 15:04:05"),
			formatDuration(si.Duration()), si.Targets, si.Ports, si.Prober, string(si.Status),
			strconv.FormatUint(si.Counts.Open, 10),
		}
		colors := []output.Color{6: statusColor(si.Status)}
		if named {
			name := ""
			if si.Name != "" {
				name = fmt.Sprintf("%s@%d %s", si.Name, si.Run, shardOf(si))
			}
			row = slices.Insert(row, 1, name)
			colors = []output.Color{7: statusColor(si.Status)}
		}
		t.AddColored(row, colors)
	}
	return t.Write(g.io.Out, g.color())
}

// statusColor marks the scans that need attention.
func statusColor(s store.Status) output.Color {
	switch s {
	case store.Interrupted, store.Running:
		return output.Yellow
	case store.Failed:
		return output.Red
	}
	return ""
}

// formatDuration writes a scan's duration for people: "0.42s", "12.3s",
// "4m05s", "2h13m"; "-" when unknown.
func formatDuration(d time.Duration) string {
	switch {
	case d <= 0:
		return "-"
	case d < 10*time.Second:
		return fmt.Sprintf("%.2fs", d.Seconds())
	case d < time.Minute:
		return fmt.Sprintf("%.1fs", d.Seconds())
	case d < time.Hour:
		return fmt.Sprintf("%dm%02ds", int(d.Minutes()), int(d.Seconds())%60)
	}
	return fmt.Sprintf("%dh%02dm", int(d.Hours()), int(d.Minutes())%60)
}

// runTimeline prints when each port of one address was first and last
// seen in each state.
func runTimeline(ctx context.Context, g *Globals, opts HistoryOptions) error {
	addr, err := netip.ParseAddr(opts.Target)
	if err != nil {
		return usageErr(fmt.Errorf("--target %q: want one IP address", opts.Target))
	}
	var port portspec.Port
	proto := portspec.TCP
	if opts.Port != "" {
		num, name, hasProto := strings.Cut(opts.Port, "/")
		n, err := strconv.ParseUint(num, 10, 16)
		if err != nil || n == 0 {
			return usageErr(fmt.Errorf("--port %q: want a port number 1-65535, optionally /tcp, /udp or /sctp", opts.Port))
		}
		port = portspec.Port(n)
		if hasProto {
			if proto, err = portspec.ParseProto(name); err != nil {
				return usageErr(fmt.Errorf("--port %q: %w", opts.Port, err))
			}
		}
	}
	st, err := opts.DB.open(ctx, false)
	if errors.Is(err, errNoStore) {
		return withCode(ExitNotFound, err)
	}
	if err != nil {
		return err
	}
	defer st.Close()
	ss, err := st.Sightings(ctx, addr, port, proto)
	if err != nil {
		return err
	}
	spans := scandiff.Timeline(ss)
	if g.JSON {
		if spans == nil {
			spans = []scandiff.Span{}
		}
		if err := writeJSON(g, spans); err != nil {
			return err
		}
	} else if len(spans) > 0 {
		t := &output.Table{
			Header:     []string{"PORT", "STATE", "FIRST SEEN", "SCAN", "LAST SEEN", "SCAN", "SCANS", "NOW", "SERVICE"},
			RightAlign: []int{3, 5, 6},
		}
		for _, sp := range spans {
			now := ""
			if sp.Current {
				now = "*"
			}
			svc := sp.Service
			if v := sp.Version.String(); v != "" {
				svc += " " + v
			}
			t.AddColored([]string{fmt.Sprintf("%d/%s", sp.Port, sp.Proto), sp.State.String(),
				sp.First.Time.Local().Format("2006-01-02 15:04:05"), strconv.FormatInt(sp.First.Scan, 10),
				sp.Last.Time.Local().Format("2006-01-02 15:04:05"), strconv.FormatInt(sp.Last.Scan, 10),
				strconv.Itoa(sp.Scans), now, svc}, []output.Color{1: openColor(sp.State)})
		}
		if err := t.Write(g.io.Out, g.color()); err != nil {
			return err
		}
	}
	if len(spans) == 0 {
		what := addr.String()
		if port != 0 {
			what = fmt.Sprintf("%s port %d/%s", addr, port, proto)
		}
		return withCode(ExitNotFound, fmt.Errorf("no stored scan has %s", what))
	}
	return nil
}

// openColor marks open ports green, as the scan table does.
func openColor(s scan.State) output.Color {
	if s == scan.Open {
		return output.Green
	}
	return ""
}
