package forward

import (
	"bufio"
	"context"
	"io"
	"log/slog"
	"net"
	"strconv"
	"strings"
	"testing"
	"time"
)

// waitingIn is the number of clients in a rule's queue.
func waitingIn(s *Server, rule string) int64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.stats[rule].queue.n.Load()
}

// idBackend echoes, after recording the first line a client sends (its
// id) in the order the connections reached it.
func idBackend(t *testing.T, order chan<- string) string {
	return backend(t, func(c *net.TCPConn) {
		r := bufio.NewReader(c)
		line, err := r.ReadString('\n')
		if err != nil {
			return
		}
		order <- strings.TrimSpace(line)
		c.Write([]byte(line))
		io.Copy(c, r)
	})
}

// queuedClient connects and sends its id; the relay holds it while it
// waits.
func queuedClient(t *testing.T, s *Server, rule, id string) *net.TCPConn {
	t.Helper()
	c := dial(t, s, rule)
	if _, err := io.WriteString(c, id+"\n"); err != nil {
		t.Fatal(err)
	}
	return c
}

// expectServed reads the echo of the client's id: it got a target.
func expectServed(t *testing.T, c *net.TCPConn, id string) {
	t.Helper()
	c.SetReadDeadline(time.Now().Add(15 * time.Second)) // bounds a broken test only
	got, err := bufio.NewReader(c).ReadString('\n')
	if err != nil || strings.TrimSpace(got) != id {
		t.Fatalf("client %s: read %q, %v; want its id echoed", id, got, err)
	}
	c.SetReadDeadline(time.Time{})
}

// startQueued runs rule q with a queue in front of an idBackend, and
// connects client 1, which takes the first slot.
func startQueued(t *testing.T, maxConns, queue int, timeout time.Duration) (*Server, *logBuf, chan string, *net.TCPConn) {
	t.Helper()
	order := make(chan string, 10)
	s, logs := start(t, Rule{Name: "q", Listen: "127.0.0.1:0", Targets: []string{idBackend(t, order)},
		MaxConns: maxConns, Queue: queue, QueueTimeout: timeout})
	c1 := queuedClient(t, s, "q", "1")
	expectServed(t, c1, "1")
	<-order
	return s, logs, order, c1
}

// expectRejected checks the one log line and the counter of a client
// the queue turned away, and how many still wait.
func expectRejected(t *testing.T, s *Server, logs *logBuf, reason string, count uint64, waiting int64) {
	t.Helper()
	waitFor(t, "the log line", func() bool { return len(logs.lines()) == 1 })
	if l := logs.lines()[0]; l["reason"] != reason {
		t.Errorf("log line %v; want reason %s", l, reason)
	}
	if count != 1 {
		t.Errorf("%s counted %d times; want 1", reason, count)
	}
	if n := waitingIn(s, "q"); n != waiting {
		t.Errorf("waiting = %d; want %d", n, waiting)
	}
}

// TestQueueServesWaitingClient: with 2 slots, the 3rd client is held,
// not reset, and served as soon as one of the first two ends.
func TestQueueServesWaitingClient(t *testing.T) {
	s, logs, _, c1 := startQueued(t, 2, 0, time.Minute)
	c2 := queuedClient(t, s, "q", "2")
	expectServed(t, c2, "2")
	c3 := queuedClient(t, s, "q", "3")
	waitFor(t, "the third client to wait", func() bool { return waitingIn(s, "q") == 1 })
	c1.Close()
	expectServed(t, c3, "3")
	if n := waitingIn(s, "q"); n != 0 {
		t.Errorf("waiting = %d after the third was served; want 0", n)
	}
	c2.Close()
	c3.Close()
	waitFor(t, "three log lines", func() bool { return len(logs.lines()) == 3 })
	for _, l := range logs.lines() {
		if l["reason"] != "eof" {
			t.Errorf("log line %v; want every connection ending with eof", l)
		}
	}
}

func TestQueueTimeout(t *testing.T) {
	s, logs, _, c1 := startQueued(t, 1, 0, 100*time.Millisecond)
	c2 := queuedClient(t, s, "q", "2")
	expectResetOn(t, c2, "queue timeout")
	expectRejected(t, s, logs, "queue timeout", s.stats["q"].queue.timedOut.Load(), 0)
	// The slot is still the first client's, and the next one waits again.
	roundTrip(t, c1, "still relayed")
}

func TestQueueFull(t *testing.T) {
	s, logs, _, c1 := startQueued(t, 1, 1, time.Minute)
	c2 := queuedClient(t, s, "q", "2")
	waitFor(t, "the second client to wait", func() bool { return waitingIn(s, "q") == 1 })
	// The reset may come before connect has returned. The client only
	// reads: a write after the reset would take its error, and the read
	// after it would see EOF.
	if c3, err := net.Dial("tcp", s.Addr("q").String()); err == nil {
		defer c3.Close()
		expectResetOn(t, c3, "queue full")
	} else if !isReset(err) {
		t.Fatalf("dial: %v; want a reset, or a connection reset after", err)
	}
	expectRejected(t, s, logs, "queue full", s.stats["q"].queue.full.Load(), 1)
	c1.Close()
	expectServed(t, c2, "2")
}

