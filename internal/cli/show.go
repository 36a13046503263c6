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
	ID     int64    // the scan's id; 0 when Ref names a named scan
	Ref    string   // the scan as given: an id, NAME or NAME@RUN
	Format string   // an output.ScanFormat; empty means table (or json with --json)
	Output string   // file to write; empty or "-" means stdout
	States []string // only ports in these states; empty means all
	Open   bool     // --open: the same as --state open
	DB     DBFlags
}

func newShowCmd(g *Globals) *cobra.Command {
	var opts ShowOptions
	cmd := &cobra.Command{
		Use:   "show ID|NAME[@RUN]",
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

A scan run as shards (portolan scan --scan-id NAME --shard I/N) is shown by
its name, all shards merged, each port once; NAME@RUN shows an earlier run.
Shards that are missing, still running or interrupted are named on stderr.

--state keeps only the ports in the given states. Exit status 3 when the scan
does not exist.`,
		Example: `  portolan show 17
  portolan show 17 --format xml -o scan17.xml
  portolan show 17 --format csv --state open,open\|filtered
  portolan show 17 --format list | xargs -n1 curl -sI
  portolan show 17 --json | jq '.results[] | select(.state == "open")'
  portolan show weekly-443 --db postgres://scanner@db/portolan   # all shards`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			var err error
			if opts.Ref, opts.ID, err = scanRef(args[0]); err != nil {
				return err
			}
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

// ref names si for people: its id, or NAME@RUN.
func ref(si store.ScanInfo) string {
	if si.ID == 0 && si.Name != "" {
		return fmt.Sprintf("%s@%d", si.Name, si.Run)
	}
	return strconv.FormatInt(si.ID, 10)
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

	ref := opts.Ref
	if ref == "" {
		ref = strconv.FormatInt(opts.ID, 10)
	}
	db, si, err := opts.DB.openRef(ctx, ref)
	if err != nil {
		return err
	}
	defer db.Close()
	if text := shardsText(si); text != "" {
		fmt.Fprintln(g.io.ErrOut, text)
	}

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
		for r, err := range db.ScanResultsSeq(ctx, si, filter) {
			if err != nil {
				return err
			}
			if err := sw.Write(r); err != nil {
				return fmt.Errorf("write scan %s: %w", ref(si), err)
			}
		}
		if err := sw.Close(); err != nil {
			return err
		}
		return bw.Flush()
	}
	results, err := db.ScanResults(ctx, si, filter)
	if err != nil {
		return err
	}
	return output.WriteScan(out, format, scanMeta(si), results, color)
}
