// Package socktest holds what the tests of the packages built on sockets
// share and what needs the socket table: waiting for a socket state. (The
// fixtures that need no table, children holding a listener and a copy of
// the test binary another user may run, are testenv's, so that sockets'
// own tests can use them.)
package socktest

import (
	"context"
	"fmt"
	"os"
	"slices"
	"strings"
	"testing"
	"time"

	"portolan/internal/portspec"
	"portolan/internal/sockets"
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
