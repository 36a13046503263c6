package cli

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"os"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/spf13/cobra"

	"portolan/internal/daemon"
	"portolan/internal/firewall"
	"portolan/internal/output"
	"portolan/internal/store"
	"portolan/internal/watch"
)

func init() { register(newWatchPortsCmd) }

// WatchPortsOptions are the inputs of `portolan watch`.
type WatchPortsOptions struct {
	NetNS      string
	Block      bool
	DryRun     bool
	Ban        time.Duration
	MaxBan     time.Duration
	ClosedOnly bool
	UDP        bool
	ICMP       bool
	Allow      []string
	Thresholds watch.Thresholds
	Rate       uint32
	Burst      uint32
	Group      uint16
	Queue      uint32 // NFLOG queue threshold
	Log        string // JSON Lines file of every event; "-" is stdout
	DB         DBFlags
	NoStore    bool
	Metrics    string
	Refresh    time.Duration
	Resolv     string
}

func newWatchPortsCmd(g *Globals) *cobra.Command {
	var opts WatchPortsOptions
	th := &opts.Thresholds
	cmd := &cobra.Command{
		Use:   "watch",
		Short: "Log connection attempts, detect port scans, and optionally block scanners",
		Long: `Watch new connection attempts to this host (TCP SYN, and FIN, NULL and Xmas
probes; UDP with --udp, pings with --icmp) through NFLOG rules in portolan's nftables table, and
score every source: a vertical scan (--ports distinct ports on one address
within --window), a horizontal sweep (--hosts addresses on one port), a slow
scan (--slow-pairs address and port pairs within --slow-window) or odd-flag
probes (--odd). IPv6 sources count, and are banned, as their /64 (--prefix6).

With --block a detected source is added to an nftables set with a kernel
timeout of --ban, doubled for each repeat offence within --forget (up to
--max-ban); --dry-run only says what it would block. The gateways of the
routing table, the resolvers of /etc/resolv.conf, the SSH peer this runs
under and --allow prefixes are never blocked. On exit the rules and the
bans are removed.

The kernel logs at most --rate attempts a second (burst --burst); the
rest are counted, never silently lost. Events go to the store (--db;
portolan events reads them) and with --log to a JSON Lines file; neither
ever holds up the capture. On a terminal the view refreshes in place;
piped, each event is a line (JSON with --json). SIGHUP re-reads the
never-block list. With --metrics, Prometheus metrics are served. Needs
root (CAP_NET_ADMIN). See docs/watch.md.`,
		Example: `  portolan watch
  portolan watch --log events.jsonl
  portolan watch --block --ban 10m
  portolan watch --block --dry-run --allow 198.18.7.0/24
  portolan watch --closed-only --json | jq .
  portolan watch --netns blue --metrics 127.0.0.1:9110`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			return runWatchPorts(cmd.Context(), g, opts)
		},
	}
	f := cmd.Flags()
	f.StringVar(&opts.NetNS, "netns", "", "watch this network namespace: a name under /run/netns or a path like /proc/PID/ns/net")
	f.BoolVar(&opts.Block, "block", false, "ban detected sources in nftables")
	f.BoolVar(&opts.DryRun, "dry-run", false, "with --block: say what would be banned, ban nothing")
	f.DurationVar(&opts.Ban, "ban", 10*time.Minute, "first ban of a source; doubled for each repeat")
	f.DurationVar(&opts.MaxBan, "max-ban", 24*time.Hour, "longest ban")
	f.BoolVar(&opts.ClosedOnly, "closed-only", false, "only attempts to ports nothing listens on")
	f.BoolVar(&opts.UDP, "udp", false, "also capture the first datagram of each UDP flow")
	f.BoolVar(&opts.ICMP, "icmp", false, "also capture ICMP echo requests (a ping sweep is a horizontal scan)")
	f.StringSliceVar(&opts.Allow, "allow", nil, "never block these prefixes (repeatable, comma-separated)")
	d := watch.DefaultThresholds
	f.DurationVar(&th.Window, "window", d.Window, "window of --ports, --hosts and --odd")
	f.IntVar(&th.Ports, "ports", d.Ports, "distinct ports on one address within --window that make a vertical scan")
	f.IntVar(&th.Hosts, "hosts", d.Hosts, "distinct local addresses on one port within --window that make a sweep")
	f.DurationVar(&th.SlowWindow, "slow-window", d.SlowWindow, "window of --slow-pairs")
	f.IntVar(&th.SlowPairs, "slow-pairs", d.SlowPairs, "distinct address and port pairs within --slow-window that make a slow scan")
	f.IntVar(&th.Odd, "odd", d.Odd, "FIN, NULL, Xmas and other odd-flag probes within --window that make a scan")
	f.IntVar(&th.Prefix4, "prefix4", d.Prefix4, "IPv4 sources are counted and banned as this prefix length")
	f.IntVar(&th.Prefix6, "prefix6", d.Prefix6, "IPv6 sources are counted and banned as this prefix length")
	f.DurationVar(&th.Forget, "forget", d.Forget, "offences older than this no longer lengthen a ban")
	f.Uint32Var(&opts.Rate, "rate", watch.DefaultRate, "attempts logged per second at most, in the kernel (the rest are counted)")
	f.Uint32Var(&opts.Burst, "burst", watch.DefaultBurst, "attempts logged at once above --rate")
	f.Uint16Var(&opts.Group, "group", watch.DefaultGroup, "NFLOG group")
	f.Uint32Var(&opts.Queue, "queue-threshold", 1, "attempts the kernel gathers before handing them over (more: less work per attempt, up to 20ms later)")
	f.StringVar(&opts.Log, "log", "", "append every event to this JSON Lines `FILE` (- for stdout)")
	addDBFlags(cmd, &opts.DB)
	f.BoolVar(&opts.NoStore, "no-store", false, "do not write events to the store")
	f.StringVar(&opts.Metrics, "metrics", "", "serve Prometheus metrics on host:port at /metrics")
	f.DurationVar(&opts.Refresh, "refresh", time.Second, "redraw the terminal view this often")
	f.StringVar(&opts.Resolv, "resolv-conf", "/etc/resolv.conf", "resolvers to never block")
	f.Lookup("resolv-conf").Hidden = true // for tests
	return cmd
}

