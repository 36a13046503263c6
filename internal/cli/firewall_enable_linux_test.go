package cli

import (
	"context"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"portolan/internal/firewall"
	"portolan/internal/netlab"
	"portolan/internal/testenv"
)

// bootRunner returns a function that runs `portolan firewall --netns srv
// ARGS...` with its runtime, config and systemd directories under dir, and
// fails the test if it fails.
func bootRunner(t *testing.T, srv *netlab.Host, dir string) func(args ...string) string {
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	env := append(os.Environ(), "PORTOLAN_RUNTIME_DIR="+dir+"/run", "PORTOLAN_CONFIG_DIR="+dir+"/etc", "PORTOLAN_SYSTEMD_DIR="+dir+"/systemd", "SSH_CONNECTION=", "NO_COLOR=1")
	return func(args ...string) string {
		t.Helper()
		cmd := &exec.Cmd{Path: exe, Args: append([]string{"portolan", "firewall", "--netns", srv.Netns()}, args...), Env: env}
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("firewall %s: %v\n%s", strings.Join(args, " "), err, out)
		}
		return string(out)
	}
}

// TestEnableRestoresAfterFlush enables the rules for boot, flushes the
// whole ruleset (as a reboot leaves it), restores, and checks the table is
// the same (expiries included, to the second) and packets follow it.
func TestEnableRestoresAfterFlush(t *testing.T) {
	testenv.RequireRoot(t)
	testenv.RequireCommand(t, "nft")
	srv, cli, lk := netlab.NewPair(t)
	dir := t.TempDir()
	run := bootRunner(t, srv, dir)
	for _, p := range []int{22, 8080, 8443, 9090} {
		ln, err := srv.Listen("tcp", ":"+strconv.Itoa(p))
		if err != nil {
			t.Fatal(err)
		}
		defer ln.Close()
		go testenv.Serve(ln, nil)
	}
	reach := func(port int) bool { // over IPv4 and IPv6
		for _, a := range []netip.Addr{lk.A4, lk.A6} {
			ctx, cancel := context.WithTimeout(context.Background(), dropWait)
			c, err := cli.DialContext(ctx, "tcp", netip.AddrPortFrom(a, uint16(port)).String())
			cancel()
			if err != nil {
				return false
			}
			c.Close()
		}
		return true
	}
	run("limit", "22/tcp")
	run("allow", "8080/tcp", "--for", "1h")
	run("default-policy", "drop", "--log")
	if out := run("enable"); !strings.Contains(out, "enabled: ") {
		t.Fatalf("enable: %s", out)
	}
	unit, err := os.ReadFile(filepath.Join(dir, "systemd", unitName))
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"Before=network-pre.target", "ExecStart=", " firewall restore", "WantedBy=sysinit.target"} {
		if !strings.Contains(string(unit), want) {
			t.Errorf("unit file lacks %q:\n%s", want, unit)
		}
	}
	if _, err := os.Readlink(filepath.Join(dir, "systemd", "sysinit.target.wants", unitName)); err != nil {
		t.Errorf("unit not enabled: %v", err)
	}
	// A change after enable is saved too.
	run("allow", "9090/tcp")
	if b, _ := os.ReadFile(filepath.Join(dir, "etc", savedName)); !strings.Contains(string(b), `"9090/tcp"`) {
		t.Errorf("the change after enable was not saved:\n%s", b)
	}
	fw := &firewall.Firewall{NetNS: srv.FD()}
	before, err := fw.Read(context.Background())
	if err != nil {
		t.Fatal(err)
	}

	// What a reboot leaves: nothing.
	if out, err := srv.Command(context.Background(), "nft", "flush", "ruleset").CombinedOutput(); err != nil {
		t.Fatalf("nft flush ruleset: %v: %s", err, out)
	}
	if tab, _ := fw.Read(context.Background()); tab.Exists {
		t.Fatal("table still there after flush")
	}
	time.Sleep(1100 * time.Millisecond) // so a relative expiry would show as moved
	if out := run("restore"); !strings.Contains(out, "restored 3 rules and policy drop") {
		t.Errorf("restore: %s", out)
	}
	after, err := fw.Read(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if !after.Ruleset.Equal(&before.Ruleset) {
		t.Errorf("after restore:\n%+v\nwant\n%+v", after.Ruleset, before.Ruleset)
	}
	if !reach(22) || !reach(8080) || !reach(9090) {
		t.Error("an allowed port is closed after restore")
	}
	if reach(8443) {
		t.Error("8443 reachable after restore; want the drop policy back")
	}
	if out := run("disable"); !strings.Contains(out, "disabled: removed 3 files") {
		t.Errorf("disable: %s", out)
	}
}

// TestRestoreLeavesOutExpired: a rule whose absolute expiry passed since
// the save is not restored.
func TestRestoreLeavesOutExpired(t *testing.T) {
	testenv.RequireRoot(t)
	srv, _, _ := netlab.NewPair(t)
	run := bootRunner(t, srv, t.TempDir())
	run("allow", "22/tcp")
	run("allow", "8080/tcp", "--for", "2s")
	run("save")
	time.Sleep(2500 * time.Millisecond)
	run("reset")
	if out := run("restore"); !strings.Contains(out, "restored 1 rules and policy accept") || !strings.Contains(out, "(1 expired since it was saved)") {
		t.Errorf("restore: %s", out)
	}
}
