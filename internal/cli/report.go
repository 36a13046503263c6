package cli

import (
	"bytes"
	"cmp"
	"context"
	"errors"
	"strconv"
	"time"

	"github.com/spf13/cobra"

	"portolan/internal/atomicfile"
	htmlreport "portolan/internal/report"
	"portolan/internal/scandiff"
	"portolan/internal/store"
)

func init() { register(newReportCmd) }

// ReportOptions are the inputs of `portolan report`.
type ReportOptions struct {
	ID     int64  // 0 for a named scan (Ref)
	Ref    string // the scan as given: an id, NAME or NAME@RUN; empty: ID
	Output string // file to write; empty or "-" means stdout
	DB     DBFlags
}

func newReportCmd(g *Globals) *cobra.Command {
	var opts ReportOptions
	cmd := &cobra.Command{
		Use:   "report ID|NAME[@RUN]",
		Short: "Write a stored scan as one self-contained HTML page",
		Long: `Write scan ID (see portolan history) as one HTML file that needs nothing else
to be viewed: no network, no other files. It shows a summary, a host x port
grid coloured by state, the services with their versions and banners, and
what changed since the previous finished scan of the same targets (as
portolan diff shows it). Tables sort on a click of their header, filter as
you type, and are paged, so a scan of 10,000 hosts stays quick to browse.

Exit status 3 when the scan does not exist.`,
		Example: `  portolan report 18 -o report.html
  portolan report "$(portolan history -n 1 --json | jq '.[0].id')" -o latest.html`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			var err error
			if opts.Ref, opts.ID, err = scanRef(args[0]); err != nil {
				return err
			}
			return runReport(cmd.Context(), g, opts)
		},
	}
	cmd.Flags().StringVarP(&opts.Output, "output", "o", "", "write to `FILE` instead of standard output")
	addDBFlags(cmd, &opts.DB)
	return cmd
}

func runReport(ctx context.Context, g *Globals, opts ReportOptions) error {
	st, si, err := opts.DB.openRef(ctx, cmp.Or(opts.Ref, strconv.FormatInt(opts.ID, 10)))
	if err != nil {
		return err
	}
	defer st.Close()
	in, err := reportInput(ctx, st, si)
	if err != nil {
		return err
	}
	in.Tool = "portolan " + buildVersion().String()
	toFile := opts.Output != "" && opts.Output != "-"
	if g.JSON && !toFile {
		return usageErr(errors.New("--json says what report wrote: give the page a file with -o FILE"))
	}
	if !toFile {
		return htmlreport.Write(g.io.Out, in)
	}
	var page bytes.Buffer
	if err := htmlreport.Write(&page, in); err != nil {
		return err
	}
	if err := atomicfile.Write(opts.Output, page.Bytes(), 0o644); err != nil {
		return fileErr(err)
	}
	if g.JSON {
		return writeJSON(g, struct {
			Scan  int64  `json:"scan"`
			Path  string `json:"path"`
			Bytes int    `json:"bytes"`
			Diff  bool   `json:"diff"` // the page shows the diff against the previous scan
		}{si.ID, opts.Output, page.Len(), in.Diff != nil})
	}
	return nil
}

// reportInput gathers what the report of si shows: its results and the
// diff against the previous scan of the same targets.
func reportInput(ctx context.Context, st *store.Store, si store.ScanInfo) (htmlreport.Input, error) {
	side, err := scandiff.Stored(ctx, st, si)
	if err != nil {
		return htmlreport.Input{}, err
	}
	in := htmlreport.Input{Scan: si, Results: st.ScanResultsSeq(ctx, si, store.Filter{}), Version: side.Version, Generated: time.Now()}
	scans, err := st.Scans(ctx, 0)
	if err != nil {
		return htmlreport.Input{}, err
	}
	if prev, ok := scandiff.Previous(ctx, scans, si); ok {
		if in.Diff, err = scandiff.CompareStored(ctx, st, prev, si); err != nil {
			return htmlreport.Input{}, err
		}
	}
	return in, nil
}
