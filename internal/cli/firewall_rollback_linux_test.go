package cli

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"io"
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

// TestApplyRollbackSurvivesKilledTerminal starts `portolan firewall apply
// --confirm --wait` as a terminal would: in a session of its own, waiting
// for an answer. It then hangs up and kills that whole session, as a
// dropped SSH connection does, and checks that the detached guard still
// restores the old ruleset when the deadline passes.
func TestApplyRollbackSurvivesKilledTerminal(t *testing.T) {
	testenv.RequireCommand(t, "nft")
	srv, cli, lk := netlab.NewPair(t)
	dir := t.TempDir()
	run := filepath.Join(dir, "run")
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	portolan := func(stdin io.Reader, args ...string) *exec.Cmd {
		cmd := &exec.Cmd{Path: exe, Args: append([]string{"portolan", "firewall", "--netns", srv.Netns()}, args...), Stdin: stdin}
		// No PATH: the product needs no nft (nor anything else) to run,
		// and the guard re-executes itself through /proc/self/exe.
		cmd.Env = append(os.Environ(), "PORTOLAN_RUNTIME_DIR="+run, "NO_COLOR=1", "SSH_CONNECTION=", "PATH=/nonexistent")
		return cmd
	}
	write := func(name, body string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
		return p
	}
	oldProfile := write("old.yaml", "policy: accept\nrules:\n  - deny: 8080/tcp\n")
	newProfile := write("new.yaml", "policy: drop\nrules:\n  - allow: 8080/tcp\n")
	if out, err := portolan(nil, "apply", "-f", oldProfile).CombinedOutput(); err != nil {
		t.Fatalf("apply old: %v: %s", err, out)
	}
	nftList := func() string {
		out, err := srv.Command(context.Background(), "nft", "list", "ruleset").Output()
		if err != nil {
			t.Fatal(err)
		}
		return string(out)
	}
	before := nftList()

	ln, err := srv.Listen("tcp4", ":8080")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go testenv.Serve(ln, testenv.Drain)
	reach := func() bool {
		ctx, cancel := context.WithTimeout(context.Background(), dropWait)
		defer cancel()
		c, err := cli.DialContext(ctx, "tcp", netip.AddrPortFrom(lk.A4, 8080).String())
		if err == nil {
			c.Close()
		}
		return err == nil
	}
	if reach() {
		t.Fatal("8080 reachable before the apply")
	}

	// The "terminal": apply waits for an answer on a pipe nobody writes.
	stdinR, stdinW, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	defer stdinW.Close()
	apply := portolan(stdinR, "apply", "-f", newProfile, "--confirm", "3s", "--wait")
	apply.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	stderr, err := apply.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := apply.Start(); err != nil {
		t.Fatal(err)
	}
	stdinR.Close()
	// Once it asks, the new rules are in.
	asked := make(chan error, 1)
	go func() {
		r := bufio.NewReader(stderr)
		var seen strings.Builder
		for {
			b, err := r.ReadByte()
			if err != nil {
				asked <- errors.New("apply ended before asking: " + seen.String())
				return
			}
			seen.WriteByte(b)
			if strings.Contains(seen.String(), "to keep the new rules: ") {
				asked <- nil
				io.Copy(io.Discard, r)
				return
			}
		}
	}()
	select {
	case err := <-asked:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("apply did not ask for confirmation within 30s")
	}
	if !reach() {
		t.Fatal("8080 not reachable after the apply")
	}
	pendings, _ := filepath.Glob(filepath.Join(run, "firewall-*.pending.json"))
	if len(pendings) != 1 {
		t.Fatalf("pending files: %v", pendings)
	}
	var p firewall.Pending
	b, _ := os.ReadFile(pendings[0])
	if err := json.Unmarshal(b, &p); err != nil || p.GuardPID == 0 {
		t.Fatalf("pending file %s: %v, guard pid %d", b, err, p.GuardPID)
	}

	// Hang up and kill the whole session, as losing the terminal does.
	syscall.Kill(-apply.Process.Pid, syscall.SIGHUP)
	syscall.Kill(-apply.Process.Pid, syscall.SIGKILL)
	apply.Wait()
	if err := syscall.Kill(p.GuardPID, 0); err != nil {
		t.Fatalf("guard %d gone with the session: %v", p.GuardPID, err)
	}

	// The guard restores the old ruleset at the deadline.
	for deadline := time.Now().Add(60 * time.Second); ; time.Sleep(50 * time.Millisecond) {
		if _, err := os.Stat(pendings[0]); errors.Is(err, os.ErrNotExist) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("no rollback 60s after the session was killed")
		}
	}
	if got := nftList(); got != before {
		t.Errorf("after the rollback:\n%s\nwant:\n%s", got, before)
	}
	if reach() {
		t.Error("8080 still reachable after the rollback")
	}
	logs, _ := filepath.Glob(filepath.Join(run, "firewall-*.guard.log"))
	if len(logs) != 1 {
		t.Fatalf("guard logs: %v", logs)
	}
	if b, _ := os.ReadFile(logs[0]); !strings.Contains(string(b), "not confirmed: restored the snapshot") {
		t.Errorf("guard log:\n%s", b)
	}
	// The guard is gone once it is done.
	for deadline := time.Now().Add(10 * time.Second); syscall.Kill(p.GuardPID, 0) == nil; time.Sleep(20 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Errorf("guard %d still running after its rollback", p.GuardPID)
			break
		}
	}
}

// TestConcurrentChangesSerialize runs many firewall commands at once on
// one namespace: each reads, changes and writes the table under the
// namespace's lock, so every rule lands.
func TestConcurrentChangesSerialize(t *testing.T) {
	srv, _, _ := netlab.NewPair(t)
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	run := filepath.Join(t.TempDir(), "run")
	const n = 8
	errs := make(chan error, n)
	for i := range n {
		go func() {
			cmd := &exec.Cmd{Path: exe, Args: []string{"portolan", "firewall", "--netns", srv.Path(), "allow", strconv.Itoa(10000+i) + "/tcp"}}
			cmd.Env = append(os.Environ(), "PORTOLAN_RUNTIME_DIR="+run, "SSH_CONNECTION=")
			out, err := cmd.CombinedOutput()
			if err != nil {
				err = errors.New(err.Error() + ": " + string(out))
			}
			errs <- err
		}()
	}
	for range n {
		if err := <-errs; err != nil {
			t.Error(err)
		}
	}
	fw := &firewall.Firewall{NetNS: srv.FD()}
	tab, err := fw.Read(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if len(tab.Ruleset.Rules) != n {
		t.Errorf("after %d concurrent allows: %d rules: %v", n, len(tab.Ruleset.Rules), tab.Ruleset.Rules)
	}
}
