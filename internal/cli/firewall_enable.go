package cli

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"time"

	"github.com/spf13/cobra"

	"portolan/internal/atomicfile"
	"portolan/internal/firewall"
)

// The saved rules and the boot unit. PORTOLAN_CONFIG_DIR and
// PORTOLAN_SYSTEMD_DIR move them (tests; machines with another layout).
const (
	savedName = "firewall.json"
	unitName  = "portolan-firewall.service"
)

func configDir() string {
	if d := os.Getenv("PORTOLAN_CONFIG_DIR"); d != "" {
		return d
	}
	return "/etc/portolan"
}

func systemdDir() string {
	if d := os.Getenv("PORTOLAN_SYSTEMD_DIR"); d != "" {
		return d
	}
	return "/etc/systemd/system"
}

func savedPath() string { return filepath.Join(configDir(), savedName) }

// unitText is the boot unit: restore the saved rules before the network
// comes up (network-pre.target), once.
func unitText(exe string) string {
	return fmt.Sprintf(`# Written by portolan firewall enable; portolan firewall disable removes it.
[Unit]
Description=portolan firewall: restore the saved rules (%s)
DefaultDependencies=no
After=local-fs.target
Before=network-pre.target shutdown.target
Wants=network-pre.target
Conflicts=shutdown.target

[Service]
Type=oneshot
RemainAfterExit=yes
ExecStart=%s firewall restore

[Install]
WantedBy=sysinit.target
`, savedPath(), exe)
}

// FirewallSaveOptions are the inputs of save, restore, enable and disable.
type FirewallSaveOptions struct {
	*FirewallOptions
	File string // save/restore: instead of PORTOLAN_CONFIG_DIR/firewall.json
}

