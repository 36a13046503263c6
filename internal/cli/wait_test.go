package cli

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"strings"
	"testing"
)

// runMain runs portolan with args and buffers for its streams.
func runMain(args ...string) (code int, stdout, stderr string) {
	var out, errOut bytes.Buffer
	code = Main(context.Background(), args, strings.NewReader(""), &out, &errOut)
	return code, out.String(), errOut.String()
}

func waitListener(t *testing.T, network, addr string) int {
	t.Helper()
	l, err := net.Listen(network, addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			c.Close()
		}
	}()
	return l.Addr().(*net.TCPAddr).Port
}

func TestWaitCmdReady(t *testing.T) {
	p := waitListener(t, "tcp6", "[::1]:0")
	target := fmt.Sprintf("localhost:%d", p)
	code, out, errOut := runMain("wait", target)
	if code != 0 || !strings.HasPrefix(out, target+"  ready  ") || !strings.Contains(out, fmt.Sprintf("[::1]:%d accepting", p)) {
		t.Errorf("wait %s (listening on ::1) = %d, stdout %q, stderr %q; want ready at [::1]", target, code, out, errOut)
	}
}

// TestWaitCmdRunsCommand: after success the command runs with portolan's
// streams, and its exit code is portolan's.
func TestWaitCmdRunsCommand(t *testing.T) {
	p := waitListener(t, "tcp4", "127.0.0.1:0")
	code, out, errOut := runMain("wait", fmt.Sprintf("127.0.0.1:%d", p), "--", "sh", "-c", "echo hello; echo oops >&2; exit 3")
	if code != 3 || out != "hello\n" || errOut != "oops\n" {
		t.Errorf("wait -- sh = %d, stdout %q, stderr %q; want 3, hello, oops", code, out, errOut)
	}
	code, _, _ = runMain("wait", fmt.Sprintf("127.0.0.1:%d", p), "--", "sh", "-c", "kill -TERM $$")
	if code != 128+15 {
		t.Errorf("wait -- (command killed by SIGTERM) = %d; want 143", code)
	}
}

func TestWaitCmdWrongFamily(t *testing.T) {
	p := waitListener(t, "tcp4", "127.0.0.1:0")
	target := fmt.Sprintf("[::1]:%d", p)
	code, out, errOut := runMain("wait", target, "--timeout", "1s", "--", "sh", "-c", "echo ran")
	if code != ExitTimeout || out != "" {
		t.Errorf("wait %s = %d, stdout %q; want %d (timed out) and nothing run", target, code, out, ExitTimeout)
	}
	for _, want := range []string{
		"portolan: wait timed out after 1s; not ready:\n",
		"  " + target + "  listening on 127.0.0.1 only, you asked for ::1\n",
		"hint: the server listens on one address family only",
	} {
		if !strings.Contains(errOut, want) {
			t.Errorf("wait %s stderr = %q; want it to contain %q", target, errOut, want)
		}
	}
}
