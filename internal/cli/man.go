package cli

import (
	"fmt"
	"os"

	"github.com/spf13/cobra"
	"github.com/spf13/cobra/doc"
)

func init() { register(newManCmd) }

type manOptions struct {
	Dir string
}

// newManCmd writes man pages generated from the command tree, so they never
// drift from --help. Shell completion comes from cobra's own "completion".
func newManCmd(g *Globals) *cobra.Command {
	opts := &manOptions{}
	cmd := &cobra.Command{
		Use:     "man",
		Short:   "Write man pages for every command into a directory",
		Example: "  portolan man --dir /usr/local/share/man/man1",
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := os.MkdirAll(opts.Dir, 0o755); err != nil {
				return fmt.Errorf("create man directory: %w", err)
			}
			hdr := &doc.GenManHeader{Title: "PORTOLAN", Section: "1", Source: "portolan " + Version}
			if err := doc.GenManTree(cmd.Root(), hdr, opts.Dir); err != nil {
				return fmt.Errorf("write man pages to %s: %w", opts.Dir, err)
			}
			if g.JSON {
				return writeJSON(g, map[string]string{"dir": opts.Dir})
			}
			fmt.Fprintf(g.io.Out, "man pages written to %s\n", opts.Dir)
			return nil
		},
	}
	cmd.Flags().StringVar(&opts.Dir, "dir", "man", "directory to write the pages into")
	return cmd
}
