package scan

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"runtime"
	"sync"
	"testing"
	"time"

	"portolan/internal/portspec"
)

// These tests drive the scheduler through a prober of their own, to check
// its bookkeeping (window, retries, busy, stale replies) exactly; the real
// probers are tested against real sockets elsewhere.

// portsSpace is 10.0.0.1 (never contacted: the prober is fake) x ports 1..n.
type portsSpace int

func (n portsSpace) Size() uint64 { return uint64(n) }

func (n portsSpace) At(i uint64) (netip.Addr, portspec.Port, portspec.Proto) {
	return netip.MustParseAddr("192.0.2.1"), portspec.Port(i + 1), portspec.TCP
}

// fakeProber answers each probe after delay with what answer says; silent
// probes are never answered. Every n-th Send (busyEvery) fails with ErrBusy.
type fakeProber struct {
	delay     time.Duration
	answer    func(port uint16, attempt int) (State, bool)
	busyEvery int
	duplicate bool // report every answer twice

	mu          sync.Mutex
	attempts    map[uint16]int
	inFlight    int
	maxInFlight int
	sends, busy int
	wg          sync.WaitGroup
}

type fakeSession struct {
	p       *fakeProber
	report  func(Reply)
	live    map[uint64]bool
	answers map[uint64]State // decided at Send, like a kernel that has the answer
}

func (f *fakeProber) Open(_ context.Context, report func(Reply)) (Session, error) {
	f.attempts = map[uint16]int{}
	return &fakeSession{p: f, report: report, live: map[uint64]bool{}, answers: map[uint64]State{}}, nil
}

func (s *fakeSession) Send(id uint64, dst netip.AddrPort, _ portspec.Proto) error {
	f := s.p
	f.mu.Lock()
	defer f.mu.Unlock()
	f.sends++
	if f.busyEvery > 0 && f.sends%f.busyEvery == 0 {
		f.busy++
		return fmt.Errorf("socket: %w", ErrBusy)
	}
	f.attempts[dst.Port()]++
	st, ok := f.answer(dst.Port(), f.attempts[dst.Port()])
	s.live[id] = true
	f.inFlight++
	f.maxInFlight = max(f.maxInFlight, f.inFlight)
	if !ok {
		return nil
	}
	s.answers[id] = st
	f.wg.Add(1)
	go func() {
		defer f.wg.Done()
		time.Sleep(f.delay)
		f.mu.Lock()
		live := s.live[id]
		if live {
			delete(s.live, id)
			f.inFlight--
		}
		f.mu.Unlock()
		if live {
			s.report(Reply{ID: id, State: st, Reason: "fake", RTT: f.delay})
			if f.duplicate {
				s.report(Reply{ID: id, State: Open, Reason: "duplicate", RTT: f.delay})
			}
		}
	}()
	return nil
}

// Cancel hands over an answer the delivering goroutine has not reported
// yet, as the connect prober does with what the kernel already knows; so
// a goroutine starved on a loaded machine changes no test's outcome.
func (s *fakeSession) Cancel(id uint64) (Reply, bool) {
	s.p.mu.Lock()
	defer s.p.mu.Unlock()
	if !s.live[id] {
		return Reply{}, false
	}
	delete(s.live, id)
	s.p.inFlight--
	st, ok := s.answers[id]
	return Reply{ID: id, State: st, Reason: "fake", RTT: s.p.delay}, ok
}

func (s *fakeSession) Close() error { s.p.wg.Wait(); return nil }

func run(t *testing.T, s Scanner, sp Space) (map[uint16]Result, Summary) {
	t.Helper()
	got := map[uint16]Result{}
	s.OnResult = func(r Result) {
		if _, dup := got[uint16(r.Port)]; dup {
			t.Errorf("port %d reported twice", r.Port)
		}
		got[uint16(r.Port)] = r
	}
	sum, err := s.Run(context.Background(), sp)
	if err != nil {
		t.Fatalf("Run: %v", err)
	}
	if uint64(len(got)) != sp.Size() {
		t.Fatalf("%d results for %d ports", len(got), sp.Size())
	}
	return got, sum
}

