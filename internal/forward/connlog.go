package forward

import (
	"context"
	"log/slog"
	"net/netip"
	"sync"
	"time"
)

// connLog writes the one line per finished connection or UDP session off
// the relays' threads. A relay hands over a record (a few words, nothing
// formatted) and a goroutine formats and writes the records in batches:
// formatting and writing a line took a short connection's event loop
// about 8 us, on the path of the next connection. A line keeps the time
// its connection ended. The queue is bounded: beyond maxQueuedLines a
// relay writes its line itself. Under the logger, a writer that never
// waits for a slow sink (daemon.LogWriter, as the CLI uses) keeps a
// stalled log from holding up the relay.
type connLog struct {
	mu      sync.Mutex
	recs    []connRecord
	spare   []connRecord
	running bool       // a writer goroutine is on its way
	write   sync.Mutex // held while records are written, so flush waits for a batch in hand
}

// connRecord is one line waiting to be written.
type connRecord struct {
	logger         *slog.Logger
	level          slog.Level
	end            time.Time
	dur            time.Duration
	rule, proto    string
	client         netip.AddrPort
	via            string // a unix listener's address, logged as the client (which has no IP address)
	target, reason string
	up, down       int64
	sni            string // server name of an SNI-routed connection
}

const (
	maxQueuedLines = 4096
	// lineBatch is how long the writer lets lines gather before it
	// writes them: one wake-up per batch, not one per connection.
	lineBatch = 20 * time.Millisecond
)

// add queues rec, or writes it at once if the queue is full.
func (q *connLog) add(rec connRecord) {
	q.mu.Lock()
	if len(q.recs) >= maxQueuedLines {
		q.mu.Unlock()
		rec.writeLine()
		return
	}
	q.recs = append(q.recs, rec)
	start := !q.running
	q.running = true
	q.mu.Unlock()
	if start {
		go q.run()
	}
}

// run writes batches until the queue is empty.
func (q *connLog) run() {
	for {
		time.Sleep(lineBatch)
		q.write.Lock()
		q.mu.Lock()
		recs := q.recs
		if len(recs) == 0 {
			q.running = false
			q.mu.Unlock()
			q.write.Unlock()
			return
		}
		q.recs = q.spare[:0]
		q.mu.Unlock()
		q.writeAll(recs)
		q.write.Unlock()
	}
}

// flush writes every queued line before it returns.
func (q *connLog) flush() {
	q.write.Lock()
	defer q.write.Unlock()
	q.mu.Lock()
	recs := q.recs
	q.recs = q.spare[:0]
	q.mu.Unlock()
	q.writeAll(recs)
}

// writeAll writes recs and keeps the slice for the next batch. The
// caller holds q.write.
func (q *connLog) writeAll(recs []connRecord) {
	for i := range recs {
		recs[i].writeLine()
		recs[i] = connRecord{} // let go of the logger and strings
	}
	q.mu.Lock()
	q.spare = recs[:0]
	q.mu.Unlock()
}

func (r *connRecord) writeLine() {
	rec := slog.NewRecord(r.end, r.level, "conn", 0)
	rec.AddAttrs(
		slog.String("rule", r.rule), slog.String("proto", r.proto),
		slog.String("client", r.clientString()), slog.String("target", r.target),
		slog.Int64("bytes_to_target", r.up), slog.Int64("bytes_to_client", r.down),
		slog.Duration("duration", r.dur), slog.String("reason", r.reason))
	if r.sni != "" {
		rec.AddAttrs(slog.String("sni", r.sni))
	}
	r.logger.Handler().Handle(context.Background(), rec)
}

// logConnLine queues the line of a finished connection or session, if
// its level is enabled.
func (s *Server) logConnLine(rs *ruleState, proto string, level slog.Level, client netip.AddrPort, target string, up, down int64, start time.Time, reason string) {
	s.logConnLineSNI(rs, proto, level, client, target, "", up, down, start, reason)
}

// logConnLineSNI is logConnLine with the server name of an SNI-routed
// connection ("" for none).
func (s *Server) logConnLineSNI(rs *ruleState, proto string, level slog.Level, client netip.AddrPort, target, sni string, up, down int64, start time.Time, reason string) {
	l := s.logger()
	if !l.Enabled(context.Background(), level) {
		return
	}
	end := time.Now()
	s.lines.add(connRecord{
		logger: l, level: level, end: end, dur: end.Sub(start),
		rule: rs.name, proto: proto, client: client, target: target, reason: reason,
		up: up, down: down, sni: sni, via: unixListen(rs, client),
	})
}