func (o *WatchPortsOptions) check() error {
	// The flags default to the thresholds' defaults, so a 0 here was
	// typed: an error, not "the default" as in watch.Thresholds.
	th := o.Thresholds
	for _, c := range []struct {
		flag string
		v    int
	}{{"ports", th.Ports}, {"hosts", th.Hosts}, {"slow-pairs", th.SlowPairs}, {"odd", th.Odd}, {"prefix4", th.Prefix4}, {"prefix6", th.Prefix6}} {
		if c.v <= 0 {
			return fmt.Errorf("--%s %d: want 1 or more", c.flag, c.v)
		}
	}
	for _, c := range []struct {
		flag string
		v    time.Duration
	}{{"window", th.Window}, {"slow-window", th.SlowWindow}, {"forget", th.Forget}} {
		if c.v <= 0 {
			return fmt.Errorf("--%s %v: want a positive duration", c.flag, c.v)
		}
	}
	if err := th.Validate(); err != nil {
		return err
	}
	if o.DryRun && !o.Block {
		return errors.New("--dry-run goes with --block")
	}
	if o.Ban <= 0 || o.MaxBan < o.Ban {
		return fmt.Errorf("--ban %v --max-ban %v: want 0 < ban <= max-ban", o.Ban, o.MaxBan)
	}
	if o.Refresh < 50*time.Millisecond {
		return fmt.Errorf("--refresh %v: want 50ms or more", o.Refresh)
	}
	return nil
}

