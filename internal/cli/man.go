package cli

import (
	"bufio"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
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
			if err := writeManTree(cmd.Root(), opts.Dir); err != nil {
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

// writeManTree writes one roff page per available command. It is written
// here rather than taken from cobra/doc: that package pulls in a Markdown
// renderer and a YAML encoder whose package initialisation every run of
// the binary paid for (about 3 ms of a 10 ms `portolan who`).
func writeManTree(c *cobra.Command, dir string) error {
	for _, sub := range c.Commands() {
		if !sub.IsAvailableCommand() || sub.IsAdditionalHelpTopicCommand() {
			continue
		}
		if err := writeManTree(sub, dir); err != nil {
			return err
		}
	}
	name := strings.ReplaceAll(c.CommandPath(), " ", "-")
	f, err := os.Create(filepath.Join(dir, name+".1"))
	if err != nil {
		return err
	}
	w := bufio.NewWriter(f)
	writeManPage(w, c, name)
	if err := w.Flush(); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

func writeManPage(w *bufio.Writer, c *cobra.Command, name string) {
	fmt.Fprintf(w, ".TH %q 1 \"\" %q \"Portolan Manual\"\n", strings.ToUpper(name), "portolan "+Version)
	fmt.Fprintf(w, ".SH NAME\n%s \\- %s\n", roff(name), roff(c.Short))
	fmt.Fprintf(w, ".SH SYNOPSIS\n.B %s\n", roff(c.UseLine()))
	desc := c.Long
	if desc == "" {
		desc = c.Short
	}
	fmt.Fprintf(w, ".SH DESCRIPTION\n%s\n", roffText(desc))
	manFlags(w, "OPTIONS", c.NonInheritedFlags())
	manFlags(w, "OPTIONS INHERITED FROM PARENT COMMANDS", c.InheritedFlags())
	if c.Example != "" {
		fmt.Fprintf(w, ".SH EXAMPLE\n.nf\n%s\n.fi\n", roff(c.Example))
	}
	var see []string
	if c.HasParent() {
		see = append(see, strings.ReplaceAll(c.Parent().CommandPath(), " ", "-")+"(1)")
	}
	for _, sub := range c.Commands() {
		if sub.IsAvailableCommand() && !sub.IsAdditionalHelpTopicCommand() {
			see = append(see, strings.ReplaceAll(sub.CommandPath(), " ", "-")+"(1)")
		}
	}
	if len(see) > 0 {
		fmt.Fprintf(w, ".SH SEE ALSO\n%s\n", roff(strings.Join(see, ", ")))
	}
}

func manFlags(w *bufio.Writer, title string, fs *pflag.FlagSet) {
	if !fs.HasAvailableFlags() {
		return
	}
	fmt.Fprintf(w, ".SH %s\n", title)
	fs.VisitAll(func(f *pflag.Flag) {
		if f.Hidden {
			return
		}
		varname, usage := pflag.UnquoteUsage(f)
		head := "\\-\\-" + roff(f.Name)
		if f.Shorthand != "" && f.ShorthandDeprecated == "" {
			head = "\\-" + roff(f.Shorthand) + ", " + head
		}
		if varname != "" {
			head += " " + roff(varname)
		}
		if f.DefValue != "" && f.DefValue != "false" && f.DefValue != "[]" && f.DefValue != "0" {
			usage += " (default " + f.DefValue + ")"
		}
		fmt.Fprintf(w, ".TP\n\\fB%s\\fP\n%s\n", head, roffText(usage))
	})
}

// roff escapes backslashes and dashes for troff.
func roff(s string) string {
	return strings.NewReplacer(`\`, `\e`, "-", `\-`).Replace(s)
}

// roffText is roff for running text: blank lines become paragraph breaks
// and a line starting with a control character is protected.
func roffText(s string) string {
	lines := strings.Split(roff(strings.TrimSpace(s)), "\n")
	for i, l := range lines {
		switch {
		case strings.TrimSpace(l) == "":
			lines[i] = ".PP"
		case strings.HasPrefix(l, ".") || strings.HasPrefix(l, "'"):
			lines[i] = `\&` + l
		case strings.HasPrefix(l, " "):
			lines[i] = ".br\n" + l
		}
	}
	return strings.Join(lines, "\n")
}
