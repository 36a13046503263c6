package cli

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"time"

	"github.com/spf13/cobra"
	"golang.org/x/sys/unix"

	"portolan/internal/firewall"
)

func init() { register(newFirewallCmd) }

// FirewallOptions are the flags every firewall subcommand shares.
type FirewallOptions struct {
	NetNS string // a name under /run/netns or a path; empty: this process's namespace
}

func newFirewallCmd(g *Globals) *cobra.Command {
	var opts FirewallOptions
	cmd := &cobra.Command{
		Use:     "firewall",
		Aliases: []string{"fw"},
		Short:   "Allow and deny ports with nftables, with plan, apply and rollback",
		Long: `Manage incoming traffic by port in portolan's own nftables table, inet portolan,
over netlink (no nft or iptables binary needed). Other tables are never changed.

Every change is one kernel transaction: it applies whole or not at all. Rules
match ports (with the protocols they name; a port without one means TCP and
UDP, as in ufw; a service name opens what the service is used over, ssh
22/tcp, else what the IANA registry lists), source and
destination prefixes, and the incoming interface. Rules are checked in order
and the first that matches decides; what none decides gets the default policy
(accept until you change it). Loopback traffic is always accepted, and so are
connections conntrack already tracks: those opened while portolan's table
exists. A connection opened before the table first existed, in a namespace
where nothing used conntrack yet, is new to conntrack and goes through the
rules like a new one (allow your SSH port first).

When run from an SSH session, a change that would keep your client from
opening a new SSH connection is refused unless --force. The client comes from
SSH_CONNECTION or, under sudo, su or doas (which drop it), from the connection
of the sshd among this process's ancestors; when it cannot be told (tmux,
screen), every connected SSH client is guarded and a warning says so. -v shows
what the guard protects.

apply --confirm D applies a profile file and rolls the table back to its exact
previous state after D unless 'portolan firewall confirm' runs first: a
detached process does it, so it happens even when your terminal or SSH
connection dies.

State (the lock and pending rollbacks) lives in $PORTOLAN_RUNTIME_DIR, default
/run/portolan; for a user who is not root but has CAP_NET_ADMIN (setcap
cap_net_admin+ep), $XDG_RUNTIME_DIR/portolan. Needs CAP_NET_ADMIN.`,
		Example: `  portolan firewall allow 22/tcp
  portolan firewall allow https --from 198.18.0.0/15
  portolan firewall deny 23/tcp; portolan firewall reject 111
  portolan firewall limit 22/tcp --rate 6/30s
  portolan firewall allow 8080/tcp --for 2h
  portolan firewall list
  portolan firewall plan -f rules.yaml
  portolan firewall apply -f rules.yaml --confirm 60s
  portolan firewall --netns blue list --json`,
	}
	cmd.PersistentFlags().StringVar(&opts.NetNS, "netns", "", "work in this network namespace: a name under /run/netns or a path like /proc/PID/ns/net")
	for _, a := range firewall.Actions {
		cmd.AddCommand(newFirewallAddCmd(g, &opts, a))
	}
	cmd.AddCommand(
		newFirewallListCmd(g, &opts),
		newFirewallDeleteCmd(g, &opts),
		newFirewallResetCmd(g, &opts),
		newFirewallPolicyCmd(g, &opts),
		newFirewallExportCmd(g, &opts),
		newFirewallPlanCmd(g, &opts),
		newFirewallApplyCmd(g, &opts),
		newFirewallConfirmCmd(g, &opts),
		newFirewallGuardCmd(g, &opts),
	)
	cmd.AddCommand(newFirewallSaveCmds(g, &opts)...)
	return cmd
}

// runtimeDir is where firewall state lives: PORTOLAN_RUNTIME_DIR, else
// /run/portolan. A user who is not root (CAP_NET_ADMIN through setcap)
// cannot write /run or use root's 0700 /run/portolan, so unless that
// directory is theirs to use, their state goes to $XDG_RUNTIME_DIR/portolan
// (or /tmp/portolan-UID): their changes then take a lock of their own, not
// root's.
func runtimeDir() string {
	if d := os.Getenv("PORTOLAN_RUNTIME_DIR"); d != "" {
		return d
	}
	const system = "/run/portolan"
	if os.Geteuid() == 0 || unix.Access(system, unix.W_OK|unix.X_OK) == nil {
		return system
	}
	if d := os.Getenv("XDG_RUNTIME_DIR"); d != "" {
		return filepath.Join(d, "portolan")
	}
	return filepath.Join(os.TempDir(), "portolan-"+strconv.Itoa(os.Getuid()))
}

