package forward

import (
	"maps"
	"net/netip"
	"sort"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// ruleStats are the counters and limits of one rule name; they outlive
// reloads so that limits count connections started under an older version
// of the rule too.
type ruleStats struct {
	name     string
	proto    Proto
	active   atomic.Int64 // TCP connections or UDP sessions now
	total    atomic.Uint64
	toTarget atomic.Uint64
	toClient atomic.Uint64
	denied   atomic.Uint64
	limited  atomic.Uint64
	dialErrs atomic.Uint64
	// proxyErrs counts connections from trusted proxies whose PROXY
	// header was bad or late.
	proxyErrs atomic.Uint64
	dialHist  [len(dialBuckets) + 1]atomic.Uint64
	dialSum   atomic.Int64 // nanoseconds

	mu      sync.Mutex
	perSrc  map[netip.Addr]int
	targets map[string]*targetStats // by address as written in the rule; kept across reloads

	sniRejected atomic.Uint64 // no complete ClientHello in time, or no route for its name

	queue slotQueue // clients waiting for a slot (Rule.QueueTimeout)
}

// targetStats are one target's counters under one rule.
type targetStats struct {
	active   atomic.Int64  // connections or sessions relayed to it now
	total    atomic.Uint64 // connected (UDP: sessions opened)
	dialErrs atomic.Uint64 // connect attempts that failed (each candidate tried counts)
}

// target returns the counters of the target at addr, made on first use.
func (s *ruleStats) target(addr string) *targetStats {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.targets == nil {
		s.targets = map[string]*targetStats{}
	}
	t := s.targets[addr]
	if t == nil {
		t = &targetStats{}
		s.targets[addr] = t
	}
	return t
}

// dialBuckets are the upper bounds of the dial latency histogram, in seconds.
var dialBuckets = [...]float64{0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5}

func (s *ruleStats) observeDial(d time.Duration) {
	sec := d.Seconds()
	i := sort.SearchFloat64s(dialBuckets[:], sec)
	s.dialHist[i].Add(1)
	s.dialSum.Add(int64(d))
}

// acquire takes a connection slot for src under the limits; false means a limit is reached.
func (s *ruleStats) acquire(src netip.Addr, max, perSrc int) bool {
	if n := s.active.Add(1); max > 0 && n > int64(max) {
		s.active.Add(-1)
		return false
	}
	if perSrc > 0 {
		s.mu.Lock()
		if s.perSrc[src] >= perSrc {
			s.mu.Unlock()
			s.active.Add(-1)
			return false
		}
		s.perSrc[src]++
		s.mu.Unlock()
	}
	return true
}

func (s *ruleStats) release(src netip.Addr, perSrc bool) {
	s.active.Add(-1)
	if perSrc {
		s.mu.Lock()
		if s.perSrc[src]--; s.perSrc[src] <= 0 {
			delete(s.perSrc, src)
		}
		s.mu.Unlock()
	}
	if s.queue.n.Load() > 0 {
		s.serve() // the oldest waiting client takes the slot
	}
}

// The metrics' descriptions. Rule series carry rule and proto labels;
// target series add the target.
var (
	ruleLabels   = []string{"rule", "proto"}
	targetLabels = []string{"rule", "proto", "target"}

	descActive      = prometheus.NewDesc("portolan_forward_connections_active", "TCP connections being relayed.", ruleLabels, nil)
	descSessions    = prometheus.NewDesc("portolan_forward_udp_sessions_active", "UDP sessions open.", ruleLabels, nil)
	descTotal       = prometheus.NewDesc("portolan_forward_connections_total", "TCP connections relayed (a target answered), and UDP sessions opened.", ruleLabels, nil)
	descRejected    = prometheus.NewDesc("portolan_forward_rejected_total", "Clients refused, by reason: denied by allow/deny, limit (max-conns, max-conns-per-source, pending PROXY headers), proxy_header (bad or late PROXY header), sni (no complete TLS ClientHello in time, or no route for its server name).", append(ruleLabels, "reason"), nil)
	descBytes       = prometheus.NewDesc("portolan_forward_bytes_total", "Bytes relayed, by direction; counted as they move (at least once a second).", append(ruleLabels, "direction"), nil)
	descDialErrs    = prometheus.NewDesc("portolan_forward_dial_errors_total", "Clients that got a reset because no target could be connected to.", ruleLabels, nil)
	descDial        = prometheus.NewDesc("portolan_forward_dial_seconds", "Time from accepting a client to connecting to its target.", ruleLabels, nil)
	descTargetUp    = prometheus.NewDesc("portolan_forward_target_up", "1 if the target is in the rotation, 0 if a health check marked it down or dial failures took it out.", targetLabels, nil)
	descTargetAct   = prometheus.NewDesc("portolan_forward_target_connections_active", "Connections or UDP sessions relayed to the target now.", targetLabels, nil)
	descTargetTotal = prometheus.NewDesc("portolan_forward_target_connections_total", "Connections made to the target (UDP: sessions opened).", targetLabels, nil)
	descTargetErrs  = prometheus.NewDesc("portolan_forward_target_dial_errors_total", "Connect attempts to the target that failed.", targetLabels, nil)
)

// Describe sends the descriptions of the server's metrics: a Server is a
// prometheus.Collector.
func (s *Server) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{descActive, descSessions, descTotal, descRejected, descBytes, descDialErrs, descDial,
		descTargetUp, descTargetAct, descTargetTotal, descTargetErrs, descQueue} {
		ch <- d
	}
}

