package cli

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"

	"github.com/spf13/cobra"

	"portolan/internal/output"
	"portolan/internal/scan"
	"portolan/internal/store"
)

func init() { register(newShowCmd) }

// ShowOptions are the inputs of `portolan show`.
type ShowOptions struct {
	ID     int64
	Format string   // an output.ScanFormat; empty means table (or json with --json)
	Output string   // file to write; empty or "-" means stdout
	States []string // only ports in these states; empty means all
	Open   bool     // --open: the same as --state open
	DB     DBFlags
}

func newShowCmd(g *Globals) *cobra.Command {
	var opts ShowOptions
	cmd := &cobra.Command{
		Use:   "show ID",
		Short: "Print the results of a stored scan, in any format",
		Long: `Print the results of a stored scan (see portolan history) in any of the scan
formats:

  table     per host PORT STATE SERVICE REASON RTT, collapsing states with
            more than 25 ports into a "Not shown" line, as nmap does (default)
  json      the scan's parameters and every result, one document (--json)
  jsonl     one result per line: addr, port, proto, state, reason, rtt_ms, ...
  csv       one result per row, with a header
  grepable  nmap's -oG format
  list      the open ports as host:port, [v6]:port for IPv6
  xml       nmap's -oX format, valid against nmap.dtd, for tools that import it

--state keeps only the ports in the given states. Exit status 3 when the scan
does not exist.`,
		Example: `  portolan show 17
  portolan show 17 --format xml -o scan17.xml
  portolan show 17 --format csv --state open,open\|filtered
  portolan show 17 --format list | xargs -n1 curl -sI
  portolan show 17 --json | jq '.results[] | select(.state == "open")'`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			id, err := strconv.ParseInt(args[0], 10, 64)
			if err != nil || id <= 0 {
				return usageErr(fmt.Errorf("scan id %q: want a positive number (portolan history lists them)", args[0]))
			}
			opts.ID = id
			return runShow(cmd.Context(), g, opts)
		},
	}
	f := cmd.Flags()
	f.StringVarP(&opts.Format, "format", "f", "", "output `FORMAT`: "+formatNames())
	f.StringVarP(&opts.Output, "output", "o", "", "write to `FILE` instead of standard output")
	markFiles(f, false, "output")
	f.StringSliceVar(&opts.States, "state", nil, "only ports in `STATE`s (open, closed, filtered, open|filtered, ...; comma-separated)")
	f.BoolVar(&opts.Open, "open", false, "only open ports, and hosts with one (nmap's --open; --state open)")
	addDBFlags(cmd, &opts.DB)
	return cmd
}

func formatNames() string {
	var names []string
	for _, f := range output.ScanFormats {
		names = append(names, string(f))
	}
	return strings.Join(names, ", ")
}

// scanFormat resolves --format and --json into one format.
func scanFormat(g *Globals, name string) (output.ScanFormat, error) {
	switch {
	case name == "" && g.JSON:
		return output.FormatJSON, nil
	case name == "":
		return output.FormatTable, nil
	}
	f, err := output.ParseScanFormat(name)
	if err != nil {
		return "", err
	}
	if g.JSON && f != output.FormatJSON {
		return "", fmt.Errorf("--json and --format %s disagree: choose one", f)
	}
	return f, nil
}

func runShow(ctx context.Context, g *Globals, opts ShowOptions) error {
	format, err := outputFormat(g, opts.Format, opts.Output)
	if err != nil {
		return err
	}
	var filter store.Filter
	if opts.Open {
		opts.States = append(opts.States, "open")
	}
	for _, s := range opts.States {
		st, err := scan.ParseState(strings.TrimSpace(s))
		if err != nil {
			return usageErr(fmt.Errorf("--state: %w", err))
		}
		filter.States = append(filter.States, st)
	}

	db, si, err := opts.DB.openScan(ctx, opts.ID)
	if err != nil {
		return err
	}
	defer db.Close()

	out, color := g.io.Out, g.color()
	var file *os.File
	if opts.Output != "" && opts.Output != "-" {
		if file, err = os.Create(opts.Output); err != nil {
			return fileErr(err) // *PathError names the file
		}
		out, color = file, false
	}
	err = writeStoredScan(ctx, out, db, si, format, filter, color)
	if file != nil {
		if cerr := file.Close(); err == nil && cerr != nil {
			err = cerr
		}
	}
	return err
}

// writeStoredScan renders the results of si. Streamable formats go straight
// from the database to out, so a scan of millions of ports is never held in
// memory whole.
func writeStoredScan(ctx context.Context, out io.Writer, db *store.Store, si store.ScanInfo, format output.ScanFormat, filter store.Filter, color bool) error {
	if output.Streamable(format) {
		// A StreamWriter flushes a writer that can flush after every line,
		// which a live scan wants and a replay does not: hide the Flush.
		bw := bufio.NewWriter(out)
		sw, err := output.NewStreamWriter(struct{ io.Writer }{bw}, format)
		if err != nil {
			return err
		}
		for r, err := range db.ResultsSeq(ctx, si.ID, filter) {
			if err != nil {
				return err
			}
			if err := sw.Write(r); err != nil {
				return fmt.Errorf("write scan %d: %w", si.ID, err)
			}
		}
		if err := sw.Close(); err != nil {
			return err
		}
		return bw.Flush()
	}
	results, err := db.Results(ctx, si.ID, filter)
	if err != nil {
		return err
	}
	return output.WriteScan(out, format, scanMeta(si), results, color)
}
