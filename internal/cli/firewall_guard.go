package cli

import (
	"context"
	"errors"
	"fmt"
	"os"
	"time"

	"github.com/spf13/cobra"

	"portolan/internal/firewall"
)

// FirewallGuardOptions are the inputs of the hidden `portolan firewall
// rollback-guard`, which apply --confirm starts detached.
type FirewallGuardOptions struct {
	*FirewallOptions
	Token   string
	StateID string // firewall.Netns.ID of the namespace
	NetNSFD int    // inherited descriptor of the namespace
}

func newFirewallGuardCmd(g *Globals, fo *FirewallOptions) *cobra.Command {
	opts := FirewallGuardOptions{FirewallOptions: fo}
	cmd := &cobra.Command{
		Use:    "rollback-guard",
		Short:  "Wait for a confirmation and roll back without one (started by apply --confirm)",
		Hidden: true,
		Args:   cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return runFirewallGuard(cmd.Context(), g, opts)
		},
	}
	f := cmd.Flags()
	f.StringVar(&opts.Token, "token", "", "the pending apply to guard")
	f.StringVar(&opts.StateID, "state-id", "", "the namespace's state id")
	f.IntVar(&opts.NetNSFD, "netns-fd", 0, "descriptor of the namespace")
	return cmd
}

func runFirewallGuard(ctx context.Context, g *Globals, opts FirewallGuardOptions) error {
	if opts.Token == "" || opts.StateID == "" || opts.NetNSFD <= 2 {
		return usageErr(errors.New("rollback-guard: --token, --state-id and --netns-fd are required (apply --confirm starts it)"))
	}
	ignoreHangup()
	logf := func(format string, args ...any) {
		fmt.Fprintf(g.io.ErrOut, "%s pid %d token %s: %s\n", time.Now().Format(time.RFC3339), os.Getpid(), opts.Token, fmt.Sprintf(format, args...))
	}
	logf("guarding")
	st := firewall.State{Dir: runtimeDir(), ID: opts.StateID}
	fw := &firewall.Firewall{NetNS: opts.NetNSFD, Logger: g.Logger()}
	rolled, err := st.Guard(ctx, fw, opts.Token, 0)
	switch {
	case err != nil:
		logf("rollback failed: %v", err)
		return err
	case rolled:
		logf("not confirmed: restored the snapshot")
	default:
		logf("confirmed")
	}
	return nil
}
