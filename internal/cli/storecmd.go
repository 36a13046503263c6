package cli

import (
	"context"
	"fmt"
	"os"

	"github.com/spf13/cobra"
)

func init() { register(newStoreCmd) }

// LoadSpillOptions are the inputs of `portolan store load-spill`.
type LoadSpillOptions struct {
	Files []string
	DB    DBFlags
}

func newStoreCmd(g *Globals) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "store",
		Short: "Maintain the scan database",
		Args:  cobra.NoArgs,
	}
	var opts LoadSpillOptions
	load := &cobra.Command{
		Use:   "load-spill FILE...",
		Short: "Store the results a scan spilled to a file while its database was unreachable",
		Long: `A scan whose database goes away (a PostgreSQL restart, a network partition)
keeps its results in memory and retries; past --db-buffer results, or when
the database is still away at the end (--db-retry), it writes them to a spill
file and its error names the file. load-spill writes such files into the
database once it is back: the results, the last checkpoint and the scan's end.
A spill whose scan did not end leaves it interrupted, for --resume. Loading a
file twice is harmless: a port stored twice reads back once.`,
		Example: `  portolan store load-spill ~/.local/share/portolan/spill/scan-17-2391.jsonl --db postgres://scanner@db/portolan`,
		Args:    cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			opts.Files = args
			return runLoadSpill(cmd.Context(), g, opts)
		},
	}
	addDBFlags(load, &opts.DB)
	cmd.AddCommand(load)
	return cmd
}

func runLoadSpill(ctx context.Context, g *Globals, opts LoadSpillOptions) error {
	db, err := opts.DB.open(ctx, true)
	if err != nil {
		return err
	}
	defer db.Close()
	for _, name := range opts.Files {
		f, err := os.Open(name)
		if err != nil {
			return err // *PathError names the file
		}
		sum, err := db.LoadSpill(ctx, f, name)
		f.Close()
		if err != nil {
			return err
		}
		if g.JSON {
			if err := writeJSON(g, sum); err != nil {
				return err
			}
			continue
		}
		fmt.Fprintf(g.io.Out, "%s: %d results of scan %d stored; it is %s at position %d\n", name, sum.Results, sum.ScanID, sum.Status, sum.Checkpoint)
	}
	return nil
}
