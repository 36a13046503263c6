package cli

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"portolan/internal/scanjob"
	"portolan/internal/target"
)

func init() { register(newTargetsCmd) }

// TargetsOptions are the inputs of `portolan targets`.
type TargetsOptions struct {
	Exprs   []string
	Targets TargetFlags
	Count   bool // print only the number of addresses
	Ranges  bool // print the merged ranges instead of every address
}

// TargetFlags are the target-selection flags of every command that takes
// targets (targets, scan): a scan recipe's target selection, bound to
// flags. Bind them with addTargetFlags and turn them into a set with
// parseTargets.
type TargetFlags struct {
	scanjob.TargetSelect // -iL / --input-list files ("-" is standard input), excludes, limits

	// inputMarks holds, for each "-iL FILE", the number of positional
	// arguments seen before it: FILE is the argument at that index.
	inputMarks []int
}

// targetSyntaxHelp explains target expressions; commands that take targets
// include it in their help.
const targetSyntaxHelp = `Targets are one or more expressions per argument or file line, separated by
commas or spaces:
  198.18.0.1  fd00::1                single addresses
  198.18.0.0/24  fd00::/120          CIDR prefixes
  198.18.0.10-198.18.0.20            ranges; the short form 198.18.0.10-20 replaces
  fd00::1-fd00::ff  fd00::1-ff       the last octet (decimal) or group (hex)
  198.18.0-1.1-10  198.18.0.*        nmap octet ranges
  host.example                       hostnames: the first address, IPv4 first
                                     (--all-addrs: every address; -4/-6: one family)
-iL FILE reads expressions from FILE ('-' for standard input; '#' comments);
--exclude and --exclude-file take the same syntax and remove addresses.

Special-purpose ranges are refused unless --include-reserved: this network
(0.0.0.0/8), multicast (224.0.0.0/4, ff00::/8), limited broadcast, future use
(240.0.0.0/4), the unspecified address ::, and the documentation ranges
192.0.2.0/24, 198.51.100.0/24, 203.0.113.0/24, 2001:db8::/32 and 3fff::/20,
which never hold real hosts. Excluding the special part also works.
Loopback, private and the benchmark range 198.18.0.0/15 are ordinary targets.
More than --max-hosts addresses (default 16777216) are refused unless --force.`

func newTargetsCmd(g *Globals) *cobra.Command {
	var opts TargetsOptions
	cmd := &cobra.Command{
		Use:   "targets [EXPR...]",
		Short: "Expand and validate target addresses",
		Long: `Expand and validate targets, as scan takes them: print every address, the
merged ranges (--ranges), or only how many there are (--count).

` + targetSyntaxHelp + `

The documentation prefix 2001:db8::/32 is refused like the others, so
'2001:db8::1-5' needs --include-reserved. Every failure names the expression:
a bad one with its column, a hostname that does not resolve by its name.
Exit status: 0 ok, 1 a hostname or file failed, 2 bad or refused targets,
3 every address was excluded.`,
		Example: `  portolan targets 198.18.0.0/30 --exclude 198.18.0.1
  portolan targets '198.18.0.0/30,fd00::1-5,localhost' --count
  portolan targets '198.18.0.0/30,2001:db8::1-5,example.test' --exclude 198.18.0.1 --include-reserved
  portolan targets -iL hosts.txt --exclude-file skip.txt --ranges
  portolan targets 'fd00::/64' --force --count --json`,
		RunE: func(cmd *cobra.Command, args []string) error {
			exprs, err := opts.Targets.splitArgs(args)
			if err != nil {
				return usageErr(err)
			}
			opts.Exprs = exprs
			return runTargets(cmd.Context(), g, opts)
		},
	}
	f := cmd.Flags()
	addTargetFlags(f, &opts.Targets)
	f.BoolVar(&opts.Count, "count", false, "print only the number of addresses")
	f.BoolVar(&opts.Ranges, "ranges", false, "print the merged ranges, one per line, instead of every address")
	return cmd
}

