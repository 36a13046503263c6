package cli

import (
	"context"
	"fmt"
	"time"

	"github.com/spf13/cobra"

	"portolan/internal/atomicfile"
	"portolan/internal/firewall"
)

// FirewallExportOptions are the inputs of `portolan firewall export`.
type FirewallExportOptions struct {
	*FirewallOptions
	Output string // a file; empty or "-": stdout
}

func newFirewallExportCmd(g *Globals, fo *FirewallOptions) *cobra.Command {
	opts := FirewallExportOptions{FirewallOptions: fo}
	cmd := &cobra.Command{
		Use:   "export [-o FILE]",
		Short: "Write the live table as a profile file",
		Long: `Write portolan's live table as a YAML profile that plan and apply read back:
the policy and the rules in order. Expiring rules get their expiry as an
absolute time (expires:); expired rules are left out. With --json, the same as
JSON.`,
		Example: `  portolan firewall export -o rules.yaml
  portolan firewall export > before.yaml && portolan firewall plan -f before.yaml`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return runFirewallExport(cmd.Context(), g, opts)
		},
	}
	cmd.Flags().StringVarP(&opts.Output, "output", "o", "", "write to this file instead of stdout")
	markFiles(cmd.Flags(), false, "output")
	return cmd
}

func runFirewallExport(ctx context.Context, g *Globals, opts FirewallExportOptions) error {
	s, tab, err := openTable(ctx, g, opts.FirewallOptions, false)
	if err != nil {
		return err
	}
	defer s.Close()
	now := time.Now()
	rs := tab.Ruleset.WithoutExpired(now)
	var data []byte
	if g.JSON {
		data, err = jsonIndent(map[string]any{"policy": rs.Policy, "rules": rs.Rules})
	} else {
		where := "this network namespace"
		if opts.NetNS != "" {
			where = "network namespace " + opts.NetNS
		}
		header := fmt.Sprintf("portolan firewall profile: table inet %s of %s at %s", firewall.TableName, where, now.UTC().Format(time.RFC3339))
		if !tab.Exists {
			header += "\n(no table existed: an empty profile)"
		}
		data, err = firewall.MarshalProfile(rs, header)
	}
	if err != nil {
		return err
	}
	if opts.Output == "" || opts.Output == "-" {
		_, err = g.io.Out.Write(data)
		return err
	}
	if err := atomicfile.Write(opts.Output, data, 0o644); err != nil {
		return fmt.Errorf("export to %s: %w", opts.Output, err)
	}
	fmt.Fprintf(g.io.ErrOut, "wrote %d rules to %s\n", len(rs.Rules), opts.Output)
	return nil
}
