package cli

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net"
	"net/netip"
	"os"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"portolan/internal/output"
	"portolan/internal/portspec"
	"portolan/internal/rawnet"
	"portolan/internal/scan"
	"portolan/internal/scanjob"
	"portolan/internal/store"
	"portolan/internal/target"
)

func init() { register(newScanCmd) }

// ExitInterrupted is the exit code of a scan stopped by Ctrl-C or SIGTERM
// (128+SIGINT, as shells report it); its partial results are saved.
const ExitInterrupted = 130

// ScanOptions are the flags of "portolan scan". Those that say what the
// scan does become its recipe (recipe, scanjob.Recipe), which the store
// keeps so that --resume rebuilds exactly the same space; the rest are
// this invocation's: where and how it writes.
type ScanOptions struct {
	Exprs        []string
	Targets      TargetFlags
	Ports        string
	TopPorts     int
	ExcludePorts string
	ScanType     string
	Fallback     bool

	Rate    float64
	MinRate float64
	// Where probes leave from: -e, -S, --source-port.
	Iface          string
	Source         string
	SourcePort     int
	Window         int
	Retries        int
	MinTimeout     time.Duration
	MaxTimeout     time.Duration
	InitialTimeout time.Duration
	HostTimeout    time.Duration
	NoHostDown     bool
	Banner         bool
	Seed           uint64
	Shard          string
	// ScanID names a scan whose shards many processes run (--scan-id).
	ScanID string

	ping string // -Pn arrives as -P with the value "n"
	// The rest is this invocation's, not the recipe's.
	Resume string // a scan id, or a named scan (with --shard)
	Format string
	Output string
	// nmap's output options (-oX, -oN, -oG FILE, -oA BASE), rewritten to
	// these long flags before parsing (nmapArgs).
	OutXML     string
	OutNormal  string
	OutGrep    string
	OutAll     string
	StatsEvery time.Duration
	DB         DBFlags
	NoStore    bool
	// While the database is unreachable: results held in memory, how long
	// the end of the scan waits for it, and where the rest is spilled.
	DBBuffer int
	DBRetry  time.Duration
	SpillDir string
	DryRun   bool
	Open     bool

	// nmap's names for the options above (applied in nmapOptions).
	fast       bool
	maxRetries int
	timing     string
	scanDelay  time.Duration
	noDNS      bool
}