func newFirewallSaveCmds(g *Globals, fo *FirewallOptions) []*cobra.Command {
	opts := FirewallSaveOptions{FirewallOptions: fo}
	save := &cobra.Command{
		Use:   "save [-f FILE]",
		Short: "Save the active rules for the next boot",
		Long: `Save the policy and rules of the live table to /etc/portolan/firewall.json
(PORTOLAN_CONFIG_DIR moves it), with absolute expiries: a rule that expires at
14:00 still expires at 14:00 after a reboot. Refused while an apply awaits
confirmation (the reboot must not keep rules nobody confirmed). Once enabled,
every change saves again by itself.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error { return runFirewallSave(cmd.Context(), g, opts, true) },
	}
	save.Flags().StringVarP(&opts.File, "file", "f", "", "save to this file")
	markFiles(save.Flags(), false, "file")
	restore := &cobra.Command{
		Use:   "restore [-f FILE]",
		Short: "Apply the saved rules (the boot unit runs this)",
		Long: `Apply the rules save wrote, leaving out those whose expiry has passed. The
boot unit that enable installs runs it before the network comes up.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error { return runFirewallRestore(cmd.Context(), g, opts) },
	}
	restore.Flags().StringVarP(&opts.File, "file", "f", "", "restore from this file")
	markFiles(restore.Flags(), true, "file")
	enable := &cobra.Command{
		Use:   "enable",
		Short: "Save the rules and restore them at every boot",
		Long: `Save the active rules (see save) and install the systemd unit
portolan-firewall.service, which restores them at boot before the network comes
up (network-pre.target). From then on every change is saved too.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error { return runFirewallEnable(cmd.Context(), g, opts) },
	}
	disable := &cobra.Command{
		Use:   "disable",
		Short: "Stop restoring the rules at boot",
		Long:  `Remove the boot unit and the saved rules. The live table is left as it is.`,
		Args:  cobra.NoArgs,
		RunE:  func(cmd *cobra.Command, _ []string) error { return runFirewallDisable(g) },
	}
	return []*cobra.Command{save, restore, enable, disable}
}

// saveTable writes the live table of s to path.
func saveTable(s *fwSession, tab *firewall.Table, path string) (int, error) {
	if p, err := s.state.ReadPending(); err == nil {
		return 0, fmt.Errorf("an apply awaits confirmation until %s: confirm it (or wait for its rollback) before saving", p.Deadline.Format(time.TimeOnly))
	}
	now := time.Now()
	rs := tab.Ruleset.WithoutExpired(now)
	data, err := firewall.MarshalSaved(&firewall.Saved{Version: 1, SavedAt: now.UTC(), Netns: s.ns.Spec, Ruleset: *rs})
	if err != nil {
		return 0, err
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return 0, fmt.Errorf("save rules: %w", err)
	}
	if err := atomicfile.Write(path, data, 0o600); err != nil {
		return 0, fmt.Errorf("save rules: %w", err)
	}
	return len(rs.Rules), nil
}

func runFirewallSave(ctx context.Context, g *Globals, opts FirewallSaveOptions, say bool) error {
	s, tab, err := openTable(ctx, g, opts.FirewallOptions, true)
	if err != nil {
		return err
	}
	defer s.Close()
	path := opts.File
	if path == "" {
		path = savedPath()
	}
	n, err := saveTable(s, tab, path)
	if err != nil {
		return err
	}
	switch {
	case say && g.JSON:
		return writeJSON(g, struct {
			Rules int    `json:"rules"`
			Path  string `json:"path"`
		}{n, path})
	case say:
		fmt.Fprintf(g.io.Out, "saved %d rules and the policy to %s\n", n, path)
	}
	return nil
}

// autoSave saves the table again after a change when the rules are
// enabled for boot and were saved from this namespace.
func (s *fwSession) autoSave(ctx context.Context) {
	if _, err := os.Stat(filepath.Join(systemdDir(), unitName)); err != nil {
		return
	}
	b, err := os.ReadFile(savedPath())
	if err != nil {
		return
	}
	saved, err := firewall.ParseSaved(savedPath(), b)
	if err != nil || saved.Netns != s.ns.Spec {
		return
	}
	tab, err := s.fw.Read(ctx)
	if err == nil {
		_, err = saveTable(s, tab, savedPath())
	}
	if err != nil {
		s.warn("the change is made but not saved for the next boot: %v", err)
	}
}

func runFirewallRestore(ctx context.Context, g *Globals, opts FirewallSaveOptions) error {
	path := opts.File
	if path == "" {
		path = savedPath()
	}
	b, err := os.ReadFile(path)
	if err != nil {
		return fileErr(fmt.Errorf("restore: %w", err))
	}
	saved, err := firewall.ParseSaved(path, b)
	if err != nil {
		return usageErr(err)
	}
	s, tab, err := openTable(ctx, g, opts.FirewallOptions, true)
	if err != nil {
		return err
	}
	defer s.Close()
	now := time.Now()
	want := saved.Ruleset.WithoutExpired(now)
	if err := s.fw.ApplyTo(ctx, tab, want); err != nil {
		return interrupted(err)
	}
	gone := len(saved.Ruleset.Rules) - len(want.Rules)
	if g.JSON {
		return writeJSON(g, struct {
			Rules   int    `json:"rules"`
			Policy  string `json:"policy"`
			Expired int    `json:"expired"`
			Path    string `json:"path"`
		}{len(want.Rules), want.Policy.String(), gone, path})
	}
	fmt.Fprintf(g.io.Out, "restored %d rules and policy %s from %s", len(want.Rules), want.Policy, path)
	if gone > 0 {
		fmt.Fprintf(g.io.Out, " (%d expired since it was saved)", gone)
	}
	fmt.Fprintln(g.io.Out)
	return nil
}

func runFirewallEnable(ctx context.Context, g *Globals, opts FirewallSaveOptions) error {
	if err := runFirewallSave(ctx, g, opts, !g.JSON); err != nil {
		return err
	}
	exe, err := os.Executable()
	if err != nil {
		return fmt.Errorf("enable: find this program: %w", err)
	}
	if e, err := filepath.EvalSymlinks(exe); err == nil {
		exe = e
	}
	unit := filepath.Join(systemdDir(), unitName)
	wants := filepath.Join(systemdDir(), "sysinit.target.wants")
	if err := os.MkdirAll(wants, 0o755); err != nil {
		return fmt.Errorf("enable: %w", err)
	}
	if err := atomicfile.Write(unit, []byte(unitText(exe)), 0o644); err != nil {
		return fmt.Errorf("enable: %w", err)
	}
	link := filepath.Join(wants, unitName)
	os.Remove(link)
	if err := os.Symlink(unit, link); err != nil {
		return fmt.Errorf("enable: %w", err)
	}
	if g.JSON {
		return writeJSON(g, struct {
			Unit  string `json:"unit"`
			Saved string `json:"saved"`
		}{unit, cmp.Or(opts.File, savedPath())})
	}
	fmt.Fprintf(g.io.Out, "enabled: %s restores them at boot (run systemctl daemon-reload to tell systemd now)\n", unit)
	return nil
}

func runFirewallDisable(g *Globals) error {
	var removed []string
	for _, p := range []string{filepath.Join(systemdDir(), "sysinit.target.wants", unitName), filepath.Join(systemdDir(), unitName), savedPath()} {
		err := os.Remove(p)
		switch {
		case err == nil:
			removed = append(removed, p)
		case !errors.Is(err, fs.ErrNotExist):
			return fmt.Errorf("disable: %w", err)
		}
	}
	if len(removed) == 0 {
		return withCode(ExitNotFound, errors.New("not enabled: nothing to remove"))
	}
	if g.JSON {
		return writeJSON(g, struct {
			Removed []string `json:"removed"`
		}{removed})
	}
	fmt.Fprintf(g.io.Out, "disabled: removed %d files; the live rules stay until the next boot\n", len(removed))
	return nil
}