// addTargetFlags binds the target-selection flags to fs, which must be the
// command's own flag set (cmd.Flags()): -iL FILE relies on it.
func addTargetFlags(fs *pflag.FlagSet, t *TargetFlags) {
	fs.StringArrayVar(&t.InputLists, "input-list", nil, "read targets from `FILE`, one or more per line ('-' for stdin); nmap's -iL FILE works too")
	fs.VarP(&inputListShorthand{fs: fs, t: t}, "iL", "i", "nmap's -iL FILE (the same as --input-list FILE)")
	_ = fs.MarkHidden("iL")
	fs.StringArrayVar(&t.Excludes, "exclude", nil, "leave out these `targets` (same syntax; repeatable)")
	fs.StringArrayVar(&t.ExcludeFiles, "exclude-file", nil, "leave out the targets in `FILE`")
	fs.StringArrayVar(&t.ExcludeFiles, "excludefile", nil, "nmap's --excludefile: the same as --exclude-file")
	_ = fs.MarkHidden("excludefile")
	markFiles(fs, true, "input-list", "iL", "exclude-file", "excludefile")
	fs.BoolVar(&t.IncludeReserved, "include-reserved", false, "allow special-purpose ranges (multicast, documentation, ...)")
	fs.BoolVarP(&t.Only4, "ipv4", "4", false, "IPv4 only: resolve names to IPv4, refuse IPv6 addresses")
	fs.BoolVarP(&t.Only6, "ipv6", "6", false, "IPv6 only: resolve names to IPv6, refuse IPv4 addresses")
	fs.BoolVar(&t.AllAddrs, "all-addrs", false, "take every address a hostname resolves to, not only the first")
	fs.BoolVar(&t.Prefer6, "prefer-ipv6", false, "take a hostname's IPv6 address first")
	fs.Uint64Var(&t.MaxHosts, "max-hosts", target.DefaultMaxAddrs, "refuse more addresses than `N`")
	fs.BoolVar(&t.Force, "force", false, "lift the --max-hosts limit")
}

// inputListShorthand makes nmap's "-iL FILE" work. The flag parser reads
// "-iL" as the shorthand -i with the value "L", and FILE as the next
// positional argument, so Set records how many positional arguments came
// before it; splitArgs then takes that argument as the file.
type inputListShorthand struct {
	fs *pflag.FlagSet
	t  *TargetFlags
}

func (v *inputListShorthand) Set(s string) error {
	switch {
	case s == "L":
		v.t.inputMarks = append(v.t.inputMarks, len(v.fs.Args()))
	case strings.HasPrefix(s, "L") && len(s) > 1: // -iL=FILE or -iLFILE
		v.t.InputLists = append(v.t.InputLists, strings.TrimPrefix(s[1:], "="))
	default:
		return fmt.Errorf("-i%s: use -iL FILE or --input-list FILE", s)
	}
	return nil
}

func (v *inputListShorthand) String() string { return "" }
func (v *inputListShorthand) Type() string   { return "FILE" }

// splitArgs separates the files named by -iL from the target expressions.
func (t *TargetFlags) splitArgs(args []string) ([]string, error) {
	if len(t.inputMarks) == 0 {
		return args, nil
	}
	isFile := map[int]bool{}
	for _, m := range t.inputMarks {
		if m >= len(args) || isFile[m] {
			return nil, errors.New("-iL needs a file name after it")
		}
		isFile[m] = true
		t.InputLists = append(t.InputLists, args[m])
	}
	t.inputMarks = nil
	var exprs []string
	for i, a := range args {
		if !isFile[i] {
			exprs = append(exprs, a)
		}
	}
	return exprs, nil
}

// parseTargets reads the files, resolves and checks the targets, and turns
// refusals into errors that say which flag lifts them. Bad or refused
// targets are usage errors (exit 2); names and files that fail exit 1.
func parseTargets(ctx context.Context, g *Globals, exprs []string, t TargetFlags) (*target.Set, error) {
	if t.MaxHosts == 0 {
		return nil, usageErr(errors.New("--max-hosts must be at least 1 (--force lifts the limit)"))
	}
	if t.Only4 && t.Only6 {
		return nil, usageErr(errors.New("-4 and -6 exclude each other"))
	}
	readAll := func(paths []string, flag string) ([]string, error) {
		var out []string
		for _, p := range paths {
			var lines []string
			var err error
			if p == "-" {
				lines, err = target.ReadList(g.io.In, "stdin")
			} else {
				lines, err = target.ReadFile(p)
			}
			if err != nil {
				return nil, fileErr(targetErr(fmt.Errorf("%s: %w", flag, err)))
			}
			out = append(out, lines...)
		}
		return out, nil
	}
	files, err := readAll(t.InputLists, "-iL")
	if err != nil {
		return nil, err
	}
	exprs = append(append([]string(nil), exprs...), files...)
	if len(exprs) == 0 {
		return nil, usageErr(errors.New("no targets: give expressions or -iL FILE"))
	}
	excl, err := readAll(t.ExcludeFiles, "--exclude-file")
	if err != nil {
		return nil, err
	}
	excl = append(append([]string(nil), t.Excludes...), excl...)
	set, err := target.Parse(ctx, exprs, excl, target.Options{
		AllAddrs:        t.AllAddrs,
		Prefer6:         t.Prefer6,
		Only4:           t.Only4,
		Only6:           t.Only6,
		IncludeReserved: t.IncludeReserved,
		MaxAddrs:        t.MaxHosts,
		Force:           t.Force,
		Logger:          g.Logger(),
	})
	if err != nil {
		return nil, targetErr(err)
	}
	return set, nil
}

