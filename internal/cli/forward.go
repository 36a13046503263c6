package cli

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"portolan/internal/daemon"
	"portolan/internal/forward"
)

func init() { register(newForwardCmd) }

// ForwardOptions are the inputs of `portolan forward`.
type ForwardOptions struct {
	Listen  string
	Targets []string

	Config string // -c forward.yaml; exclusive with LISTEN TARGET and the rule flags
	Check  bool   // validate the config (or the command-line rule) and exit

	Name              string
	UDP               bool
	Balance           string
	Health            time.Duration
	HealthRise        int
	HealthFall        int
	HealthSend        string
	HealthExpect      string
	Allow, Deny       []string
	MaxConns          int
	MaxConnsPerSource int
	ConnectTimeout    time.Duration
	IdleTimeout       string // a duration, or off
	MaxFails          int
	FailTimeout       time.Duration
	KeepAlive         string
	ProxyProtocol     string
	TrustedProxies    []string
	SNI               []string // PATTERN=TARGET[,TARGET...]
	UnixMode          string   // octal permission bits of a unix: listening socket's file
	UnixOwner         string   // USER[:GROUP] of that file
	QueueTimeout      time.Duration
	Queue             int

	Metrics      string // host:port for GET /metrics
	LogFormat    string // text | json; --json alone means json
	logFormatSet bool
	DrainTimeout time.Duration
	Loops        int // event loops per TCP listener
}

// forwardRuleFlags are the flags that describe a command-line rule; with -c they
// belong in the file.
var forwardRuleFlags = []string{"name", "udp", "balance", "health", "health-rise", "health-fall", "health-send", "health-expect", "allow", "deny", "max-conns", "max-conns-per-source",
	"connect-timeout", "idle-timeout", "keepalive", "proxy-protocol", "accept-proxy", "max-fails", "fail-timeout", "sni",
	"unix-mode", "unix-owner", "queue-timeout", "queue"}