// Collect sends the current value of every rule's and target's metrics.
// The counters are read as they stand; nothing on the relay's paths waits
// for a scrape.
func (s *Server) Collect(ch chan<- prometheus.Metric) {
	s.mu.Lock()
	stats := make([]*ruleStats, 0, len(s.stats))
	for _, st := range s.stats {
		stats = append(stats, st)
	}
	// Targets of the rules running now, for their state.
	up := map[*targetStats]bool{}
	for _, l := range s.listeners {
		var now int64
		for _, t := range l.state().pool.targets {
			up[t.stats] = t.available(&now)
		}
		for _, p := range l.state().sni.pools() {
			for _, t := range p.targets {
				up[t.stats] = t.available(&now)
			}
		}
	}
	s.mu.Unlock()

	gauge, counter := prometheus.GaugeValue, prometheus.CounterValue
	for _, st := range stats {
		rule, proto := st.name, st.proto.String()
		if st.proto == TCP {
			ch <- prometheus.MustNewConstMetric(descActive, gauge, float64(st.active.Load()), rule, proto)
			ch <- st.dialHistogram(rule, proto)
		} else {
			ch <- prometheus.MustNewConstMetric(descSessions, gauge, float64(st.active.Load()), rule, proto)
		}
		ch <- prometheus.MustNewConstMetric(descTotal, counter, float64(st.total.Load()), rule, proto)
		ch <- prometheus.MustNewConstMetric(descRejected, counter, float64(st.denied.Load()), rule, proto, "denied")
		ch <- prometheus.MustNewConstMetric(descRejected, counter, float64(st.limited.Load()), rule, proto, "limit")
		ch <- prometheus.MustNewConstMetric(descRejected, counter, float64(st.proxyErrs.Load()), rule, proto, "proxy_header")
		if st.proto == TCP {
			ch <- prometheus.MustNewConstMetric(descRejected, counter, float64(st.sniRejected.Load()), rule, proto, "sni")
			st.collectQueue(ch, rule, proto)
		}
		ch <- prometheus.MustNewConstMetric(descBytes, counter, float64(st.toTarget.Load()), rule, proto, "to_target")
		ch <- prometheus.MustNewConstMetric(descBytes, counter, float64(st.toClient.Load()), rule, proto, "to_client")
		ch <- prometheus.MustNewConstMetric(descDialErrs, counter, float64(st.dialErrs.Load()), rule, proto)
		st.mu.Lock()
		targets := make(map[string]*targetStats, len(st.targets))
		maps.Copy(targets, st.targets)
		st.mu.Unlock()
		for addr, t := range targets {
			isUp, running := up[t]
			if running {
				ch <- prometheus.MustNewConstMetric(descTargetUp, gauge, boolFloat(isUp), rule, proto, addr)
			}
			ch <- prometheus.MustNewConstMetric(descTargetAct, gauge, float64(t.active.Load()), rule, proto, addr)
			ch <- prometheus.MustNewConstMetric(descTargetTotal, counter, float64(t.total.Load()), rule, proto, addr)
			ch <- prometheus.MustNewConstMetric(descTargetErrs, counter, float64(t.dialErrs.Load()), rule, proto, addr)
		}
	}
}

func (s *ruleStats) dialHistogram(rule, proto string) prometheus.Metric {
	buckets := make(map[float64]uint64, len(dialBuckets))
	var cum uint64
	for i, le := range dialBuckets {
		cum += s.dialHist[i].Load()
		buckets[le] = cum
	}
	cum += s.dialHist[len(dialBuckets)].Load()
	return prometheus.MustNewConstHistogram(descDial, cum, time.Duration(s.dialSum.Load()).Seconds(), buckets, rule, proto)
}

func boolFloat(b bool) float64 {
	if b {
		return 1
	}
	return 0
}
