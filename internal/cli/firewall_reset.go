package cli

import (
	"context"
	"fmt"

	"github.com/spf13/cobra"
)

// FirewallResetOptions are the inputs of `portolan firewall reset`.
type FirewallResetOptions struct {
	*FirewallOptions
}

func newFirewallResetCmd(g *Globals, fo *FirewallOptions) *cobra.Command {
	opts := FirewallResetOptions{FirewallOptions: fo}
	return &cobra.Command{
		Use:   "reset",
		Short: "Remove all of portolan's rules (its whole table)",
		Long: `Delete the table inet portolan with every rule, set and policy in it, in one
transaction. Other tables are not touched. Traffic is then filtered only by
whatever else the machine has.`,
		Example: `  portolan firewall reset
  portolan firewall --netns blue reset --json`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return runFirewallReset(cmd.Context(), g, opts)
		},
	}
}

func runFirewallReset(ctx context.Context, g *Globals, opts FirewallResetOptions) error {
	s, tab, err := openTable(ctx, g, opts.FirewallOptions, true)
	if err != nil {
		return err
	}
	defer s.Close()
	if tab.Exists {
		if err := s.fw.Reset(ctx); err != nil {
			return err
		}
	}
	if g.JSON {
		return writeJSON(g, map[string]any{"removed": tab.Exists, "rules": len(tab.Ruleset.Rules)})
	}
	if !tab.Exists {
		_, err = fmt.Fprintln(g.io.Out, "nothing to reset: no table inet portolan")
		return err
	}
	_, err = fmt.Fprintf(g.io.Out, "removed table inet portolan (%d rules, policy %s)\n", len(tab.Ruleset.Rules), tab.Ruleset.Policy)
	return err
}
