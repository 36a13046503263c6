package cli

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strconv"

	"github.com/spf13/cobra"

	"portolan/internal/importer"
	"portolan/internal/output"
)

func init() { register(newImportCmd) }

// ImportOptions are the inputs of `portolan import`.
type ImportOptions struct {
	Files  []string
	Format string // an importer.Format; empty means detect per file
	DB     DBFlags
}

func newImportCmd(g *Globals) *cobra.Command {
	var opts ImportOptions
	cmd := &cobra.Command{
		Use:   "import FILE...",
		Short: "Store scans made by nmap, masscan or another portolan",
		Long: `Read scan output files into the scan database, one stored scan per file, so
history, show, diff and report work on them as on portolan's own scans.

Formats (detected from the content, or given with --format):

  nmap-xml      nmap -oX, from nmap or from portolan (show --format xml);
                ports collapsed into <extraports> are stored one by one,
                nmap -sV's product and version are kept
  masscan-json  masscan -oJ
  masscan-list  masscan -oL

Every file is read before anything is stored: a malformed file is reported
as FILE:LINE: problem, and nothing is imported (exit 2). Each scan is stored
in one transaction.`,
		Example: `  portolan import scan.xml
  nmap -p- -oX full.xml 198.18.0.0/24 && portolan import full.xml
  masscan -p1-65535 198.18.0.0/16 -oJ m.json && portolan import m.json
  portolan import --format masscan-list masscan.txt`,
		Args: cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			opts.Files = args
			if opts.Format != "" {
				if _, err := importer.ParseFormat(opts.Format); err != nil {
					return usageErr(fmt.Errorf("--format: %w", err))
				}
			}
			return runImport(cmd.Context(), g, opts)
		},
	}
	cmd.Flags().StringVarP(&opts.Format, "format", "f", "", "input `FORMAT`: nmap-xml, masscan-json, masscan-list (default: detect)")
	addDBFlags(cmd, &opts.DB)
	return cmd
}

// imported is one file's outcome, as --json writes it.
type imported struct {
	File    string `json:"file"`
	ID      int64  `json:"id"`
	Format  string `json:"format"`
	Hosts   uint64 `json:"hosts"`
	Results int    `json:"results"`
	Open    uint64 `json:"open"`
}

func runImport(ctx context.Context, g *Globals, opts ImportOptions) error {
	format, _ := importer.ParseFormat(opts.Format)
	var scans []*importer.Scan
	for _, f := range opts.Files {
		data, err := os.ReadFile(f)
		if err != nil {
			return withCode(ExitUsage, err) // *PathError names the file
		}
		s, err := importer.Parse(f, data, format)
		if err != nil {
			var ie *importer.Error
			if errors.As(err, &ie) {
				return usageErr(fmt.Errorf("%w (nothing imported)", err))
			}
			return err
		}
		scans = append(scans, s)
	}
	st, err := opts.DB.open(ctx, true)
	if err != nil {
		return err
	}
	defer st.Close()
	var out []imported
	for i, s := range scans {
		id, err := st.ImportScan(ctx, s.Info, s.Results)
		if err != nil {
			return fmt.Errorf("import %s: %w", opts.Files[i], err)
		}
		out = append(out, imported{File: opts.Files[i], ID: id, Format: string(s.Format), Hosts: s.Info.Hosts, Results: len(s.Results), Open: s.Info.Counts.Open})
	}
	if g.JSON {
		return writeJSON(g, out)
	}
	t := &output.Table{Header: []string{"ID", "FILE", "FORMAT", "HOSTS", "PORTS", "OPEN"}, RightAlign: []int{0, 3, 4, 5}}
	for _, o := range out {
		t.Add(strconv.FormatInt(o.ID, 10), o.File, o.Format, strconv.FormatUint(o.Hosts, 10), strconv.Itoa(o.Results), strconv.FormatUint(o.Open, 10))
	}
	return t.Write(g.io.Out, g.color())
}