func newScanCmd(g *Globals) *cobra.Command {
	opts := &ScanOptions{}
	cmd := &cobra.Command{
		Use:   "scan [flags] TARGET...",
		Short: "Scan hosts and networks for open ports (SYN, TCP connect or UDP)",
		Long: `scan probes every (address, port) pair of the targets in a seeded random order, at a
capped rate, with timeouts derived from each host's measured round-trip time and retries only
for probes that got no answer. Ports end up open, closed or filtered, each with the reason.

Targets are addresses, prefixes, ranges (198.18.0.10-20) and host names; special-purpose ranges
(multicast, documentation, ...) are refused unless --include-reserved. Ports default to the
curated top 1000 TCP ports.

Every scan is stored in the embedded database ($XDG_DATA_HOME/portolan/portolan.db, --db to
choose another, --no-store to skip): "portolan history" lists scans, "portolan show ID"
re-renders one, and --resume ID continues one that was interrupted or whose process died.

Formats: table (default on a terminal), json, jsonl (default when piped; streamed), csv,
grepable (nmap -oG), list (open host:port), xml (nmap -oX, valid against nmap's DTD).
Exit codes: 0 done, 1 error, 2 bad flags or targets (nothing is sent), 130 interrupted.`,
		Example: `  portolan scan 127.0.0.1                          # top 1000 TCP ports
  portolan scan ::1 -p-                            # all 65535 ports
  portolan scan 198.18.0.0/24 -p 22,80,443 --rate 5000 -o out.xml
  portolan scan -iL hosts.txt --top-ports 100 --format jsonl > results.jsonl
  portolan scan 198.18.0.0/16 -p 443 --shard 2/8 --seed 42   # one slice of a fleet scan
  portolan scan 10.0.0.0/8 -p 443 --scan-id weekly-443 --shard 3/16 --db postgres://scanner@db/portolan
                                                   # shard 3 of a named scan; show weekly-443 merges them
  portolan scan 127.0.0.1 -p- --banner             # banners and service guesses
  portolan scan --resume 17                        # continue an interrupted scan
  portolan scan 198.18.0.0/16 --top-ports 150 --dry-run      # the plan, nothing sent`,
		RunE: func(cmd *cobra.Command, args []string) error {
			exprs, err := opts.Targets.splitArgs(args)
			if err != nil {
				return usageErr(err)
			}
			opts.Exprs = exprs
			if err := opts.checkOutputs(); err != nil {
				return usageErr(err)
			}
			if cmd.Flags().Changed("top-ports") && opts.TopPorts <= 0 {
				return usageErr(fmt.Errorf("--top-ports %d: want 1 or more (without it, the top 1000)", opts.TopPorts))
			}
			if err := opts.nmapOptions(cmd.Flags()); err != nil {
				return usageErr(err)
			}
			if opts.ping != "" && opts.ping != "n" {
				return usageErr(fmt.Errorf("-P%s: only -Pn (treat every host as up) is supported", opts.ping))
			}
			if opts.ping == "n" {
				opts.NoHostDown = true
			}
			if opts.Shard, err = shardFromEnv(opts.Shard); err != nil {
				return usageErr(fmt.Errorf("--shard: %w", err))
			}
			if opts.ScanID != "" {
				if err := store.ValidName(opts.ScanID); err != nil {
					return usageErr(fmt.Errorf("--scan-id: %w", err))
				}
				if opts.NoStore {
					return usageErr(errors.New("--scan-id names a scan in the store, whose shards meet there: drop --no-store"))
				}
			}
			if opts.Resume != "" {
				if len(exprs) > 0 || len(opts.Targets.InputLists) > 0 {
					return usageErr(errors.New("--resume takes no targets: they come from the stored scan"))
				}
				var fixed []string
				cmd.LocalFlags().VisitAll(func(f *pflag.Flag) {
					if f.Changed && !resumeFlags[f.Name] {
						fixed = append(fixed, "--"+f.Name)
					}
				})
				if len(fixed) > 0 {
					return usageErr(fmt.Errorf("--resume continues the stored scan as it started; %s cannot change it (only --format, -o, --stats-every and --db go with --resume)", strings.Join(fixed, ", ")))
				}
				return runScanResume(cmd.Context(), g, opts)
			}
			return runScan(cmd.Context(), g, opts)
		},
	}
	f := cmd.Flags()
	addTargetFlags(f, &opts.Targets)
	f.StringVarP(&opts.Ports, "ports", "p", "", "ports to scan: `SPEC` such as 22,80,8000-8100,T:ssh; -p- is all 65535")
	f.IntVar(&opts.TopPorts, "top-ports", 0, "scan the `N` most likely open ports of our curated list (TCP: tiers of 100 and 1000; UDP with -sU: 100; beyond a list the other ports follow in ascending order; default 1000 without -p)")
	f.StringVar(&opts.ExcludePorts, "exclude-ports", "", "leave out these ports (`SPEC`)")
	f.StringVarP(&opts.ScanType, "scan-type", "s", "", "scan `TYPE`: S (SYN, nmap's -sS; needs CAP_NET_RAW), T (TCP connect, nmap's -sT), U (UDP with protocol payloads, nmap's -sU; no privileges needed), n (host discovery only, nmap's -sn: one result per host, port 0) (default: S when privileged, else T)")
	f.BoolVar(&opts.Fallback, "fallback", false, "scan with TCP connect when -sS lacks CAP_NET_RAW, instead of failing")
	f.Float64Var(&opts.Rate, "rate", 0, "at most `N` probes per second, retries included (0: no cap beyond the window); nmap's --max-rate N works too")
	f.Float64Var(&opts.Rate, "max-rate", 0, "nmap's --max-rate: the same as --rate")
	_ = f.MarkHidden("max-rate")
	f.Float64Var(&opts.MinRate, "min-rate", 0, "send at least `N` probes per second (nmap's --min-rate; at most --rate): when the scan falls under it, the in-flight window and a new host's slow start give way, and -sS never lowers its send rate below it; unlike nmap, host discovery still waits, -sU still paces hosts that rate-limit their ICMP errors, and the open-files limit holds")
	f.StringVarP(&opts.Iface, "interface", "e", "", "send through interface `IFACE` (nmap's -e): connect and UDP sockets are bound to it (SO_BINDTODEVICE: needs CAP_NET_RAW on kernels before 5.7), -sS takes the route through it; host discovery then sends no ICMP echo")
	f.StringVarP(&opts.Source, "source-ip", "S", "", "send from address `ADDR` (nmap's -S): connect and UDP sockets are bound to it, so it must be this host's; -sS writes it in the SYNs whatever it is (answers come back only if it routes here); targets of the other family are refused; host discovery then sends no ICMP echo")
	f.IntVarP(&opts.SourcePort, "source-port", "g", 0, "send every probe from source `PORT` (nmap's --source-port and -g): connect sockets all bind it with SO_REUSEADDR (Linux shares a port so when no socket listens on it; connections differ by destination), so it fails if a listener holds PORT; -sS sends every SYN from it (not from a block of 1,024) and keeps this host's kernel from resetting on it meanwhile; -sU uses one socket per family; below 1024 needs CAP_NET_BIND_SERVICE except with -sS")
	f.BoolVarP(&opts.fast, "fast", "F", false, "the top 100 ports (nmap's -F: --top-ports 100)")
	f.IntVar(&opts.maxRetries, "max-retries", 0, "nmap's --max-retries `N`: at most N retries, 0 none (the same as --retries, whose 0 is the default)")
	f.StringVarP(&opts.timing, "timing", "T", "", "nmap's timing template `N`: -T0..5 (paranoid, sneaky, polite, normal, aggressive, insane): rate cap, timeouts and retries as nmap's; explicit flags win")
	f.DurationVar(&opts.scanDelay, "scan-delay", 0, "wait `D` between probes (nmap's --scan-delay, here a rate cap of 1/D)")
	f.BoolVarP(&opts.noDNS, "no-dns", "n", false, "nmap's -n: accepted; portolan never does reverse DNS lookups (names given as targets are still resolved)")
	f.IntVar(&opts.Window, "window", 0, "at most `N` probes in flight (0: the engine's default, within the open-files limit)")
	f.IntVar(&opts.Retries, "retries", 0, "send an unanswered probe again up to `N` times (0: the default, -1: never)")
	f.DurationVar(&opts.MinTimeout, "min-timeout", 0, "shortest wait for an answer, whatever the RTT says (0: default)")
	f.DurationVar(&opts.MaxTimeout, "max-timeout", 0, "longest wait for an answer (0: default)")
	f.DurationVar(&opts.InitialTimeout, "initial-timeout", 0, "wait before a host's RTT is known (0: default)")
	f.DurationVar(&opts.HostTimeout, "host-timeout", 0, "give up on a host `D` after its first probe, as nmap's --host-timeout: its ports not probed by then are reported filtered (host-timeout) (0: no limit)")
	f.BoolVar(&opts.NoHostDown, "no-host-down", false, "no host discovery: probe every port even of hosts that answer nothing (nmap's -Pn)")
	f.StringVarP(&opts.ping, "ping", "P", "", "nmap's -Pn: the same as --no-host-down")
	_ = f.MarkHidden("ping")
	f.BoolVar(&opts.Banner, "banner", false, "read a banner from every open port and guess the service")
	f.Uint64Var(&opts.Seed, "seed", 0, "order the probes with this `N` (0: random; stored, so a resume repeats it)")
	f.StringVar(&opts.Shard, "shard", "", "scan only slice `I/N` of the permuted space (the N shards of one seed cover it exactly); I may name an environment variable with a 0-based index: --shard JOB_COMPLETION_INDEX/16 in a Kubernetes Indexed Job")
	f.StringVar(&opts.Resume, "resume", "", "continue the stored scan `ID` from its last checkpoint; or shard --shard I/N of the named scan NAME[@RUN], on any machine, once its process is gone")
	f.StringVar(&opts.ScanID, "scan-id", "", "name the scan: processes given the same `NAME` and --shard I/N each run one shard of it, into one database (--db postgres://...); show NAME merges them")
	f.StringVar(&opts.Format, "format", "", "output `FORMAT`: table, json, jsonl, csv, grepable, list, xml (default: table on a terminal, jsonl otherwise; from -o's extension)")
	f.StringVarP(&opts.Output, "output", "o", "", "write the results to `FILE` instead of stdout (/dev/stdout, /dev/null and pipes work)")
	markFiles(f, false, "output")
	f.StringVar(&opts.OutXML, "output-xml", "", "also write nmap XML to `FILE` (nmap's -oX FILE, which works too)")
	f.StringVar(&opts.OutNormal, "output-normal", "", "also write the table to `FILE` (nmap's -oN FILE, which works too)")
	f.StringVar(&opts.OutGrep, "output-grepable", "", "also write grepable lines to `FILE` (nmap's -oG FILE, which works too)")
	f.StringVar(&opts.OutAll, "output-all", "", "also write BASE.xml, BASE.nmap and BASE.gnmap (nmap's -oA `BASE`, which works too)")
	f.DurationVar(&opts.StatsEvery, "stats-every", 0, "write progress as NDJSON to stderr every `D` (e.g. 5s)")
	addDBFlags(cmd, &opts.DB)
	f.BoolVar(&opts.NoStore, "no-store", false, "do not record the scan in the database")
	f.IntVar(&opts.DBBuffer, "db-buffer", 0, "while the database is unreachable, hold up to `N` results in memory, then spill them to a file (0: 200000)")
	f.DurationVar(&opts.DBRetry, "db-retry", 0, "at the end of the scan, wait up to `D` for an unreachable database before spilling what it lacks (0: 30s)")
	f.StringVar(&opts.SpillDir, "spill-dir", "", "write spill files in `DIR` (default $XDG_DATA_HOME/portolan/spill); portolan store load-spill loads them")
	f.BoolVar(&opts.Open, "open", false, "show only open ports, and only hosts with one (nmap's --open); the store keeps every port")
	f.BoolVar(&opts.DryRun, "dry-run", false, "print the plan (probes, hosts, duration at --rate, the first probes in order) and send nothing")
	return cmd
}

