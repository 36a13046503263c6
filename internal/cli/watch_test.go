package cli

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"os"
	"strings"
	"testing"
	"time"
)

// watchLine is a JSON line of ls --watch or who --watch, piped.
type watchLine struct {
	Event  string `json:"event"`
	Socket struct {
		State   string `json:"state"`
		Address string `json:"address"`
		Port    uint16 `json:"port"`
		Name    string `json:"name"` // unix sockets
	} `json:"socket"`
}

// startWatch runs portolan with args, its stdout a pipe, until the test
// ends; it returns the JSON lines as they come.
func startWatch(t *testing.T, args ...string) <-chan watchLine {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	pr, pw := io.Pipe()
	done := make(chan int, 1)
	go func() {
		var errOut strings.Builder
		done <- Main(ctx, args, strings.NewReader(""), pw, &errOut)
		pw.Close()
	}()
	lines := make(chan watchLine, 64)
	go func() {
		defer close(lines)
		sc := bufio.NewScanner(pr)
		for sc.Scan() {
			var l watchLine
			if err := json.Unmarshal(sc.Bytes(), &l); err != nil {
				t.Errorf("watch line %q: %v", sc.Text(), err)
				continue
			}
			lines <- l
		}
	}()
	t.Cleanup(func() {
		cancel()
		go io.Copy(io.Discard, pr)
		if code := <-done; code != 0 {
			t.Errorf("%v ended with exit %d; want 0 after Ctrl-C", args, code)
		}
	})
	return lines
}

// next waits (10 s at most: a bound, not a timing check) for the next line
// about a socket on 127.0.0.1 (other programs on a shared machine may use
// the same port numbers on other addresses).
func next(t *testing.T, lines <-chan watchLine, what string) watchLine {
	t.Helper()
	return nextWhere(t, lines, what, func(l watchLine) bool { return l.Socket.Address == "127.0.0.1" })
}

// nextWhere waits (10 s at most) for the next line that match accepts.
func nextWhere(t *testing.T, lines <-chan watchLine, what string, match func(watchLine) bool) watchLine {
	t.Helper()
	deadline := time.After(10 * time.Second)
	for {
		select {
		case l, ok := <-lines:
			if !ok {
				t.Fatalf("watch ended before %s", what)
			}
			if match(l) {
				return l
			}
		case <-deadline:
			t.Fatalf("no watch event for %s in 10s", what)
		}
	}
}

func freeTCPPort(t *testing.T) int {
	t.Helper()
	l, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// TestLsWatchEvents: piped, ls --watch writes the sockets there at the
// start as "appear", then one line per listener that comes and goes.
func TestLsWatchEvents(t *testing.T) {
	a, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	pa := a.Addr().(*net.TCPAddr).Port
	pb := freeTCPPort(t)
	lines := startWatch(t, "ls", "--watch", "--interval", "50ms", "-t", "--port", fmt.Sprintf("%d,%d", pa, pb))

	if l := next(t, lines, "the first listener"); l.Event != "appear" || int(l.Socket.Port) != pa || l.Socket.State != "LISTEN" {
		t.Fatalf("first line %+v; want %d appearing, LISTEN", l, pa)
	}
	b, err := net.Listen("tcp4", fmt.Sprintf("127.0.0.1:%d", pb))
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	if l := next(t, lines, "a new listener"); l.Event != "appear" || int(l.Socket.Port) != pb {
		t.Fatalf("line %+v; want %d appearing", l, pb)
	}
	a.Close()
	if l := next(t, lines, "a closed listener"); l.Event != "disappear" || int(l.Socket.Port) != pa {
		t.Fatalf("line %+v; want %d disappearing", l, pa)
	}
}

// TestWhoWatchEvents: who PORT --watch follows one port.
func TestWhoWatchEvents(t *testing.T) {
	p := freeTCPPort(t)
	lines := startWatch(t, "who", fmt.Sprint(p)+"/tcp", "--watch", "--interval", "50ms")
	l, err := net.Listen("tcp4", fmt.Sprintf("127.0.0.1:%d", p))
	if err != nil {
		t.Fatal(err)
	}
	if e := next(t, lines, "the listener"); e.Event != "appear" || int(e.Socket.Port) != p {
		t.Fatalf("line %+v; want %d appearing", e, p)
	}
	l.Close()
	if e := next(t, lines, "its close"); e.Event != "disappear" || int(e.Socket.Port) != p {
		t.Fatalf("line %+v; want %d disappearing", e, p)
	}
}

// TestLsUnixWatchEvents: ls -x --watch follows unix listeners too.
func TestLsUnixWatchEvents(t *testing.T) {
	name := fmt.Sprintf("@portolan-watch-%d", os.Getpid())
	lines := startWatch(t, "ls", "-x", "--watch", "--interval", "50ms", "--pid", fmt.Sprint(os.Getpid()))
	l, err := net.Listen("unix", name)
	if err != nil {
		t.Fatal(err)
	}
	if e := nextUnix(t, lines, name, "the listener"); e.Event != "appear" || e.Socket.State != "LISTEN" {
		t.Fatalf("line %+v; want %s appearing, LISTEN", e, name)
	}
	l.Close()
	if e := nextUnix(t, lines, name, "its close"); e.Event != "disappear" {
		t.Fatalf("line %+v; want %s disappearing", e, name)
	}
}

// nextUnix waits (10 s at most) for the next line about the unix socket
// called name.
func nextUnix(t *testing.T, lines <-chan watchLine, name, what string) watchLine {
	t.Helper()
	return nextWhere(t, lines, what, func(l watchLine) bool { return l.Socket.Name == name })
}
