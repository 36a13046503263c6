package cli

import (
	"fmt"
	"strings"

	"github.com/spf13/cobra"
)

// requireSubcommands makes every command that only groups subcommands
// (`portolan firewall`) refuse an unknown one with exit 2 and a
// suggestion, as the root does: cobra would print the help and exit 0, so
// `portolan firewall alow 22/tcp && echo opened` said opened. Without
// arguments such a command still prints its help.
func requireSubcommands(cmd *cobra.Command) {
	for _, c := range cmd.Commands() {
		requireSubcommands(c)
	}
	if cmd.Parent() == nil || !cmd.HasSubCommands() || cmd.Runnable() {
		return
	}
	cmd.Args = func(c *cobra.Command, args []string) error {
		if len(args) == 0 {
			return nil
		}
		msg := fmt.Sprintf("unknown command %q for %q", args[0], c.CommandPath())
		if c.SuggestionsMinimumDistance <= 0 {
			c.SuggestionsMinimumDistance = 2 // cobra's default, which it sets only for the root
		}
		if s := c.SuggestionsFor(args[0]); len(s) > 0 {
			msg += "; did you mean " + strings.Join(s, " or ") + "?"
		}
		return usageErr(fmt.Errorf("%s (see %s --help)", msg, c.CommandPath()))
	}
	cmd.RunE = func(c *cobra.Command, _ []string) error { return c.Help() }
}
