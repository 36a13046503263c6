package cli

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"portolan/internal/netlab"
	"portolan/internal/testenv"
)

// A stand-in for sshd: the test binary started through a link named sshd
// (so its command name is sshd, as the guard looks for) with
// PORTOLAN_TEST_FAKE_SSHD set. It accepts one TCP connection on port 22,
// then runs its arguments, if any, through sh with an environment reset as
// sudo's env_reset leaves it (no SSH_CONNECTION), prints their output and
// exit code, and holds the connection until its stdin closes.
func init() {
	if os.Getenv("PORTOLAN_TEST_FAKE_SSHD") != "1" {
		return
	}
	os.Exit(fakeSSHD(os.Args[1:]))
}

func fakeSSHD(args []string) int {
	ln, err := net.Listen("tcp", ":22")
	if err != nil {
		fmt.Println("listen:", err)
		return 1
	}
	fmt.Println("listening")
	c, err := ln.Accept()
	if err != nil {
		fmt.Println("accept:", err)
		return 1
	}
	defer c.Close()
	ln.Close()
	fmt.Println("accepted")
	if len(args) > 0 {
		cmd := exec.Command("/bin/sh", append([]string{"-c", `"$@"; echo "exit=$?"`, "sh"}, args...)...)
		cmd.Env = []string{"PATH=" + os.Getenv("PATH"), "PORTOLAN_RUNTIME_DIR=" + os.Getenv("PORTOLAN_RUNTIME_DIR"), "NO_COLOR=1"}
		out, _ := cmd.CombinedOutput()
		fmt.Print(string(out))
	}
	fmt.Println("done")
	io.Copy(io.Discard, os.Stdin)
	return 0
}

// sshSession is a fake sshd in srv with one client connection from cli.
type sshSession struct {
	out   *bufio.Reader
	stdin io.WriteCloser
	conn  net.Conn
}

// startSSH starts the fake sshd in h, connects to it from cli at addr and
// returns once it ran args (if any), with their output.
func startSSH(t *testing.T, srv, cli *netlab.Host, addr netip.Addr, run string, args ...string) (string, *sshSession) {
	t.Helper()
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	link := filepath.Join(t.TempDir(), "sshd")
	if err := os.Symlink(exe, link); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	t.Cleanup(cancel)
	cmd := srv.Command(ctx, link, args...)
	cmd.Env = append(os.Environ(), "PORTOLAN_TEST_FAKE_SSHD=1", "PORTOLAN_RUNTIME_DIR="+run, "SSH_CONNECTION=")
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	s := &sshSession{out: bufio.NewReader(stdout), stdin: stdin}
	t.Cleanup(func() { stdin.Close(); cmd.Wait() })
	if line, err := s.out.ReadString('\n'); err != nil || line != "listening\n" {
		t.Fatalf("fake sshd: %q, %v", line, err)
	}
	s.conn, err = cli.DialContext(ctx, "tcp", netip.AddrPortFrom(addr, 22).String())
	if err != nil {
		t.Fatalf("connect to the fake sshd: %v", err)
	}
	t.Cleanup(func() { s.conn.Close() })
	var b strings.Builder
	for {
		line, err := s.out.ReadString('\n')
		if err != nil {
			t.Fatalf("fake sshd output %q: %v", b.String(), err)
		}
		if line == "done\n" {
			break
		}
		if line != "accepted\n" {
			b.WriteString(line)
		}
	}
	return b.String(), s
}

// TestSSHGuardUnderSudo runs portolan as sudo would from an SSH session:
// below sshd, without SSH_CONNECTION. The guard finds the client from the
// sshd's connection, refuses what would lock it out, and says what it
// protects with -v; new SSH connections (real packets) still get in.
func TestSSHGuardUnderSudo(t *testing.T) {
	testenv.RequireRoot(t)
	testenv.RequireCommand(t, "ip")
	for _, fam := range []string{"v4", "v6"} {
		t.Run(fam, func(t *testing.T) {
			srv, cli, lk := netlab.NewPair(t)
			run := filepath.Join(t.TempDir(), "run")
			srvAddr, cliAddr := lk.A4, lk.B4
			if fam == "v6" {
				srvAddr, cliAddr = lk.A6, lk.B6
			}
			out, _ := startSSH(t, srv, cli, srvAddr, run, "portolan", "-v", "firewall", "default-policy", "drop")
			want := fmt.Sprintf("refused: this change would drop new SSH connections from your client (%s -> %s/tcp), by the default policy drop", cliAddr, netip.AddrPortFrom(srvAddr, 22))
			if !strings.Contains(out, want) || !strings.Contains(out, "exit=1") {
				t.Errorf("default-policy drop under sudo from SSH:\n%s\nwant %q and exit=1", out, want)
			}
			if !strings.Contains(out, "SSH guard: protecting new SSH connections") || !strings.Contains(out, "the connection of sshd (pid ") {
				t.Errorf("-v does not say what the guard protects:\n%s", out)
			}
			// The table is as it was: a new connection to 22 is accepted.
			ln, err := srv.Listen("tcp", ":22")
			if err != nil {
				t.Fatal(err)
			}
			defer ln.Close()
			go testenv.Serve(ln, nil)
			ctx, cancel := context.WithTimeout(context.Background(), dropWait)
			defer cancel()
			c, err := cli.DialContext(ctx, "tcp", netip.AddrPortFrom(srvAddr, 22).String())
			if err != nil {
				t.Fatalf("new SSH connection after the refused change: %v", err)
			}
			c.Close()
		})
	}
}

// TestSSHGuardCannotTell: with an SSH client connected but no sshd among
// portolan's ancestors (as under tmux), the guard says it cannot tell and
// guards every connected client rather than none.
func TestSSHGuardCannotTell(t *testing.T) {
	testenv.RequireRoot(t)
	testenv.RequireCommand(t, "ip")
	srv, cli, lk := netlab.NewPair(t)
	run := filepath.Join(t.TempDir(), "run")
	_, _ = startSSH(t, srv, cli, lk.A4, run)
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	cmd := &exec.Cmd{Path: exe, Args: []string{"portolan", "firewall", "--netns", srv.Netns(), "default-policy", "drop"}}
	cmd.Env = append(os.Environ(), "PORTOLAN_RUNTIME_DIR="+run, "NO_COLOR=1", "SSH_CONNECTION=")
	out, err := cmd.CombinedOutput()
	if err == nil {
		t.Fatalf("default-policy drop with an SSH client connected and no way to tell ours: accepted\n%s", out)
	}
	for _, want := range []string{
		"warning: SSH guard: could not tell whether this runs over SSH",
		fmt.Sprintf("refused: this change would drop new SSH connections from a connected SSH client (%s -> %s/tcp;", lk.B4, netip.AddrPortFrom(lk.A4, 22)),
	} {
		if !strings.Contains(string(out), want) {
			t.Errorf("output:\n%s\nwant %q", out, want)
		}
	}
	// With a rule that lets it in, the change goes through.
	cmd = &exec.Cmd{Path: exe, Args: []string{"portolan", "firewall", "--netns", srv.Netns(), "allow", "22/tcp"}, Env: cmd.Env}
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("allow 22/tcp: %v\n%s", err, out)
	}
	cmd = &exec.Cmd{Path: exe, Args: []string{"portolan", "firewall", "--netns", srv.Netns(), "default-policy", "drop"}, Env: cmd.Env}
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("default-policy drop after allow 22/tcp: %v\n%s", err, out)
	}
}