// shardFromEnv resolves --shard VAR/N, where VAR names an environment
// variable holding a 0-based index, as orchestrators set it (Kubernetes'
// JOB_COMPLETION_INDEX in an Indexed Job, AWS Batch's
// AWS_BATCH_JOB_ARRAY_INDEX), into "I/N" with I = VAR+1; a container image
// without a shell cannot add the 1. Other values are returned as given.
func shardFromEnv(shard string) (string, error) {
	name, n, ok := strings.Cut(shard, "/")
	if !ok || name == "" || !isEnvName(name) {
		return shard, nil
	}
	v, set := os.LookupEnv(name)
	if !set {
		return "", fmt.Errorf("%s: the environment variable %s is not set (it holds the 0-based index of this shard)", shard, name)
	}
	i, err := strconv.ParseUint(strings.TrimSpace(v), 10, 63)
	if err != nil {
		return "", fmt.Errorf("%s: %s=%q is not a 0-based index", shard, name, v)
	}
	return strconv.FormatUint(i+1, 10) + "/" + n, nil
}

// isEnvName reports whether s looks like an environment variable's name:
// capitals, digits and underscores, not starting with a digit.
func isEnvName(s string) bool {
	for i, r := range s {
		if !(r >= 'A' && r <= 'Z' || r == '_' || i > 0 && r >= '0' && r <= '9') {
			return false
		}
	}
	return true
}

// resumeFlags are the flags that go with --resume: where and how this run
// writes. The rest of the recipe is the stored scan's, so that the resumed
// positions mean the same probes.
var resumeFlags = map[string]bool{"resume": true, "shard": true, "db-buffer": true, "db-retry": true, "spill-dir": true, "format": true, "output": true, "stats-every": true, "db": true, "open": true,
	"output-xml": true, "output-normal": true, "output-grepable": true, "output-all": true}

// nmapOutputFlags are nmap's output options. pflag would read "-oX" as -o
// with the value "X", and the file after it as a target (resolved through
// DNS): nmapArgs turns them into long flags first.
var nmapOutputFlags = map[string]string{
	"-oX": "--output-xml", "-oN": "--output-normal", "-oG": "--output-grepable", "-oA": "--output-all",
}

// nmapArgs rewrites nmap's -oX, -oN, -oG and -oA (as whole arguments,
// before any "--") into portolan's long flags.
func nmapArgs(args []string) []string {
	var out []string
	for i, a := range args {
		if a == "--" {
			return append(out, args[i:]...)
		}
		if long, ok := nmapOutputFlags[a]; ok {
			a = long
		}
		out = append(out, a)
	}
	return out
}

// checkOutputs refuses an output value that is a piece of a flag: "-o X"
// is nmap's -oX cut in two (-oS and others portolan lacks), and a value
// starting with "-" is the next flag taken as a file name.
func (opts *ScanOptions) checkOutputs() error {
	if len(opts.Output) == 1 && strings.Contains("XNGASxngas", opts.Output) {
		return fmt.Errorf("-o %s: looks like nmap's -o%s; portolan takes -oX, -oN, -oG FILE and -oA BASE, and -o FILE (a one-letter file name: ./%s)", opts.Output, opts.Output, opts.Output)
	}
	for _, o := range []struct{ flag, v string }{
		{"-o", opts.Output}, {"-oX", opts.OutXML}, {"-oN", opts.OutNormal}, {"-oG", opts.OutGrep}, {"-oA", opts.OutAll},
	} {
		if strings.HasPrefix(o.v, "-") && o.v != "-" {
			return fmt.Errorf("%s %s: a flag where a file name should be (a file named so: ./%s)", o.flag, o.v, o.v)
		}
	}
	if opts.OutAll == "-" {
		return errors.New("-oA -: three files need a base name, not stdout")
	}
	return nil
}

// scanPlan is the parsed, checked form of a scan's recipe: everything is
// known before any packet is sent.
type scanPlan struct {
	space    *target.Space
	hosts    *target.Set
	ports    *portspec.Set
	portText string
	shard    scan.Shard
	// proberName names the prober (scan.ProberByName); it is stored with
	// the scan, and the XML's scan type.
	proberName string
}

// recipe turns the flags into the scan's recipe, deciding the prober:
// nmap's default is SYN where raw sockets are allowed.
func (opts *ScanOptions) recipe(g *Globals) (scanjob.Recipe, error) {
	r := scanjob.Recipe{
		Targets: opts.Exprs, Select: opts.Targets.TargetSelect,
		Ports: opts.Ports, TopPorts: opts.TopPorts, ExcludePorts: opts.ExcludePorts,
		Prober: "connect", Rate: opts.Rate, MinRate: opts.MinRate, Window: opts.Window, Retries: opts.Retries,
		MinTimeout: opts.MinTimeout, MaxTimeout: opts.MaxTimeout, InitialTimeout: opts.InitialTimeout, HostTimeout: opts.HostTimeout,
		AssumeUp: opts.NoHostDown, Banner: opts.Banner, Seed: opts.Seed, Shard: opts.Shard, Name: opts.ScanID,
	}
	switch strings.ToLower(opts.ScanType) {
	case "":
		if rawnet.Allowed() {
			r.Prober = "syn"
		}
	case "t", "connect":
	case "s", "syn":
		r.Prober = "syn"
		if !rawnet.Allowed() {
			if !opts.Fallback {
				return r, errNeedsRaw()
			}
			fmt.Fprintln(g.io.ErrOut, "portolan: -sS needs CAP_NET_RAW; --fallback: scanning with TCP connect (-sT) instead")
			r.Prober = "connect"
		}
	case "n":
		if opts.Ports != "" || opts.TopPorts != 0 || opts.ExcludePorts != "" {
			return r, usageErr(errors.New("-sn is host discovery only: it scans no ports, so -p, --top-ports and --exclude-ports do not go with it"))
		}
		if opts.NoHostDown {
			return r, usageErr(errors.New("-sn -Pn: discovery only, and no discovery: nothing to do"))
		}
		r.DiscoveryOnly = true
		if rawnet.Allowed() { // raw discovery probes: SYN, ACK 80, ICMP timestamp
			r.Prober = "syn"
		}
	case "u", "udp":
		r.Prober = "udp"
	default:
		return r, usageErr(fmt.Errorf("-s%s: unknown scan type (want S for SYN, T for connect, U for UDP, or n for host discovery only)", opts.ScanType))
	}
	if opts.Ports != "" && opts.TopPorts != 0 {
		return r, usageErr(errors.New("-p and --top-ports exclude each other"))
	}
	var err error
	if r.Local, err = opts.local(r.Prober); err != nil {
		return r, err
	}
	if err := r.Check(); err != nil {
		return r, usageErr(err)
	}
	return r, nil
}

// local checks -e, -S and --source-port and returns them for prober.
// Sockets bound to them are tried at once (not for a SYN scan, whose
// packets carry any source address), so that an interface that does not
// exist, an address not of this host or a port a listener holds are bad
// input, refused before anything is sent or stored.
func (opts *ScanOptions) local(prober string) (scan.Local, error) {
	l := scan.Local{Iface: opts.Iface}
	if opts.Source != "" {
		a, err := netip.ParseAddr(opts.Source)
		if err != nil {
			return l, usageErr(fmt.Errorf("-S %s: not an IP address", opts.Source))
		}
		l.Addr = a.Unmap()
	}
	if opts.SourcePort < 0 || opts.SourcePort > 65535 {
		return l, usageErr(fmt.Errorf("--source-port %d: want 1-65535", opts.SourcePort))
	}
	l.Port = uint16(opts.SourcePort)
	if l.Iface != "" {
		if _, err := net.InterfaceByName(l.Iface); err != nil {
			return l, usageErr(fmt.Errorf("-e %s: no such interface", l.Iface))
		}
	}
	if l.IsZero() || prober == "syn" {
		return l, nil
	}
	proto := portspec.TCP
	if prober == "udp" {
		proto = portspec.UDP
	}
	if err := l.Check(proto); err != nil {
		if errors.Is(err, scan.ErrBindDevice) {
			bin, _ := os.Executable()
			return l, fmt.Errorf("-e %s: %w: run as root or setcap cap_net_raw+ep %s", l.Iface, err, cmp.Or(bin, "portolan"))
		}
		return l, usageErr(err)
	}
	return l, nil
}

