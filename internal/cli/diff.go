package cli

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"strconv"

	"github.com/spf13/cobra"

	"portolan/internal/output"
	"portolan/internal/scandiff"
	"portolan/internal/store"
)

func init() { register(newDiffCmd) }

// ExitChanged is diff's answer "the scans differ": not a failure, and apart
// from 1 so that an alert script can tell a change from a broken run.
const ExitChanged = 4

// DiffOptions are the inputs of `portolan diff`.
type DiffOptions struct {
	A, B int64 // scan ids; zero with Last, or for named scans
	// ARef and BRef are the scans as given: ids, or named scans (NAME,
	// NAME@RUN) whose shards are compared merged. Empty: A and B.
	ARef, BRef string
	Last       string // --last TARGETS: the newest two finished scans covering them
	Format     string // table (default), text, json
	DB         DBFlags
}

func newDiffCmd(g *Globals) *cobra.Command {
	var opts DiffOptions
	cmd := &cobra.Command{
		Use:   "diff A B | diff --last TARGETS",
		Short: "Show what changed between two stored scans",
		Long: `Compare two stored scans (see portolan history): hosts that appeared or
vanished, ports that opened or are no longer open, other state changes, and
ports whose service name, product/version or banner changed. Closed and
filtered ports are compared as counts per host, as nmap's "Not shown" line
has them; a changed count is reported for the host.

A and B are scan ids, or names of scans run as shards (--scan-id): NAME is its
latest run, NAME@RUN an earlier one, each with its shards merged.

--last TARGETS compares the newest two finished scans whose targets include
every address of TARGETS, the older against the newer.

Formats: table (default), text (plain, a host at a time, for a cron mail),
json (--json).

Exit status: 0 nothing changed, 4 something changed, 3 a scan (or two
covering TARGETS) not found, 1 the comparison failed, 2 bad usage.`,
		Example: `  portolan diff 17 18
  portolan diff --last 198.18.0.0/24
  portolan diff weekly-443@2 weekly-443 --db postgres://scanner@db/portolan
  portolan diff --last 198.18.0.0/24 --format text || mail -s 'ports changed' ops
  portolan diff 17 18 --json | jq '.ports[] | select(.kind == "port-added")'`,
		Args: func(cmd *cobra.Command, args []string) error {
			switch {
			case opts.Last != "" && len(args) > 0:
				return errors.New("give two scan ids or --last TARGETS, not both")
			case opts.Last == "" && len(args) != 2:
				return fmt.Errorf("want two scan ids (or --last TARGETS), got %d argument(s)", len(args))
			}
			return nil
		},
		RunE: func(cmd *cobra.Command, args []string) error {
			if opts.Last == "" {
				var err error
				if opts.ARef, opts.A, err = scanRef(args[0]); err != nil {
					return err
				}
				if opts.BRef, opts.B, err = scanRef(args[1]); err != nil {
					return err
				}
			}
			switch opts.Format {
			case "", "table", "text", "json":
			default:
				return usageErr(fmt.Errorf("--format %q: want table, text or json", opts.Format))
			}
			if g.JSON {
				if opts.Format != "" && opts.Format != "json" {
					return usageErr(fmt.Errorf("--json and --format %s disagree: choose one", opts.Format))
				}
				opts.Format = "json"
			}
			return runDiff(cmd.Context(), g, opts)
		},
	}
	cmd.Flags().StringVar(&opts.Last, "last", "", "compare the newest two finished scans covering `TARGETS`")
	cmd.Flags().StringVarP(&opts.Format, "format", "f", "", "output `FORMAT`: table, text, json")
	addDBFlags(cmd, &opts.DB)
	return cmd
}

func runDiff(ctx context.Context, g *Globals, opts DiffOptions) error {
	st, a, b, err := diffScans(ctx, opts)
	if err != nil {
		return err
	}
	defer st.Close()
	d, err := scandiff.CompareStored(ctx, st, a, b)
	if err != nil {
		return err
	}
	switch opts.Format {
	case "json":
		err = writeJSON(g, d)
	case "text":
		err = scandiff.WriteText(g.io.Out, d)
	default:
		err = writeDiffTable(g, d)
	}
	if err != nil {
		return err
	}
	if d.Changed() {
		return silentExit(ExitChanged)
	}
	return nil
}

