package freeport

import (
	"context"
	"errors"
	"math/rand/v2"
	"net"
	"runtime"
	"strconv"
	"syscall"
	"testing"

	"portolan/internal/portspec"
)

// holdPort listens on network/addr (port 0: the kernel picks) and returns
// the port; the listener closes with the test. A UDP port is picked where
// TCP is free too, so that "held on UDP only" holds on a machine where
// other programs use many TCP ports.
func holdPort(t *testing.T, network, addr string) portspec.Port {
	t.Helper()
	switch network {
	case "udp", "udp4", "udp6":
		for range 100 {
			c, err := net.ListenPacket(network, addr)
			if err != nil {
				t.Fatalf("ListenPacket(%s, %s): %v", network, addr, err)
			}
			p := portspec.Port(c.LocalAddr().(*net.UDPAddr).Port)
			if CheckFree(p, portspec.TCP) == nil {
				t.Cleanup(func() { c.Close() })
				return p
			}
			c.Close()
		}
		t.Fatalf("no UDP port on %s with TCP free", addr)
	}
	l, err := net.Listen(network, addr)
	if err != nil {
		t.Fatalf("Listen(%s, %s): %v", network, addr, err)
	}
	t.Cleanup(func() { l.Close() })
	return portspec.Port(l.Addr().(*net.TCPAddr).Port)
}

// unusedPort returns a port free for TCP and UDP a moment ago, from
// 20000-31999: below the default ephemeral range, where other programs'
// outgoing connections do not take it meanwhile.
func unusedPort(t *testing.T) portspec.Port {
	t.Helper()
	for range 1000 {
		p := portspec.Port(20000 + rand.IntN(12000))
		if CheckFree(p, portspec.TCP, portspec.UDP) == nil {
			return p
		}
	}
	t.Fatal("no unused port found")
	return 0
}

func setOf(ports ...portspec.Port) *portspec.Set {
	s := new(portspec.Set)
	for _, p := range ports {
		s.Add(portspec.TCP, p)
	}
	return s
}

// bindsEverywhere checks, independently of the package, that p binds on
// every loopback and wildcard address.
func bindsEverywhere(t *testing.T, p portspec.Port) {
	t.Helper()
	for _, addr := range []string{"127.0.0.1", "[::1]", "0.0.0.0", "[::]"} {
		l, err := net.Listen("tcp", addr+":"+strconv.Itoa(int(p)))
		if err != nil {
			t.Errorf("port %d returned as free, but Listen on %s: %v", p, addr, err)
			continue
		}
		l.Close()
	}
}

func TestFreePortsDefaultRange(t *testing.T) {
	ctx := context.Background()
	ports, err := FindN(ctx, 5, Options{Dir: t.TempDir()})
	if err != nil {
		t.Fatalf("FindN(5) = %v", err)
	}
	if len(ports) != 5 {
		t.Fatalf("FindN(5) returned %d ports: %v", len(ports), ports)
	}
	pol := readKernelPortPolicy()
	seen := map[portspec.Port]bool{}
	for _, p := range ports {
		if seen[p] {
			t.Errorf("FindN(5) = %v: %d twice", ports, p)
		}
		seen[p] = true
		if p < 1024 || (p >= pol.ephLo && p <= pol.ephHi) {
			t.Errorf("FindN(5) gave %d, inside the ephemeral range %d-%d or privileged", p, pol.ephLo, pol.ephHi)
		}
		bindsEverywhere(t, p)
	}
}

// TestFreePassesOverHeld holds ports on each address and family in turn
// and checks that only the port free everywhere is returned.
func TestFreePassesOverHeld(t *testing.T) {
	ctx := context.Background()
	heldV4 := holdPort(t, "tcp4", "127.0.0.1:0")
	heldV6 := holdPort(t, "tcp6", "[::1]:0")
	heldAny4 := holdPort(t, "tcp4", "0.0.0.0:0")
	heldAny6 := holdPort(t, "tcp6", "[::]:0") // v6only: 0.0.0.0 still binds
	heldUDP := holdPort(t, "udp4", "127.0.0.1:0")
	free := unusedPort(t)
	rng := setOf(heldV4, heldV6, heldAny4, heldAny6, heldUDP, free)
	dir := t.TempDir()

	tests := []struct {
		name   string
		protos []portspec.Proto
		n      int
		want   []portspec.Port // in any order
		inUse  int             // with a NoFreePortError
	}{
		{"tcp", nil, 2, []portspec.Port{free, heldUDP}, 0},
		{"udp", []portspec.Proto{portspec.UDP}, 1, nil, 0},
		{"tcp and udp", []portspec.Proto{portspec.TCP, portspec.UDP}, 1, []portspec.Port{free}, 0},
		{"tcp and udp, two", []portspec.Proto{portspec.TCP, portspec.UDP}, 2, nil, 5},
		{"tcp, three", nil, 3, nil, 4},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := FindN(ctx, tt.n, Options{Range: rng, Protos: tt.protos, Dir: dir})
			if tt.inUse > 0 {
				var nf *NoFreePortError
				if !errors.As(err, &nf) || !errors.Is(err, ErrNoFreePort) {
					t.Fatalf("FindN(%d) = %v, %v; want a NoFreePortError", tt.n, got, err)
				}
				if nf.InUse != tt.inUse || nf.Checked != 6 {
					t.Errorf("FindN(%d) error %+v; want InUse %d of 6 checked", tt.n, nf, tt.inUse)
				}
				return
			}
			if err != nil {
				t.Fatalf("FindN(%d) = %v", tt.n, err)
			}
			if tt.want == nil { // udp: the UDP-held port is out, any other in
				for _, p := range got {
					if p == heldUDP {
						t.Errorf("FindN(udp) = %v; includes %d, held by UDP", got, heldUDP)
					}
				}
				return
			}
			if !sameSet(got, tt.want) {
				t.Errorf("FindN(%d) = %v; want %v", tt.n, got, tt.want)
			}
		})
	}
}