// fwSession is one firewall command's hold on a namespace.
type fwSession struct {
	g      *Globals
	ns     *firewall.Netns
	fw     *firewall.Firewall
	state  firewall.State
	unlock func()
}

// openFirewall opens the namespace of opts, rolls back a pending apply
// whose rollback process died, and, for commands that change the table,
// takes its lock.
func openFirewall(ctx context.Context, g *Globals, opts *FirewallOptions, lock bool) (*fwSession, error) {
	return openSession(ctx, g, opts, lock, false)
}

// openSession is openFirewall; confirming (the confirm command) keeps a
// pending apply before its deadline even when its rollback process died.
func openSession(ctx context.Context, g *Globals, opts *FirewallOptions, lock, confirming bool) (*fwSession, error) {
	ns, err := firewall.OpenNetns(opts.NetNS)
	if err != nil {
		return nil, err
	}
	s := &fwSession{
		g:     g,
		ns:    ns,
		fw:    &firewall.Firewall{Logger: g.Logger()},
		state: firewall.State{Dir: runtimeDir(), ID: ns.ID},
	}
	if opts.NetNS != "" {
		s.fw.NetNS = ns.FD() // entering one's own namespace would need CAP_SYS_ADMIN for nothing
	}
	s.fw.Cache = s.state.CachePath()
	p, err := s.state.Recover(ctx, s.fw, confirming)
	if p != nil {
		s.warn("the rollback process (pid %d) of the apply at %s is gone (killed?): rolled back to the rules before that apply", p.GuardPID, p.Applied.Format(time.TimeOnly))
	}
	if err != nil {
		ns.Close()
		return nil, err
	}
	if lock {
		lctx, cancel := context.WithTimeout(ctx, 30*time.Second)
		defer cancel()
		if s.unlock, err = s.state.Lock(lctx); err != nil {
			ns.Close()
			return nil, err
		}
	}
	return s, nil
}

func (s *fwSession) Close() {
	if s.unlock != nil {
		s.unlock()
	}
	s.ns.Close()
}

// openTable is openFirewall followed by reading the live table.
func openTable(ctx context.Context, g *Globals, opts *FirewallOptions, lock bool) (*fwSession, *firewall.Table, error) {
	s, err := openFirewall(ctx, g, opts, lock)
	if err != nil {
		return nil, nil, err
	}
	tab, err := s.fw.Read(ctx)
	if err != nil {
		s.Close()
		return nil, nil, err
	}
	return s, tab, nil
}

// change writes want over have (the table as read under the lock) after the SSH guard (unless force) and says what a
// person should know: a pending rollback that would undo it, published
// ports its rules cannot filter.
func (s *fwSession) change(ctx context.Context, have *firewall.Table, want *firewall.Ruleset, force bool) error {
	if err := s.check(ctx, want, force); err != nil {
		return err
	}
	if p, err := s.state.ReadPending(); err == nil {
		s.warn("an apply awaits confirmation until %s; rolling it back will undo this change too (confirm first to keep both)", p.Deadline.Format(time.TimeOnly))
	} else if !errors.Is(err, fs.ErrNotExist) {
		s.warn("%v", err)
	}
	if err := s.fw.ApplyTo(ctx, have, want); err != nil {
		return interrupted(err)
	}
	s.autoSave(ctx)
	s.warnPublished(ctx, want)
	return nil
}

// check runs the safety checks on want. Every command that changes the
// table (add, delete, default-policy, apply) goes through it, so none can
// write what another refuses: first the rules no path may write (a deny
// or reject of all traffic; --force does not override it), then the SSH
// guard.
func (s *fwSession) check(ctx context.Context, want *firewall.Ruleset, force bool) error {
	if err := want.CheckSafety(); err != nil {
		return usageErr(fmt.Errorf("refused: %w", err))
	}
	return s.guard(ctx, want, force)
}

