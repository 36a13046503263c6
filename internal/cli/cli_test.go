package cli

import (
	"context"
	"fmt"
	"io"
	"net"
	"os"
	"strconv"
	"strings"
	"syscall"
	"testing"

	"github.com/rogpeppe/go-internal/testscript"
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
