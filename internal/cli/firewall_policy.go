package cli

import (
	"context"
	"fmt"
	"time"

	"github.com/spf13/cobra"

	"portolan/internal/firewall"
)

// FirewallPolicyOptions are the inputs of `portolan firewall default-policy`.
type FirewallPolicyOptions struct {
	*FirewallOptions
	Policy firewall.Policy
	Force  bool
}

func newFirewallPolicyCmd(g *Globals, fo *FirewallOptions) *cobra.Command {
	opts := FirewallPolicyOptions{FirewallOptions: fo}
	cmd := &cobra.Command{
		Use:   "default-policy accept|drop|reject",
		Short: "Set what happens to incoming traffic no rule decides",
		Long: `Set the default policy of portolan's input chain: accept (the start), drop
(silently), or reject (a final rule answering with ICMP port unreachable).
Open connections, loopback, and ICMP not matched by a rule stay accepted.

From an SSH session, drop and reject are refused unless a rule lets your
client open a new SSH connection (or --force).`,
		Example: `  portolan firewall allow 22/tcp && portolan firewall default-policy drop
  portolan firewall default-policy accept`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			p, err := firewall.ParsePolicy(args[0])
			if err != nil {
				return usageErr(err)
			}
			opts.Policy = p
			return runFirewallPolicy(cmd.Context(), g, opts)
		},
	}
	addForce(cmd, &opts.Force)
	return cmd
}

func runFirewallPolicy(ctx context.Context, g *Globals, opts FirewallPolicyOptions) error {
	s, tab, err := openTable(ctx, g, opts.FirewallOptions, true)
	if err != nil {
		return err
	}
	defer s.Close()
	old := tab.Ruleset.Policy
	want := tab.Ruleset.WithoutExpired(time.Now())
	want.Policy = opts.Policy
	if old != opts.Policy || !tab.Exists {
		if err := s.change(ctx, tab, want, opts.Force); err != nil {
			return err
		}
	}
	if g.JSON {
		return writeJSON(g, map[string]any{"policy": opts.Policy, "previous": old, "changed": old != opts.Policy})
	}
	if old == opts.Policy {
		_, err = fmt.Fprintf(g.io.Out, "policy %s (unchanged)\n", opts.Policy)
		return err
	}
	_, err = fmt.Fprintf(g.io.Out, "policy %s (was %s)\n", opts.Policy, old)
	return err
}
