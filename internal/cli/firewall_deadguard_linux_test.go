package cli

import (
	"context"
	"encoding/json"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"portolan/internal/firewall"
	"portolan/internal/netlab"
	"portolan/internal/testenv"
)

// deadGuardLab is a namespace with an old profile applied (8080 closed)
// and a way to run portolan on it.
type deadGuardLab struct {
	srv, cli *netlab.Host
	lk       *netlab.Link
	run      string
	newProf  string
	before   string
}

func newDeadGuardLab(t *testing.T) *deadGuardLab {
	t.Helper()
	testenv.RequireRoot(t)
	testenv.RequireCommand(t, "nft")
	srv, cli, lk := netlab.NewPair(t)
	dir := t.TempDir()
	l := &deadGuardLab{srv: srv, cli: cli, lk: lk, run: filepath.Join(dir, "run")}
	old := filepath.Join(dir, "old.yaml")
	l.newProf = filepath.Join(dir, "new.yaml")
	os.WriteFile(old, []byte("policy: accept\nrules:\n  - deny: 8080/tcp\n"), 0o644)
	os.WriteFile(l.newProf, []byte("policy: drop\nrules:\n  - allow: 8080/tcp\n"), 0o644)
	if out, err := l.portolan("apply", "-f", old).CombinedOutput(); err != nil {
		t.Fatalf("apply old: %v: %s", err, out)
	}
	l.before = l.nftList(t)
	for _, network := range []string{"tcp4", "tcp6"} {
		ln, err := srv.Listen(network, ":8080")
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { ln.Close() })
		go testenv.Serve(ln, testenv.Drain)
	}
	return l
}

func (l *deadGuardLab) portolan(args ...string) *exec.Cmd {
	exe, _ := os.Executable()
	cmd := &exec.Cmd{Path: exe, Args: append([]string{"portolan", "firewall", "--netns", l.srv.Netns()}, args...)}
	cmd.Env = append(os.Environ(), "PORTOLAN_RUNTIME_DIR="+l.run, "NO_COLOR=1", "SSH_CONNECTION=")
	return cmd
}

func (l *deadGuardLab) nftList(t *testing.T) string {
	t.Helper()
	out, err := l.srv.Command(context.Background(), "nft", "list", "ruleset").Output()
	if err != nil {
		t.Fatal(err)
	}
	return string(out)
}

// reach reports whether 8080 accepts from cli over IPv4 and IPv6 (both
// must agree).
func (l *deadGuardLab) reach(t *testing.T) bool {
	t.Helper()
	var got []bool
	for _, a := range []netip.Addr{l.lk.A4, l.lk.A6} {
		ctx, cancel := context.WithTimeout(context.Background(), dropWait)
		c, err := l.cli.DialContext(ctx, "tcp", netip.AddrPortFrom(a, 8080).String())
		cancel()
		if err == nil {
			c.Close()
		}
		got = append(got, err == nil)
	}
	if got[0] != got[1] {
		t.Fatalf("8080 reachable over IPv4 %v, over IPv6 %v", got[0], got[1])
	}
	return got[0]
}

// applyAndKillGuard applies the new profile with --confirm d, checks it is
// in, and kills its rollback guard with SIGKILL, as the OOM killer would.
func (l *deadGuardLab) applyAndKillGuard(t *testing.T, d string) firewall.Pending {
	t.Helper()
	if out, err := l.portolan("apply", "-f", l.newProf, "--confirm", d).CombinedOutput(); err != nil {
		t.Fatalf("apply --confirm: %v: %s", err, out)
	}
	if !l.reach(t) {
		t.Fatal("8080 not reachable after the apply")
	}
	pendings, _ := filepath.Glob(filepath.Join(l.run, "firewall-*.pending.json"))
	if len(pendings) != 1 {
		t.Fatalf("pending files: %v", pendings)
	}
	var p firewall.Pending
	b, _ := os.ReadFile(pendings[0])
	if err := json.Unmarshal(b, &p); err != nil || p.GuardPID == 0 {
		t.Fatalf("pending file %s: %v", b, err)
	}
	if err := syscall.Kill(p.GuardPID, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	// It is gone once its cmdline is (it may stay a zombie until reaped).
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		if b, err := os.ReadFile("/proc/" + strconv.Itoa(p.GuardPID) + "/cmdline"); err != nil || len(b) == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("guard still running 10s after SIGKILL")
		}
	}
	return p
}