func parseAllow(in []string) ([]netip.Prefix, error) {
	var out []netip.Prefix
	for _, s := range in {
		p, err := netip.ParsePrefix(s)
		if err != nil {
			a, aerr := netip.ParseAddr(s)
			if aerr != nil {
				return nil, fmt.Errorf("--allow %q: want an address or a prefix", s)
			}
			p = netip.PrefixFrom(a, a.BitLen())
		}
		out = append(out, p.Masked())
	}
	return out, nil
}

func runWatchPorts(ctx context.Context, g *Globals, opts WatchPortsOptions) error {
	if err := opts.check(); err != nil {
		return usageErr(err)
	}
	allow, err := parseAllow(opts.Allow)
	if err != nil {
		return usageErr(err)
	}
	// Daemon logs: never wait for stderr.
	lw := daemon.NewLogWriter(g.io.ErrOut, 0)
	level := slog.LevelWarn
	if g.Verbose >= 2 {
		level = slog.LevelDebug
	} else if g.Verbose == 1 {
		level = slog.LevelInfo
	}
	log := slog.New(slog.NewTextHandler(lw, &slog.HandlerOptions{Level: level}))
	lw.OnDrop = func(n uint64) { log.Warn("log lines dropped while stderr stalled", "lines", n) }
	closeWriter := func(w *daemon.LogWriter) {
		fctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		w.Close(fctx)
	}
	defer closeWriter(lw)

	nbSrc := watch.NeverBlockSources{Netns: opts.NetNS, ResolvConf: opts.Resolv, SSHConnection: os.Getenv("SSH_CONNECTION"), Allow: allow}
	nb, err := watch.GatherNeverBlock(ctx, nbSrc)
	if err != nil {
		return err
	}
	log.Info("never block", "entries", fmt.Sprint(nb.Entries()))

	ns, err := firewall.OpenNetns(opts.NetNS)
	if err != nil {
		return err
	}
	defer ns.Close()
	capt := &watch.Capture{NetNS: ns.FD(), Group: opts.Group, Rate: opts.Rate, Burst: opts.Burst, UDP: opts.UDP, ICMP: opts.ICMP,
		Prefix4: opts.Thresholds.Prefix4, Prefix6: opts.Thresholds.Prefix6, Logger: log}
	if opts.NetNS == "" {
		capt.NetNS = 0
	}
	w := &watch.Watcher{Thresholds: opts.Thresholds, DryRun: opts.DryRun, Ban: opts.Ban, MaxBan: opts.MaxBan, NeverBlock: nb, Logger: log}
	if opts.Block && !opts.DryRun {
		w.Blocker = capt
	}

	sinks := &eventSinks{log: log}
	defer sinks.close(closeWriter)
	if opts.ClosedOnly {
		l := &watch.Listening{Netns: opts.NetNS, Logger: log}
		if err := l.Refresh(ctx); err != nil {
			return err
		}
		lctx, stop := context.WithCancel(ctx)
		defer stop()
		go l.Run(lctx)
		w.Keep = l.Closed
	}
	if opts.Log != "" {
		out := g.io.Out
		if opts.Log != "-" {
			f, err := os.OpenFile(opts.Log, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o640)
			if err != nil {
				return fmt.Errorf("open event log: %w", err)
			}
			defer f.Close()
			out = f
		}
		sinks.jsonl = daemon.NewLogWriter(out, 0)
		sinks.jsonl.OnDrop = func(n uint64) { log.Warn("event log lines dropped while the log stalled", "lines", n) }
	}
	if !opts.NoStore {
		db, err := opts.DB.open(ctx, true)
		if err != nil {
			return err
		}
		defer db.Close()
		sinks.store = newEventStore(db, log)
		defer sinks.store.close() // before db.Close
	}
	live := output.IsTerminal(g.io.Out) && opts.Log != "-"
	var view *portsView
	switch {
	case live:
		view = newPortsView(output.ColorEnabled(g.io.Out, g.NoColor))
		sinks.view = view
	case opts.Log != "-":
		sinks.lines = daemon.NewLogWriter(g.io.Out, 0)
		sinks.linesJSON = g.JSON
	}
	w.OnEvent = sinks.emit

	cctx, stopCapture := context.WithCancel(context.WithoutCancel(ctx))
	defer stopCapture()
	rn, err := capt.Start(cctx, w, opts.Queue, 20*time.Millisecond)
	if err != nil {
		return fmt.Errorf("watch: %w", err)
	}
	served := make(chan error, 1)
	go func() { served <- rn.Serve(cctx) }()
	log.Info("watching", "netns", opts.NetNS, "group", capt.Group, "rate", opts.Rate, "block", opts.Block, "dry_run", opts.DryRun)

	if live {
		vctx, stopView := context.WithCancel(ctx)
		defer stopView()
		go view.run(vctx, g.io.Out, opts.Refresh, w)
	}
	if opts.Metrics != "" {
		reg := daemon.NewRegistry()
		reg.MustRegister(w, prometheus.NewCounterFunc(prometheus.CounterOpts{
			Name: "portolan_watch_events_dropped_total",
			Help: "Events the store, the event log or the output could not keep up with, dropped.",
		}, func() float64 { return float64(sinks.dropped()) }))
		mctx, stopMetrics := context.WithCancel(context.Background())
		defer stopMetrics()
		addr, err := daemon.ServeMetrics(mctx, opts.Metrics, reg, log)
		if err != nil {
			stopCapture()
			<-served
			rn.Close(context.Background())
			return err
		}
		log.Info("metrics", "addr", addr.String())
	}

	var serveErr error
	err = daemon.Run(ctx, daemon.Options{
		Logger:       log,
		DrainTimeout: 10 * time.Second,
		Reload: func(ctx context.Context) error {
			nb, err := watch.GatherNeverBlock(ctx, nbSrc)
			if err != nil {
				return err
			}
			w.SetNeverBlock(nb)
			log.Info("reloaded the never-block list", "entries", fmt.Sprint(nb.Entries()))
			return nil
		},
		Drain: func(dctx context.Context) error {
			stopCapture()
			serveErr = <-served
			return rn.Close(dctx)
		},
	})
	if serveErr != nil {
		return serveErr
	}
	st := w.Stats()
	log.Info("stopped", "attempts", st.Attempts, "detections", st.Detections, "blocks", st.Blocks, "rate_limited", st.RateLimited, "socket_lost", st.SocketLost)
	return err
}

