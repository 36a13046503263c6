package cli

import (
	"os"
	"os/exec"
	"os/signal"
	"strconv"
	"syscall"
)

// startGuard starts the rollback guard for token: this same program,
// re-executed from /proc/self/exe (which works even if the binary was
// replaced since), in a session of its own so that no hangup of this
// terminal reaches it, with the namespace as descriptor 3 and its output
// in the state directory's log.
func startGuard(s *fwSession, token string) (int, error) {
	logf, err := os.OpenFile(s.state.LogPath(), os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o600)
	if err != nil {
		return 0, err
	}
	defer logf.Close()
	devnull, err := os.Open(os.DevNull)
	if err != nil {
		return 0, err
	}
	defer devnull.Close()
	cmd := &exec.Cmd{
		Path: "/proc/self/exe",
		Args: []string{os.Args[0], "firewall", "rollback-guard",
			"--token", token, "--state-id", s.ns.ID, "--netns-fd", strconv.Itoa(3)},
		Env:         append(os.Environ(), "PORTOLAN_RUNTIME_DIR="+runtimeDir()),
		Stdin:       devnull,
		Stdout:      logf,
		Stderr:      logf,
		ExtraFiles:  []*os.File{s.ns.File},
		SysProcAttr: &syscall.SysProcAttr{Setsid: true},
	}
	if err := cmd.Start(); err != nil {
		return 0, err
	}
	// Reap it if it ends while this process still runs (a quick confirm).
	go cmd.Wait()
	return cmd.Process.Pid, nil
}

func ignoreHangup() { signal.Ignore(syscall.SIGHUP) }