func TestSchedulerWindow(t *testing.T) {
	f := &fakeProber{delay: time.Millisecond, answer: func(uint16, int) (State, bool) { return Closed, true }}
	_, sum := run(t, Scanner{Prober: f, Window: 10}, portsSpace(500))
	if f.maxInFlight > 10 || f.maxInFlight < 2 {
		t.Errorf("max in flight %d with Window 10; want 2..10", f.maxInFlight)
	}
	if sum.Sent != 500 || sum.Retries != 0 || sum.Answered != 500 {
		t.Errorf("summary %+v; want 500 sent and answered, no retries", sum.Stats)
	}
}

// TestSchedulerMinRate: a window that would hold the scan under
// --min-rate gives way (the slow host's answers take 20 ms, so 4 probes
// in flight make 200/s, a tenth of the floor), while without the floor
// it holds.
func TestSchedulerMinRate(t *testing.T) {
	for _, c := range []struct {
		name    string
		minRate float64
		past    bool // in flight past the window
	}{
		{"no floor: the window holds", 0, false},
		{"floor of 2000/s: the window gives way", 2000, true},
	} {
		f := &fakeProber{delay: 20 * time.Millisecond, answer: func(uint16, int) (State, bool) { return Closed, true }}
		_, sum := run(t, Scanner{Prober: f, Window: 4, MinRate: c.minRate}, portsSpace(300))
		if past := f.maxInFlight > 4; past != c.past {
			t.Errorf("%s: max in flight %d with Window 4; want past it: %v", c.name, f.maxInFlight, c.past)
		}
		if sum.Sent != 300 || sum.Answered != 300 {
			t.Errorf("%s: summary %+v; want 300 sent and answered", c.name, sum.Stats)
		}
	}
}

// TestSchedulerRetriesOnlySilent: answered probes are never sent again;
// silent ones are, until they answer or retries run out, and then (the host
// has closed ports: its silence may be rate-limited ICMP errors) up to
// rlChecks of them once more, as the rate-limit check.
func TestSchedulerRetriesOnlySilent(t *testing.T) {
	f := &fakeProber{answer: func(port uint16, attempt int) (State, bool) {
		switch {
		case port%10 == 0: // never answers
			return 0, false
		case port%10 == 1: // answers the second attempt (a lost SYN)
			return Open, attempt >= 2
		}
		return Closed, true
	}}
	s := Scanner{Prober: f, MinTimeout: 5 * time.Millisecond, MaxTimeout: 5 * time.Millisecond, HostDownAfter: -1}
	got, sum := run(t, s, portsSpace(100))
	checks := 0
	for port, n := range f.attempts {
		want := 1
		switch port % 10 {
		case 0:
			want = 1 + DefaultRetries
			if n == want+1 {
				checks++
				continue
			}
		case 1:
			want = 2
		}
		if n != want {
			t.Errorf("port %d sent %d times; want %d", port, n, want)
		}
	}
	if checks != rlChecks {
		t.Errorf("%d silent ports checked for rate-limited errors; want %d", checks, rlChecks)
	}
	for port, r := range got {
		want := Closed
		switch port % 10 {
		case 0:
			want = Filtered
		case 1:
			want = Open
		}
		if r.State != want {
			t.Errorf("port %d = %v; want %v", port, r.State, want)
		}
	}
	if want := uint64(10*DefaultRetries + 10 + rlChecks); sum.Retries != want {
		t.Errorf("retries %d; want %d", sum.Retries, want)
	}
}