// TestQueueOldestFirst: waiting clients are served in the order they
// came, and one arriving when a slot frees queues behind them: nobody
// waits for ever while later clients are served.
func TestQueueOldestFirst(t *testing.T) {
	s, _, order, c1 := startQueued(t, 1, 8, time.Minute)
	clients := map[string]*net.TCPConn{}
	for i := 2; i <= 5; i++ {
		id := strconv.Itoa(i)
		clients[id] = queuedClient(t, s, "q", id)
		waitFor(t, "client "+id+" to wait", func() bool { return waitingIn(s, "q") == int64(i-1) })
	}
	c1.Close()
	clients["6"] = queuedClient(t, s, "q", "6") // a newcomer as the slot frees
	for i := 2; i <= 6; i++ {
		id := strconv.Itoa(i)
		expectServed(t, clients[id], id)
		if got := <-order; got != id {
			t.Fatalf("served %s; want %s (oldest first)", got, id)
		}
		clients[id].Close()
	}
}

// Queue settings in config files, as table cases and fuzz seeds of
// ParseConfig.
func init() {
	configCases = append(configCases, []configCase{
		{name: "queue", in: "rules:\n  - {name: a, listen: \":1\", targets: [198.18.0.2:80], max-conns: 100, queue-timeout: 5s, queue: 200}\n",
			want: []Rule{{Name: "a", Listen: ":1", Targets: []string{"198.18.0.2:80"}, MaxConns: 100, QueueTimeout: 5 * time.Second, Queue: 200}}},
		{name: "queue without max-conns", in: "rules:\n  - {name: a, listen: \":1\", targets: [198.18.0.2:80], queue-timeout: 5s}\n",
			err: "f.yaml:2:5: rule a: queue-timeout: needs max-conns"},
		{name: "queue without timeout", in: "rules:\n  - {name: a, listen: \":1\", targets: [198.18.0.2:80], max-conns: 1, queue: 5}\n",
			err: "rule a: queue: needs queue-timeout"},
		{name: "queue udp", in: "rules:\n  - {name: a, udp: true, listen: \":1\", targets: [198.18.0.2:80], max-conns: 1, queue-timeout: 1s}\n",
			err: "rule a: queue-timeout: only for tcp rules"},
		{name: "queue accept-proxy", in: "rules:\n  - {name: a, listen: \":1\", targets: [198.18.0.2:80], max-conns: 1, queue-timeout: 1s, accept-proxy: [127.0.0.1]}\n",
			err: "rule a: queue-timeout: not with accept-proxy"},
		{name: "queue bad timeout", in: "rules:\n  - {name: a, listen: \":1\", targets: [198.18.0.2:80], max-conns: 1, queue-timeout: soon}\n",
			err: `rule a: queue-timeout: "soon" is not a duration`},
	}...)
}

// TestQueueShutdown: a waiting client counts as a connection: Shutdown
// waits for it until its deadline, then resets it and returns.
func TestQueueShutdown(t *testing.T) {
	order := make(chan string, 10)
	lb := &logBuf{}
	s := &Server{Logger: slog.New(slog.NewJSONHandler(lb, nil))}
	if err := s.Apply(context.Background(), []Rule{{Name: "q", Listen: "127.0.0.1:0", Targets: []string{idBackend(t, order)},
		MaxConns: 1, QueueTimeout: time.Minute}}); err != nil {
		t.Fatal(err)
	}
	c1 := queuedClient(t, s, "q", "1")
	expectServed(t, c1, "1")
	c2 := queuedClient(t, s, "q", "2")
	waitFor(t, "the second client to wait", func() bool { return waitingIn(s, "q") == 1 })
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	if err := s.Shutdown(ctx); err == nil {
		t.Errorf("Shutdown = nil; want the deadline error (connections were cut)")
	}
	expectResetOn(t, c2, "shutdown")
	var reasons []string
	for _, l := range lb.lines() {
		reasons = append(reasons, l["reason"].(string))
	}
	if strings.Join(reasons, ",") != "shutdown,shutdown" {
		t.Errorf("reasons = %v; want both connections cut by the shutdown", reasons)
	}
}

// TestQueueAcrossLoops: with several loops on one listener, a slot freed
// by one loop's connection serves a client waiting in another.
func TestQueueAcrossLoops(t *testing.T) {
	order := make(chan string, 20)
	s := &Server{Loops: 3}
	if err := s.Apply(context.Background(), []Rule{{Name: "q", Listen: "127.0.0.1:0", Targets: []string{idBackend(t, order)},
		MaxConns: 1, Queue: 10, QueueTimeout: time.Minute}}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
		defer cancel()
		s.Shutdown(ctx)
	})
	first := queuedClient(t, s, "q", "0")
	expectServed(t, first, "0")
	var clients []*net.TCPConn
	for i := 1; i <= 8; i++ {
		clients = append(clients, queuedClient(t, s, "q", strconv.Itoa(i)))
		waitFor(t, "client "+strconv.Itoa(i)+" to wait", func() bool { return waitingIn(s, "q") == int64(i) })
	}
	first.Close()
	for i, c := range clients {
		expectServed(t, c, strconv.Itoa(i+1))
		c.Close()
	}
}
