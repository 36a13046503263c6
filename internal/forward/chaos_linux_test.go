package forward

import (
	"net"
	"testing"
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
	for i := range sources {
		// Any address in 127.0.0.0/8 is this host's: distinct sources.
		src := &net.UDPAddr{IP: net.IPv4(127, 1, byte(i>>8), byte(i)+1)}
		c, err := net.DialUDP("udp4", src, addr)
		if err != nil {
			t.Fatalf("source %v: %v", src, err)
		}
		c.Write([]byte("x"))
		c.Close()
	}
	st := s.stats["u"]
	waitFor(t, "every datagram handled", func() bool {
		return st.active.Load()+int64(st.limited.Load()) == sources
	})
	if n := st.active.Load(); n != limit {
		t.Errorf("%d sessions open; want the cap, %d", n, limit)
	}
	if grown := openFDs(t) - before; grown > limit+16 {
		t.Errorf("%d more descriptors after the flood; want at most %d (one per session)", grown, limit+16)
	}
	t.Logf("sessions %d, refused %d", st.active.Load(), st.limited.Load())
}