func newForwardCmd(g *Globals) *cobra.Command {
	var opts ForwardOptions
	cmd := &cobra.Command{
		Use:   "forward LISTEN TARGET[,TARGET...] | -c forward.yaml",
		Short: "Relay TCP connections or UDP sessions to one or more targets",
		Long: `Relay connections from LISTEN to TARGET. Bulk TCP data is spliced in the
kernel; half-closes pass through both ways. A listen address without a host (:8080)
takes IPv4 and IPv6 clients. With several targets, --balance picks one per
connection and --health checks them; when no target answers the client gets
a reset at once, counted and logged.

A target that refuses or does not answer a connect is left out of the
rotation for --fail-timeout (10s) after --max-fails failures in a row (1),
as nginx does, so a dead target stops costing clients a connect each.
TCP connections with no bytes either way for --idle-timeout (10m, as
nginx's proxy_timeout) are closed.

UDP (--udp) keeps a session per client address, with its own upstream socket,
until it has been idle for --idle-timeout (default 60s), at most 10,000 at
once (--max-conns). On SIGTERM UDP sessions end at once: there is nothing to
drain.

Every finished connection or session is one log line on stderr (client, rule,
target, bytes each way, duration, reason). -c FILE runs many rules; SIGHUP
re-reads it without dropping anything: unchanged listeners stay open, live
connections and UDP sessions keep the rule they started under, removed rules
stop accepting and drain. SIGTERM or Ctrl-C stops accepting and waits up to
--drain-timeout for connections to finish; a second signal stops at once.
Logging never holds up relaying: while stderr stalls, lines are dropped,
counted, and summed up in one line when it takes lines again. With
--metrics, Prometheus metrics (per rule and per target, with the process
and Go runtime series) are served at /metrics. Under systemd, Type=notify
works (READY, RELOADING, STOPPING). See docs/forward.md.

Exit codes: 0 stopped cleanly, 1 a listener could not be opened or
connections were cut (drain deadline, second signal), 2 bad arguments or
config.`,
		Example: `  portolan forward :8080 198.18.0.2:80
  portolan forward --udp :5353 [fd00::2]:53
  portolan forward :2222 198.18.0.3:22,198.18.0.4:22 --balance first-healthy --health 5s
  portolan forward :80 '198.18.0.2:80 weight=3,198.18.0.3:80' --balance least-conn
  portolan forward :6379 198.18.0.2:6379,198.18.0.3:6379 --health 2s --health-send 'PING\r\n' --health-expect +PONG
  portolan forward :443 198.18.0.2:443,198.18.0.3:443 --balance source-hash
  portolan forward :443 198.18.0.5:443 --proxy-protocol v2 --allow 198.18.0.0/15 --max-conns 1000
  portolan forward -c forward.yaml --metrics 127.0.0.1:9109 --log-format json
  portolan forward -c forward.yaml --loops 4
  portolan forward :443 198.18.0.9:443 --sni a.example=198.18.0.2:443 --sni '*.example=198.18.0.3:443,198.18.0.4:443'
  portolan forward unix:/run/app.sock 198.18.0.2:80 --unix-mode 0660 --unix-owner root:www-data
  portolan forward :5432 unix:/var/run/postgresql/.s.PGSQL.5432
  portolan forward :8080 198.18.0.2:80 --max-conns 100 --queue-timeout 5s --queue 200
  portolan forward --check -c forward.yaml`,
		Args: cobra.ArbitraryArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			if opts.Config != "" {
				if len(args) != 0 {
					return usageErr(errors.New("give either -c FILE or LISTEN TARGET, not both"))
				}
				for _, f := range forwardRuleFlags {
					if cmd.Flags().Changed(f) {
						return usageErr(fmt.Errorf("--%s sets a rule: with -c, put it in %s", f, opts.Config))
					}
				}
			} else if len(args) == 1 && len(opts.SNI) > 0 {
				opts.Listen = args[0] // SNI routes only: no default route
			} else {
				if len(args) != 2 {
					return usageErr(errors.New("want LISTEN TARGET[,TARGET...] or -c FILE"))
				}
				opts.Listen, opts.Targets = args[0], strings.Split(args[1], ",")
				for i := range opts.Targets {
					// "a:1, b:2" as the config file reads it.
					opts.Targets[i] = strings.TrimSpace(opts.Targets[i])
				}
			}
			opts.logFormatSet = cmd.Flags().Changed("log-format")
			return runForward(cmd.Context(), g, opts)
		},
	}
	f := cmd.Flags()
	f.StringVarP(&opts.Config, "config", "c", "", "rules from this YAML file (SIGHUP reloads it)")
	markFiles(f, true, "config")
	f.BoolVar(&opts.Check, "check", false, "validate the rules and exit")
	f.StringVar(&opts.Name, "name", "", "rule name for logs and metrics (default proto/listen)")
	f.BoolVar(&opts.UDP, "udp", false, "relay UDP instead of TCP")
	f.StringVar(&opts.Balance, "balance", "round-robin", "round-robin, least-conn, source-hash or first-healthy (targets may say 'ADDR weight=N')")
	f.DurationVar(&opts.Health, "health", 0, "check every target this often, all at once (TCP: connect; UDP: a datagram) (0: no checks)")
	f.IntVar(&opts.HealthRise, "health-rise", forward.DefaultHealthRise, "good checks in a row that bring a target back")
	f.IntVar(&opts.HealthFall, "health-fall", forward.DefaultHealthFall, "failed checks in a row that take a target down")
	f.StringVar(&opts.HealthSend, "health-send", "", "send this with each check (Go escapes such as \\r\\n are read)")
	f.StringVar(&opts.HealthExpect, "health-expect", "", "a check passes only if the answer contains this (escapes read)")
	f.StringSliceVar(&opts.Allow, "allow", nil, "only these client prefixes (repeatable, comma-separated)")
	f.StringSliceVar(&opts.Deny, "deny", nil, "never these client prefixes")
	f.IntVar(&opts.MaxConns, "max-conns", 0, "connections (UDP: sessions) at once (0: no limit; UDP 10000)")
	f.IntVar(&opts.MaxConnsPerSource, "max-conns-per-source", 0, "connections at once per client address (0: no limit)")
	f.DurationVar(&opts.ConnectTimeout, "connect-timeout", forward.DefaultConnectTimeout, "give up on a target after this long")
	f.StringVar(&opts.IdleTimeout, "idle-timeout", "", "close after this long with no bytes either way, or off (TCP only) (default TCP 10m, UDP 60s)")
	f.IntVar(&opts.MaxFails, "max-fails", forward.DefaultMaxFails, "dial failures in a row that take a target out of the rotation (0: never)")
	f.DurationVar(&opts.FailTimeout, "fail-timeout", forward.DefaultFailTimeout, "how long a failing target stays out")
	f.StringVar(&opts.KeepAlive, "keepalive", "", "TCP keep-alive idle time, or off (default: on, kernel timers)")
	f.StringVar(&opts.ProxyProtocol, "proxy-protocol", "", "send a PROXY header to the target: v1 or v2")
	f.StringSliceVar(&opts.TrustedProxies, "accept-proxy", nil, "accept a PROXY header from these load balancer prefixes")
	f.StringArrayVar(&opts.SNI, "sni", nil, "route TLS by ClientHello server name: PATTERN=TARGET[,TARGET...] (repeatable; *.example for any name under example; TARGET is the default)")
	f.StringVar(&opts.UnixMode, "unix-mode", "", "permission bits of a unix:PATH listening socket's file, octal (default: as the umask leaves them)")
	f.StringVar(&opts.UnixOwner, "unix-owner", "", "USER[:GROUP] of a unix:PATH listening socket's file")
	f.DurationVar(&opts.QueueTimeout, "queue-timeout", 0, "a client over --max-conns waits up to this long for a slot instead of a reset (0: no queue)")
	f.IntVar(&opts.Queue, "queue", 0, "clients that may wait at once with --queue-timeout (0: as --max-conns)")
	f.StringVar(&opts.Metrics, "metrics", "", "serve Prometheus metrics on host:port at /metrics")
	f.StringVar(&opts.LogFormat, "log-format", "text", "connection log lines: text or json")
	f.DurationVar(&opts.DrainTimeout, "drain-timeout", 30*time.Second, "on SIGTERM, wait this long for connections to finish")
	f.IntVar(&opts.Loops, "loops", 1, "event loops per TCP listener (Linux): more use more cores for many busy connections")
	return cmd
}

