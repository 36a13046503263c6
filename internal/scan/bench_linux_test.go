package scan

import (
	"context"
	"fmt"
	"net/netip"
	"testing"

	"portolan/internal/netlab"
	"portolan/internal/portspec"
)

// allPorts is 1-65535.
func allPorts() []portspec.Port {
	ps := make([]portspec.Port, 0, 65535)
	for p := 1; p <= 65535; p++ {
		ps = append(ps, portspec.Port(p))
	}
	return ps
}

// benchLoopbackScan scans all 65,535 ports of 127.0.0.1 inside a network
// namespace of its own, so that the benchmark neither sees nor disturbs
// anybody else's listeners; ten of them are open.
func benchLoopbackScan(b *testing.B, pr Prober, family string) {
	h, err := netlab.NewT(b).AddHost("bench")
	if err != nil {
		b.Fatal(err)
	}
	addr := netip.MustParseAddr("127.0.0.1")
	if family == "ip6" {
		addr = netip.IPv6Loopback()
	}
	sp := space{addrs: []netip.Addr{addr}, ports: allPorts()}
	err = h.Do(func() error {
		for range 10 {
			openPort(b, addr)
		}
		s := Scanner{Prober: pr}
		b.ResetTimer()
		for b.Loop() {
			open := 0
			s.OnResult = func(r Result) {
				if r.State == Open {
					open++
				}
			}
			sum, err := s.Run(context.Background(), sp)
			if err != nil || open != 10 || sum.Done != 65535 {
				return fmt.Errorf("scan: %v; open %d, done %d; want 10 open of 65535", err, open, sum.Done)
			}
		}
		b.ReportMetric(float64(65535*b.N)/b.Elapsed().Seconds(), "ports/s")
		return nil
	})
	if err != nil {
		b.Fatal(err)
	}
}

func BenchmarkScanLoopbackConnect(b *testing.B)  { benchLoopbackScan(b, ConnectProber{}, "ip4") }
func BenchmarkScanLoopbackConnect6(b *testing.B) { benchLoopbackScan(b, ConnectProber{}, "ip6") }

// benchHeldPorts compares the probers on 4,096 loopback ports this process
// holds closed (bound, not listening), in the machine's own namespace:
// DialProber's goroutines cannot follow a scan into another namespace.
func benchHeldPorts(b *testing.B, pr Prober) {
	a := netip.MustParseAddr("127.0.0.1")
	sp := space{addrs: []netip.Addr{a}}
	for range 4096 {
		sp.ports = append(sp.ports, closedPort(b, a))
	}
	s := Scanner{Prober: pr}
	b.ResetTimer()
	for b.Loop() {
		sum, err := s.Run(context.Background(), sp)
		if err != nil || sum.Done != 4096 || sum.Open != 0 {
			b.Fatalf("scan: %v; %d done, %d open; want 4096 closed", err, sum.Done, sum.Open)
		}
	}
	b.ReportMetric(float64(4096*b.N)/b.Elapsed().Seconds(), "ports/s")
}

func BenchmarkScanHeldConnect(b *testing.B) { benchHeldPorts(b, ConnectProber{}) }
func BenchmarkScanHeldDial(b *testing.B)    { benchHeldPorts(b, DialProber{}) }
