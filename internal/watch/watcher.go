package watch

import (
	"context"
	"log/slog"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// Blocker bans a source prefix for a while. The Linux capture (Capture)
// is one: it adds the prefix to an nftables set with a kernel timeout.
type Blocker interface {
	Ban(ctx context.Context, p netip.Prefix, d time.Duration) error
}

// Watcher turns attempts into events: it filters them, feeds the
// detector, and bans what it detects unless the never-block list holds
// the source. Handle is called from one goroutine (the capture loop);
// the counters and Collect may be read from any.
type Watcher struct {
	// Thresholds of the detector; zero fields take the defaults.
	Thresholds Thresholds
	// Blocker bans detected sources. Nil: detections are only reported.
	Blocker Blocker
	// DryRun reports the bans it would make (Action "dry-run") without
	// making them.
	DryRun bool
	// Ban is the first ban of a source; each later offence within
	// Thresholds.Forget doubles it, up to MaxBan. 0: 10 minutes.
	Ban time.Duration
	// MaxBan caps escalated bans. 0: 24 hours.
	MaxBan time.Duration
	// NeverBlock lists sources never banned. Nil: none.
	NeverBlock *NeverBlock
	// Keep, when set, drops attempts it says no to before anything
	// counts them (--closed-only keeps attempts to ports nobody
	// listens on).
	Keep func(*Attempt) bool
	// OnEvent gets every event, on the capture goroutine: it must not
	// block (queue and drop, as daemon.LogWriter does). Nil: none.
	OnEvent func(Event)
	// Logger gets detections, bans and errors. Nil: discard.
	Logger *slog.Logger

	once sync.Once
	det  *Detector
	nb   atomic.Pointer[NeverBlock] // NeverBlock, or what SetNeverBlock put

	attempts                   [KindEcho + 1]atomic.Uint64
	filtered                   atomic.Uint64
	detections                 [4]atomic.Uint64 // by scanKinds index
	blocks, refused, blockErrs atomic.Uint64
	untracked                  atomic.Uint64
	sources                    atomic.Int64

	// Capture-side counters, set by the capture loop.
	decodeErrs atomic.Uint64
	socketLost atomic.Uint64 // NFLOG messages the socket lost
	rateDrops  atomic.Uint64 // attempts over the in-kernel rate limit (not logged)
	banDrops   atomic.Uint64 // packets of banned sources dropped
}

var scanKinds = [4]ScanKind{Vertical, Horizontal, Slow, OddProbe}

func (w *Watcher) init() {
	w.once.Do(func() {
		w.det = NewDetector(w.Thresholds)
		if w.nb.Load() == nil && w.NeverBlock != nil {
			w.nb.Store(w.NeverBlock)
		}
	})
}

// SetNeverBlock replaces the never-block list (on reload: routes and
// resolvers change); safe while Handle runs.
func (w *Watcher) SetNeverBlock(nb *NeverBlock) {
	w.init()
	w.nb.Store(nb)
}

func (w *Watcher) log() *slog.Logger {
	if w.Logger != nil {
		return w.Logger
	}
	return slog.New(slog.DiscardHandler)
}

// Handle processes one attempt: the attempt event, and when it crosses a
// threshold, a detection event and a block event.
func (w *Watcher) Handle(ctx context.Context, a Attempt) {
	w.init()
	if w.Keep != nil && !w.Keep(&a) {
		w.filtered.Add(1)
		return
	}
	if int(a.Kind) < len(w.attempts) {
		w.attempts[a.Kind].Add(1)
	}
	w.emit(AttemptEvent(a))
	d, ok := w.det.Observe(a)
	w.untracked.Store(w.det.Untracked())
	w.sources.Store(int64(w.det.Sources()))
	if !ok {
		return
	}
	for i, k := range scanKinds {
		if k == d.Kind {
			w.detections[i].Add(1)
		}
	}
	w.emit(DetectionEvent(d))
	w.log().Warn("scan detected", "source", d.Source, "kind", d.Kind, "score", d.Score, "ports", d.Ports, "hosts", d.Hosts, "pairs", d.Pairs, "odd", d.Odd, "offence", d.Offence)
	if w.Blocker == nil && !w.DryRun {
		return
	}
	ev := DetectionEvent(d)
	ev.Type = TypeBlock
	ban := BanFor(w.banBase(), w.maxBan(), d.Offence)
	if nb := w.nb.Load(); nb != nil {
		if reason, refused := nb.Check(d.Source); refused {
			w.refused.Add(1)
			ev.Action = "never-block: " + reason
			w.log().Warn("not blocking: on the never-block list", "source", d.Source, "entry", reason)
			w.emit(ev)
			return
		}
	}
	ev.Ban = ban
	switch {
	case w.DryRun:
		ev.Action = "dry-run"
		w.log().Info("would block (dry run)", "source", d.Source, "ban", ban.String())
	default:
		if err := w.Blocker.Ban(ctx, d.Source, ban); err != nil {
			w.blockErrs.Add(1)
			ev.Action, ev.Ban = "error: "+err.Error(), 0
			w.log().Error("block", "source", d.Source, "err", err)
		} else {
			w.det.Quiet(d.Source, d.Time.Add(ban))
			w.blocks.Add(1)
			ev.Action = "blocked"
			w.log().Warn("blocked", "source", d.Source, "ban", ban.String(), "offence", d.Offence)
		}
	}
	w.emit(ev)
}

func (w *Watcher) banBase() time.Duration {
	if w.Ban > 0 {
		return w.Ban
	}
	return 10 * time.Minute
}

func (w *Watcher) maxBan() time.Duration {
	if w.MaxBan > 0 {
		return w.MaxBan
	}
	return 24 * time.Hour
}

func (w *Watcher) emit(e Event) {
	if w.OnEvent != nil {
		w.OnEvent(e)
	}
}

// Stats are the watcher's counters.
type Stats struct {
	Attempts   uint64 // attempts kept (after Keep)
	Filtered   uint64 // attempts Keep dropped
	Detections uint64
	Blocks     uint64
	Refused    uint64 // bans refused by the never-block list
	BlockErrs  uint64
	DecodeErrs uint64
	// KernelDrops are attempts the daemon never saw: over the in-kernel
	// rate limit (RateLimited) or lost from a full socket (SocketLost).
	RateLimited, SocketLost uint64
	BannedPackets           uint64 // packets from banned sources the kernel dropped
}

// Stats returns the counters now.
func (w *Watcher) Stats() Stats {
	var s Stats
	for i := range w.attempts {
		s.Attempts += w.attempts[i].Load()
	}
	for i := range w.detections {
		s.Detections += w.detections[i].Load()
	}
	s.Filtered = w.filtered.Load()
	s.Blocks, s.Refused, s.BlockErrs = w.blocks.Load(), w.refused.Load(), w.blockErrs.Load()
	s.DecodeErrs = w.decodeErrs.Load()
	s.RateLimited, s.SocketLost, s.BannedPackets = w.rateDrops.Load(), w.socketLost.Load(), w.banDrops.Load()
	return s
}

var (
	descAttempts   = prometheus.NewDesc("portolan_watch_attempts_total", "Connection attempts captured and kept, by kind (syn, fin, null, xmas, odd, udp, echo).", []string{"kind"}, nil)
	descFiltered   = prometheus.NewDesc("portolan_watch_attempts_filtered_total", "Attempts captured but left out (--closed-only: to a port something listens on).", nil, nil)
	descDetections = prometheus.NewDesc("portolan_watch_detections_total", "Sources that crossed a threshold, by scan kind.", []string{"kind"}, nil)
	descBlocks     = prometheus.NewDesc("portolan_watch_blocks_total", "Sources banned, by result: blocked, never_block (refused by the never-block list), error.", []string{"result"}, nil)
	descDrops      = prometheus.NewDesc("portolan_watch_kernel_drops_total", "Attempts the daemon never saw, by reason: rate_limit (over the in-kernel limit of the capture rule), socket (NFLOG messages lost to a full socket buffer).", []string{"reason"}, nil)
	descBanned     = prometheus.NewDesc("portolan_watch_banned_packets_total", "Packets from banned sources dropped by the kernel.", nil, nil)
	descDecode     = prometheus.NewDesc("portolan_watch_decode_errors_total", "Captured packets that did not decode as an attempt.", nil, nil)
	descSources    = prometheus.NewDesc("portolan_watch_sources", "Sources the detector follows now.", nil, nil)
	descUntracked  = prometheus.NewDesc("portolan_watch_untracked_attempts_total", "Attempts from sources beyond the detector's limit of sources.", nil, nil)
)

// Describe implements prometheus.Collector.
func (w *Watcher) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{descAttempts, descFiltered, descDetections, descBlocks, descDrops, descBanned, descDecode, descSources, descUntracked} {
		ch <- d
	}
}

// Collect implements prometheus.Collector.
func (w *Watcher) Collect(ch chan<- prometheus.Metric) {
	c := func(d *prometheus.Desc, v uint64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.CounterValue, float64(v), labels...)
	}
	for k := KindSYN; k <= KindEcho; k++ {
		c(descAttempts, w.attempts[k].Load(), k.String())
	}
	c(descFiltered, w.filtered.Load())
	for i, k := range scanKinds {
		c(descDetections, w.detections[i].Load(), string(k))
	}
	c(descBlocks, w.blocks.Load(), "blocked")
	c(descBlocks, w.refused.Load(), "never_block")
	c(descBlocks, w.blockErrs.Load(), "error")
	c(descDrops, w.rateDrops.Load(), "rate_limit")
	c(descDrops, w.socketLost.Load(), "socket")
	c(descBanned, w.banDrops.Load())
	c(descDecode, w.decodeErrs.Load())
	ch <- prometheus.MustNewConstMetric(descSources, prometheus.GaugeValue, float64(w.sources.Load()))
	c(descUntracked, w.untracked.Load())
}