func sameSet(a, b []portspec.Port) bool {
	if len(a) != len(b) {
		return false
	}
	m := map[portspec.Port]int{}
	for _, p := range a {
		m[p]++
	}
	for _, p := range b {
		m[p]--
	}
	for _, v := range m {
		if v != 0 {
			return false
		}
	}
	return true
}

func TestFreePreferAndExclude(t *testing.T) {
	ctx := context.Background()
	a, b, c := unusedPort(t), unusedPort(t), unusedPort(t)
	held := holdPort(t, "tcp", ":0")
	dir := t.TempDir()

	got, err := FindN(ctx, 2, Options{Range: setOf(a, b, c), Prefer: []portspec.Port{held, c, b}, Dir: dir})
	if err != nil || len(got) != 2 || got[0] != c || got[1] != b {
		t.Errorf("FindN(prefer %d(held),%d,%d) = %v, %v; want [%d %d]", held, c, b, got, err, c, b)
	}
	// A preferred port outside the range is still taken.
	got, err = FindN(ctx, 1, Options{Range: setOf(a), Prefer: []portspec.Port{b}, Dir: dir})
	if err != nil || len(got) != 1 || got[0] != b {
		t.Errorf("FindN(range %d, prefer %d) = %v, %v; want [%d]", a, b, got, err, b)
	}
	got, err = FindN(ctx, 1, Options{Range: setOf(a, b), Exclude: setOf(a), Prefer: []portspec.Port{a}, Dir: dir})
	if err != nil || len(got) != 1 || got[0] != b {
		t.Errorf("FindN(range %d,%d, exclude and prefer %d) = %v, %v; want [%d]", a, b, a, got, err, b)
	}
	_, err = FindN(ctx, 1, Options{Range: setOf(a), Exclude: setOf(a), Dir: dir})
	if err == nil || errors.Is(err, ErrNoFreePort) {
		t.Errorf("FindN(range = exclusions) = %v; want an error saying there is nothing to search", err)
	}
}

func TestFreeKernelReservedSeam(t *testing.T) {
	a, b := unusedPort(t), unusedPort(t)
	o := Options{Range: setOf(a, b), Dir: t.TempDir(),
		policy: &kernelPortPolicy{ephLo: 32768, ephHi: 60999, reserved: setOf(a)}}
	got, err := FindN(context.Background(), 1, o)
	if err != nil || got[0] != b {
		t.Errorf("FreePorts with %d kernel-reserved = %v, %v; want [%d]", a, got, err, b)
	}
	_, err = FindN(context.Background(), 2, o)
	var nf *NoFreePortError
	if !errors.As(err, &nf) || nf.Kernel != 1 || nf.Found != 1 {
		t.Fatalf("FindN(2) = %v; want a NoFreePortError with 1 kernel-reserved, 1 found", err)
	}
	want := "only 1 of 2 free tcp ports in "
	if msg := err.Error(); len(msg) < len(want) || msg[:len(want)] != want {
		t.Errorf("error = %q; want it to start %q", msg, want)
	}
}

func TestCheckFree(t *testing.T) {
	p := holdPort(t, "tcp6", "[::1]:0")
	err := CheckFree(p)
	if !errors.Is(err, syscall.EADDRINUSE) {
		t.Errorf("CheckFree(%d held on ::1) = %v; want address already in use", p, err)
	}
	if err := CheckFree(p, portspec.UDP); err != nil {
		t.Errorf("CheckFree(%d/udp, held on tcp only) = %v; want nil", p, err)
	}
	if err := CheckFree(p, portspec.SCTP); err == nil {
		t.Errorf("CheckFree(%d/sctp) = nil; want an unsupported protocol error", p)
	}
}

// TestHolderStart: a holder's start time comes from /proc (procstat
// parses it, with its own tests).
func TestHolderStart(t *testing.T) {
	if got := holderStart(1); got == 0 && runtime.GOOS == "linux" {
		t.Errorf("holderStart(1) = 0; want pid 1's start time")
	}
}
