package forward

import (
	"log/slog"
	"net/netip"
	"sync"
	"testing"
	"time"
)

// Lines handed over faster than they are written, from several relays at
// once and past the queue's bound, are all written by flush, each once,
// with the time its connection ended.
func TestConnLogWritesEveryLineOnce(t *testing.T) {
	lb := &logBuf{}
	logger := slog.New(slog.NewJSONHandler(lb, nil))
	var q connLog
	const relays, each = 4, maxQueuedLines // together twice the bound and more
	end := time.Date(2026, 12, 6, 21, 0, 0, 0, time.UTC)
	var wg sync.WaitGroup
	for r := range relays {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range each {
				q.add(connRecord{logger: logger, level: slog.LevelInfo, end: end, rule: "r", proto: "tcp",
					client: netip.MustParseAddrPort("198.18.0.1:40000"), target: "198.18.0.2:80",
					reason: "eof", up: int64(r), down: int64(i)})
			}
		}()
	}
	wg.Wait()
	q.flush()
	lines := lb.lines()
	if len(lines) != relays*each {
		t.Fatalf("%d lines; want %d", len(lines), relays*each)
	}
	seen := map[[2]float64]bool{}
	for _, l := range lines {
		k := [2]float64{l["bytes_to_target"].(float64), l["bytes_to_client"].(float64)}
		if seen[k] {
			t.Fatalf("line %v written twice", k)
		}
		seen[k] = true
		if l["time"] != end.Format(time.RFC3339Nano) {
			t.Fatalf("line time %v; want the connection's end %s", l["time"], end.Format(time.RFC3339Nano))
		}
	}
}

// When Shutdown returns, the lines of every connection are written.
func TestShutdownWritesEveryLine(t *testing.T) {
	s, lb := start(t, Rule{Name: "echo", Listen: "127.0.0.1:0", Targets: []string{backend(t, echo)}})
	const n = 20
	for range n {
		c := dial(t, s, "echo")
		c.Write([]byte("x"))
		c.Read(make([]byte, 1))
		c.Close()
	}
	waitFor(t, "connections finished", func() bool { return s.stats["echo"].active.Load() == 0 })
	if err := s.Shutdown(t.Context()); err != nil {
		t.Fatal(err)
	}
	if got := len(lb.lines()); got != n {
		t.Fatalf("%d log lines when Shutdown returned; want %d", got, n)
	}
}
