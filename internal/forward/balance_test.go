package forward

import (
	"context"
	"io"
	"net"
	"net/netip"
	"testing"
	"time"
)

// TestRoundRobinSpreadsOverLiveTargets: with targets dead, a, b, nine
// connections gave a six and b three, also once a health check had
// marked the dead one down. Round-robin must spread over the live ones.
func TestRoundRobinSpreadsOverLiveTargets(t *testing.T) {
	a, b := backend(t, named("a")), backend(t, named("b"))
	for _, tc := range []struct {
		name string
		rule Rule
	}{
		// Dial failures take the dead target out (max-fails 1).
		{"passive", Rule{Name: "rr", Listen: "127.0.0.1:0", Targets: []string{closedPort(t), a, b}}},
		// A health check marks it down; no passive ejection.
		{"health", Rule{Name: "rr", Listen: "127.0.0.1:0", Targets: []string{closedPort(t), a, b}, HealthInterval: 20 * time.Millisecond, MaxFails: -1}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s, _ := start(t, tc.rule)
			if tc.rule.HealthInterval > 0 {
				waitFor(t, "the dead target marked down", func() bool {
					s.mu.Lock()
					defer s.mu.Unlock()
					for _, l := range s.listeners {
						return l.state().pool.targets[0].down.Load()
					}
					return false
				})
			}
			count := map[string]int{}
			for range 10 {
				got, err := io.ReadAll(dial(t, s, "rr"))
				if err != nil {
					t.Fatal(err)
				}
				count[string(got)]++
			}
			if count["a"] != 5 || count["b"] != 5 {
				t.Errorf("10 connections went %v; want 5 to a and 5 to b", count)
			}
		})
	}
}

// TestPassiveEjectionSkipsADeadTarget: after a failed dial the dead
// target is left out of the rotation for the fail timeout (each of its
// turns cost a client a connect attempt), and tried again after it.
func TestPassiveEjectionSkipsADeadTarget(t *testing.T) {
	a := backend(t, named("a"))
	dead := closedPort(t)
	s, _ := start(t, Rule{Name: "rr", Listen: "127.0.0.1:0", Targets: []string{dead, a}, FailTimeout: time.Hour})
	for range 6 {
		if got, _ := io.ReadAll(dial(t, s, "rr")); string(got) != "a" {
			t.Fatalf("answer %q; want a", got)
		}
	}
	st := s.stats["rr"].target(dead)
	if n := st.dialErrs.Load(); n != 1 {
		t.Errorf("%d connect attempts to the dead target; want 1 (then left out)", n)
	}
}

// answers makes n connections to rule, each from src if valid, and
// counts the targets' answers.
func answers(t *testing.T, s *Server, rule string, n int, src netip.Addr) map[string]int {
	t.Helper()
	count := map[string]int{}
	for range n {
		d := net.Dialer{Timeout: 5 * time.Second}
		if src.IsValid() {
			d.LocalAddr = &net.TCPAddr{IP: src.AsSlice()}
		}
		c, err := d.Dial("tcp", s.Addr(rule).String())
		if err != nil {
			t.Fatal(err)
		}
		c.SetDeadline(time.Now().Add(5 * time.Second))
		got, err := io.ReadAll(c)
		c.Close()
		if err != nil {
			t.Fatal(err)
		}
		count[string(got)]++
	}
	return count
}

func TestWeightedRoundRobin(t *testing.T) {
	a, b := backend(t, named("a")), backend(t, named("b"))
	s, _ := start(t, Rule{Name: "w", Listen: "127.0.0.1:0", Targets: []string{a + " weight=3", b}})
	if got := answers(t, s, "w", 40, netip.Addr{}); got["a"] != 30 || got["b"] != 10 {
		t.Errorf("40 connections with weights 3:1 went %v; want a 30, b 10", got)
	}
}

// TestLeastConn: with two connections held on one target, new ones go
// to the other until the counts are level.
func TestLeastConn(t *testing.T) {
	release := make(chan struct{})
	hold := func(name string) func(*net.TCPConn) {
		return func(c *net.TCPConn) {
			io.WriteString(c, name)
			<-release
		}
	}
	a, b := backend(t, hold("a")), backend(t, hold("b"))
	defer close(release)
	s, _ := start(t, Rule{Name: "lc", Listen: "127.0.0.1:0", Targets: []string{a, b}, Balance: LeastConn})
	var got []string
	for range 6 {
		c := dial(t, s, "lc")
		b := make([]byte, 1)
		c.SetReadDeadline(time.Now().Add(5 * time.Second))
		if _, err := io.ReadFull(c, b); err != nil {
			t.Fatal(err)
		}
		got = append(got, string(b))
	}
	// Each new connection goes where fewer are held: the answers pair up.
	n := map[string]int{}
	for i, g := range got {
		n[g]++
		if d := n["a"] - n["b"]; d > 1 || d < -1 {
			t.Fatalf("held connections %v after %d: want the counts never more than one apart", got[:i+1], i+1)
		}
	}
}

