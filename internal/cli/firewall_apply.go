package cli

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"portolan/internal/firewall"
	"portolan/internal/output"
)

// FirewallApplyOptions are the inputs of `portolan firewall apply`.
type FirewallApplyOptions struct {
	*FirewallOptions
	File    string        // the profile; "-": stdin
	Confirm time.Duration // zero: no rollback
	Wait    bool          // ask for "yes" on stdin even when it is not a terminal
	Force   bool
}

// maxConfirm bounds --confirm: a rollback hours later is no safety net.
const maxConfirm = 24 * time.Hour

func newFirewallApplyCmd(g *Globals, fo *FirewallOptions) *cobra.Command {
	opts := FirewallApplyOptions{FirewallOptions: fo}
	cmd := &cobra.Command{
		Use:   "apply -f FILE [--confirm D]",
		Short: "Make the table what a profile says, optionally rolling back unless confirmed",
		Long: `Replace portolan's rules and policy with those of a profile file, in one
transaction (see plan for what it would change).

With --confirm D, the table is first saved, and a detached process restores
it exactly after D unless 'portolan firewall confirm' runs first. The process
runs in its own session, so it survives the terminal or SSH connection that
started apply dying, which is the point: if the new rules cut you off, wait
D and you are back. On a terminal (or with --wait), apply asks you to type
yes to confirm; any other answer rolls back at once. Only one apply can wait
for confirmation at a time.`,
		Example: `  portolan firewall apply -f rules.yaml
  portolan firewall apply -f rules.yaml --confirm 60s
  portolan firewall confirm`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return runFirewallApply(cmd.Context(), g, opts)
		},
	}
	f := cmd.Flags()
	f.StringVarP(&opts.File, "file", "f", "", "the profile (YAML); - reads stdin")
	markFiles(f, true, "file")
	f.DurationVar(&opts.Confirm, "confirm", 0, "roll back after this long unless confirmed (e.g. 60s)")
	f.BoolVar(&opts.Wait, "wait", false, "with --confirm: wait for 'yes' on stdin even if it is not a terminal")
	addForce(cmd, &opts.Force)
	cmd.MarkFlagRequired("file")
	return cmd
}

// fwApplyResult is the JSON answer of apply.
type fwApplyResult struct {
	Changes  bool       `json:"changes"`
	Added    int        `json:"added"`
	Removed  int        `json:"removed"`
	Changed  int        `json:"changed"`
	Deadline *time.Time `json:"rollback_at,omitempty"`
	GuardPID int        `json:"guard_pid,omitempty"`
}

func runFirewallApply(ctx context.Context, g *Globals, opts FirewallApplyOptions) error {
	if opts.Confirm < 0 || opts.Confirm > maxConfirm {
		return usageErr(fmt.Errorf("--confirm %v: want from 1s to %v", opts.Confirm, maxConfirm))
	}
	if opts.Confirm > 0 && opts.Confirm < time.Second {
		return usageErr(fmt.Errorf("--confirm %v: want at least 1s", opts.Confirm))
	}
	if opts.Wait && opts.Confirm == 0 {
		return usageErr(errors.New("--wait needs --confirm"))
	}
	want, err := readProfile(g, opts.File)
	if err != nil {
		return err
	}
	s, err := openFirewall(ctx, g, opts.FirewallOptions, true)
	if err != nil {
		return err
	}
	defer s.Close()
	if p, err := s.state.ReadPending(); err == nil {
		return fmt.Errorf("an earlier apply waits for confirmation until %s: run 'portolan firewall confirm' (or wait for its rollback) first", p.Deadline.Format(time.TimeOnly))
	} else if !errors.Is(err, fs.ErrNotExist) {
		return err
	}
	tab, err := s.fw.Read(ctx)
	if err != nil {
		return err
	}
	now := time.Now()
	plan, err := firewall.DiffRules(ctx, tab, want, now)
	if err != nil {
		if ctx.Err() != nil {
			return interrupted(err)
		}
		return usageErr(fmt.Errorf("profile %s: %w", opts.File, err))
	}
	add, remove, change := plan.Counts()
	res := fwApplyResult{Changes: !plan.Empty(), Added: add, Removed: remove, Changed: change}
	if err := s.check(ctx, want, opts.Force); err != nil {
		return err
	}

	var pending *firewall.Pending
	if opts.Confirm > 0 {
		s.state.ClearRolledBack()
		pending = &firewall.Pending{Token: firewall.NewToken(), Netns: opts.NetNS, Applied: now,
			Deadline: now.Add(opts.Confirm), Snapshot: tab.Snapshot()}
		if err := s.state.WritePending(pending); err != nil {
			return fmt.Errorf("save the rollback: %w", err)
		}
		// The guard starts before anything changes: if the change cuts
		// this session off, it is already there to undo it.
		pid, err := startGuard(s, pending.Token)
		if err != nil {
			s.state.RemovePending()
			return fmt.Errorf("start the rollback process: %w", err)
		}
		pending.GuardPID = pid
		if err := s.state.WritePending(pending); err != nil {
			s.state.RemovePending()
			return fmt.Errorf("save the rollback: %w", err)
		}
		res.Deadline, res.GuardPID = &pending.Deadline, pid
	}
	if err := s.fw.ApplyTo(ctx, tab, want); err != nil {
		if pending != nil {
			s.state.RemovePending() // nothing changed: the guard exits
		}
		return interrupted(err)
	}
	s.warnPublished(ctx, want)
	s.warnShadowed(ctx, want, 0)
	// Let confirm (another process) in while we wait for an answer.
	s.unlock()
	s.unlock = nil

	if g.JSON {
		if err := writeJSON(g, res); err != nil {
			return err
		}
	} else {
		fmt.Fprintf(g.io.Out, "applied: %d added, %d removed, %d changed\n", add, remove, change)
	}
	if pending == nil {
		s.autoSave(ctx)
		return nil
	}
	interactive := opts.Wait
	if f, ok := g.io.In.(*os.File); ok && output.IsTerminal(f) && opts.File != "-" {
		interactive = true
	}
	if !interactive {
		fmt.Fprintf(g.io.ErrOut, "rolls back at %s unless you run: portolan firewall confirm%s\n",
			pending.Deadline.Format(time.TimeOnly), netnsArg(opts.NetNS))
		return nil
	}
	return askConfirm(ctx, g, s.state, pending)
}

