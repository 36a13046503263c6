package cli

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/spf13/cobra"

	"portolan/internal/firewall"
)

// FirewallConfirmOptions are the inputs of `portolan firewall confirm`.
type FirewallConfirmOptions struct {
	*FirewallOptions
}

func newFirewallConfirmCmd(g *Globals, fo *FirewallOptions) *cobra.Command {
	opts := FirewallConfirmOptions{FirewallOptions: fo}
	return &cobra.Command{
		Use:   "confirm",
		Short: "Keep the rules of an apply --confirm, cancelling its rollback",
		Long: `Keep what 'apply --confirm' applied: the rollback process exits without
restoring anything. Exits 3 when nothing waits for confirmation, and 1 when
the deadline passed (the rollback happens, or already happened). If the
rollback process died (kill -9, the OOM killer, logind), confirm before the
deadline still keeps the rules; after it, this or any other firewall command
rolls back in its place.`,
		Example: `  portolan firewall apply -f rules.yaml --confirm 60s && portolan firewall confirm`,
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return runFirewallConfirm(cmd.Context(), g, opts)
		},
	}
}

func runFirewallConfirm(ctx context.Context, g *Globals, opts FirewallConfirmOptions) error {
	s, err := openSession(ctx, g, opts.FirewallOptions, false, true)
	if err != nil {
		return err
	}
	defer s.Close()
	p, err := s.state.Confirm(ctx)
	if errors.Is(err, firewall.ErrNothingPending) {
		return withCode(ExitNotFound, err)
	}
	if err != nil {
		return err
	}
	s.autoSave(ctx)
	if g.JSON {
		return writeJSON(g, map[string]any{"confirmed": true, "applied": p.Applied, "deadline": p.Deadline})
	}
	_, err = fmt.Fprintf(g.io.Out, "confirmed: the rules applied at %s stay (%s before the rollback)\n",
		p.Applied.Format(time.TimeOnly), time.Until(p.Deadline).Round(time.Second))
	return err
}