// TestSchedulerBusy: a Send that fails for lack of resources is sent again
// later and not counted as an attempt.
func TestSchedulerBusy(t *testing.T) {
	f := &fakeProber{busyEvery: 7, answer: func(uint16, int) (State, bool) { return Closed, true }}
	got, sum := run(t, Scanner{Prober: f, Retries: -1}, portsSpace(300))
	if f.busy == 0 {
		t.Fatal("the prober was never busy")
	}
	for port, r := range got {
		if r.State != Closed {
			t.Errorf("port %d = %v; want closed", port, r.State)
		}
	}
	if sum.Sent != 300 {
		t.Errorf("sent %d; want 300 (busy sends are not probes)", sum.Sent)
	}
}

// TestSchedulerNoVerdict: Unknown means "probe again", not an attempt.
func TestSchedulerNoVerdict(t *testing.T) {
	f := &fakeProber{answer: func(port uint16, attempt int) (State, bool) {
		if attempt == 1 {
			return Unknown, true
		}
		return Closed, true
	}}
	got, _ := run(t, Scanner{Prober: f, Retries: -1}, portsSpace(50))
	for port, r := range got {
		if r.State != Closed || f.attempts[port] != 2 {
			t.Errorf("port %d = %v after %d sends; want closed after 2", port, r.State, f.attempts[port])
		}
	}
}

// TestSchedulerStaleReplies: a second reply for the same probe is ignored.
func TestSchedulerStaleReplies(t *testing.T) {
	f := &fakeProber{duplicate: true, answer: func(uint16, int) (State, bool) { return Closed, true }}
	got, _ := run(t, Scanner{Prober: f}, portsSpace(200))
	for port, r := range got {
		if r.Reason != "fake" {
			t.Errorf("port %d reason %q; want the first reply's", port, r.Reason)
		}
	}
}

func TestSchedulerEmptySpace(t *testing.T) {
	sum, err := (&Scanner{Prober: &fakeProber{}}).Run(context.Background(), portsSpace(0))
	if err != nil || !sum.Complete || sum.Done != 0 {
		t.Errorf("empty space: %+v, %v; want complete, nothing done", sum, err)
	}
}

type errProber struct{}

func (errProber) Open(context.Context, func(Reply)) (Session, error) {
	return nil, errors.New("no raw sockets")
}

func TestSchedulerOpenError(t *testing.T) {
	_, err := (&Scanner{Prober: errProber{}}).Run(context.Background(), portsSpace(3))
	if err == nil || err.Error() != "open prober: no raw sockets" {
		t.Errorf("Run with a failing prober: %v; want open prober: no raw sockets", err)
	}
}