// targetErr adds the flag that lifts a refusal and picks the exit code.
func targetErr(err error) error {
	var (
		reserved *target.ReservedError
		limit    *target.LimitError
		parse    *target.ParseError
		family   *target.FamilyError
	)
	switch {
	case errors.As(err, &reserved):
		return usageErr(fmt.Errorf("%w; pass --include-reserved to scan it", err))
	case errors.As(err, &limit):
		return usageErr(fmt.Errorf("%w; raise --max-hosts or pass --force", err))
	case errors.As(err, &parse), errors.As(err, &family), errors.Is(err, target.ErrNoTargets):
		return usageErr(err)
	}
	return err
}

// targetsResult is the JSON form of the answer.
type targetsResult struct {
	Count     json.Number   `json:"count"` // exact, even beyond 64 bits
	Ranges    []targetRange `json:"ranges,omitempty"`
	Addresses []string      `json:"addresses,omitempty"`
}

type targetRange struct {
	Range string      `json:"range"` // compact form: address, prefix or a-b
	First string      `json:"first"`
	Last  string      `json:"last"`
	Count json.Number `json:"count"`
}

func runTargets(ctx context.Context, g *Globals, opts TargetsOptions) error {
	if opts.Count && opts.Ranges {
		return usageErr(errors.New("--count and --ranges exclude each other"))
	}
	set, err := parseTargets(ctx, g, opts.Exprs, opts.Targets)
	if err != nil {
		return err
	}
	if err := writeTargets(ctx, g, opts, set); err != nil {
		return err
	}
	if set.Len() == 0 {
		return withCode(ExitNotFound, errors.New("no addresses left after excludes"))
	}
	return nil
}

func writeTargets(ctx context.Context, g *Globals, opts TargetsOptions, set *target.Set) error {
	if g.JSON {
		res := targetsResult{Count: json.Number(set.BigLen().String())}
		if !opts.Count {
			for _, r := range set.Ranges() {
				res.Ranges = append(res.Ranges, targetRange{Range: r.String(), First: r.First.String(), Last: r.Last.String(), Count: json.Number(r.BigLen().String())})
			}
		}
		if !opts.Count && !opts.Ranges {
			res.Addresses = make([]string, 0, min(set.Len(), 1<<16))
			err := eachAddr(ctx, set, func(s string) error {
				res.Addresses = append(res.Addresses, s)
				return nil
			})
			if err != nil {
				return err
			}
		}
		return writeJSON(g, res)
	}
	w := bufio.NewWriter(g.io.Out)
	switch {
	case opts.Count:
		fmt.Fprintln(w, set.BigLen())
	case opts.Ranges:
		for _, r := range set.Ranges() {
			fmt.Fprintln(w, r)
		}
	default:
		err := eachAddr(ctx, set, func(s string) error {
			_, err := fmt.Fprintln(w, s)
			return err
		})
		if err != nil {
			return err
		}
	}
	return w.Flush()
}

// eachAddr calls fn with every address of set in order, stopping when ctx
// is cancelled (a forced /64 never ends otherwise).
func eachAddr(ctx context.Context, set *target.Set, fn func(string) error) error {
	for _, r := range set.Ranges() {
		for a, n := r.First, 0; ; a, n = a.Next(), n+1 {
			if n%4096 == 0 && ctx.Err() != nil {
				return ctx.Err()
			}
			if err := fn(a.String()); err != nil {
				return err
			}
			if a == r.Last {
				break
			}
		}
	}
	return nil
}