// TestDeadGuardRolledBackAtNextCommand kills the rollback guard of an
// apply --confirm: the next command (here list, which changes nothing
// itself) notices, rolls back, and says so; a later apply is not refused.
func TestDeadGuardRolledBackAtNextCommand(t *testing.T) {
	l := newDeadGuardLab(t)
	p := l.applyAndKillGuard(t, "60s")
	out, err := l.portolan("list").CombinedOutput()
	if err != nil {
		t.Fatalf("list: %v: %s", err, out)
	}
	if want := "the rollback process (pid " + strconv.Itoa(p.GuardPID) + ") of the apply at"; !strings.Contains(string(out), want) || !strings.Contains(string(out), "rolled back to the rules before that apply") {
		t.Errorf("list after the guard died:\n%s\nwant a warning with %q", out, want)
	}
	if strings.Contains(string(out), "unless confirmed") {
		t.Errorf("list still announces a rollback:\n%s", out)
	}
	if got := l.nftList(t); got != l.before {
		t.Errorf("after the dead guard's rollback:\n%s\nwant:\n%s", got, l.before)
	}
	if l.reach(t) {
		t.Error("8080 reachable after the rollback")
	}
	// Nothing waits any more: an apply goes ahead.
	if out, err := l.portolan("apply", "-f", l.newProf).CombinedOutput(); err != nil {
		t.Fatalf("apply after the rollback: %v: %s", err, out)
	}
	if !l.reach(t) {
		t.Error("8080 not reachable after the next apply")
	}
}

// TestLateConfirmExits1 kills the guard and confirms after the deadline:
// the confirm is too late (exit 1) and the rules are rolled back, as the
// guard would have done.
func TestLateConfirmExits1(t *testing.T) {
	l := newDeadGuardLab(t)
	p := l.applyAndKillGuard(t, "1s")
	time.Sleep(time.Until(p.Deadline) + 100*time.Millisecond)
	out, err := l.portolan("confirm").CombinedOutput()
	if ee, ok := err.(*exec.ExitError); !ok || ee.ExitCode() != 1 {
		t.Errorf("confirm after the deadline: %v; want exit 1\n%s", err, out)
	}
	if !strings.Contains(string(out), "too late") {
		t.Errorf("confirm after the deadline:\n%s\nwant too late", out)
	}
	if got := l.nftList(t); got != l.before {
		t.Errorf("after a late confirm:\n%s\nwant the old rules:\n%s", got, l.before)
	}
	if l.reach(t) {
		t.Error("8080 reachable after a late confirm")
	}
}

// TestConfirmInTimeWithDeadGuard: a confirm before the deadline keeps the
// rules even though the guard died.
func TestConfirmInTimeWithDeadGuard(t *testing.T) {
	l := newDeadGuardLab(t)
	l.applyAndKillGuard(t, "60s")
	if out, err := l.portolan("confirm").CombinedOutput(); err != nil {
		t.Fatalf("confirm: %v: %s", err, out)
	}
	if !l.reach(t) {
		t.Error("8080 not reachable after the confirm")
	}
	if out, err := l.portolan("list").CombinedOutput(); err != nil || strings.Contains(string(out), "rolled back") {
		t.Errorf("list after confirm: %v\n%s", err, out)
	}
	if !l.reach(t) {
		t.Error("8080 not reachable after list")
	}
}