// TestSchedulerCancelStopsPromptly: after a cancel, Run returns without
// waiting out timeouts (an hour here), and no result arrives after it
// returns.
func TestSchedulerCancelStopsPromptly(t *testing.T) {
	f := &fakeProber{answer: func(port uint16, _ int) (State, bool) { return Closed, port%2 == 0 }}
	ctx, cancel := context.WithCancel(context.Background())
	var mu sync.Mutex
	returned, results := false, 0
	s := Scanner{Prober: f, Seed: 1, MinTimeout: time.Hour, InitialTimeout: time.Hour, MaxTimeout: time.Hour}
	s.OnResult = func(r Result) {
		mu.Lock()
		defer mu.Unlock()
		if returned {
			t.Error("OnResult after Run returned")
		}
		if results++; results == 5 {
			cancel()
		}
	}
	done := make(chan Summary)
	go func() {
		sum, _ := s.Run(ctx, portsSpace(100))
		mu.Lock()
		returned = true
		mu.Unlock()
		done <- sum
	}()
	select {
	case sum := <-done:
		if sum.Complete || sum.Checkpoint > uint64(results) {
			t.Errorf("cancelled: %+v; want incomplete, checkpoint <= %d results", sum, results)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("Run did not return after cancel")
	}
}

// TestSchedulerRateCap checks only the direction a busy machine cannot
// fake: a capped scan is never faster than its rate allows.
func TestSchedulerRateCap(t *testing.T) {
	f := &fakeProber{answer: func(uint16, int) (State, bool) { return Closed, true }}
	const n, rate = 100, 500.0
	start := time.Now()
	_, sum := run(t, Scanner{Prober: f, Rate: rate}, portsSpace(n))
	burst := rate / 100
	if min := time.Duration((n - burst) / rate * float64(time.Second)); time.Since(start) < min {
		t.Errorf("%d probes at %v/s took %v; the cap allows no less than %v", n, rate, time.Since(start), min)
	}
	if sum.Sent != n {
		t.Errorf("sent %d; want %d", sum.Sent, n)
	}
}

// instantProber answers every probe "closed" from inside Send: what is left
// to measure is the scheduler itself.
type instantProber struct{}

type instantSession struct{ report func(Reply) }

func (instantProber) Open(_ context.Context, report func(Reply)) (Session, error) {
	return instantSession{report}, nil
}

func (s instantSession) Send(id uint64, _ netip.AddrPort, _ portspec.Proto) error {
	s.report(Reply{ID: id, State: Closed, Reason: ReasonConnRefused, RTT: time.Microsecond})
	return nil
}
func (instantSession) Cancel(uint64) (Reply, bool) { return Reply{}, false }
func (instantSession) Close() error                { return nil }

// hostsSpace is n ports on each of many hosts of 198.18.0.0/15, in the
// order target.Space numbers them (host-major).
type hostsSpace struct{ hosts, ports uint64 }

func (s hostsSpace) Size() uint64 { return s.hosts * s.ports }

func (s hostsSpace) At(i uint64) (netip.Addr, portspec.Port, portspec.Proto) {
	h := i / s.ports
	a := netip.AddrFrom4([4]byte{198, 18 + byte(h>>16&1), byte(h >> 8), byte(h)})
	return a, portspec.Port(1 + i%s.ports), portspec.TCP
}

// BenchmarkScheduler measures the engine's own cost per probe and its
// memory over a 10-million-probe space (65,536 hosts x 150 ports): the
// heap must stay flat however large the space.
func BenchmarkScheduler(b *testing.B) {
	sp := hostsSpace{hosts: 1 << 16, ports: 150}
	var peak uint64
	var ms runtime.MemStats
	s := Scanner{Prober: instantProber{}, StatsEvery: 100 * time.Millisecond}
	s.OnStats = func(Stats) {
		runtime.ReadMemStats(&ms)
		peak = max(peak, ms.HeapInuse)
	}
	for b.Loop() {
		sum, err := s.Run(context.Background(), sp)
		if err != nil || sum.Done != sp.Size() {
			b.Fatalf("Run: %v, %d done of %d", err, sum.Done, sp.Size())
		}
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(uint64(b.N)*sp.Size()), "ns/probe")
	b.ReportMetric(float64(peak)/(1<<20), "peak-heap-MB")
}

// TestSchedulerRetriesAdapt: a host that drops (no retry ever answered)
// gets one retry per port once that is clear; a lossy one (retries do
// answer) keeps them all.
func TestSchedulerRetriesAdapt(t *testing.T) {
	fast := Scanner{MinTimeout: 30 * time.Millisecond, MaxTimeout: 30 * time.Millisecond, HostDownAfter: -1}
	drops := &fakeProber{answer: func(port uint16, _ int) (State, bool) { return Closed, port%2 == 1 }}
	s := fast
	s.Prober = drops
	_, sum := run(t, s, portsSpace(400))
	if sum.Retries >= 200*DefaultRetries || sum.Retries < 200 {
		t.Errorf("dropping host: %d retries for 200 silent ports; want fewer than %d, at least 200", sum.Retries, 200*DefaultRetries)
	}

	lossy := &fakeProber{answer: func(port uint16, attempt int) (State, bool) {
		return Closed, port%2 == 1 || attempt >= 2
	}}
	s.Prober = lossy
	got, _ := run(t, s, portsSpace(400))
	for port, r := range got {
		if r.State != Closed {
			t.Errorf("lossy host: port %d = %v; want closed (answered on a retry)", port, r.State)
		}
	}
}