// forwardRules builds the rules from the file or the command line.
func forwardRules(opts ForwardOptions) ([]forward.Rule, error) {
	if opts.Config != "" {
		data, err := os.ReadFile(opts.Config)
		if err != nil {
			return nil, fileErr(fmt.Errorf("read config: %w", err))
		}
		rules, err := forward.ParseConfig(opts.Config, data)
		if err != nil {
			return nil, usageErr(err)
		}
		return rules, nil
	}
	r := forward.Rule{
		Name:              opts.Name,
		Listen:            opts.Listen,
		Targets:           opts.Targets,
		HealthInterval:    opts.Health,
		HealthRise:        opts.HealthRise,
		HealthFall:        opts.HealthFall,
		ConnectTimeout:    opts.ConnectTimeout,
		MaxConns:          opts.MaxConns,
		MaxConnsPerSource: opts.MaxConnsPerSource,
		QueueTimeout:      opts.QueueTimeout,
		Queue:             opts.Queue,
		MaxFails:          opts.MaxFails,
		FailTimeout:       opts.FailTimeout,
	}
	if opts.MaxFails == 0 {
		r.MaxFails = -1 // 0 on the command line: never, as nginx's max_fails=0
	} else if opts.MaxFails < 0 {
		return nil, usageErr(fmt.Errorf("--max-fails %d: want 0 or more", opts.MaxFails))
	}
	if opts.UDP {
		r.Proto = forward.UDP
	}
	var err error
	if r.Balance, err = forward.ParseBalance(opts.Balance); err != nil {
		return nil, usageErr(fmt.Errorf("--balance: %w", err))
	}
	if r.ProxyProtocol, err = forward.ParseProxyVersion(opts.ProxyProtocol); err != nil {
		return nil, usageErr(fmt.Errorf("--proxy-protocol: %w", err))
	}
	for _, h := range []struct {
		flag, in string
		out      *string
	}{{"health-send", opts.HealthSend, &r.HealthSend}, {"health-expect", opts.HealthExpect, &r.HealthExpect}} {
		if h.in == "" {
			continue
		}
		v, err := strconv.Unquote(`"` + strings.ReplaceAll(h.in, `"`, `\"`) + `"`)
		if err != nil {
			return nil, usageErr(fmt.Errorf("--%s %q: bad escape (want Go escapes like \\r\\n)", h.flag, h.in))
		}
		*h.out = v
	}
	switch opts.IdleTimeout {
	case "":
	case "off":
		r.IdleTimeout = -1
	default:
		if r.IdleTimeout, err = time.ParseDuration(opts.IdleTimeout); err != nil || r.IdleTimeout <= 0 {
			return nil, usageErr(fmt.Errorf("--idle-timeout: %q: want a duration like 5m, or off", opts.IdleTimeout))
		}
	}
	switch opts.KeepAlive {
	case "":
	case "off":
		r.KeepAlive = -1
	default:
		if r.KeepAlive, err = time.ParseDuration(opts.KeepAlive); err != nil || r.KeepAlive <= 0 {
			return nil, usageErr(fmt.Errorf("--keepalive: %q: want a duration like 30s, or off", opts.KeepAlive))
		}
	}
	for _, l := range []struct {
		flag string
		in   []string
		out  *[]netip.Prefix
	}{{"allow", opts.Allow, &r.Allow}, {"deny", opts.Deny, &r.Deny}, {"accept-proxy", opts.TrustedProxies, &r.TrustedProxies}} {
		for _, s := range l.in {
			p, err := forward.ParsePrefix(s)
			if err != nil {
				return nil, usageErr(fmt.Errorf("--%s: %w", l.flag, err))
			}
			*l.out = append(*l.out, p)
		}
	}
	for _, s := range opts.SNI {
		rt, err := forward.ParseSNIRoute(s)
		if err != nil {
			return nil, usageErr(fmt.Errorf("--sni %w", err))
		}
		r.SNI = append(r.SNI, rt)
	}
	if opts.UnixMode != "" {
		if r.UnixMode, err = forward.ParseUnixMode(opts.UnixMode); err != nil {
			return nil, usageErr(fmt.Errorf("--unix-mode: %w", err))
		}
	}
	r.UnixOwner = opts.UnixOwner
	if err := r.Validate(); err != nil {
		return nil, usageErr(err)
	}
	return []forward.Rule{r}, nil
}

