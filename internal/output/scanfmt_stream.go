package output

import (
	"bufio"
	"encoding/csv"
	"fmt"
	"io"
	"net/netip"
	"strconv"
	"sync"
	"time"

	"portolan/internal/scan"
)

// StreamWriter writes results one at a time, as a scan finds them, in the
// formats that need no look-ahead: JSON Lines, CSV and the host:port list.
// Output is buffered and reaches w within FlushEvery of being written (a
// timer flushes it when results stop coming), on Flush and on Close, so a
// pipe downstream sees results as they come without one write(2) per
// result. It is safe for concurrent use.
type StreamWriter struct {
	mu     sync.Mutex
	format ScanFormat
	w      *bufio.Writer
	csv    *csv.Writer
	header bool // the CSV header is written
	buf    []byte
	text   jsonText
	last   time.Time   // last flush
	timer  *time.Timer // pending flush of a quiet buffer; nil when none
}

// FlushEvery is the longest a written result waits in a StreamWriter's buffer.
const FlushEvery = 200 * time.Millisecond

// Streamable reports whether format f can be written by a StreamWriter.
func Streamable(f ScanFormat) bool {
	return f == FormatJSONL || f == FormatCSV || f == FormatList
}

// NewStreamWriter returns a StreamWriter of format f (see Streamable) on w.
func NewStreamWriter(w io.Writer, f ScanFormat) (*StreamWriter, error) {
	if !Streamable(f) {
		return nil, fmt.Errorf("format %s cannot be streamed (use jsonl, csv or list)", f)
	}
	s := &StreamWriter{format: f, w: bufio.NewWriterSize(w, 64<<10), last: time.Now()}
	if f == FormatCSV {
		s.csv = csv.NewWriter(s.w)
	}
	return s, nil
}

// csvHeader names the CSV columns; they match the JSON keys.
var csvHeader = []string{"addr", "port", "proto", "state", "reason", "rtt_ms", "service", "banner", "time", "product", "version", "extrainfo"}

// Write writes one result. The list format writes open ports only.
func (s *StreamWriter) Write(r scan.Result) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	switch s.format {
	case FormatJSONL:
		s.buf = append(s.text.appendResult(s.buf[:0], r), '\n')
		s.w.Write(s.buf)
	case FormatCSV:
		if !s.header {
			s.csv.Write(csvHeader)
			s.header = true
		}
		s.csv.Write(csvRow(r))
		s.csv.Flush() // into s.w, the buffer
		if err := s.csv.Error(); err != nil {
			return err
		}
	default: // FormatList
		if r.State != scan.Open {
			return nil
		}
		s.buf = netip.AddrPortFrom(r.Addr, uint16(r.Port)).AppendTo(s.buf[:0])
		s.buf = append(s.buf, '\n')
		s.w.Write(s.buf)
	}
	now := r.Time // the engine's clock: no clock read per result
	if now.IsZero() {
		now = time.Now()
	}
	if now.Sub(s.last) >= FlushEvery {
		s.last = now
		return s.w.Flush()
	}
	if s.timer == nil && s.w.Buffered() > 0 {
		s.timer = time.AfterFunc(FlushEvery, func() {
			s.mu.Lock()
			defer s.mu.Unlock()
			s.timer = nil
			s.last = time.Now()
			s.w.Flush()
		})
	}
	return nil
}

// Flush writes what is buffered to the underlying writer.
func (s *StreamWriter) Flush() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.last = time.Now()
	return s.w.Flush()
}

// Close writes what a format needs at its end: the CSV header of an empty
// result set, so a reader always finds the columns.
func (s *StreamWriter) Close() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.timer != nil {
		s.timer.Stop()
		s.timer = nil
	}
	if s.format == FormatCSV && !s.header {
		s.header = true
		s.csv.Write(csvHeader)
		s.csv.Flush()
		if err := s.csv.Error(); err != nil {
			return err
		}
	}
	return s.w.Flush()
}

// csvRow is r as CSV cells, in csvHeader's order.
func csvRow(r scan.Result) []string {
	var rtt, ts string
	if r.RTT > 0 {
		rtt = strconv.FormatFloat(float64(r.RTT.Round(time.Microsecond))/float64(time.Millisecond), 'f', -1, 64)
	}
	if !r.Time.IsZero() {
		ts = r.Time.Format(time.RFC3339Nano)
	}
	var v scan.Version
	if r.Banner != "" {
		v = scan.ParseVersion(r.Service, r.Banner)
	}
	return []string{r.Addr.String(), strconv.Itoa(int(r.Port)), r.Proto.String(), r.State.String(),
		r.Reason, rtt, r.Service, printable(r.Banner), ts, printable(v.Product), printable(v.Version), printable(v.Extra)}
}
