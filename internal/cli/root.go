// Package cli holds portolan's commands: the only package that knows flags,
// terminals and exit codes. Each command lives in its own file with an
// Options struct, a constructor that binds flags into it, and a run function.
package cli

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"strings"

	"github.com/spf13/cobra"
)

// Exit codes, documented in docs/guide.md.
const (
	ExitOK       = 0 // success
	ExitError    = 1 // the operation failed, or (for queries) the answer is "no": port free, bind fails
	ExitUsage    = 2 // bad flags, arguments or input that could not be parsed
	ExitNotFound = 3 // nothing matched (a lookup with no result)
)

// exitError carries an exit code with an error; the error is printed once by Main.
type exitError struct {
	code int
	err  error
}

func (e *exitError) Error() string { return e.err.Error() }
func (e *exitError) Unwrap() error { return e.err }

// usageErr marks err as a usage problem (exit code 2).
func usageErr(err error) error { return &exitError{code: ExitUsage, err: err} }

// withCode attaches an exit code to err.
func withCode(code int, err error) error { return &exitError{code: code, err: err} }

// silentExit ends the command with code and prints nothing more: the command
// has already said what it needed to.
type silentExit int

func (s silentExit) Error() string { return fmt.Sprintf("exit %d", int(s)) }

// IO is the set of streams a command reads and writes.
type IO struct {
	In     io.Reader
	Out    io.Writer
	ErrOut io.Writer
}

// Globals are the flags every command shares.
type Globals struct {
	JSON    bool
	NoColor bool
	Verbose int

	io     IO
	args   []string // the command line, for the record a scan keeps
	logger *slog.Logger
}

// Logger returns a logger writing to stderr at the level chosen by -v.
func (g *Globals) Logger() *slog.Logger {
	if g.logger == nil {
		level := slog.LevelWarn
		switch {
		case g.Verbose >= 2:
			level = slog.LevelDebug
		case g.Verbose == 1:
			level = slog.LevelInfo
		}
		g.logger = slog.New(slog.NewTextHandler(g.io.ErrOut, &slog.HandlerOptions{Level: level}))
	}
	return g.logger
}

// NewRoot builds the command tree. Tests use it to parse arguments without
// running anything.
func NewRoot(g *Globals) *cobra.Command {
	root := &cobra.Command{
		Use:   "portolan",
		Short: "Everything you do with network ports, in one tool",
		Long: `portolan looks up, inspects, scans, forwards, firewalls and watches network ports.

Every command takes --json for machine-readable output and --help for examples.`,
		Example: `  portolan lookup 22
  portolan ports '22,80,8000-8100,U:53' --count
  portolan targets 198.18.0.0/30 --exclude 198.18.0.1`,
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	root.SetIn(g.io.In)
	root.SetOut(g.io.Out)
	root.SetErr(g.io.ErrOut)
	pf := root.PersistentFlags()
	pf.BoolVar(&g.JSON, "json", false, "write JSON to stdout")
	pf.BoolVar(&g.NoColor, "no-color", false, "never colour the output (NO_COLOR in the environment does the same)")
	pf.CountVarP(&g.Verbose, "verbose", "v", "log more to stderr (-vv for debug)")
	root.SetFlagErrorFunc(func(_ *cobra.Command, err error) error { return usageErr(err) })
	root.Version = buildVersion().String() // portolan --version
	root.SetVersionTemplate("portolan {{.Version}}\n")

	for _, add := range commands {
		root.AddCommand(add(g))
	}
	typeArgErrors(root)
	addCompletions(root)
	requireSubcommands(root)
	return root
}

// typeArgErrors makes the errors of every command's argument check usage
// errors (exit 2), so that the exit code never depends on an error's text.
func typeArgErrors(c *cobra.Command) {
	if check := c.Args; check != nil {
		c.Args = func(cmd *cobra.Command, args []string) error {
			if err := check(cmd, args); err != nil {
				return usageErr(err)
			}
			return nil
		}
	}
	for _, sub := range c.Commands() {
		typeArgErrors(sub)
	}
}

// commands lists the constructors of the subcommands; each command file
// registers itself in an init function so adding a command touches one file.
var commands []func(*Globals) *cobra.Command

func register(c func(*Globals) *cobra.Command) { commands = append(commands, c) }

// Main runs portolan with args and returns the process exit code.
func Main(ctx context.Context, args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	out := &countingWriter{w: stdout}
	g := &Globals{io: IO{In: stdin, Out: out, ErrOut: stderr}, args: args}
	root := NewRoot(g)
	root.SetArgs(nmapArgs(args))
	err := root.ExecuteContext(ctx)
	code := report(g, err)
	if code == ExitNotFound && g.JSON && out.n == 0 {
		// A program reading --json gets an empty answer, not nothing.
		io.WriteString(stdout, "[]\n")
	}
	return code
}

// countingWriter counts what a command writes to stdout.
type countingWriter struct {
	w io.Writer
	n int64
}

// Fd is the descriptor of the file it wraps (for terminal checks), or
// an invalid one.
func (c *countingWriter) Fd() uintptr {
	if f, ok := c.w.(*os.File); ok {
		return f.Fd()
	}
	return ^uintptr(0)
}

func (c *countingWriter) Write(p []byte) (int, error) {
	n, err := c.w.Write(p)
	c.n += int64(n)
	return n, err
}

// report prints err once, with a hint where one helps, and returns the exit code.
func report(g *Globals, err error) int {
	if err == nil {
		return ExitOK
	}
	var s silentExit
	if errors.As(err, &s) {
		return int(s)
	}
	code := ExitError
	var ee *exitError
	if errors.As(err, &ee) {
		code = ee.code
	} else if isCobraUsage(err) {
		code = ExitUsage
	}
	fmt.Fprintf(g.io.ErrOut, "portolan: %v\n", err)
	if h := hint(err); h != "" {
		fmt.Fprintf(g.io.ErrOut, "hint: %s\n", h)
	}
	return code
}

// isCobraUsage tells the one usage error cobra gives no type for (an
// unknown command, from its command lookup) apart from failures of a
// command. Flag errors and argument checks are typed (SetFlagErrorFunc,
// typeArgErrors): matching texts such as "invalid argument", which is
// also EINVAL's, made a kernel error exit 2 as if the user had erred.
func isCobraUsage(err error) bool {
	return strings.HasPrefix(err.Error(), "unknown command ")
}

// hint turns well-known failures into the fix a person needs.
func hint(err error) string {
	switch {
	case errors.Is(err, os.ErrPermission):
		return "this needs privileges: run as root, or grant the capability with setcap"
	}
	return ""
}
