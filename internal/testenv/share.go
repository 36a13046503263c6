package testenv

import (
	"io"
	"net"
	"os"
	"os/exec"
	"testing"
)

// ShareListener starts n child processes (sleep) that inherit l, as a
// pre-forked server's workers do, and returns their pids; they are
// killed when the test ends.
func ShareListener(t testing.TB, l *net.TCPListener, n int) []int {
	t.Helper()
	sleep := RequireCommand(t, "sleep")
	lf, err := l.File()
	if err != nil {
		t.Fatal(err)
	}
	defer lf.Close()
	var pids []int
	for range n {
		cmd := exec.Command(sleep, "60")
		cmd.ExtraFiles = []*os.File{lf}
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
		pids = append(pids, cmd.Process.Pid)
	}
	return pids
}

// CopyExecutable copies the binary from to the file to, executable by all
// (a test binary under a root-only directory cannot be run by nobody).
func CopyExecutable(t testing.TB, from, to string) {
	t.Helper()
	CopyFile(t, from, to, 0o755)
}

// CopyFile copies the file from to a new file to with permissions perm (a
// fixture that a test changes, say).
func CopyFile(t testing.TB, from, to string, perm os.FileMode) {
	t.Helper()
	in, err := os.Open(from)
	if err != nil {
		t.Fatal(err)
	}
	defer in.Close()
	out, err := os.OpenFile(to, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, perm)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := io.Copy(out, in); err != nil {
		t.Fatal(err)
	}
	if err := out.Close(); err != nil {
		t.Fatal(err)
	}
}
