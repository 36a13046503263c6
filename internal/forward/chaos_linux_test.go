package forward

import (
	"net"
	"net/netip"
	"testing"
	"time"
)

// TestUDPSpoofedSourceFloodIsBounded: one datagram from each of 1,000
// source addresses (as a spoofed flood looks to the relay) may open at
// most the session cap, each with one socket; the rest are counted as
// refused, and the descriptors in use stay within the cap.
func TestUDPSpoofedSourceFloodIsBounded(t *testing.T) {
	const limit, sources = 200, 1000
	s, _ := start(t, Rule{Name: "u", Proto: UDP, Listen: "127.0.0.1:0", Targets: []string{udpBackend(t, udpEcho)}, MaxConns: limit})
	addr := s.Addr("u").(*net.UDPAddr)
	before := openFDs(t)
	st := s.stats["u"]
	handled := func() int64 { return st.active.Load() + int64(st.limited.Load()) }
	for i := range sources {
		if i%50 == 0 {
			// In steps, so that a slow loop on a busy machine does not
			// lose datagrams to a full socket buffer.
			waitFor(t, "the datagrams sent so far handled", func() bool { return handled() == int64(i) })
		}
		// Any address in 127.0.0.0/8 is this host's: distinct sources.
		src := &net.UDPAddr{IP: net.IPv4(127, 1, byte(i>>8), byte(i)+1)}
		c, err := net.DialUDP("udp4", src, addr)
		if err != nil {
			t.Fatalf("source %v: %v", src, err)
		}
		c.Write([]byte("x"))
		c.Close()
	}
	waitFor(t, "every datagram handled", func() bool { return handled() == sources })
	if n := st.active.Load(); n != limit {
		t.Errorf("%d sessions open; want the cap, %d", n, limit)
	}
	if grown := openFDs(t) - before; grown > limit+16 {
		t.Errorf("%d more descriptors after the flood; want at most %d (one per session)", grown, limit+16)
	}
	t.Logf("sessions %d, refused %d", st.active.Load(), st.limited.Load())
}

// TestBlackHoledTargetCostsOneTimeout: a target that never answers a
// connect cost every client its turn the whole connect timeout; after
// one timeout it is left out and the others answer at once.
func TestBlackHoledTargetCostsOneTimeout(t *testing.T) {
	hole := blackhole(t)
	a := backend(t, named("a"))
	s, _ := start(t, Rule{Name: "bh", Listen: "127.0.0.1:0", Targets: []string{hole, a}, ConnectTimeout: 300 * time.Millisecond, FailTimeout: time.Hour})
	for range 6 {
		if got := answers(t, s, "bh", 1, netip.Addr{}); got["a"] != 1 {
			t.Fatalf("answer %v; want a", got)
		}
	}
	if n := s.stats["bh"].target(hole).dialErrs.Load(); n != 1 {
		t.Errorf("%d connects timed out on the black hole; want 1, then it is left out", n)
	}
}
