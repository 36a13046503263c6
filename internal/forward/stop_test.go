package forward

import (
	"context"
	"log/slog"
	"net"
	"sync"
	"testing"
	"time"
)

// udpExchange sends msg from c and wants it echoed.
func udpExchange(t *testing.T, c net.Conn, msg string) {
	t.Helper()
	c.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := c.Write([]byte(msg)); err != nil {
		t.Fatal(err)
	}
	b := make([]byte, 256)
	n, err := c.Read(b)
	if err != nil || string(b[:n]) != msg {
		t.Fatalf("udp echo of %q = %q, %v", msg, b[:n], err)
	}
}

// TestShutdownEndsUDPSessionsAtOnce: a UDP session has no connection to
// drain. One datagram before Shutdown made the stop wait for the
// session's idle time (60 s), past the drain deadline, and fail.
func TestShutdownEndsUDPSessionsAtOnce(t *testing.T) {
	lb := &logBuf{}
	s := &Server{Logger: slog.New(slog.NewJSONHandler(lb, nil))}
	if err := s.Apply(context.Background(), []Rule{{Name: "u", Proto: UDP, Listen: "127.0.0.1:0", Targets: []string{udpBackend(t, udpEcho)}}}); err != nil {
		t.Fatal(err)
	}
	c, err := net.Dial("udp", s.Addr("u").String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	udpExchange(t, c, "one")
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if err := s.Shutdown(ctx); err != nil {
		t.Fatalf("Shutdown with a live UDP session = %v; want nil (nothing to drain)", err)
	}
	lines := lb.lines()
	if len(lines) != 1 || lines[0]["reason"] != "shutdown" || lines[0]["bytes_to_target"] != float64(3) {
		t.Errorf("log lines = %v; want the session's, reason shutdown, 3 bytes to the target", lines)
	}
}

// chatter sends a datagram to addr every few milliseconds until stop is
// closed, as a client that never lets its session go idle.
func chatter(t *testing.T, addr string, stop chan struct{}) *sync.WaitGroup {
	c, err := net.Dial("udp", addr)
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	wg.Go(func() {
		defer c.Close()
		for i := 0; i < 10000; i++ { // bounded: 10,000 x 5 ms at most
			select {
			case <-stop:
				return
			case <-time.After(5 * time.Millisecond):
			}
			c.Write([]byte("chat"))
		}
	})
	return &wg
}

// TestRemovedUDPRuleEndsAfterDrainTime: a client that never goes quiet
// kept the socket of a removed UDP rule open for ever; now its session
// ends after the drain time and the port is free.
func TestRemovedUDPRuleEndsAfterDrainTime(t *testing.T) {
	u := Rule{Name: "u", Proto: UDP, Listen: "127.0.0.1:0", Targets: []string{udpBackend(t, udpEcho)}}
	k := Rule{Name: "k", Proto: UDP, Listen: "127.0.0.1:0", Targets: []string{udpBackend(t, udpEcho)}}
	s := &Server{DrainTimeout: 300 * time.Millisecond}
	if err := s.Apply(context.Background(), []Rule{u, k}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Shutdown(context.Background()) })
	addr := s.Addr("u").String()
	stop := make(chan struct{})
	wg := chatter(t, addr, stop)
	defer func() { close(stop); wg.Wait() }()
	waitFor(t, "the chatty session", func() bool { return s.stats["u"].active.Load() == 1 })
	if err := s.Apply(context.Background(), []Rule{k}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the removed rule's port to be free", func() bool {
		pc, err := net.ListenPacket("udp4", addr)
		if err == nil {
			pc.Close()
		}
		return err == nil
	})
}

// TestReaddedUDPRuleTakesThePortOver: a rule removed and added back while
// a client keeps its old session alive failed with "address already in
// use"; the new listener takes the port and serves new clients.
func TestReaddedUDPRuleTakesThePortOver(t *testing.T) {
	target := udpBackend(t, udpEcho)
	k := Rule{Name: "k", Proto: UDP, Listen: "127.0.0.1:0", Targets: []string{target}}
	s := &Server{DrainTimeout: time.Hour}
	if err := s.Apply(context.Background(), []Rule{k}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Shutdown(context.Background()) })
	// A fixed port, so that the rule can be added back at the same address.
	u := Rule{Name: "u", Proto: UDP, Listen: freeUDPPort(t), Targets: []string{target}}
	if err := s.Apply(context.Background(), []Rule{k, u}); err != nil {
		t.Fatal(err)
	}
	stop := make(chan struct{})
	wg := chatter(t, u.Listen, stop)
	defer func() { close(stop); wg.Wait() }()
	waitFor(t, "the chatty session", func() bool { return s.stats["u"].active.Load() == 1 })
	if err := s.Apply(context.Background(), []Rule{k}); err != nil {
		t.Fatal(err)
	}
	if err := s.Apply(context.Background(), []Rule{k, u}); err != nil {
		t.Fatalf("adding the removed UDP rule back: %v", err)
	}
	c, err := net.Dial("udp", u.Listen)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	udpExchange(t, c, "new client")
}

func freeUDPPort(t *testing.T) string {
	t.Helper()
	pc, err := net.ListenPacket("udp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer pc.Close()
	return pc.LocalAddr().String()
}
