package cli

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"os"
	"strings"
	"syscall"
	"time"

	"github.com/spf13/cobra"
	"golang.org/x/term"

	"portolan/internal/kill"
	"portolan/internal/portspec"
	"portolan/internal/sockets"
)

func init() { register(newKillCmd) }

// KillOptions are the inputs of `portolan kill`.
type KillOptions struct {
	Port      string        // PORT[/PROTO]
	Signal    string        // name or number; empty: TERM
	Grace     time.Duration // before KILL; 0: never escalate
	DryRun    bool
	Yes       bool // do not ask, even on a terminal
	AllStates bool // connections with this local port too
	Force     bool // also this process, systemd services and containers
	Netns     string
}

func newKillCmd(g *Globals) *cobra.Command {
	var opts KillOptions
	cmd := &cobra.Command{
		Use:   "kill PORT[/PROTO]",
		Short: "Stop the process listening on a port: TERM, a grace period, then KILL",
		Long: `Stop the process that holds a local port: by default the owner of the
listening TCP socket or the bound UDP socket on exactly that port, never a
client whose connection merely goes to the port, nor one in CLOSE_WAIT
(--all-states takes every process whose socket has the port as its local
port). It sends --signal (TERM), waits up to --grace for the port to be
free, then sends KILL.

A process of a systemd service or a container is not signalled: kill
says which systemctl or container command stops it cleanly (--force kills
anyway). pid 1 and kernel threads are never signalled; portolan itself
only with --force. On a terminal it asks first, unless --yes.

Exit status: 0 when the port was freed (or, with --dry-run, when there is
something to stop), 1 when it is still held or nothing could be signalled,
2 on bad input, 3 when nothing holds the port.`,
		Example: `  portolan kill 3000
  portolan kill 8080/tcp --dry-run
  portolan kill 5353/udp --signal INT --grace 10s --yes
  portolan kill 5432 --all-states --json --yes`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			opts.Port = args[0]
			return runKill(cmd.Context(), g, opts)
		},
	}
	f := cmd.Flags()
	f.StringVarP(&opts.Signal, "signal", "s", "TERM", "the first signal: a `NAME` (TERM, INT, HUP, ...) or number")
	f.DurationVar(&opts.Grace, "grace", 5*time.Second, "how long to wait for the port before sending KILL (0: never)")
	f.BoolVarP(&opts.DryRun, "dry-run", "n", false, "say what would be done, do nothing")
	f.BoolVarP(&opts.Yes, "yes", "y", false, "do not ask for confirmation")
	f.BoolVar(&opts.AllStates, "all-states", false, "also stop processes whose connections use the port as their local port")
	f.BoolVar(&opts.Force, "force", false, "also kill processes of systemd services and containers, and portolan itself")
	f.StringVar(&opts.Netns, "netns", "", "read the socket table of network namespace `NAME` (under /run/netns) or PATH")
	return cmd
}

// killJSON is the JSON form of a kill.
type killJSON struct {
	Port      uint16           `json:"port"`
	Protos    []portspec.Proto `json:"protos"`
	Signal    string           `json:"signal"`
	Grace     string           `json:"grace"`
	DryRun    bool             `json:"dry_run"`
	Held      bool             `json:"held"`
	Targets   []killTargetJSON `json:"targets"`
	Unowned   []socketJSON     `json:"unowned"`
	Passed    []socketJSON     `json:"passed"`
	Steps     []killStepJSON   `json:"steps"`
	Freed     bool             `json:"freed"`
	Escalated bool             `json:"escalated"`
	Remaining []socketJSON     `json:"remaining"`
}

type killTargetJSON struct {
	processJSON
	PPID      int          `json:"ppid"`
	Sockets   []socketJSON `json:"sockets"`
	Refused   string       `json:"refused,omitempty"`
	Instead   string       `json:"instead,omitempty"`
	ViaParent bool         `json:"via_parent"`
}

type killStepJSON struct {
	PID    int     `json:"pid"`
	Signal string  `json:"signal"`
	After  float64 `json:"after_seconds"`
	Gone   bool    `json:"gone"`
	Error  string  `json:"error,omitempty"`
}