// netnsArg repeats --netns for a command line to suggest.
func netnsArg(ns string) string {
	if ns == "" {
		return ""
	}
	return " --netns " + ns
}

// askConfirm waits for "yes" on stdin until the deadline. Yes confirms;
// anything else rolls back at once; silence leaves it to the guard.
func askConfirm(ctx context.Context, g *Globals, st firewall.State, p *firewall.Pending) error {
	fmt.Fprintf(g.io.ErrOut, "type yes within %s to keep the new rules: ", time.Until(p.Deadline).Round(time.Second))
	answer := make(chan string, 1)
	go func() {
		line, err := bufio.NewReader(g.io.In).ReadString('\n')
		if err != nil && line == "" {
			close(answer)
			return
		}
		answer <- strings.TrimSpace(line)
	}()
	timer := time.NewTimer(time.Until(p.Deadline))
	defer timer.Stop()
	select {
	case a, ok := <-answer:
		if !ok {
			fmt.Fprintf(g.io.ErrOut, "\nno answer (end of input): rolls back at %s unless confirmed\n", p.Deadline.Format(time.TimeOnly))
			return silentExit(ExitError)
		}
		if strings.EqualFold(a, "yes") || strings.EqualFold(a, "y") {
			if _, err := st.Confirm(ctx); err != nil {
				return err
			}
			fmt.Fprintln(g.io.ErrOut, "confirmed: the new rules stay")
			return nil
		}
		fmt.Fprintln(g.io.ErrOut, "not confirmed: rolling back now")
		return rollBackNow(ctx, st, p)
	case <-timer.C:
		fmt.Fprintln(g.io.ErrOut, "\nno answer in time: the rollback process restores the old rules")
		return silentExit(ExitError)
	case <-ctx.Done():
		return ctx.Err()
	}
}

// rollBackNow moves the deadline of p to now and waits (up to a minute)
// for the guard to restore the snapshot.
func rollBackNow(ctx context.Context, st firewall.State, p *firewall.Pending) error {
	unlock, err := st.Lock(ctx)
	if err != nil {
		return err
	}
	cur, err := st.ReadPending()
	if err == nil && cur.Token == p.Token {
		cur.Deadline = time.Now()
		err = st.WritePending(cur)
	}
	unlock()
	if err != nil {
		return err
	}
	for deadline := time.Now().Add(time.Minute); time.Now().Before(deadline); time.Sleep(100 * time.Millisecond) {
		if _, err := st.ReadPending(); errors.Is(err, fs.ErrNotExist) {
			return silentExit(ExitError)
		}
	}
	return errors.New("the rollback process did not finish within a minute: check with portolan firewall list")
}
