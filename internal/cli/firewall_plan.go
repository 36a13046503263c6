package cli

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"time"

	"github.com/spf13/cobra"

	"portolan/internal/firewall"
)

// FirewallPlanOptions are the inputs of `portolan firewall plan`.
type FirewallPlanOptions struct {
	*FirewallOptions
	File string // the profile; "-": stdin
}

func newFirewallPlanCmd(g *Globals, fo *FirewallOptions) *cobra.Command {
	opts := FirewallPlanOptions{FirewallOptions: fo}
	cmd := &cobra.Command{
		Use:   "plan -f FILE",
		Short: "Show what applying a profile would change, in nft syntax",
		Long: `Compare a profile file with the live table and print the difference as the
chain's rules in nft syntax: '+' added, '-' removed, '~' kept with a new
comment or expiry, ' ' unchanged. Nothing is changed. Rules are paired in
order, so a moved rule shows as removed and added.

Also says when applying would lock out the SSH client this runs under.`,
		Example: `  portolan firewall plan -f rules.yaml
  portolan firewall export | sed s/drop/accept/ | portolan firewall plan -f -
  portolan firewall plan -f rules.yaml --json`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return runFirewallPlan(cmd.Context(), g, opts)
		},
	}
	cmd.Flags().StringVarP(&opts.File, "file", "f", "", "the profile (YAML); - reads stdin")
	markFiles(cmd.Flags(), true, "file")
	cmd.MarkFlagRequired("file")
	return cmd
}

// readProfile reads and parses the profile named by file.
func readProfile(g *Globals, file string) (*firewall.Ruleset, error) {
	var data []byte
	var err error
	name := file
	if file == "-" {
		name = "<stdin>"
		data, err = io.ReadAll(g.io.In)
	} else {
		data, err = os.ReadFile(file)
	}
	if err != nil {
		return nil, fileErr(fmt.Errorf("read profile: %w", err))
	}
	rs, err := firewall.ParseProfile(name, data, registryNames{}, time.Now())
	if err != nil {
		return nil, usageErr(err) // a ProfileError names the file, line and column
	}
	return rs, nil
}

// fwPlanResult is the JSON form of a plan.
type fwPlanResult struct {
	Changes bool `json:"changes"`
	*firewall.Plan
	Lockout  string            `json:"lockout,omitempty"`
	Shadowed []firewall.Shadow `json:"shadowed,omitempty"` // rules an earlier rule keeps from ever matching
}

func runFirewallPlan(ctx context.Context, g *Globals, opts FirewallPlanOptions) error {
	want, err := readProfile(g, opts.File)
	if err != nil {
		return err
	}
	s, tab, err := openTable(ctx, g, opts.FirewallOptions, false)
	if err != nil {
		return err
	}
	defer s.Close()
	plan, err := firewall.Diff(ctx, tab, want, time.Now())
	if err != nil {
		if ctx.Err() != nil {
			return interrupted(err)
		}
		return usageErr(fmt.Errorf("profile %s: %w", opts.File, err))
	}
	res := fwPlanResult{Changes: !plan.Empty(), Plan: plan}
	clients, err := s.sshClients(ctx)
	if err == nil {
		_, err = clients.Check(want, time.Now())
	}
	if err != nil {
		res.Lockout = err.Error()
	}
	if g.JSON {
		res.Shadowed, _ = want.Shadowed(ctx)
		return writeJSON(g, res)
	}
	if err := printPlan(g, plan); err != nil {
		return err
	}
	s.warnShadowed(ctx, want, 0)
	if res.Lockout != "" {
		s.warn("%s: apply would refuse it without --force", res.Lockout)
	}
	s.warnPublished(ctx, want)
	return nil
}

// printPlan writes the plan and a summary line.
func printPlan(g *Globals, plan *firewall.Plan) error {
	if plan.Empty() {
		_, err := fmt.Fprintln(g.io.Out, "no changes")
		return err
	}
	if err := plan.Render(g.io.Out); err != nil {
		return err
	}
	add, remove, change := plan.Counts()
	_, err := fmt.Fprintf(g.io.Out, "%d to add, %d to remove, %d to change\n", add, remove, change)
	return err
}

// jsonIndent is the indented JSON of v with a final newline.
func jsonIndent(v any) ([]byte, error) {
	b, err := json.MarshalIndent(v, "", "  ")
	return append(b, '\n'), err
}
