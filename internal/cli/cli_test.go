package cli

import (
	"context"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/rogpeppe/go-internal/testscript"
	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
)

// TestMain lets testscript run this test binary as the "portolan" command.
func TestMain(m *testing.M) {
	testscript.Main(m, map[string]func(){
		"portolan": func() {
			os.Exit(Main(context.Background(), os.Args[1:], os.Stdin, os.Stdout, os.Stderr))
		},
	})
}

// TestScripts runs the end-to-end CLI scripts in testdata/script, one
// txtar file per command.
func TestScripts(t *testing.T) {
	testscript.Run(t, testscript.Params{
		Dir: "testdata/script",
		Setup: func(env *testscript.Env) error {
			env.Setenv("NO_COLOR", "1")
			env.Setenv("XDG_DATA_HOME", env.WorkDir+"/data")
			return nil
		},
		Cmds: scriptCmds,
	})
}

// scriptCmds are the test-only commands scripts can use to set up real
// sockets in the test process while portolan runs as a child.
var scriptCmds = map[string]func(ts *testscript.TestScript, neg bool, args []string){
	// listen VAR [NETWORK ADDR]: a TCP listener that accepts and closes;
	// its port goes into $VAR. Default tcp4 127.0.0.1:0.
	"listen": func(ts *testscript.TestScript, neg bool, args []string) {
		if neg || (len(args) != 1 && len(args) != 3) {
			ts.Fatalf("usage: listen VAR [NETWORK ADDR]")
		}
		network, addr := "tcp4", "127.0.0.1:0"
		if len(args) == 3 {
			network, addr = args[1], args[2]
		}
		ln, err := net.Listen(network, addr)
		ts.Check(err)
		go func() {
			for {
				c, err := ln.Accept()
				if err != nil {
					return
				}
				c.Close()
			}
		}()
		ts.Defer(func() { ln.Close() })
		ts.Setenv(args[0], strconv.Itoa(ln.Addr().(*net.TCPAddr).Port))
	},
	// closedport VAR: a loopback TCP port with no listener, in $VAR.
	"closedport": func(ts *testscript.TestScript, neg bool, args []string) {
		if neg || len(args) != 1 {
			ts.Fatalf("usage: closedport VAR")
		}
		ln, err := net.Listen("tcp4", "127.0.0.1:0")
		ts.Check(err)
		port := ln.Addr().(*net.TCPAddr).Port
		ln.Close()
		ts.Setenv(args[0], strconv.Itoa(port))
	},
}

// TestExitCodesAreTyped: a kernel EINVAL ("invalid argument") from a
// command is a failure (1), not a usage error; wrong arguments and flags
// are usage errors (2) by type, whatever their text.
func TestExitCodesAreTyped(t *testing.T) {
	g := &Globals{io: IO{Out: io.Discard, ErrOut: io.Discard}}
	if code := report(g, fmt.Errorf("sock_diag: %w", syscall.EINVAL)); code != ExitError {
		t.Errorf("a wrapped EINVAL exits %d; want %d", code, ExitError)
	}
	for _, args := range [][]string{
		{"lookup"},                    // an argument check
		{"version", "extra"},          // cobra.NoArgs
		{"lookup", "22", "--no-such"}, // an unknown flag
		{"no-such-command"},
	} {
		if code := Main(context.Background(), args, strings.NewReader(""), io.Discard, io.Discard); code != ExitUsage {
			t.Errorf("portolan %v exits %d; want %d", args, code, ExitUsage)
		}
	}
}