// portFlags name the flags of a scanjob.PortError's parts.
var portFlags = map[string]string{"ports": "-p", "top-ports": "--top-ports", "exclude-ports": "--exclude-ports"}

// plan resolves a recipe's targets and ports. Every error here is reported
// before a single probe goes out.
func plan(ctx context.Context, g *Globals, r scanjob.Recipe) (*scanPlan, error) {
	p := &scanPlan{proberName: r.Prober, portText: r.PortText()}
	var err error
	if r.Shard != "" {
		if p.shard, err = scan.ParseShard(r.Shard); err != nil {
			return nil, usageErr(fmt.Errorf("--shard: %w", err))
		}
	}
	if p.ports, err = r.PortSet(portParser()); err != nil {
		var pe *scanjob.PortError
		if errors.As(err, &pe) {
			return nil, usageErr(fmt.Errorf("%s: %w", portFlags[pe.Part], pe.Err))
		}
		return nil, err
	}
	if p.hosts, err = parseTargets(ctx, g, r.Targets, TargetFlags{TargetSelect: r.Select}); err != nil {
		return nil, err
	}
	if p.space, err = target.NewSpace(p.hosts, p.ports); err != nil {
		return nil, usageErr(err)
	}
	if src := r.Local.Addr; src.IsValid() {
		for _, rg := range p.hosts.Ranges() {
			if rg.First.Is4() != src.Is4() {
				return nil, usageErr(fmt.Errorf("-S %s: the target %s is of the other address family (scan IPv4 and IPv6 targets in separate runs, or give -4/-6)", src, rg.First))
			}
		}
	}
	return p, nil
}

type timingTemplate struct {
	name                string
	delay               time.Duration
	initial, min, maxTO time.Duration
	retries             int
}

// synReport says on stderr what a SYN scan found doubtful: hosts that
// answer every port, packets lost or forged, an incomplete answer.
func synReport(g *Globals, sum scan.Summary) {
	raw := sum.Raw
	if raw == nil {
		return
	}
	if n := len(raw.Tarpits); n > 0 {
		addrs := make([]string, n)
		for i, a := range raw.Tarpits {
			addrs[i] = a.String()
		}
		fmt.Fprintf(g.io.ErrOut, "%s answered random canary ports too (a tarpit or a middlebox answers every port): %s; their answers are reported filtered (%s)\n",
			plural(n, "host"), strings.Join(addrs, ", "), scan.ReasonTarpit)
	}
	if raw.Drops > 0 || raw.Forged > 0 || sum.Completeness < 0.999 {
		fmt.Fprintf(g.io.ErrOut, "syn scan: %d packets dropped by this machine's kernel (send rate lowered to %.0f/s at worst), %d forged replies ignored; estimated completeness %.2f%%\n",
			raw.Drops, raw.MinRate, raw.Forged, 100*sum.Completeness)
	}
	g.Logger().Debug("syn scan", "rst_guard", raw.RSTGuard, "rate", raw.Rate, "min_rate", raw.MinRate, "drops", raw.Drops)
}

// errNeedsRaw is -sS without CAP_NET_RAW: the fix, and the way around it.
func errNeedsRaw() error {
	bin, err := os.Executable()
	if err != nil {
		bin = "portolan"
	}
	return fmt.Errorf("-sS needs CAP_NET_RAW: run as root or setcap cap_net_raw+ep %s (cap_net_raw,cap_net_admin+ep also keeps the kernel from resetting replies); or add --fallback to scan with TCP connect", bin)
}

// timingTemplates are nmap's -T0..5, as nmap's documentation gives them:
// the delay between probes (here a rate cap), the timeouts and retries.
var timingTemplates = []timingTemplate{
	{"paranoid", 5 * time.Minute, 5 * time.Minute, 100 * time.Millisecond, 10 * time.Second, 10},
	{"sneaky", 15 * time.Second, 15 * time.Second, 100 * time.Millisecond, 10 * time.Second, 10},
	{"polite", 400 * time.Millisecond, time.Second, 100 * time.Millisecond, 10 * time.Second, 10},
	{"normal", 0, 0, 0, 0, 0}, // portolan's defaults
	{"aggressive", 0, 500 * time.Millisecond, 100 * time.Millisecond, 1250 * time.Millisecond, 6},
	{"insane", 0, 250 * time.Millisecond, 50 * time.Millisecond, 300 * time.Millisecond, 2},
}

// nmapOptions applies nmap's spellings (-F, --max-retries, -T, --scan-delay)
// to the options they stand for. Options given explicitly win over a -T
// template, as in nmap.
func (opts *ScanOptions) nmapOptions(f *pflag.FlagSet) error {
	if opts.fast {
		if opts.Ports != "" || f.Changed("top-ports") {
			return errors.New("-F is --top-ports 100: it excludes -p and --top-ports")
		}
		opts.TopPorts = 100
	}
	if f.Changed("max-retries") {
		if f.Changed("retries") {
			return errors.New("--max-retries and --retries are one option: give one")
		}
		switch {
		case opts.maxRetries < 0:
			return fmt.Errorf("--max-retries %d: want 0 or more", opts.maxRetries)
		case opts.maxRetries == 0:
			opts.Retries = -1 // --retries' "none"
		default:
			opts.Retries = opts.maxRetries
		}
	}
	if opts.timing != "" {
		i := slices.IndexFunc(timingTemplates, func(t timingTemplate) bool { return t.name == strings.ToLower(opts.timing) })
		if n, err := strconv.Atoi(opts.timing); err == nil && n >= 0 && n < len(timingTemplates) {
			i = n
		}
		if i < 0 {
			return fmt.Errorf("-T%s: want 0-5 or paranoid, sneaky, polite, normal, aggressive, insane", opts.timing)
		}
		t := timingTemplates[i]
		if t.delay > 0 && !f.Changed("rate") && !f.Changed("max-rate") && !f.Changed("scan-delay") {
			opts.Rate = 1 / t.delay.Seconds()
		}
		if !f.Changed("initial-timeout") {
			opts.InitialTimeout = t.initial
		}
		if !f.Changed("min-timeout") {
			opts.MinTimeout = t.min
		}
		if !f.Changed("max-timeout") {
			opts.MaxTimeout = t.maxTO
		}
		if t.retries > 0 && !f.Changed("retries") && !f.Changed("max-retries") {
			opts.Retries = t.retries
		}
	}
	if opts.scanDelay < 0 {
		return fmt.Errorf("--scan-delay %s: want 0 or more", opts.scanDelay)
	}
	if opts.scanDelay > 0 {
		if r := 1 / opts.scanDelay.Seconds(); opts.Rate == 0 || r < opts.Rate {
			opts.Rate = r
		}
	}
	return nil
}

