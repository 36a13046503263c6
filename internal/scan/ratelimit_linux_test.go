package scan

import (
	"net/netip"
	"strings"
	"testing"

	"portolan/internal/netlab"
	"portolan/internal/portspec"
	"portolan/internal/testenv"
)

// TestICMPRateLimitedClosed: a firewall that rejects ports with ICMP port
// unreachable, on a kernel that rate-limits ICMP errors (Linux: a burst of
// 6, then one a second per destination), answers only the first few
// probes of a wave. Those ports are closed, as a direct connect() shows
// when it is not racing the limiter; the scanner must re-probe as the
// bucket refills rather than call them filtered. Dropped ports on the same
// host stay filtered, and ports closed by a reset are closed.
func TestICMPRateLimitedClosed(t *testing.T) {
	testenv.RequireCommand(t, "nft")
	scanner, target, lk := netlab.NewPair(t)
	cmd := target.Command(t.Context(), "nft", "-f", "-")
	cmd.Stdin = strings.NewReader(`table inet fw {
 chain input {
  type filter hook input priority 0;
  tcp dport 1000-1015 reject
  tcp dport 2000-2003 drop
 }
}
`)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("nft: %v\n%s", err, out)
	}
	want := map[portspec.Port]wantState{}
	var ports []portspec.Port
	for p := portspec.Port(1000); p <= 1015; p++ {
		want[p] = wantState{Closed, ReasonConnRefused}
	}
	for p := portspec.Port(2000); p <= 2003; p++ {
		want[p] = wantState{Filtered, ReasonNoResponse}
	}
	for p := portspec.Port(3000); p <= 3003; p++ {
		want[p] = wantState{Closed, ReasonConnRefused} // nothing listens: a reset
	}
	for p := range want {
		ports = append(ports, p)
	}
	for _, addr := range []netip.Addr{lk.B4, lk.B6} {
		t.Run(addr.String(), func(t *testing.T) {
			var got map[portKey]Result
			if err := scanner.Do(func() error {
				got, _ = collect(t, Scanner{Seed: 1}, hostPorts{addr, ports})
				return nil
			}); err != nil {
				t.Fatal(err)
			}
			for p, w := range want {
				if r := got[portKey{addr, p}]; stateOf(r) != w {
					t.Errorf("%s port %d = %v (%s); want %v (%s)", addr, p, r.State, r.Reason, w.state, w.reason)
				}
			}
		})
	}
}
