package forward

import (
	"fmt"
	"io"
	"net/netip"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"
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
	dialHist [len(dialBuckets) + 1]atomic.Uint64
	dialSum  atomic.Int64 // nanoseconds

	mu     sync.Mutex
	perSrc map[netip.Addr]int

	sniRejected atomic.Uint64 // no complete ClientHello in time, or no route for its name
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
}

// WriteMetrics writes every rule's counters in the Prometheus text
// exposition format (version 0.0.4).
func (s *Server) WriteMetrics(w io.Writer) error {
	s.mu.Lock()
	stats := make([]*ruleStats, 0, len(s.stats))
	for _, st := range s.stats {
		stats = append(stats, st)
	}
	s.mu.Unlock()
	sort.Slice(stats, func(i, j int) bool { return stats[i].name < stats[j].name })

	var b strings.Builder
	family := func(name, typ, help string, each func(st *ruleStats, l string)) {
		fmt.Fprintf(&b, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, typ)
		for _, st := range stats {
			each(st, `rule="`+escapeLabel(st.name)+`",proto="`+st.proto.String()+`"`)
		}
	}
	family("portolan_forward_connections_active", "gauge", "TCP connections being relayed.", func(st *ruleStats, l string) {
		if st.proto == TCP {
			fmt.Fprintf(&b, "portolan_forward_connections_active{%s} %d\n", l, st.active.Load())
		}
	})
	family("portolan_forward_connections_total", "counter", "TCP connections accepted and relayed, and UDP sessions opened.", func(st *ruleStats, l string) {
		fmt.Fprintf(&b, "portolan_forward_connections_total{%s} %d\n", l, st.total.Load())
	})
	family("portolan_forward_rejected_total", "counter", "Clients refused, by reason.", func(st *ruleStats, l string) {
		fmt.Fprintf(&b, "portolan_forward_rejected_total{%s,reason=\"denied\"} %d\n", l, st.denied.Load())
		fmt.Fprintf(&b, "portolan_forward_rejected_total{%s,reason=\"limit\"} %d\n", l, st.limited.Load())
		if st.proto == TCP {
			fmt.Fprintf(&b, "portolan_forward_rejected_total{%s,reason=\"sni\"} %d\n", l, st.sniRejected.Load())
		}
	})
	family("portolan_forward_bytes_total", "counter", "Bytes relayed, by direction.", func(st *ruleStats, l string) {
		fmt.Fprintf(&b, "portolan_forward_bytes_total{%s,direction=\"to_target\"} %d\n", l, st.toTarget.Load())
		fmt.Fprintf(&b, "portolan_forward_bytes_total{%s,direction=\"to_client\"} %d\n", l, st.toClient.Load())
	})
	family("portolan_forward_dial_errors_total", "counter", "Connections whose targets all failed (the client got a reset).", func(st *ruleStats, l string) {
		fmt.Fprintf(&b, "portolan_forward_dial_errors_total{%s} %d\n", l, st.dialErrs.Load())
	})
	family("portolan_forward_dial_seconds", "histogram", "Time to connect to a target.", func(st *ruleStats, l string) {
		if st.proto != TCP {
			return
		}
		var cum uint64
		for i, le := range dialBuckets {
			cum += st.dialHist[i].Load()
			fmt.Fprintf(&b, "portolan_forward_dial_seconds_bucket{%s,le=\"%g\"} %d\n", l, le, cum)
		}
		cum += st.dialHist[len(dialBuckets)].Load()
		fmt.Fprintf(&b, "portolan_forward_dial_seconds_bucket{%s,le=\"+Inf\"} %d\n", l, cum)
		fmt.Fprintf(&b, "portolan_forward_dial_seconds_sum{%s} %g\n", l, time.Duration(st.dialSum.Load()).Seconds())
		fmt.Fprintf(&b, "portolan_forward_dial_seconds_count{%s} %d\n", l, cum)
	})
	family("portolan_forward_udp_sessions_active", "gauge", "UDP sessions open.", func(st *ruleStats, l string) {
		if st.proto == UDP {
			fmt.Fprintf(&b, "portolan_forward_udp_sessions_active{%s} %d\n", l, st.active.Load())
		}
	})
	_, err := io.WriteString(w, b.String())
	return err
}

var labelEscaper = strings.NewReplacer(`\`, `\\`, `"`, `\"`, "\n", `\n`)

func escapeLabel(s string) string { return labelEscaper.Replace(s) }