// targetsText is the targets as the user gave them, -iL files included.
func targetsText(r scanjob.Recipe) string {
	parts := slices.Clone(r.Targets)
	for _, f := range r.Select.InputLists {
		parts = append(parts, "-iL "+f)
	}
	return strings.Join(parts, " ")
}

// format picks the output format: --format, then -o's extension, then
// table on a terminal and JSON Lines elsewhere.
func (opts *ScanOptions) format(g *Globals) (output.ScanFormat, error) {
	if opts.Format == "" && !g.JSON && opts.Output == "" && !output.IsTerminal(g.io.Out) {
		return output.FormatJSONL, nil
	}
	return outputFormat(g, opts.Format, opts.Output)
}

func runScan(ctx context.Context, g *Globals, opts *ScanOptions) error {
	if opts.Rate < 0 || opts.Window < 0 || opts.MinRate < 0 {
		return usageErr(errors.New("--rate, --min-rate and --window must not be negative"))
	}
	if opts.Rate > 0 && opts.MinRate > opts.Rate {
		return usageErr(fmt.Errorf("--min-rate %g is above --rate (--max-rate) %g", opts.MinRate, opts.Rate))
	}
	if opts.MinTimeout < 0 || opts.MaxTimeout < 0 || opts.InitialTimeout < 0 || opts.HostTimeout < 0 {
		return usageErr(errors.New("--min-timeout, --max-timeout, --initial-timeout and --host-timeout must not be negative"))
	}
	if opts.MaxTimeout > 0 && opts.MinTimeout > opts.MaxTimeout {
		return usageErr(fmt.Errorf("--min-timeout %s is longer than --max-timeout %s", opts.MinTimeout, opts.MaxTimeout))
	}
	format, err := opts.format(g)
	if err != nil {
		return err
	}
	r, err := opts.recipe(g)
	if err != nil {
		return err
	}
	return runRecipe(ctx, g, opts, r, format)
}

// runRecipe starts a new scan of recipe r; opts are this invocation's
// outputs and store.
func runRecipe(ctx context.Context, g *Globals, opts *ScanOptions, r scanjob.Recipe, format output.ScanFormat) error {
	p, err := plan(ctx, g, r)
	if err != nil {
		return err
	}
	// A shard of a named scan without a seed takes its run's (CreateShard).
	if r.Seed == 0 && (r.Name == "" || opts.DryRun) {
		r.Seed = scan.NewSeed()
	}
	r.Names = p.hosts.Names()
	if opts.DryRun {
		return runDryScan(ctx, g, r, p)
	}
	warnLongScan(g, r, p)

	run := &scanRun{g: g, opts: opts, recipe: r, plan: p, format: format}
	// The output files are opened before the scan is recorded, so a bad -o
	// leaves no scan "running" in the history.
	out, err := run.openOutputs()
	if err != nil {
		return err
	}
	defer func() { out.close() }()
	if !opts.NoStore {
		recipe, err := r.Encode()
		if err != nil {
			return err
		}
		si := store.ScanInfo{
			Started: time.Now(), Status: store.Running, Command: "portolan " + strings.Join(g.args, " "),
			Version: Version, Targets: targetsText(r), Ports: p.portText, PortSet: p.ports,
			Prober: p.proberName, Seed: r.Seed, ShardIndex: int(p.shard.Index), ShardCount: int(p.shard.Count),
			Rate: int(r.Rate), Hosts: p.space.Hosts(), Space: p.space.Size(), Options: recipe,
		}
		if r.Name == "" {
			// A plain scan does not wait for its database: it is recorded
			// while it runs (a shard needs its run's seed first). Bad
			// input still stops it before anything is sent.
			if run.leaseTTL, err = leaseTTL(); err != nil {
				return err
			}
			run.start = store.StartScan(ctx, func(ctx context.Context) (*store.Store, error) { return opts.DB.open(ctx, true) }, si)
			defer func() {
				if db, _, err := run.start.Wait(); err == nil {
					db.Close()
				}
			}()
			return run.execute(ctx, out, 0)
		}
		db, err := opts.DB.open(ctx, true)
		if err != nil {
			return err
		}
		defer db.Close()
		si.Name = r.Name
		started := si
		if si, err = db.CreateShard(ctx, si); errors.Is(err, store.ErrShardStarted) {
			// The same shard command again (an orchestrator retrying
			// a dead pod) continues where the dead one stopped.
			sh, err := db.ShardByIndex(ctx, r.Name, 0, started.ShardIndex)
			if err != nil {
				return err
			}
			out.close()
			out = nil
			opts.Resume, opts.Shard = strconv.FormatInt(sh.ID, 10), ""
			return runScanResume(ctx, g, opts)
		}
		if err != nil {
			return err
		}
		run.recipe.Seed = si.Seed
		fmt.Fprintf(g.io.ErrOut, "scan %s@%d: shard %s is scan %d\n", si.Name, si.Run, shardOf(si), si.ID)
		run.db, run.info = db, si
	}
	return run.execute(ctx, out, 0)
}

// shardOf is a stored scan's shard as --shard takes it: "I/N", "1/1".
func shardOf(si store.ScanInfo) string {
	if si.ShardCount == 0 {
		return "1/1"
	}
	return fmt.Sprintf("%d/%d", si.ShardIndex, si.ShardCount)
}

