package cli

import (
	"context"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"portolan/internal/netlab"
	"portolan/internal/testenv"
)

// TestDaemonsRunWithOnlyCapNetAdmin runs knockd and watch as the shipped
// systemd units do (dist/): an unprivileged user with CAP_NET_ADMIN and
// nothing else, here inside a lab namespace. Each must come up, stay up,
// and stop with 0 on SIGTERM. watch failed here: it entered its own
// namespace to read routes, which needs CAP_SYS_ADMIN.
func TestDaemonsRunWithOnlyCapNetAdmin(t *testing.T) {
	testenv.RequireCommand(t, "setpriv")
	lab := netlab.NewT(t)
	h, err := lab.AddHost("d")
	if err != nil {
		t.Fatal(err)
	}
	// A copy of this binary the unprivileged user can run, and a
	// directory it can write its store and state to.
	exe := exeForNobody(t)
	dir, err := os.MkdirTemp("", "portolan-caps-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	os.Chmod(dir, 0o777)
	for _, tc := range []struct {
		name string
		args []string
	}{
		{"knockd", []string{"knockd", "--protect", "22/tcp", "--sequence", "7000,8000/udp", "--db", filepath.Join(dir, "knockd.db")}},
		{"watch", []string{"watch", "--block", "--db", filepath.Join(dir, "watch.db")}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			args := append([]string{"netns", "exec", h.Netns(), "setpriv", "--reuid=64123", "--regid=64123", "--clear-groups",
				"--inh-caps=-all,+net_admin", "--ambient-caps=+net_admin", "--bounding-set=-all,+net_admin", exe}, tc.args...)
			cmd := exec.CommandContext(context.Background(), "ip", args...)
			cmd.Env = append(os.Environ(), mainEnv+"=1", "HOME="+dir, "PORTOLAN_RUNTIME_DIR="+filepath.Join(dir, "run-"+tc.name), "NO_COLOR=1")
			var stderr strings.Builder
			cmd.Stderr, cmd.Stdout = &stderr, io.Discard
			if err := cmd.Start(); err != nil {
				t.Fatal(err)
			}
			done := make(chan error, 1)
			go func() { done <- cmd.Wait() }()
			select {
			case err := <-done:
				t.Fatalf("%s ended as an unprivileged user with CAP_NET_ADMIN: %v\n%s", tc.name, err, stderr.String())
			case <-time.After(3 * time.Second):
			}
			// ip netns exec runs setpriv runs portolan, each exec'ing the
			// next: the pid is portolan's.
			cmd.Process.Signal(syscall.SIGTERM)
			select {
			case <-done:
			case <-time.After(20 * time.Second):
				cmd.Process.Kill()
				t.Fatalf("%s did not stop on SIGTERM\n%s", tc.name, stderr.String())
			}
			if code := cmd.ProcessState.ExitCode(); code != 0 {
				t.Errorf("%s: exit %d after SIGTERM; want 0\n%s", tc.name, code, stderr.String())
			}
		})
	}
}