// TestEveryCommandExitCodes walks the whole command tree: every flag that
// names a file to read exits 2 when the file is missing, and every group
// exits 2 on an unknown subcommand, with a suggestion where one is close.
func TestEveryCommandExitCodes(t *testing.T) {
	t.Setenv("XDG_DATA_HOME", t.TempDir())
	missing := filepath.Join(t.TempDir(), "no-such-file")
	root := NewRoot(&Globals{io: IO{Out: io.Discard, ErrOut: io.Discard}})
	var inputs, groups int
	var walk func(path []string, c *cobra.Command)
	walk = func(path []string, c *cobra.Command) {
		if c.HasSubCommands() && len(path) > 0 {
			groups++
			args := append(slices.Clone(path), "no-such-subcommand")
			if code := Main(context.Background(), args, strings.NewReader(""), io.Discard, io.Discard); code != ExitUsage {
				t.Errorf("portolan %s exits %d; want %d", strings.Join(args, " "), code, ExitUsage)
			}
		}
		c.LocalFlags().VisitAll(func(f *pflag.Flag) {
			if _, ok := f.Annotations[inputFileFlag]; !ok || f.Hidden {
				return
			}
			inputs++
			args := append(slices.Clone(path), "--"+f.Name, missing)
			if f.Name == "exclude-file" {
				args = append(args, "127.0.0.1") // a target, so the exclusions are read
			}
			var stderr strings.Builder
			code := Main(context.Background(), args, strings.NewReader(""), io.Discard, &stderr)
			if code != ExitUsage || !strings.Contains(stderr.String(), missing) {
				t.Errorf("portolan %s exits %d; want %d and the file named\n%s", strings.Join(args, " "), code, ExitUsage, stderr.String())
			}
		})
		for _, sub := range c.Commands() {
			if !sub.Hidden && sub.Name() != "help" {
				walk(append(slices.Clone(path), sub.Name()), sub)
			}
		}
	}
	walk(nil, root)
	// The walk found what it should: -iL and --exclude-file of every
	// command taking targets, forward -c, firewall plan/apply -f, restore -f.
	if inputs < 8 || groups < 1 {
		t.Errorf("walked %d input-file flags and %d groups; the annotations are missing", inputs, groups)
	}
}

// TestInterruptExitCodes sends SIGINT to every command that blocks: a
// command cut short exits 130, as a shell's Ctrl-C does; a daemon or live
// view, which runs until stopped, ends cleanly with 0.
func TestInterruptExitCodes(t *testing.T) {
	// Ports on 127.0.0.77, where no other test or service listens: a port
	// the kernel chose, free again, cannot be taken by a stray process's
	// connection to 127.0.0.1 meanwhile.
	closed, err := net.Listen("tcp4", "127.0.0.77:0")
	if err != nil {
		t.Fatal(err)
	}
	port := strconv.Itoa(closed.Addr().(*net.TCPAddr).Port)
	closed.Close()
	free, err := net.Listen("tcp4", "127.0.0.77:0")
	if err != nil {
		t.Fatal(err)
	}
	relay := free.Addr().String()
	free.Close()
	for _, tc := range []struct {
		args []string
		want int
	}{
		{[]string{"wait", "127.0.0.77:" + port, "--timeout", "5m"}, 130},
		{[]string{"scan", "127.0.0.77", "-p-", "--rate", "50", "--no-store"}, 130},
		{[]string{"scan", "127.0.0.77", "-p-", "--rate", "50"}, 130},
		{[]string{"ls", "--watch"}, 0},
		{[]string{"forward", relay, "127.0.0.77:" + port}, 0},
	} {
		t.Run(strings.Join(tc.args, " "), func(t *testing.T) {
			cmd := portolanCmd(t, context.Background(), tc.args...)
			var stderr strings.Builder
			cmd.Stderr, cmd.Stdout = &stderr, io.Discard
			if err := cmd.Start(); err != nil {
				t.Fatal(err)
			}
			done := make(chan struct{})
			go func() { cmd.Wait(); close(done) }()
			defer func() { cmd.Process.Kill(); <-done }()
			time.Sleep(time.Second) // under way: parsed, set up, working
			cmd.Process.Signal(os.Interrupt)
			select {
			case <-done:
			case <-time.After(30 * time.Second):
				t.Fatalf("still running 30 s after SIGINT\n%s", stderr.String())
			}
			if code := cmd.ProcessState.ExitCode(); code != tc.want {
				t.Errorf("exit %d after SIGINT; want %d\n%s", code, tc.want, stderr.String())
			}
		})
	}
}
