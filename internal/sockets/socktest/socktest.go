// Package socktest holds what the tests of the packages built on sockets
// share: waiting for a socket state, children holding a listener, a copy
// of the test binary another user may run.
package socktest

import (
	"context"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"slices"
	"strings"
	"testing"
	"time"

	"portolan/internal/portspec"
	"portolan/internal/sockets"
	"portolan/internal/testenv"
)

// WaitState waits until a TCP socket on local port p is in state st.
func WaitState(t testing.TB, netns string, p portspec.Port, st sockets.State) {
	t.Helper()
	q := sockets.Query{Proto: portspec.TCP, States: sockets.States(st), Ports: []sockets.PortRange{{Lo: p, Hi: p}}}
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(5 * time.Millisecond) {
		socks, err := (&sockets.Table{Netns: netns}).List(context.Background(), q)
		if err != nil {
			t.Fatal(err)
		}
		if len(socks) > 0 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("no %v socket on port %d after 10s%s", st, p, TWOverflow(netns, st))
		}
	}
}

// TWOverflow says, for a missing TIME_WAIT socket in the root namespace,
// how often the kernel dropped one because the TIME_WAIT table was full.
func TWOverflow(netns string, st sockets.State) string {
	if netns != "" || st != sockets.TimeWait {
		return ""
	}
	b, err := os.ReadFile("/proc/net/netstat")
	if err != nil {
		return ""
	}
	// "TcpExt: names..." then "TcpExt: values...".
	var names []string
	n := "?"
	for _, line := range strings.Split(string(b), "\n") {
		f := strings.Fields(line)
		if len(f) == 0 || f[0] != "TcpExt:" {
			continue
		}
		if names == nil {
			names = f
			continue
		}
		if i := slices.Index(names, "TCPTimeWaitOverflow"); i > 0 && i < len(f) {
			n = f[i]
		}
		break
	}
	limit, _ := os.ReadFile("/proc/sys/net/ipv4/tcp_max_tw_buckets")
	return fmt.Sprintf(" (TCPTimeWaitOverflow %s, tcp_max_tw_buckets %s)", n, strings.TrimSpace(string(limit)))
}

// ShareListener starts n child processes (sleep) that inherit l, as a
// pre-forked server's workers do, and returns their pids; they are
// killed when the test ends.
func ShareListener(t testing.TB, l *net.TCPListener, n int) []int {
	t.Helper()
	sleep := testenv.RequireCommand(t, "sleep")
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
	in, err := os.Open(from)
	if err != nil {
		t.Fatal(err)
	}
	defer in.Close()
	out, err := os.OpenFile(to, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, 0o755)
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