// TestSourceHash: a client keeps its target; when a target is removed
// only its own clients move.
func TestSourceHash(t *testing.T) {
	a, b, c := backend(t, named("a")), backend(t, named("b")), backend(t, named("c"))
	r := Rule{Name: "sh", Listen: freeTCPPort(t), Targets: []string{a, b, c}, Balance: SourceHash}
	s, _ := start(t, r)
	addr := s.Addr("sh").String()
	clients := make([]netip.Addr, 60)
	first := map[netip.Addr]string{}
	spread := map[string]int{}
	for i := range clients {
		clients[i] = netip.AddrFrom4([4]byte{127, 2, 0, byte(i + 1)})
		got := answers(t, s, "sh", 3, clients[i])
		if len(got) != 1 {
			t.Fatalf("client %v went to %v; want one target", clients[i], got)
		}
		for k := range got {
			first[clients[i]] = k
			spread[k]++
		}
	}
	if len(spread) != 3 {
		t.Errorf("60 clients went to %v; want all three targets used", spread)
	}
	// b is removed: a reload keeps the listener.
	r.Targets = []string{a, c}
	if err := s.Apply(context.Background(), []Rule{r}); err != nil {
		t.Fatal(err)
	}
	if s.Addr("sh").String() != addr {
		t.Fatal("the reload moved the listener")
	}
	for _, cl := range clients {
		got := answers(t, s, "sh", 1, cl)
		if was := first[cl]; was != "b" && got[was] != 1 {
			t.Errorf("client %v moved from %s to %v though its target stayed", cl, was, got)
		}
	}
}

// TestHealthChecksRiseFallSendExpect: a target answering the wrong thing
// is taken down after fall checks; UDP targets are checked with a
// datagram, one refusing it (ICMP port unreachable) is down.
func TestHealthChecksRiseFallSendExpect(t *testing.T) {
	pong := backend(t, func(c *net.TCPConn) {
		b := make([]byte, 6)
		if _, err := io.ReadFull(c, b); err == nil && string(b) == "PING\r\n" {
			io.WriteString(c, "+PONG\r\n")
		}
	})
	nope := backend(t, func(c *net.TCPConn) { io.WriteString(c, "-ERR\r\n") })
	udpOK := udpBackend(t, udpEcho)
	s, _ := start(t,
		Rule{Name: "tcp", Listen: "127.0.0.1:0", Targets: []string{pong, nope}, HealthInterval: 10 * time.Millisecond,
			HealthFall: 2, HealthSend: "PING\r\n", HealthExpect: "+PONG"},
		Rule{Name: "udp", Proto: UDP, Listen: "127.0.0.1:0", Targets: []string{udpOK, closedUDPPort(t)}, HealthInterval: 10 * time.Millisecond})
	state := func(rule string) []bool {
		s.mu.Lock()
		defer s.mu.Unlock()
		var out []bool
		for _, l := range s.listeners {
			if st := l.state(); st.name == rule {
				for _, tg := range st.pool.targets {
					out = append(out, tg.down.Load())
				}
			}
		}
		return out
	}
	waitFor(t, "the wrong answer's target down", func() bool { d := state("tcp"); return !d[0] && d[1] })
	waitFor(t, "the refusing UDP target down", func() bool { d := state("udp"); return !d[0] && d[1] })
	// Only the good ones are used now.
	for range 4 {
		c := dial(t, s, "tcp")
		io.WriteString(c, "PING\r\n")
		b := make([]byte, 7)
		c.SetReadDeadline(time.Now().Add(5 * time.Second))
		if _, err := io.ReadFull(c, b); err != nil || string(b) != "+PONG\r\n" {
			t.Fatalf("answer %q, %v; want +PONG from the healthy target", b, err)
		}
	}
}

func closedUDPPort(t *testing.T) string {
	t.Helper()
	pc, err := net.ListenPacket("udp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	a := pc.LocalAddr().String()
	pc.Close()
	return a
}

func freeTCPPort(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

// TestUDPFailover: a session whose target refuses its datagrams (ICMP
// port unreachable) stayed bound to it until idle; the client's next
// datagrams now reach another target.
func TestUDPFailover(t *testing.T) {
	s, lb := start(t, Rule{Name: "u", Proto: UDP, Listen: "127.0.0.1:0", Targets: []string{closedUDPPort(t), udpBackend(t, udpEcho)}, Balance: FirstHealthy})
	c, err := net.Dial("udp", s.Addr("u").String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	b := make([]byte, 64)
	for i := range 20 {
		c.Write([]byte("hello"))
		c.SetReadDeadline(time.Now().Add(250 * time.Millisecond))
		if n, err := c.Read(b); err == nil && string(b[:n]) == "hello" {
			t.Logf("answered after %d tries", i+1)
			return
		}
	}
	t.Fatalf("no answer through the live target in 20 tries; log:\n%v", lb.lines())
}

// TestDefaultLimits: what a rule gets when it says nothing (issue 12: no
// limits by default): TCP connections idle for 10 minutes end, as nginx's
// proxy_timeout; off means never; a dial failure takes a target out for
// 10 s, as nginx's max_fails=1 fail_timeout=10s.
func TestDefaultLimits(t *testing.T) {
	for _, tc := range []struct {
		rule    Rule
		idle    time.Duration
		fails   int
		failFor time.Duration
		udpIdle time.Duration
	}{
		{Rule{}, 10 * time.Minute, 1, 10 * time.Second, 60 * time.Second},
		{Rule{IdleTimeout: -1, MaxFails: -1}, 0, 0, 10 * time.Second, 60 * time.Second},
		{Rule{IdleTimeout: time.Minute, MaxFails: 3, FailTimeout: time.Minute}, time.Minute, 3, time.Minute, time.Minute},
	} {
		r := tc.rule
		rs := &ruleState{Rule: r}
		if got := r.tcpIdle(); got != tc.idle {
			t.Errorf("%+v: TCP idle %v; want %v", r, got, tc.idle)
		}
		if got := r.maxFails(); got != tc.fails {
			t.Errorf("%+v: max fails %d; want %d", r, got, tc.fails)
		}
		if got := r.failTimeout(); got != tc.failFor {
			t.Errorf("%+v: fail timeout %v; want %v", r, got, tc.failFor)
		}
		if got := rs.udpIdle(); got != tc.udpIdle {
			t.Errorf("%+v: UDP idle %v; want %v", r, got, tc.udpIdle)
		}
	}
}
