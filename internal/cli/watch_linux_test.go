package cli

import (
	"context"
	"fmt"
	"io"
	"net"
	"strings"
	"testing"
	"time"
)

// TestLsWatchTerminal: on a terminal, ls --watch redraws the table in
// place (cursor home, clear screen) at every refresh instead of writing
// events.
func TestLsWatchTerminal(t *testing.T) {
	l, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	port := l.Addr().(*net.TCPAddr).Port
	master, tty := openPTY(t)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan int, 1)
	go func() {
		var errOut strings.Builder
		done <- Main(ctx, []string{"ls", "--watch", "--interval", "50ms", "-t", "--port", fmt.Sprint(port)}, strings.NewReader(""), tty, &errOut)
	}()
	// Read until two redraws of the table have come (10 s at most).
	var got strings.Builder
	buf := make([]byte, 4096)
	deadline := time.Now().Add(10 * time.Second)
	for strings.Count(got.String(), "\x1b[H\x1b[2J") < 2 && time.Now().Before(deadline) {
		master.SetReadDeadline(deadline)
		n, err := master.Read(buf)
		got.Write(buf[:n])
		if err != nil {
			break
		}
	}
	cancel()
	go io.Copy(io.Discard, master) // let the last redraw through
	if code := <-done; code != 0 {
		t.Errorf("ls --watch ended with exit %d; want 0 after Ctrl-C", code)
	}
	out := got.String()
	if strings.Count(out, "\x1b[H\x1b[2J") < 2 || !strings.Contains(out, fmt.Sprintf(" %d ", port)) || strings.Contains(out, `"event"`) {
		t.Errorf("ls --watch on a terminal wrote %q; want the table redrawn in place, twice, with port %d, no JSON events", out, port)
	}
}