func runKill(ctx context.Context, g *Globals, opts KillOptions) error {
	target, err := parseWhoTarget(opts.Port)
	if err != nil {
		return usageErr(err)
	}
	sig, err := kill.ParseSignal(opts.Signal)
	if err != nil {
		return usageErr(fmt.Errorf("--signal: %w", err))
	}
	if opts.Grace < 0 {
		return usageErr(fmt.Errorf("--grace %v: want 0 (never escalate) or more", opts.Grace))
	}
	req := kill.Request{
		Port: portspec.Port(target.port), Protos: target.protos, AllStates: opts.AllStates,
		Netns: opts.Netns, Signal: sig, Grace: opts.Grace, Force: opts.Force, Logger: g.Logger(),
	}
	if opts.Grace == 0 {
		req.Grace = -1
	}
	plan, err := kill.NewPlan(ctx, req)
	if err != nil {
		return socketsErr(opts.Netns, err)
	}
	out := killJSON{Port: target.port, Protos: plan.Protos, Signal: kill.SignalName(sig), Grace: opts.Grace.String(), DryRun: opts.DryRun, Held: plan.Held()}
	fillPlanJSON(&out, plan)

	if !plan.Held() {
		if g.JSON {
			if err := writeJSON(g, out); err != nil {
				return err
			}
		}
		fmt.Fprintf(g.io.ErrOut, "nothing holds port %s%s\n", target, passedNote(plan, opts.AllStates))
		return silentExit(ExitNotFound)
	}
	if !g.JSON {
		writeKillPlan(g.io.Out, plan)
	}
	todo := plan.Signalled()
	if len(todo) == 0 {
		if g.JSON {
			if err := writeJSON(g, out); err != nil {
				return err
			}
		}
		fmt.Fprintf(g.io.ErrOut, "nothing to signal: port %s stays held\n", target)
		return silentExit(ExitError)
	}
	if opts.DryRun {
		if g.JSON {
			return writeJSON(g, out)
		}
		fmt.Fprintf(g.io.Out, "dry run: would send %s to %s%s\n", kill.SignalName(sig), pidList(todo), escalation(opts.Grace, sig))
		return nil
	}
	if !opts.Yes && stdinIsTerminal(g) {
		ok, err := confirm(g, fmt.Sprintf("send %s to %s%s? [y/N] ", kill.SignalName(sig), pidList(todo), escalation(opts.Grace, sig)))
		if err != nil {
			return err
		}
		if !ok {
			fmt.Fprintln(g.io.ErrOut, "cancelled: nothing sent")
			return silentExit(ExitError)
		}
	}
	res, err := kill.Run(ctx, plan)
	if res != nil {
		out.Freed, out.Escalated = res.Freed, res.Escalated
		for _, s := range res.Steps {
			out.Steps = append(out.Steps, killStepJSON{PID: s.PID, Signal: kill.SignalName(s.Signal), After: s.After.Seconds(), Gone: s.Gone, Error: s.Err})
		}
		for i := range res.Remaining {
			out.Remaining = append(out.Remaining, newSocketJSON(&res.Remaining[i], serviceName(target.port, res.Remaining[i].Proto), true))
		}
	}
	if err != nil {
		return err
	}
	if g.JSON {
		if err := writeJSON(g, out); err != nil {
			return err
		}
	} else {
		writeKillResult(g.io.Out, res)
	}
	if !res.Freed {
		fmt.Fprintf(g.io.ErrOut, "port %s is still held\n", target)
		return silentExit(ExitError)
	}
	if !g.JSON {
		fmt.Fprintf(g.io.Out, "port %s is free\n", target)
	}
	return nil
}

func fillPlanJSON(out *killJSON, plan *kill.Plan) {
	out.Targets, out.Unowned, out.Passed, out.Steps, out.Remaining = []killTargetJSON{}, []socketJSON{}, []socketJSON{}, []killStepJSON{}, []socketJSON{}
	svc := func(s *sockets.Socket) string { return serviceName(s.Local.Port(), s.Proto) }
	for _, t := range plan.Targets {
		p := t.Process
		tj := killTargetJSON{processJSON: processJSON{PID: p.PID, Command: p.Comm, Cmdline: p.Cmdline, UID: p.UID, User: p.User, Start: p.Start},
			PPID: t.PPID, Refused: t.Refused, Instead: t.Instead, ViaParent: t.ViaParent, Sockets: []socketJSON{}}
		if c := p.Cgroup; c != nil {
			tj.Cgroup, tj.Unit, tj.Container, tj.Runtime, tj.Pod = c.Path, c.Unit, c.Container, c.Runtime, c.Pod
		}
		for i := range t.Sockets {
			tj.Sockets = append(tj.Sockets, newSocketJSON(&t.Sockets[i], svc(&t.Sockets[i]), false))
		}
		out.Targets = append(out.Targets, tj)
	}
	for i := range plan.Unowned {
		out.Unowned = append(out.Unowned, newSocketJSON(&plan.Unowned[i], svc(&plan.Unowned[i]), true))
	}
	for i := range plan.Passed {
		out.Passed = append(out.Passed, newSocketJSON(&plan.Passed[i], svc(&plan.Passed[i]), false))
	}
}

