package cli

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"portolan/internal/testenv"
)

type fwdLogBuf struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *fwdLogBuf) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *fwdLogBuf) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

func fwdFreePort(t *testing.T) string {
	ln, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

// TestForwardSIGHUPReload runs the command in-process, rewrites its config
// and sends the process SIGHUP: a live connection keeps its old target, new
// connections get the new one, and an added rule starts listening.
func TestForwardSIGHUPReload(t *testing.T) {
	echo := testenv.ServeLoopback(t, func(c net.Conn) { io.Copy(c, c) })
	named := testenv.ServeLoopback(t, func(c net.Conn) { io.WriteString(c, "new") })
	p1, p2, metrics := fwdFreePort(t), fwdFreePort(t), fwdFreePort(t)
	cfg := filepath.Join(t.TempDir(), "forward.yaml")
	write := func(body string) {
		if err := os.WriteFile(cfg, []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	write(fmt.Sprintf("rules:\n  - name: a\n    listen: %q\n    targets: [%q]\n", p1, echo))

	var out fwdLogBuf
	g := &Globals{io: IO{In: bytes.NewReader(nil), Out: &out, ErrOut: &out}}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan error, 1)
	go func() {
		done <- runForward(ctx, g, ForwardOptions{Config: cfg, LogFormat: "json", DrainTimeout: 5 * time.Second, Metrics: metrics})
	}()
	dialUp := func(addr string) net.Conn {
		t.Helper()
		for end := time.Now().Add(15 * time.Second); time.Now().Before(end); time.Sleep(20 * time.Millisecond) {
			if c, err := net.Dial("tcp4", addr); err == nil {
				return c
			}
		}
		t.Fatalf("%s never accepted; log:\n%s", addr, out.String())
		return nil
	}
	live := dialUp(p1)
	defer live.Close()
	echoes := func(msg string) {
		t.Helper()
		live.SetDeadline(time.Now().Add(10 * time.Second))
		io.WriteString(live, msg)
		b := make([]byte, len(msg))
		if _, err := io.ReadFull(live, b); err != nil || string(b) != msg {
			t.Fatalf("live connection: %q, %v; want %q", b, err, msg)
		}
	}
	echoes("before")

	write(fmt.Sprintf("rules:\n  - name: a\n    listen: %q\n    targets: [%q]\n  - name: b\n    listen: %q\n    targets: [%q]\n", p1, named, p2, named))
	if err := syscall.Kill(os.Getpid(), syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	c := dialUp(p2)
	b, _ := io.ReadAll(c)
	c.Close()
	if string(b) != "new" {
		t.Errorf("added rule answered %q; want new", b)
	}
	echoes("after reload")
	c = dialUp(p1)
	b, _ = io.ReadAll(c)
	c.Close()
	if string(b) != "new" {
		t.Errorf("changed rule answered %q; want new", b)
	}

	// A broken file on reload keeps the running rules.
	write("rules: [")
	syscall.Kill(os.Getpid(), syscall.SIGHUP)
	for end := time.Now().Add(15 * time.Second); !bytes.Contains([]byte(out.String()), []byte("keeping the running configuration")); time.Sleep(20 * time.Millisecond) {
		if time.Now().After(end) {
			t.Fatalf("no reload error logged:\n%s", out.String())
		}
	}
	echoes("after bad reload")

	wants := []string{
		"# TYPE portolan_forward_connections_total counter",
		"process_open_fds ",
		"go_goroutines ",
		"portolan_log_lines_dropped_total 0",
		`portolan_forward_connections_total{proto="tcp",rule="a"} 2`,
		`portolan_forward_connections_active{proto="tcp",rule="a"} 1`,
		`portolan_forward_connections_total{proto="tcp",rule="b"} 1`,
	}
	var body []byte
	// Closed connections leave the active gauge a moment after the client sees EOF.
	for end := time.Now().Add(15 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		resp, err := http.Get("http://" + metrics + "/metrics")
		if err != nil {
			t.Fatalf("GET /metrics: %v", err)
		}
		body, _ = io.ReadAll(resp.Body)
		resp.Body.Close()
		missing := ""
		for _, w := range wants {
			if !strings.Contains(string(body), w) {
				missing = w
			}
		}
		if missing == "" {
			break
		}
		if time.Now().After(end) {
			t.Fatalf("metrics lack %q:\n%s", missing, body)
		}
	}

	live.Close()
	cancel()
	if err := <-done; err != nil {
		t.Errorf("runForward after cancel = %v; want nil", err)
	}
}
