package cli

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/spf13/cobra"

	"portolan/internal/daemon"
	"portolan/internal/firewall"
	"portolan/internal/knock"
	"portolan/internal/store"
)

func init() { register(newKnockdCmd) }

// KnockdOptions are the inputs of `portolan knockd`.
type KnockdOptions struct {
	Config string // -c knockd.yaml; exclusive with the door flags
	Check  bool

	Protect        string
	Sequence       string
	OpenFor        time.Duration
	StageTimeout   time.Duration
	AuthorizedKeys string
	SPAPort        uint16
	Group          uint16
	Window         time.Duration
	Capture        string // auto, nflog or packet
	ServerKey      string
	SealedOnly     bool

	Metrics      string
	LogFormat    string
	logFormatSet bool
	DB           DBFlags
}

var knockdDoorFlags = []string{"protect", "sequence", "open-for", "stage-timeout", "authorized-keys", "spa-port", "group", "window", "server-key", "sealed-only"}

func newKnockdCmd(g *Globals) *cobra.Command {
	var opts KnockdOptions
	cmd := &cobra.Command{
		Use:   "knockd -c knockd.yaml | knockd --protect PORTS [--sequence SEQ] [--authorized-keys FILE]",
		Short: "Port knocking and single-packet authorization daemon",
		Long: `Protect ports behind doors that open for one source address at a time, for
a while, after it knocks a sequence of ports or sends a signed SPA request
(portolan knock). Knock and SPA packets are seen through NFLOG by a rule in
portolan's nftables table (table inet portolan, chain knock); no port listens.
An open door is an element of a kernel set with a timeout: the kernel closes
it on time even if the daemon dies, and established connections stay.

Under a firewall with a drop policy, also allow the protected ports
(portolan firewall allow 22/tcp): the door then lets only its sources in.

Opened, closed and rejected requests are logged (rejections at most 10 lines
a second; the rest counted) and stored (--db); accepted SPA nonces are stored
so a replay fails across restarts. SIGHUP re-reads -c and the authorized keys;
SIGTERM stops (doors stay: open ones close on time, protected ports stay
closed). With --metrics, Prometheus metrics at /metrics. Needs CAP_NET_ADMIN.

Exit codes: 0 stopped, 1 failed (NFLOG group taken, no privileges), 2 bad
arguments or config. See docs/knock.md.`,
		Example: `  portolan knockd --protect 22/tcp --sequence 7000,8000/udp,9000 --open-for 30s
  portolan knockd --protect 22/tcp --authorized-keys /etc/portolan/knock.keys
  portolan knockd -c /etc/portolan/knockd.yaml --metrics 127.0.0.1:9121
  portolan knockd --check -c knockd.yaml`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			if opts.Config != "" {
				for _, f := range knockdDoorFlags {
					if cmd.Flags().Changed(f) {
						return usageErr(fmt.Errorf("--%s describes a door: with -c, put it in %s", f, opts.Config))
					}
				}
			} else if opts.Protect == "" {
				return usageErr(errors.New("want -c FILE or --protect PORTS"))
			}
			opts.logFormatSet = cmd.Flags().Changed("log-format")
			return runKnockd(cmd.Context(), g, opts)
		},
	}
	f := cmd.Flags()
	f.StringVarP(&opts.Config, "config", "c", "", "doors from this YAML file (SIGHUP reloads it)")
	f.BoolVar(&opts.Check, "check", false, "validate the doors and keys and exit")
	f.StringVar(&opts.Protect, "protect", "", "the ports the door protects (22/tcp)")
	f.StringVar(&opts.Sequence, "sequence", "", "the knock sequence (7000,8000/udp,9000); empty: SPA only")
	f.DurationVar(&opts.OpenFor, "open-for", knock.DefaultOpenFor, "how long a door stays open")
	f.DurationVar(&opts.StageTimeout, "stage-timeout", knock.DefaultStageTimeout, "most time between two knocks")
	f.StringVar(&opts.AuthorizedKeys, "authorized-keys", "", "SPA clients' keys (lines of portolan knock keygen's .pub files)")
	f.Uint16Var(&opts.SPAPort, "spa-port", knock.DefaultSPAPort, "the UDP port SPA requests go to")
	f.Uint16Var(&opts.Group, "group", knock.DefaultGroup, "the NFLOG group knock packets are logged to")
	f.DurationVar(&opts.Window, "window", knock.DefaultWindow, "how far an SPA timestamp may be from this clock")
	f.StringVar(&opts.ServerKey, "server-key", "", "the server's X25519 key `FILE` (knock keygen --server): opens sealed SPA requests")
	f.BoolVar(&opts.SealedOnly, "sealed-only", false, "refuse SPA requests that are not sealed")
	f.StringVar(&opts.Capture, "capture", knock.CaptureAuto, "how knocks are read: nflog, packet (AF_PACKET, needs CAP_NET_RAW) or auto (nflog, else packet)")
	f.StringVar(&opts.Metrics, "metrics", "", "serve Prometheus metrics on host:port at /metrics")
	f.StringVar(&opts.LogFormat, "log-format", "text", "log lines: text or json")
	addDBFlags(cmd, &opts.DB)
	return cmd
}