// eventSinks fans events out to the places that want them, none of which
// may hold up the capture: log writers queue and drop, the store and the
// view take events over bounded channels and drop (counted) when full.
type eventSinks struct {
	log       *slog.Logger
	jsonl     *daemon.LogWriter // --log
	lines     *daemon.LogWriter // stdout when it is not a terminal
	linesJSON bool
	store     *eventStore
	view      *portsView
	buf       []byte
}

func (s *eventSinks) emit(e watch.Event) {
	if s.jsonl != nil || (s.lines != nil && s.linesJSON) {
		b, err := json.Marshal(e)
		if err == nil {
			b = append(b, '\n')
			if s.jsonl != nil {
				s.jsonl.Write(b)
			}
			if s.lines != nil && s.linesJSON {
				s.lines.Write(b)
			}
		}
	}
	if s.lines != nil && !s.linesJSON {
		s.buf = appendEventLine(s.buf[:0], e)
		s.lines.Write(s.buf)
	}
	if s.store != nil {
		s.store.add(e)
	}
	if s.view != nil {
		s.view.add(e)
	}
}

func (s *eventSinks) dropped() uint64 {
	var n uint64
	for _, w := range []*daemon.LogWriter{s.jsonl, s.lines} {
		if w != nil {
			n += w.Dropped()
		}
	}
	if s.store != nil {
		n += s.store.dropped.Load()
	}
	if s.view != nil {
		n += s.view.dropped.Load()
	}
	return n
}

func (s *eventSinks) close(closeWriter func(*daemon.LogWriter)) {
	for _, w := range []*daemon.LogWriter{s.jsonl, s.lines} {
		if w != nil {
			closeWriter(w)
		}
	}
}