// passedNote says what uses the port without holding it, for "nothing
// holds port".
func passedNote(plan *kill.Plan, all bool) string {
	n := 0
	for i := range plan.Passed {
		if plan.Passed[i].Inode != 0 {
			n++
		}
	}
	switch {
	case n > 0 && !all:
		return fmt.Sprintf(" (nothing listens; %s of processes use it as local port: --all-states to stop them)", plural(n, "connection"))
	case len(plan.Passed) > 0:
		return fmt.Sprintf(" (%s held by the kernel only: TIME_WAIT or closing)", plural(len(plan.Passed), "socket"))
	}
	return ""
}

func pidList(ts []*kill.Target) string {
	s := make([]string, len(ts))
	for i, t := range ts {
		s[i] = fmt.Sprintf("pid %d (%s)", t.Process.PID, t.Process.Comm)
	}
	return strings.Join(s, ", ")
}

func escalation(grace time.Duration, sig syscall.Signal) string {
	if grace <= 0 || sig == syscall.SIGKILL {
		return ""
	}
	return fmt.Sprintf(", then KILL after %v if the port is still held", grace)
}

// writeKillPlan prints who holds the port and what will happen to each.
func writeKillPlan(w io.Writer, plan *kill.Plan) {
	for _, t := range plan.Targets {
		p := t.Process
		cmd := strings.Join(p.Cmdline, " ")
		if cmd == "" {
			cmd = "[" + p.Comm + "]"
		}
		fmt.Fprintf(w, "pid %d  %s  (user %s)\n", p.PID, cmd, p.User)
		for i := range t.Sockets {
			fmt.Fprintf(w, "  %s\n", sockets.DescribeSocket(&t.Sockets[i]))
		}
		switch {
		case t.Refused != "":
			fmt.Fprintf(w, "  not signalled: %s\n", t.Refused)
			if t.Instead != "" {
				fmt.Fprintf(w, "  instead: %s\n", t.Instead)
			}
		case t.ViaParent:
			fmt.Fprintf(w, "  a worker of pid %d, which stops it; KILL only if the port stays held\n", t.PPID)
		}
	}
	for i := range plan.Unowned {
		s := &plan.Unowned[i]
		fmt.Fprintf(w, "%s\n  held by %s: cannot be signalled\n", sockets.DescribeSocket(s), sockets.DescribeOwner(s))
	}
}

func writeKillResult(w io.Writer, res *kill.Result) {
	for _, s := range res.Steps {
		switch {
		case s.Gone:
			fmt.Fprintf(w, "pid %d had already exited\n", s.PID)
		case s.Err != "":
			fmt.Fprintf(w, "%s to pid %d failed: %s\n", kill.SignalName(s.Signal), s.PID, s.Err)
		case s.Signal == syscall.SIGKILL && res.Escalated:
			fmt.Fprintf(w, "sent %s to pid %d after %v\n", kill.SignalName(s.Signal), s.PID, s.After.Round(time.Millisecond))
		default:
			fmt.Fprintf(w, "sent %s to pid %d\n", kill.SignalName(s.Signal), s.PID)
		}
	}
	for i := range res.Remaining {
		s := &res.Remaining[i]
		fmt.Fprintf(w, "still there: %s, %s\n", sockets.DescribeSocket(s), sockets.DescribeOwner(s))
	}
}

// stdinIsTerminal reports whether the command reads from a terminal, where
// a person can answer a question.
func stdinIsTerminal(g *Globals) bool {
	f, ok := g.io.In.(*os.File)
	return ok && term.IsTerminal(int(f.Fd()))
}

// confirm asks question on stderr and reads a yes from stdin.
func confirm(g *Globals, question string) (bool, error) {
	fmt.Fprint(g.io.ErrOut, question)
	line, err := bufio.NewReader(g.io.In).ReadString('\n')
	if err != nil && err != io.EOF {
		return false, fmt.Errorf("read answer: %w", err)
	}
	switch strings.ToLower(strings.TrimSpace(line)) {
	case "y", "yes":
		return true, nil
	}
	return false, nil
}