// knockdConfig builds the configuration and reads the keys it names.
func knockdConfig(opts KnockdOptions) (*knock.Config, map[knock.KeyID]*knock.Key, error) {
	var cfg *knock.Config
	if opts.Config != "" {
		data, err := os.ReadFile(opts.Config)
		if err != nil {
			return nil, nil, fmt.Errorf("read config: %w", err)
		}
		if cfg, err = knock.ParseConfig(opts.Config, data); err != nil {
			return nil, nil, usageErr(err)
		}
	} else {
		d := knock.Door{Name: "door1", OpenFor: opts.OpenFor, StageTimeout: opts.StageTimeout}
		var err error
		if d.Protect, err = knock.ParsePorts(opts.Protect); err != nil {
			return nil, nil, usageErr(fmt.Errorf("--protect: %w", err))
		}
		if opts.Sequence != "" {
			if d.Sequence, err = knock.ParseSequence(opts.Sequence); err != nil {
				return nil, nil, usageErr(fmt.Errorf("--sequence: %w", err))
			}
		}
		cfg = &knock.Config{Group: opts.Group, SPAPort: opts.SPAPort, Window: opts.Window, AuthorizedKeys: opts.AuthorizedKeys,
			ServerKey: opts.ServerKey, SealedOnly: opts.SealedOnly, Doors: []knock.Door{d}}
		if err := cfg.Validate(); err != nil {
			return nil, nil, usageErr(err)
		}
	}
	if err := cfg.LoadOneTime(); err != nil {
		if errors.Is(err, fs.ErrNotExist) || errors.Is(err, fs.ErrPermission) {
			return nil, nil, err
		}
		return nil, nil, usageErr(err)
	}
	if err := cfg.LoadServerKey(); err != nil {
		if errors.Is(err, fs.ErrNotExist) || errors.Is(err, fs.ErrPermission) {
			return nil, nil, err
		}
		return nil, nil, usageErr(err)
	}
	if cfg.AuthorizedKeys == "" {
		return cfg, nil, nil
	}
	text, err := os.ReadFile(cfg.AuthorizedKeys)
	if err != nil {
		return nil, nil, fmt.Errorf("read authorized keys: %w", err)
	}
	keys, err := knock.ParseAuthorizedKeys(cfg.AuthorizedKeys, text)
	if err != nil {
		return nil, nil, usageErr(err)
	}
	return cfg, keys, nil
}

func runKnockd(ctx context.Context, g *Globals, opts KnockdOptions) error {
	capture, err := knock.ParseCapture(opts.Capture)
	if err != nil {
		return usageErr(fmt.Errorf("--capture: %w", err))
	}
	cfg, keys, err := knockdConfig(opts)
	if err != nil {
		return err
	}
	if opts.Check {
		if g.JSON {
			return writeJSON(g, map[string]any{"ok": true, "doors": len(cfg.Doors), "keys": len(keys)})
		}
		fmt.Fprintf(g.io.Out, "ok: %d doors, %d keys\n", len(cfg.Doors), len(keys))
		return nil
	}
	if g.JSON && !opts.logFormatSet {
		opts.LogFormat = "json"
	}
	dl, err := newDaemonLog(g, opts.LogFormat)
	if err != nil {
		return err
	}
	defer dl.close()
	log := dl.Logger

	db, err := opts.DB.open(ctx, true)
	if err != nil {
		return err
	}
	defer db.Close()
	ev := newKnockEventWriter(db, log)
	defer ev.close()

	srv := &knock.Server{Firewall: &firewall.Firewall{}, Logger: log, Replay: knockReplay{db}, Events: ev.add, Capture: capture}
	if err := srv.Apply(ctx, cfg, keys); err != nil {
		return fmt.Errorf("knockd: %w", err)
	}
	switch mode, why := srv.Capturing(); mode {
	case knock.CapturePacket:
		if why != nil {
			log.Warn("nflog unavailable: capturing knocks with af_packet instead", "err", why)
		}
		log.Info("capture", "via", "af_packet")
	default:
		log.Info("capture", "via", "nflog", "group", cmp.Or(cfg.Group, knock.DefaultGroup))
	}
	if err := srv.Listen(ctx); err != nil {
		return fmt.Errorf("knockd: %w", err)
	}
	if cfg.AuthorizedKeys != "" && len(keys) == 0 {
		log.Warn("no keys in the authorized keys file: SPA requests open nothing", "file", cfg.AuthorizedKeys)
	}
	warnSSHDoor(ctx, log, cfg)
	if cfg.ServerPrivate != nil {
		log.Info("sealed spa requests", "server_key", cfg.ServerKey, "sealed_only", cfg.SealedOnly)
	}
	for _, d := range cfg.Doors {
		if d.OneTime != "" {
			log.Info("door", "name", d.Name, "protect", knock.FormatSequence(d.Protect), "one_time_sequences", d.OneTime, "left", d.OneTimeLeft(), "spa", len(keys) > 0 && !d.NoSPA)
			continue
		}
		log.Info("door", "name", d.Name, "protect", knock.FormatSequence(d.Protect), "sequence", knock.FormatSequence(d.Sequence), "spa", len(keys) > 0 && !d.NoSPA)
	}
	if opts.Metrics != "" {
		reg := daemon.NewRegistry()
		reg.MustRegister(srv, prometheus.NewCounterFunc(prometheus.CounterOpts{
			Name: "portolan_knock_events_dropped_total",
			Help: "Door events not stored because the store fell behind.",
		}, func() float64 { return float64(ev.dropped.Load()) }))
		reg.MustRegister(dl.collectors()...)
		mctx, stopMetrics := context.WithCancel(context.Background())
		defer stopMetrics()
		addr, err := daemon.ServeMetrics(mctx, opts.Metrics, reg, log)
		if err != nil {
			return err
		}
		log.Info("metrics", "addr", addr.String())
	}
	sctx, stop := context.WithCancel(context.Background())
	defer stop()
	served := make(chan error, 1)
	go func() { served <- srv.Serve(sctx) }()
	err = daemon.Run(ctx, daemon.Options{
		Logger:       log,
		DrainTimeout: 5 * time.Second,
		Reload: func(ctx context.Context) error {
			cfg, keys, err := knockdConfig(opts)
			if err == nil {
				err = srv.Apply(ctx, cfg, keys)
			}
			if err == nil {
				log.Info("reloaded", "doors", len(cfg.Doors), "keys", len(keys))
			}
			return err
		},
		Drain: func(ctx context.Context) error {
			stop()
			select {
			case err := <-served:
				return err
			case <-ctx.Done():
				return ctx.Err()
			}
		},
	})
	select {
	case serr := <-served: // Serve failed before a stop
		if err == nil {
			err = serr
		}
	default:
	}
	return err
}