// diffScans opens the store and finds the two scans to compare.
func diffScans(ctx context.Context, opts DiffOptions) (*store.Store, store.ScanInfo, store.ScanInfo, error) {
	var none store.ScanInfo
	if opts.Last == "" {
		aRef, bRef := cmp.Or(opts.ARef, strconv.FormatInt(opts.A, 10)), cmp.Or(opts.BRef, strconv.FormatInt(opts.B, 10))
		st, a, err := opts.DB.openRef(ctx, aRef)
		if err != nil {
			return nil, none, none, err
		}
		b, err := st.ResolveScan(ctx, bRef)
		if err != nil {
			st.Close()
			if errors.Is(err, store.ErrNotFound) {
				err = withCode(ExitNotFound, fmt.Errorf("scan %s not found in %s (portolan history lists the scans)", bRef, st.Path()))
			}
			return nil, none, none, err
		}
		return st, a, b, nil
	}
	st, err := opts.DB.open(ctx, false)
	if errors.Is(err, errNoStore) {
		return nil, none, none, withCode(ExitNotFound, err)
	}
	if err != nil {
		return nil, none, none, err
	}
	scans, err := st.Scans(ctx, 0)
	if err != nil {
		st.Close()
		return nil, none, none, err
	}
	a, b, err := scandiff.LatestCovering(ctx, scans, opts.Last)
	if err != nil {
		st.Close()
		if errors.Is(err, store.ErrNotFound) {
			return nil, none, none, withCode(ExitNotFound, err)
		}
		return nil, none, none, usageErr(err)
	}
	return st, a, b, nil
}

// diffRef names a side of a diff: its id, or NAME@RUN.
func diffRef(r scandiff.ScanRef) string {
	return cmp.Or(r.Name, strconv.FormatInt(r.ID, 10))
}

// writeDiffTable writes one row per change: hosts first where they
// changed as a whole, then their ports.
func writeDiffTable(g *Globals, d *scandiff.Diff) error {
	out := g.io.Out
	fmt.Fprintf(out, "scan %s -> scan %s\n", diffRef(d.A), diffRef(d.B))
	if !d.Changed() {
		fmt.Fprintln(out, "no changes")
		return nil
	}
	t := &output.Table{Header: []string{"HOST", "PORT", "CHANGE", "BEFORE", "AFTER"}}
	colour := func(k scandiff.Kind) output.Color {
		switch k {
		case scandiff.HostAppeared, scandiff.PortAdded:
			return output.Green
		case scandiff.HostVanished, scandiff.PortRemoved:
			return output.Red
		}
		return output.Yellow
	}
	i := 0
	addHost := func(h scandiff.HostChange) {
		before, after := h.A.String(), h.B.String()
		switch h.Kind {
		case scandiff.HostAppeared:
			before, after = "down or not scanned", fmt.Sprintf("up, %d open", h.Open)
		case scandiff.HostVanished:
			before, after = fmt.Sprintf("up, %d open", h.Open), "down or not scanned"
		}
		t.AddColored([]string{h.Addr.String(), "-", string(h.Kind), before, after}, []output.Color{2: colour(h.Kind)})
	}
	for _, p := range d.Ports {
		for i < len(d.Hosts) && !p.Addr.Less(d.Hosts[i].Addr) {
			addHost(d.Hosts[i])
			i++
		}
		before, after := p.A.Describe(), p.B.Describe()
		if p.Kind == scandiff.PortService && len(p.Fields) == 1 && p.Fields[0] == "banner" {
			before, after = strconv.Quote(p.A.Banner), strconv.Quote(p.B.Banner)
		}
		t.AddColored([]string{p.Addr.String(), fmt.Sprintf("%d/%s", p.Port, p.Proto), string(p.Kind), before, after},
			[]output.Color{2: colour(p.Kind)})
	}
	for ; i < len(d.Hosts); i++ {
		addHost(d.Hosts[i])
	}
	if err := t.Write(out, g.color()); err != nil {
		return err
	}
	s := d.Summary
	_, err := fmt.Fprintf(out, "hosts: %d appeared, %d vanished, %d other closed/filtered counts; ports: %d opened, %d no longer open, %d other state, %d service\n",
		s.HostsAppeared, s.HostsVanished, s.HostsHidden, s.PortsAdded, s.PortsRemoved, s.StateChanges, s.ServiceChange)
	return err
}