func runScanResume(ctx context.Context, g *Globals, opts *ScanOptions) error {
	if opts.NoStore {
		return usageErr(errors.New("--resume needs the store: drop --no-store"))
	}
	id, idErr := strconv.ParseInt(opts.Resume, 10, 64)
	if idErr == nil && id <= 0 {
		return usageErr(fmt.Errorf("--resume %s: want a scan id from 1, or a --scan-id name", opts.Resume))
	}
	var name string
	var runNo int
	var shard scan.Shard
	if idErr != nil {
		var err error
		if name, runNo, err = store.ParseRef(opts.Resume); err != nil {
			return usageErr(fmt.Errorf("--resume: %w (want a scan id, or a --scan-id name with --shard I/N)", err))
		}
		if opts.Shard != "" {
			if shard, err = scan.ParseShard(opts.Shard); err != nil {
				return usageErr(fmt.Errorf("--shard: %w", err))
			}
		}
	} else if opts.Shard != "" {
		return usageErr(fmt.Errorf("--resume %d is one scan, its shard included: --shard goes with --resume NAME", id))
	}
	db, err := opts.DB.open(ctx, false)
	if errors.Is(err, errNoStore) {
		return withCode(ExitNotFound, fmt.Errorf("scan %s: %w", opts.Resume, err))
	}
	if err != nil {
		return err
	}
	defer db.Close()
	var si store.ScanInfo
	if name != "" {
		m, err := db.Named(ctx, name, runNo)
		if errors.Is(err, store.ErrNotFound) {
			return withCode(ExitNotFound, fmt.Errorf("scan %s not found in %s (portolan history lists the scans)", opts.Resume, db.Path()))
		}
		if err != nil {
			return err
		}
		if m.ShardCount > 1 && shard.Count == 0 {
			return usageErr(fmt.Errorf("--resume %s: it has %d shards: say which with --shard I/%d", opts.Resume, m.ShardCount, m.ShardCount))
		}
		if shard.Count != 0 && int(shard.Count) != max(m.ShardCount, 1) {
			return usageErr(fmt.Errorf("--shard %s: scan %s@%d has %d shards", opts.Shard, name, m.Run, max(m.ShardCount, 1)))
		}
		i := int(shard.Index)
		if m.ShardCount == 0 {
			i = 0
		}
		k := slices.IndexFunc(m.Shards, func(sh store.ScanInfo) bool { return sh.ShardIndex == i })
		if k < 0 {
			// No process ever stored this shard: start it with the run's
			// recipe, as its own process would have.
			return startMissingShard(ctx, g, opts, m, shard)
		}
		si = m.Shards[k]
	} else {
		si, err = db.Scan(ctx, id)
		if errors.Is(err, store.ErrNotFound) {
			return withCode(ExitNotFound, fmt.Errorf("scan %d not found in %s (portolan history lists the scans)", id, db.Path()))
		}
		if err != nil {
			return err
		}
	}
	// The recipe is what the scan was started with; output choices are
	// this invocation's.
	r, err := storedRecipe(si)
	if err != nil {
		return err
	}
	format, err := opts.format(g)
	if err != nil {
		return err
	}
	if r.Prober == "syn" && !rawnet.Allowed() {
		return fmt.Errorf("resume scan %d, a SYN scan: %w", si.ID, errNeedsRaw())
	}
	p, err := plan(ctx, g, r)
	if err != nil {
		return fmt.Errorf("resume scan %d: %w", si.ID, err)
	}
	if p.space.Size() != si.Space {
		return fmt.Errorf("resume scan %d: its targets now give %d probes, not %d (a name resolves differently or a target file changed)", si.ID, p.space.Size(), si.Space)
	}
	run := &scanRun{g: g, opts: opts, recipe: r, plan: p, format: format, db: db, resumed: true}
	out, err := run.openOutputs()
	if err != nil {
		return err
	}
	defer out.close()
	if si, err = db.ResumeScan(ctx, si.ID); err != nil {
		return err
	}
	run.info = si
	if si.Name != "" {
		fmt.Fprintf(g.io.ErrOut, "resuming shard %s of scan %s@%d (scan %d) at position %d of %d\n", shardOf(si), si.Name, si.Run, si.ID, si.Checkpoint, si.Space)
	} else {
		fmt.Fprintf(g.io.ErrOut, "resuming scan %d at position %d of %d\n", si.ID, si.Checkpoint, si.Space)
	}
	return run.execute(ctx, out, si.Checkpoint)
}

// storedRecipe is the recipe a stored scan was started with, whatever
// version of portolan stored it, with the seed and the prober it recorded:
// the one that ran, where a version-1 recipe says only what was asked
// (no -s: SYN or connect by privilege; -sS --fallback: connect without it).
func storedRecipe(si store.ScanInfo) (scanjob.Recipe, error) {
	r, err := scanjob.DecodeRecipe(si.Options)
	if err != nil {
		return r, fmt.Errorf("scan %d: %w", si.ID, err)
	}
	r.Seed = si.Seed
	r.Prober = cmp.Or(si.Prober, r.Prober, "connect")
	return r, nil
}

// startMissingShard starts shard of the named scan m, which no process
// stored, from the recipe of one of its shards.
func startMissingShard(ctx context.Context, g *Globals, opts *ScanOptions, m store.ScanInfo, shard scan.Shard) error {
	r, err := storedRecipe(m)
	if err != nil {
		return err
	}
	r.Name, r.Shard = m.Name, shard.String()
	format, err := opts.format(g)
	if err != nil {
		return err
	}
	opts.Resume = ""
	fmt.Fprintf(g.io.ErrOut, "shard %s of scan %s@%d was never started: starting it\n", shard, m.Name, m.Run)
	return runRecipe(ctx, g, opts, r, format)
}

// warnLongScan says, before a big scan starts on a terminal, how long it
// will take at the chosen rate.
func warnLongScan(g *Globals, r scanjob.Recipe, p *scanPlan) {
	lo, hi := p.shard.Range(p.space.Size())
	size := hi - lo // this shard's probes
	if size <= 1_000_000 || !output.IsTerminal(g.io.ErrOut) {
		return
	}
	if r.Rate > 0 {
		d := time.Duration(float64(size) / r.Rate * float64(time.Second))
		fmt.Fprintf(g.io.ErrOut, "%d probes at %.0f/s: at least %s, more with retries (Ctrl-C stops; --resume continues)\n", size, r.Rate, d.Round(time.Second))
		return
	}
	fmt.Fprintf(g.io.ErrOut, "%d probes with no --rate cap: the window and the network set the pace (Ctrl-C stops; --resume continues)\n", size)
}

// scanRun is one execution of a scan: the engine's callbacks feed the
// store, the live output and the progress line.
type scanRun struct {
	g      *Globals
	opts   *ScanOptions   // this invocation's outputs and store
	recipe scanjob.Recipe // what the scan does
	plan   *scanPlan
	format output.ScanFormat
	db     *store.Store // nil with --no-store, and until start has opened it
	info   store.ScanInfo
	// start is a plain scan's store, opening while the scan runs, and
	// leaseTTL its $PORTOLAN_LEASE_TTL (zero for the default).
	start    *store.Starting
	leaseTTL time.Duration
	resumed  bool

	kept  []scan.Result // results for a format rendered at the end, without a store
	tally scan.Tally
	dbErr error
}