// appendEventLine is the plain line of an event.
func appendEventLine(b []byte, e watch.Event) []byte {
	b = e.Time.AppendFormat(b, "2006-01-02T15:04:05.000Z07:00")
	switch e.Type {
	case watch.TypeAttempt:
		if e.Kind == watch.KindEcho {
			b = fmt.Appendf(b, " attempt echo %s -> %s\n", e.Src, e.Dst)
			break
		}
		b = fmt.Appendf(b, " attempt %s %s -> %s/%s\n", e.Kind, netip.AddrPortFrom(e.Src, e.SrcPort), netip.AddrPortFrom(e.Dst, uint16(e.Port)), e.Proto)
	case watch.TypeDetection:
		last := netip.AddrPortFrom(e.Dst, uint16(e.Port)).String() + "/" + e.Proto.String()
		if e.Kind == watch.KindEcho {
			last = "echo to " + e.Dst.String()
		}
		b = fmt.Appendf(b, " detection %s %s scan score %.2f offence %d (last probe %s)\n", e.Source, e.Scan, e.Score, e.Offence, last)
	case watch.TypeBlock:
		ban := ""
		if e.Ban > 0 {
			ban = " for " + e.Ban.String()
		}
		b = fmt.Appendf(b, " block %s %s%s\n", e.Source, e.Action, ban)
	}
	return b
}

// eventStore writes events to the store in batches from its own
// goroutine; when the store falls behind, events are dropped and counted.
// A stalled store (another process holding the SQLite file locked, a slow
// disk) holds up only that goroutine, and on exit it gets storeDrain to
// take what is queued, not a busy timeout per batch.
type eventStore struct {
	db      *store.Store
	log     *slog.Logger
	ch      chan watch.Event
	done    chan struct{}
	ctx     context.Context // cancelled when the drain on exit runs out
	cancel  context.CancelFunc
	dropped atomic.Uint64
}

// storeDrain is how long the store may take, on exit, to write the
// events still queued.
const storeDrain = 3 * time.Second

func newEventStore(db *store.Store, log *slog.Logger) *eventStore {
	s := &eventStore{db: db, log: log, ch: make(chan watch.Event, 65536), done: make(chan struct{})}
	s.ctx, s.cancel = context.WithCancel(context.Background())
	go s.run()
	return s
}

func (s *eventStore) add(e watch.Event) {
	select {
	case s.ch <- e:
	default:
		s.dropped.Add(1)
	}
}

func (s *eventStore) run() {
	defer close(s.done)
	batch := make([]watch.Event, 0, 4096)
	tick := time.NewTicker(200 * time.Millisecond)
	defer tick.Stop()
	flush := func() {
		if len(batch) == 0 {
			return
		}
		if s.ctx.Err() != nil { // out of time on exit: count, do not try
			s.dropped.Add(uint64(len(batch)))
		} else if err := s.db.AddEvents(s.ctx, batch); err != nil {
			s.dropped.Add(uint64(len(batch)))
			if s.ctx.Err() == nil {
				s.log.Error("store events", "err", err)
			}
		}
		batch = batch[:0]
	}
	for {
		select {
		case e, ok := <-s.ch:
			if !ok {
				flush()
				return
			}
			batch = append(batch, e)
			if len(batch) == cap(batch) {
				flush()
			}
		case <-tick.C:
			flush()
		}
	}
}

// close writes what is queued, for at most storeDrain, and says how many
// events never reached the store.
func (s *eventStore) close() {
	close(s.ch)
	t := time.NewTimer(storeDrain)
	defer t.Stop()
	select {
	case <-s.done:
	case <-t.C:
		s.cancel()
		select {
		case <-s.done:
		case <-time.After(time.Second): // a write the driver cannot interrupt (a hung disk): leave it
			s.dropped.Add(uint64(len(s.ch)))
		}
	}
	s.cancel()
	if n := s.dropped.Load(); n > 0 {
		s.log.Warn("events not stored: the store did not keep up", "events", n, "db", s.db.Path())
	}
}
