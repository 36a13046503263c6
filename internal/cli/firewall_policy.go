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
	Policy   firewall.Policy
	Log      *bool  // --log given: log what the policy drops (rate-limited); nil: as it was
	LogGroup uint16 // --log-group: to this NFLOG group instead of the kernel log
	Force    bool
}

func newFirewallPolicyCmd(g *Globals, fo *FirewallOptions) *cobra.Command {
	opts := FirewallPolicyOptions{FirewallOptions: fo}
	var logOn bool
	var logGroup int
	cmd := &cobra.Command{
		Use:   "default-policy accept|drop|reject",
		Short: "Set what happens to incoming traffic no rule decides",
		Long: `Set the default policy of portolan's input chain: accept (the start), drop
(silently), or reject (a final rule answering with ICMP port unreachable).
Loopback, connections conntrack tracks (see portolan firewall --help), IPv6
neighbour discovery, and ICMP not matched by a rule stay accepted.

From an SSH session, drop and reject are refused unless a rule lets your
client open a new SSH connection (or --force).`,
		Example: `  portolan firewall allow 22/tcp && portolan firewall default-policy drop
  portolan firewall default-policy drop --log          # log what it drops, 3 a minute
  portolan firewall default-policy drop --log-group 5  # to NFLOG group 5
  portolan firewall default-policy accept`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			p, err := firewall.ParsePolicy(args[0])
			if err != nil {
				return usageErr(err)
			}
			opts.Policy = p
			if cmd.Flags().Changed("log") || cmd.Flags().Changed("log-group") {
				on := logOn || logGroup != 0
				opts.Log = &on
			}
			if logGroup < 0 || logGroup > 65535 {
				return usageErr(fmt.Errorf("--log-group %d: want an NFLOG group from 1 to 65535", logGroup))
			}
			opts.LogGroup = uint16(logGroup)
			if opts.Log != nil && *opts.Log && p == firewall.PolicyAccept {
				return usageErr(fmt.Errorf("--log with policy accept: it drops nothing to log"))
			}
			return runFirewallPolicy(cmd.Context(), g, opts)
		},
	}
	cmd.Flags().BoolVar(&logOn, "log", false, "log what the policy drops or rejects, 3 a minute in bursts of 10 (--log=false stops it)")
	cmd.Flags().IntVar(&logGroup, "log-group", 0, "log to this NFLOG group instead of the kernel log (implies --log)")
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
	if opts.Log != nil {
		want.PolicyLog, want.PolicyLogGroup = *opts.Log, opts.LogGroup
	}
	if opts.Policy == firewall.PolicyAccept {
		want.PolicyLog, want.PolicyLogGroup = false, 0 // nothing left to log
	}
	logChanged := want.PolicyLog != tab.Ruleset.PolicyLog || want.PolicyLogGroup != tab.Ruleset.PolicyLogGroup
	if old != opts.Policy || !tab.Exists || logChanged {
		if err := s.change(ctx, tab, want, opts.Force); err != nil {
			return err
		}
	}
	if g.JSON {
		return writeJSON(g, map[string]any{"policy": opts.Policy, "previous": old, "changed": old != opts.Policy})
	}
	logged := ""
	if want.PolicyLog {
		logged = ", logged"
	}
	if old == opts.Policy {
		_, err = fmt.Fprintf(g.io.Out, "policy %s%s (unchanged)\n", opts.Policy, logged)
		return err
	}
	_, err = fmt.Fprintf(g.io.Out, "policy %s%s (was %s)\n", opts.Policy, logged, old)
	return err
}