// execute runs the scan from position startAt, writing the results to
// every output of dst.
func (r *scanRun) execute(ctx context.Context, dst scanOutputs, startAt uint64) error {
	g, opts := r.g, r.opts
	if err := dst.start(); err != nil {
		return err
	}
	batch := false // a format rendered at the end
	for _, o := range dst {
		batch = batch || o.stream == nil
	}
	if r.resumed {
		if err := r.replay(ctx, dst); err != nil {
			return err
		}
	}

	s, err := r.recipe.Scanner()
	if err != nil {
		return err
	}
	s.Logger = g.Logger()
	s.StartAt = startAt
	prog := g.progress()
	var lastStats time.Time
	s.StatsEvery = 250 * time.Millisecond
	if opts.StatsEvery > 0 && opts.StatsEvery < s.StatsEvery {
		s.StatsEvery = opts.StatsEvery
	}
	statsOut := output.NewJSONL(g.io.ErrOut)
	s.OnStats = func(st scan.Stats) {
		prog.Update("%s", progressLine(st))
		if opts.StatsEvery > 0 && time.Since(lastStats) >= opts.StatsEvery {
			lastStats = time.Now()
			prog.Done()
			statsOut.Write(struct {
				Type string `json:"type"`
				scan.Stats
			}{"stats", st})
		}
	}
	stored := r.db != nil || r.start != nil
	job := &scanjob.Job{Scanner: s, Space: r.plan.space, Tally: &r.tally}
	job.OnResult = func(res scan.Result) error {
		if !r.shown(res) {
			return nil
		}
		if batch && !stored {
			r.kept = append(r.kept, res)
		}
		// An output that cannot be written stops the scan, as a store
		// that fails does: what it finds would be lost.
		return dst.write(res)
	}
	if stored {
		var sink *store.Buffered
		// Other hosts see the scan alive even while no checkpoint moves.
		if start := r.start; start != nil {
			sink = start.Buffered()
			job.Heartbeat = func(ctx context.Context) error {
				db, info, err := start.Wait()
				if err != nil {
					return nil // the sink's to report
				}
				return db.Heartbeat(ctx, info.ID)
			}
			job.HeartbeatEvery = cmp.Or(r.leaseTTL, store.DefaultLeaseTTL) / 3
		} else {
			db, id := r.db, r.info.ID
			sink = db.Buffered(r.info)
			job.Heartbeat = func(ctx context.Context) error { return db.Heartbeat(ctx, id) }
			job.HeartbeatEvery = cmp.Or(db.LeaseTTL, store.DefaultLeaseTTL) / 3
		}
		sink.MaxBuffered, sink.RetryFor, sink.SpillDir, sink.Logger = opts.DBBuffer, opts.DBRetry, opts.SpillDir, g.Logger()
		job.Sink = sink
	}
	o := job.Run(ctx)
	if r.start != nil {
		r.db, r.info, _ = r.start.Wait() // a store that failed to open is the sink's error
	}
	prog.Done()
	// Everything below must happen even after Ctrl-C: print what was saved.
	bg := context.WithoutCancel(ctx)
	sum, runErr, status := o.Summary, o.Err, o.Status
	interrupted := status == store.Interrupted
	r.dbErr = cmp.Or(o.OutputErr, o.SinkErr)
	err = nil
	for _, o := range dst {
		if o.stream != nil {
			err = cmp.Or(err, o.stream.Close())
		} else {
			err = cmp.Or(err, r.render(bg, o, sum, status))
		}
	}
	err = cmp.Or(err, dst.close()) // a file's last bytes may fail only here (NFS, a full disk)
	if outErr := cmp.Or(r.dbErr, err); outErr != nil && r.db != nil && status == store.Done {
		// The results did not all reach their output: not a done scan.
		// It stays resumable, and show renders it from the store. The run
		// finished it as done unless its results went to a spill file.
		if ferr := r.db.FailDone(bg, r.info.ID); errors.Is(ferr, store.ErrNotFound) {
			r.db.FinishScan(bg, r.info.ID, store.Failed, r.tally.Totals)
		}
	}
	if r.dbErr != nil {
		return r.dbErr
	}
	if err != nil {
		return err
	}
	if sum.HostsDown > 0 {
		// Said on every run, not only on a terminal: a script that reads
		// no ports from a host must be able to learn why.
		fmt.Fprintf(g.io.ErrOut, "%s judged down: no answer to %s, nor to host discovery (TCP %s%s); %s filtered (host-timeout); -Pn scans every port anyway\n",
			plural(sum.HostsDown, "host"), "the first probes", discoveryPortsText(), pingText(sum, r.recipe.Local), "their ports are reported")
	}
	synReport(g, sum)
	if opts.StatsEvery > 0 {
		statsOut.Write(struct {
			Type string `json:"type"`
			scan.Summary
		}{"summary", sum})
	}
	switch {
	case interrupted:
		if r.db != nil {
			fmt.Fprintf(g.io.ErrOut, "scan %d interrupted at %.1f%%; partial results saved: portolan scan --resume %d continues it\n", r.info.ID, r.percent(), r.info.ID)
		} else {
			fmt.Fprintf(g.io.ErrOut, "scan interrupted at %.1f%% (not stored: --no-store); rerun with --seed %d to repeat the order\n", sum.Percent, sum.Seed)
		}
		return silentExit(ExitInterrupted)
	case runErr != nil:
		if r.db != nil {
			return fmt.Errorf("scan %d: %w (portolan scan --resume %d continues it)", r.info.ID, runErr, r.info.ID)
		}
		return fmt.Errorf("scan: %w", runErr)
	}
	if r.db != nil && output.IsTerminal(g.io.ErrOut) {
		fmt.Fprintf(g.io.ErrOut, "scan %d: %d ports in %s, %d open; stored in %s\n", r.info.ID, sum.Done, sum.Elapsed.Round(time.Millisecond), r.tally.Open, r.db.Path())
	}
	return nil
}

// progressLine is the terminal's progress line. Besides the ports done it
// says what the scan waits for: probes in flight (silent hosts finish
// nothing until their timeouts) and banners being read (the ports are all
// probed, the last results wait for them).
func progressLine(st scan.Stats) string {
	line := fmt.Sprintf("scan %5.1f%%  %d/%d ports  %.0f probes/s  %d open  %d in flight", st.Percent, st.Done, st.Total, st.Rate, st.Open, st.InFlight)
	if st.Banners > 0 {
		line += fmt.Sprintf("  reading %d banners", st.Banners)
	}
	return line + "  ETA " + st.ETA.Round(time.Second).String()
}

// discoveryPortsText lists host discovery's TCP ports: "80,443,22,...".
func discoveryPortsText() string {
	ports := make([]string, len(scan.DefaultDiscoveryPorts))
	for i, p := range scan.DefaultDiscoveryPorts {
		ports[i] = strconv.Itoa(int(p))
	}
	return strings.Join(ports, ",")
}

// pingText says whether discovery could ping.
func pingText(sum scan.Summary, l scan.Local) string {
	switch {
	case sum.Ping:
		return "; ICMP echo"
	case l.Iface != "" || l.Addr.IsValid():
		return "; no ICMP echo with -e or -S"
	}
	return "; no ICMP echo: needs root, CAP_NET_RAW or net.ipv4.ping_group_range"
}

// percent is how far the whole scan (its shard) got, earlier runs of a
// resumed scan included: Summary.Percent is of this run's part.
func (r *scanRun) percent() float64 {
	lo, hi := r.plan.shard.Range(r.plan.space.Size())
	if hi == lo {
		return 100
	}
	return 100 * float64(r.tally.Probes) / float64(hi-lo)
}

// shown reports whether res goes to the outputs (--open keeps open ports).
func (r *scanRun) shown(res scan.Result) bool { return !r.opts.Open || res.State == scan.Open }

// filter is shown for results read back from the store.
func (r *scanRun) filter() store.Filter {
	if r.opts.Open {
		return store.Filter{States: []scan.State{scan.Open}}
	}
	return store.Filter{}
}

// replay takes in the results the earlier runs of a resumed scan stored
// (those below its checkpoint): they count in the totals from the first
// checkpoint on, and a stream prints them first, so the output of a resumed
// scan is the whole scan, as it is for the formats rendered from the store.
func (r *scanRun) replay(ctx context.Context, dst scanOutputs) error {
	for res, err := range r.db.ResultsSeq(ctx, r.info.ID, store.Filter{}) {
		if err != nil {
			return err
		}
		r.tally.Add(res)
		if !r.shown(res) {
			continue
		}
		if err := dst.write(res); err != nil {
			return err
		}
	}
	return nil
}

// render writes a format that needs every result at once: from the store
// when there is one (so a resumed scan shows its earlier runs too), else
// from memory.
func (r *scanRun) render(ctx context.Context, o *scanOutput, sum scan.Summary, status store.Status) error {
	out := o.w
	color := o.f == nil && out == r.g.io.Out && r.g.color()
	if r.db != nil {
		si, err := r.db.Scan(ctx, r.info.ID)
		if err != nil {
			return err
		}
		return writeStoredScan(ctx, out, r.db, si, o.format, r.filter(), color)
	}
	meta := output.ScanMeta{
		Args: "portolan " + strings.Join(r.g.args, " "), Version: Version, Start: time.Now().Add(-sum.Elapsed), End: time.Now(),
		ScanType: r.plan.proberName, Ports: r.plan.ports, Hosts: int(min(r.plan.space.Hosts(), 1<<31-1)),
		AssumeUp: r.recipe.AssumeUp, DiscoveryOnly: r.recipe.DiscoveryOnly, Names: r.plan.hosts.Names(),
	}
	if status != store.Done {
		meta.Error = fmt.Sprintf("scan %s at %.1f%%", status, sum.Percent)
	}
	return output.WriteScan(out, o.format, meta, r.kept, color)
}