// sshClients finds the SSH clients the guard protects (see
// firewall.FindSSHClients: SSH_CONNECTION, else the sshd among this
// process's ancestors, which works under sudo). With -v it says what it
// protects; when it cannot tell whether this runs over SSH, it always says
// so.
func (s *fwSession) sshClients(ctx context.Context) (*firewall.SSHClients, error) {
	c, err := firewall.FindSSHClients(ctx, os.Getenv("SSH_CONNECTION"), s.ns)
	if err != nil {
		return nil, err
	}
	if c.Unknown {
		s.warn("SSH guard: %s", c.Source)
	}
	if s.g.Verbose > 0 {
		fmt.Fprintf(s.g.io.ErrOut, "SSH guard: %s\n", c)
	}
	return c, nil
}

// guard runs the SSH guard on want.
func (s *fwSession) guard(ctx context.Context, want *firewall.Ruleset, force bool) error {
	clients, err := s.sshClients(ctx)
	var later string
	if err == nil {
		later, err = clients.Check(want, time.Now())
	}
	if err != nil {
		if force {
			s.warn("%v (going ahead: --force)", err)
			return nil
		}
		var le *firewall.LockoutError
		if errors.As(err, &le) {
			door := ""
			if s.sshDoors(ctx)(le.Packet) != "" {
				door = fmt.Sprintf("; a knock door protects %d/%v too, but a door only narrows what the rules accept: no knock can let that client in", le.Packet.Port, le.Packet.Proto)
			}
			return fmt.Errorf("refused: %w%s; allow it first (portolan firewall allow %d/tcp --from %s) or add --force", err, door, le.Packet.Port, le.Packet.Src)
		}
		return fmt.Errorf("SSH guard: %w (add --force to skip the guard)", err)
	}
	if later != "" {
		s.warn("%s", later)
	}
	// The rules let the clients in; a door in front of them may not.
	if len(clients.Packets) == 0 {
		return nil
	}
	door := s.sshDoors(ctx)
	for _, p := range clients.Packets {
		if note := door(p); note != "" {
			s.warn("SSH guard: %s", note)
		}
	}
	return nil
}

// warnPublished warns about ports of want that another table forwards by
// DNAT, which rules on input never see, and about ports want allows that
// another table drops or rejects at the input hook.
func (s *fwSession) warnPublished(ctx context.Context, rs *firewall.Ruleset) {
	pubs, err := s.fw.Published(ctx)
	if err != nil {
		s.g.Logger().Debug("read other tables for DNAT", "err", err)
		return
	}
	for _, w := range firewall.PublishedWarnings(rs, pubs) {
		s.warn("%s", w)
	}
	blockers, err := s.fw.Blockers(ctx)
	if err != nil {
		s.g.Logger().Debug("read other tables for drops", "err", err)
		return
	}
	for _, w := range firewall.BlockerWarnings(rs, blockers) {
		s.warn("%s", w)
	}
}

// warnShadowed warns about rules of rs that an earlier rule shadows (they
// never match); with only > 0, about those that rule number only shadows
// or is shadowed by.
func (s *fwSession) warnShadowed(ctx context.Context, rs *firewall.Ruleset, only int) []firewall.Shadow {
	shadows, err := rs.Shadowed(ctx)
	if err != nil {
		return nil
	}
	var out []firewall.Shadow
	for _, sh := range shadows {
		if only == 0 || sh.Rule == only || sh.By == only {
			s.warn("%s", sh.Warning(rs))
			out = append(out, sh)
		}
	}
	return out
}

// interrupted turns a cancelled context (Ctrl-C, SIGTERM) into exit 130,
// saying that the table was left as it was: nothing is written once the
// context ends, and a change is one transaction.
func interrupted(err error) error {
	if errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		return withCode(ExitInterrupted, errors.New("interrupted: the table is as it was"))
	}
	return err
}

func (s *fwSession) warn(format string, args ...any) {
	fmt.Fprintf(s.g.io.ErrOut, "warning: "+format+"\n", args...)
}

// addForce adds --force to a command that changes the table.
func addForce(cmd *cobra.Command, force *bool) {
	cmd.Flags().BoolVar(force, "force", false, "apply even if the SSH guard says it would lock your SSH client out")
}