func runForward(ctx context.Context, g *Globals, opts ForwardOptions) error {
	rules, err := forwardRules(opts)
	if err != nil {
		return err
	}
	if opts.Loops < 0 || opts.Loops > 64 { // 0 (the zero value) is one loop, as in forward.Server
		return usageErr(fmt.Errorf("--loops %d: want 1 to 64", opts.Loops))
	}
	if opts.Check {
		return writeForwardCheck(g, opts, rules)
	}
	if g.JSON && !opts.logFormatSet {
		opts.LogFormat = "json"
	}
	// Logging never holds up relaying: lines go through a bounded
	// buffer, dropped and counted while stderr stalls.
	dl, err := newDaemonLog(g, opts.LogFormat)
	if err != nil {
		return err
	}
	defer dl.close()
	log := dl.Logger

	srv := &forward.Server{Logger: log, Loops: opts.Loops, DrainTimeout: opts.DrainTimeout}
	if err := srv.Apply(ctx, rules); err != nil {
		return fmt.Errorf("forward: %w", err)
	}
	for _, r := range rules {
		log.Info("listening", "rule", r.DisplayName(), "proto", r.Proto.String(),
			"addr", srv.Addr(r.DisplayName()).String(), "targets", strings.Join(r.Targets, ","))
	}
	if opts.Metrics != "" {
		reg := daemon.NewRegistry()
		reg.MustRegister(srv)
		reg.MustRegister(dl.collectors()...)
		mctx, stopMetrics := context.WithCancel(context.Background())
		defer stopMetrics()
		addr, err := daemon.ServeMetrics(mctx, opts.Metrics, reg, log)
		if err != nil {
			srv.Shutdown(context.Background())
			return err
		}
		log.Info("metrics", "addr", addr.String())
	}

	err = daemon.Run(ctx, daemon.Options{
		Logger:       log,
		DrainTimeout: opts.DrainTimeout,
		Reload: func(ctx context.Context) error {
			if opts.Config == "" {
				return errors.New("nothing to re-read without -c")
			}
			rules, err := forwardRules(opts)
			if err == nil {
				err = srv.Apply(ctx, rules)
			}
			if err == nil {
				log.Info("reloaded", "config", opts.Config, "rules", len(rules))
			}
			return err
		},
		Drain: srv.Shutdown,
	})
	switch {
	case errors.Is(err, daemon.ErrDrainTimeout):
		return fmt.Errorf("drain: connections still open after %s were closed", opts.DrainTimeout)
	case err != nil:
		return err
	}
	return nil
}

// writeForwardCheck reports validated rules: a summary line, or JSON.
func writeForwardCheck(g *Globals, opts ForwardOptions, rules []forward.Rule) error {
	type ruleJSON struct {
		Name    string   `json:"name"`
		Proto   string   `json:"proto"`
		Listen  string   `json:"listen"`
		Targets []string `json:"targets"`
		Balance string   `json:"balance"`

		SNI []forward.SNIRoute `json:"sni,omitempty"` // pattern and targets of each route
	}
	if g.JSON {
		out := make([]ruleJSON, 0, len(rules))
		for _, r := range rules {
			out = append(out, ruleJSON{r.DisplayName(), r.Proto.String(), r.Listen, r.Targets, r.Balance.String(), r.SNI})
		}
		return writeJSON(g, map[string]any{"ok": true, "rules": out})
	}
	src := opts.Config
	if src == "" {
		src = "command line"
	}
	fmt.Fprintf(g.io.Out, "%s: %d rule(s) OK\n", src, len(rules))
	for _, r := range rules {
		fmt.Fprintf(g.io.Out, "  %s  %s %s -> %s\n", r.DisplayName(), r.Proto, r.Listen, strings.Join(r.Targets, ","))
		for _, rt := range r.SNI {
			fmt.Fprintf(g.io.Out, "    sni %s -> %s\n", rt.Pattern, strings.Join(rt.Targets, ","))
		}
	}
	return nil
}
