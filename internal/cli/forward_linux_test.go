package cli

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"portolan/internal/testenv"
)

// exchange connects to addr and wants msg echoed.
func exchange(addr, msg string) error {
	c, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		return err
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(5 * time.Second))
	if _, err := io.WriteString(c, msg); err != nil {
		return err
	}
	b := make([]byte, len(msg))
	if _, err := io.ReadFull(c, b); err != nil {
		return fmt.Errorf("read echo: %w", err)
	}
	if string(b) != msg {
		return fmt.Errorf("echo %q; want %q", b, msg)
	}
	return nil
}

// TestForwardLogSinkStallsAndVanishes runs the relay with its stderr on a
// FIFO. Nobody reads it at first: the relay froze after about 4,400
// connections, once the pipe and the line queue were full. Then the
// reader comes and goes away: the relay died of SIGPIPE. Relaying must
// go on through both, with the dropped lines counted and summed up once
// the sink reads again, and a SIGTERM must still end it cleanly.
func TestForwardLogSinkStallsAndVanishes(t *testing.T) {
	echo := testenv.ServeLoopback(t, func(c net.Conn) { io.Copy(c, c) })
	listen := fwdFreePort(t)
	fifo := filepath.Join(t.TempDir(), "log")
	if err := unix.Mkfifo(fifo, 0o600); err != nil {
		t.Fatal(err)
	}
	// The reader end, opened first (non-blocking) so the writer's open
	// does not wait; nothing is read from it for now.
	r, err := os.OpenFile(fifo, os.O_RDONLY|syscall.O_NONBLOCK, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	w, err := os.OpenFile(fifo, os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	cmd := portolanCmd(t, context.Background(), "forward", listen, echo, "--log-format", "json", "--drain-timeout", "5s")
	cmd.Stderr = w
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	w.Close()
	var waitErr error
	exited := make(chan struct{})
	go func() { waitErr = cmd.Wait(); close(exited) }()
	defer func() {
		cmd.Process.Kill()
		<-exited
	}()
	for end := time.Now().Add(15 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		if exchange(listen, "up?") == nil {
			break
		}
		if time.Now().After(end) {
			t.Fatal("the relay never came up")
		}
	}

	// Stalled sink: far more lines than the pipe and the queue hold.
	for i := range 6000 {
		if err := exchange(listen, "stalled"); err != nil {
			t.Fatalf("connection %d with the log sink stalled: %v", i, err)
		}
	}

	// The sink reads again: the backlog, then a line that sums up what
	// was dropped.
	if err := unix.SetNonblock(int(r.Fd()), false); err != nil {
		t.Fatal(err)
	}
	summary := make(chan string, 1)
	go func() {
		// Reads until the summary, then stops: a Read in progress would
		// hold the descriptor open past Close.
		defer close(summary)
		sc := bufio.NewScanner(r)
		sc.Buffer(make([]byte, 64<<10), 1<<20)
		for sc.Scan() {
			if strings.Contains(sc.Text(), "log lines dropped") {
				summary <- sc.Text()
				return
			}
		}
	}()
	select {
	case l, ok := <-summary:
		if !ok {
			t.Fatal("the log ended without a summary of the dropped lines")
		}
		t.Logf("summary: %s", l)
	case <-time.After(20 * time.Second):
		r.Close()
		t.Fatal("no summary of the dropped lines once the sink read again")
	}

	// The reader goes away: writes fail with EPIPE, relaying goes on.
	r.Close()
	for i := range 500 {
		if err := exchange(listen, "vanished"); err != nil {
			select {
			case <-exited:
				t.Fatalf("the relay died when its log reader went away: %v", waitErr)
			default:
			}
			t.Fatalf("connection %d after the log reader went away: %v", i, err)
		}
	}
	cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-exited:
		var ee *exec.ExitError
		if errors.As(waitErr, &ee) {
			t.Fatalf("SIGTERM: exit %v; want 0", ee)
		}
		if waitErr != nil {
			t.Fatal(waitErr)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("SIGTERM did not stop the relay")
	}
}

// TestForwardSecondSignalForcesExit: a held connection makes the drain
// wait; a second SIGINT must end the process at once, where it ignored
// it and waited out the drain.
func TestForwardSecondSignalForcesExit(t *testing.T) {
	echo := testenv.ServeLoopback(t, func(c net.Conn) { io.Copy(c, c) })
	listen := fwdFreePort(t)
	cmd := portolanCmd(t, context.Background(), "forward", listen, echo, "--drain-timeout", "1h")
	var stderr fwdLogBuf
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	var waitErr error
	exited := make(chan struct{})
	go func() { waitErr = cmd.Wait(); close(exited) }()
	defer func() {
		cmd.Process.Kill()
		<-exited
	}()
	var held net.Conn
	for end := time.Now().Add(15 * time.Second); held == nil; time.Sleep(20 * time.Millisecond) {
		if c, err := net.Dial("tcp", listen); err == nil {
			held = c
		} else if time.Now().After(end) {
			t.Fatal("the relay never came up")
		}
	}
	defer held.Close()
	io.WriteString(held, "x")
	held.Read(make([]byte, 1))
	cmd.Process.Signal(os.Interrupt)
	for end := time.Now().Add(15 * time.Second); !strings.Contains(stderr.String(), "draining"); time.Sleep(10 * time.Millisecond) {
		if time.Now().After(end) {
			t.Fatalf("no drain after SIGINT:\n%s", stderr.String())
		}
	}
	cmd.Process.Signal(os.Interrupt)
	select {
	case <-exited:
		if waitErr == nil {
			t.Error("a forced stop that cut a connection exited 0; want 1")
		}
	case <-time.After(20 * time.Second):
		t.Fatalf("a second SIGINT did not stop the relay:\n%s", stderr.String())
	}
	if !strings.Contains(stderr.String(), "second signal") {
		t.Errorf("stderr does not say why it stopped at once:\n%s", stderr.String())
	}
}