// scanOutput is one place a run writes: stdout, the -o file, or one of
// nmap's -oX/-oN/-oG/-oA files, each in its format.
type scanOutput struct {
	w       io.Writer
	f       *os.File // nil for stdout
	format  output.ScanFormat
	stream  *output.StreamWriter // for the formats written as results come
	created bool                 // the file did not exist before this run
	started bool
	closed  bool
}

// scanOutputs are all the places a run writes.
type scanOutputs []*scanOutput

// openOutputs returns stdout or the -o file in the run's format, and the
// files of -oX, -oN, -oG and -oA. The files are opened without truncating
// them, so a run refused after this (a store that cannot be opened, a scan
// that cannot be resumed) leaves them as they were, while a path that
// cannot be written is still reported before anything is recorded.
func (r *scanRun) openOutputs() (scanOutputs, error) {
	type spec struct {
		path   string
		format output.ScanFormat
	}
	specs := []spec{{r.opts.Output, r.format}}
	o := r.opts
	for _, sp := range []spec{{o.OutXML, output.FormatXML}, {o.OutNormal, output.FormatTable}, {o.OutGrep, output.FormatGrepable}} {
		if sp.path != "" {
			specs = append(specs, sp)
		}
	}
	if o.OutAll != "" {
		specs = append(specs, spec{o.OutAll + ".nmap", output.FormatTable}, spec{o.OutAll + ".xml", output.FormatXML},
			spec{o.OutAll + ".gnmap", output.FormatGrepable})
	}
	var outs scanOutputs
	for _, sp := range specs {
		out, err := r.openOutput(sp.path, sp.format)
		if err != nil {
			outs.close()
			return nil, err
		}
		outs = append(outs, out)
	}
	return outs, nil
}

func (r *scanRun) openOutput(path string, format output.ScanFormat) (*scanOutput, error) {
	if path == "" || path == "-" {
		return &scanOutput{w: r.g.io.Out, format: format, started: true}, nil
	}
	_, statErr := os.Stat(path)
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE, 0o666)
	if err != nil {
		return nil, fileErr(err) // *PathError names the file
	}
	return &scanOutput{w: f, f: f, format: format, created: errors.Is(statErr, fs.ErrNotExist)}, nil
}

// start empties the files (the run goes ahead) and makes the writers of
// the streamed formats.
func (outs scanOutputs) start() error {
	for _, o := range outs {
		if !o.started {
			o.started = true
			// Only a regular file has a length: a device (/dev/null,
			// /dev/stdout on a pipe) or a FIFO cannot be truncated.
			if fi, err := o.f.Stat(); err == nil && fi.Mode().IsRegular() {
				if err := o.f.Truncate(0); err != nil {
					return fmt.Errorf("empty %s: %w", o.f.Name(), err)
				}
			}
		}
		if output.Streamable(o.format) {
			var err error
			if o.stream, err = output.NewStreamWriter(o.w, o.format); err != nil {
				return err
			}
		}
	}
	return nil
}

// write hands a result to every streamed output.
func (outs scanOutputs) write(res scan.Result) error {
	for _, o := range outs {
		if o.stream != nil {
			if err := o.stream.Write(res); err != nil {
				return fmt.Errorf("write results: %w", err)
			}
		}
	}
	return nil
}

// close closes the files, and removes those this run created but never
// started. It returns the first error of a close: the data of a file is
// only known written then. A second close does nothing.
func (outs scanOutputs) close() error {
	var first error
	for _, o := range outs {
		if o.f == nil || o.closed {
			continue
		}
		o.closed = true
		if err := o.f.Close(); err != nil && first == nil {
			first = fmt.Errorf("write %s: %w", o.f.Name(), err)
		}
		if !o.started && o.created {
			os.Remove(o.f.Name())
		}
	}
	return first
}

// dryPlan is what --dry-run prints.
type dryPlan struct {
	Targets   string        `json:"targets"`
	Ports     string        `json:"ports"`
	Hosts     uint64        `json:"hosts"`
	PortCount int           `json:"port_count"`
	Space     uint64        `json:"space"`
	Seed      uint64        `json:"seed"`
	SeedText  string        `json:"seed_str"` // the seed in decimal: jq reads numbers as doubles
	Shard     string        `json:"shard,omitempty"`
	Probes    uint64        `json:"probes"` // what this run (shard) visits
	Rate      float64       `json:"rate,omitempty"`
	Estimate  time.Duration `json:"estimate_ns,omitempty"`
	First     []string      `json:"first"` // the first probes in scan order
}

// dryFirst is how many of the first probes a dry run lists.
const dryFirst = 10

func runDryScan(ctx context.Context, g *Globals, r scanjob.Recipe, p *scanPlan) error {
	// The plan is computed, not run: the permutation gives the first
	// probes at once, so a /8 x 65535 space plans as fast as one port.
	n := p.space.Size()
	lo, hi := p.shard.Range(n)
	plan := dryPlan{
		Targets: strings.Join(r.Targets, " "), Ports: p.ports.String(), Hosts: p.space.Hosts(),
		PortCount: p.space.PortCount(), Space: n, Seed: r.Seed, SeedText: strconv.FormatUint(r.Seed, 10), Shard: r.Shard, Rate: r.Rate,
		Probes: hi - lo, First: []string{},
	}
	perm := scan.NewPermutation(n, r.Seed)
	for pos := lo; pos < hi && pos < lo+dryFirst; pos++ {
		addr, port, proto := p.space.At(perm.At(pos))
		plan.First = append(plan.First, netip.AddrPortFrom(addr, uint16(port)).String()+"/"+proto.String())
	}
	if r.Rate > 0 {
		plan.Estimate = time.Duration(float64(plan.Probes) / r.Rate * float64(time.Second))
	}
	if ctx.Err() != nil {
		return silentExit(ExitInterrupted)
	}
	if g.JSON {
		return writeJSON(g, plan)
	}
	w := g.io.Out
	fmt.Fprintf(w, "targets   %s (%d addresses)\n", plan.Targets, plan.Hosts)
	fmt.Fprintf(w, "ports     %s (%d)\n", plan.Ports, plan.PortCount)
	fmt.Fprintf(w, "probes    %d of a space of %d", plan.Probes, plan.Space)
	if plan.Shard != "" {
		fmt.Fprintf(w, " (shard %s)", plan.Shard)
	}
	fmt.Fprintf(w, "\nseed      %d\n", plan.Seed)
	if plan.Rate > 0 {
		fmt.Fprintf(w, "duration  at least %s at %.0f probes/s (more with retries)\n", plan.Estimate.Round(time.Second), plan.Rate)
	} else {
		fmt.Fprintf(w, "duration  no --rate cap: the in-flight window and the network set the pace\n")
	}
	fmt.Fprintf(w, "order     %s ...\n", strings.Join(plan.First, " "))
	fmt.Fprintf(w, "nothing was sent\n")
	return nil
}