// knockReplay keeps SPA nonces in the store.
type knockReplay struct{ db *store.Store }

func (r knockReplay) AddNonce(ctx context.Context, nonce []byte, expires time.Time) (bool, error) {
	return r.db.AddKnockNonce(ctx, nonce, expires)
}

// knockEventWriter stores door events in batches off the packet loop; when
// the store falls behind, events are dropped and counted.
type knockEventWriter struct {
	db      *store.Store
	log     *slog.Logger
	ch      chan knock.Event
	dropped atomic.Uint64
	mu      sync.Mutex // closed, and sends on ch
	closed  bool
	wg      sync.WaitGroup
}

func newKnockEventWriter(db *store.Store, log *slog.Logger) *knockEventWriter {
	w := &knockEventWriter{db: db, log: log, ch: make(chan knock.Event, 1024)}
	w.wg.Go(w.run)
	return w
}

func (w *knockEventWriter) add(e knock.Event) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.closed { // a packet loop cut short by the drain deadline
		w.dropped.Add(1)
		return
	}
	select {
	case w.ch <- e:
	default:
		w.dropped.Add(1)
	}
}

func (w *knockEventWriter) run() {
	var batch []store.KnockEvent
	flush := func() {
		if len(batch) == 0 {
			return
		}
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := w.db.AddKnockEvents(ctx, batch); err != nil {
			w.log.Error("store door events", "events", len(batch), "err", err)
		}
		batch = batch[:0]
	}
	tick := time.NewTicker(200 * time.Millisecond)
	defer tick.Stop()
	for {
		select {
		case e, ok := <-w.ch:
			if !ok {
				flush()
				return
			}
			se := store.KnockEvent{Time: e.Time, Type: e.Type, Via: e.Via, Door: e.Door, Key: e.Key,
				Ports: knock.FormatSequence(e.Ports), Until: e.Until, Reason: e.Reason}
			if e.Src.IsValid() {
				se.Src = e.Src.String()
			}
			if e.Allow.IsValid() {
				se.Allow = e.Allow.String()
			}
			batch = append(batch, se)
			if len(batch) >= 256 {
				flush()
			}
		case <-tick.C:
			flush()
		}
	}
}

// close stores what is queued and stops.
func (w *knockEventWriter) close() {
	w.mu.Lock()
	w.closed = true
	close(w.ch)
	w.mu.Unlock()
	w.wg.Wait()
}

// warnSSHDoor says so when a door protects the port of an SSH session this
// runs under: that session stays up (established connections pass), but
// new connections from its client need a knock or an SPA request first.
func warnSSHDoor(ctx context.Context, log *slog.Logger, cfg *knock.Config) {
	clients, err := firewall.FindSSHClients(ctx, os.Getenv("SSH_CONNECTION"), nil)
	if err != nil {
		return
	}
	for _, p := range clients.Packets {
		for _, d := range cfg.Doors {
			if slices.Contains(d.Protect, knock.DoorPort{Proto: p.Proto, Port: p.Port}) {
				log.Warn("a door protects your SSH port: this session stays up, but new SSH connections from your client need a knock or SPA request first",
					"door", d.Name, "client", p.Src, "port", p.Port)
			}
		}
	}
}
