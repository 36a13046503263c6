package cli

import (
	"context"
	"fmt"
	"strconv"
	"time"

	"github.com/spf13/cobra"

	"portolan/internal/firewall"
)

// FirewallDeleteOptions are the inputs of `portolan firewall delete`.
type FirewallDeleteOptions struct {
	*FirewallOptions
	Numbers []int             // rule numbers as list shows them
	Spec    firewall.RuleSpec // or a rule by its action and match
	Force   bool
}

func newFirewallDeleteCmd(g *Globals, fo *FirewallOptions) *cobra.Command {
	opts := FirewallDeleteOptions{FirewallOptions: fo}
	cmd := &cobra.Command{
		Use:   "delete N [N...] | ACTION PORTS [flags]",
		Short: "Delete rules by number or by what they say",
		Long: `Delete rules by their numbers in 'portolan firewall list', or the rule with
the given action and match (the same words and flags that added it).
All deletions are one transaction.`,
		Example: `  portolan firewall delete 3
  portolan firewall delete 2 5
  portolan firewall delete allow 22/tcp
  portolan firewall delete deny any --from 198.18.0.66`,
		Args: cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if _, err := firewall.ParseAction(args[0]); err == nil {
				if len(args) != 2 {
					return usageErr(fmt.Errorf("delete %s: want one PORTS argument after the action", args[0]))
				}
				opts.Spec.Action, opts.Spec.Ports = args[0], args[1]
			} else {
				for _, a := range args {
					n, err := strconv.Atoi(a)
					if err != nil || n < 1 {
						return usageErr(fmt.Errorf("delete %q: not a rule number or an action (allow, deny, reject, limit, log)", a))
					}
					opts.Numbers = append(opts.Numbers, n)
				}
			}
			return runFirewallDelete(cmd.Context(), g, opts)
		},
	}
	matchFlags(cmd, &opts.Spec)
	cmd.Flags().StringVar(&opts.Spec.Rate, "rate", "", "with limit: the rule's rate")
	cmd.Flags().StringVar(&opts.Spec.Prefix6, "prefix6", "", "with limit: the rule's IPv6 prefix length")
	cmd.Flags().StringVar(&opts.Spec.Group, "group", "", "with log: the rule's NFLOG group")
	addForce(cmd, &opts.Force)
	return cmd
}

func runFirewallDelete(ctx context.Context, g *Globals, opts FirewallDeleteOptions) error {
	var target firewall.Rule
	if opts.Numbers == nil {
		var err error
		if target, err = opts.Spec.Rule(registryNames{}, time.Now()); err != nil {
			return usageErr(err)
		}
	}
	s, tab, err := openTable(ctx, g, opts.FirewallOptions, true)
	if err != nil {
		return err
	}
	defer s.Close()
	numbers := opts.Numbers
	if numbers == nil {
		n := tab.Ruleset.Find(&target)
		if n == 0 {
			return withCode(ExitNotFound, fmt.Errorf("no rule %s", target.String()))
		}
		numbers = []int{n}
	}
	want := tab.Ruleset.Clone()
	gone, err := want.Delete(numbers...)
	if err != nil {
		return withCode(ExitNotFound, err)
	}
	if err := s.change(ctx, tab, want, opts.Force); err != nil {
		return err
	}
	now := time.Now()
	res := fwChangeResult{Result: "deleted"}
	for i := range gone {
		res.Rules = append(res.Rules, newFwRule(numbers[i], &gone[i], now))
	}
	if g.JSON {
		return writeJSON(g, res)
	}
	for _, fr := range res.Rules {
		fmt.Fprintf(g.io.Out, "deleted rule %d: %s\n", fr.Number, fr.Text)
	}
	return nil
}
