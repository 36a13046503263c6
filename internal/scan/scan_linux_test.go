package scan

import (
	"context"
	"errors"
	"net/netip"
	"sort"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"golang.org/x/sys/unix"

	"portolan/internal/portspec"
	"portolan/internal/target"
)

var _ Space = (*target.Space)(nil)

type portKey struct {
	addr netip.Addr
	port portspec.Port
}

// collect runs s over sp and returns the results by port, failing on a
// port reported twice.
func collect(t *testing.T, s Scanner, sp Space) (map[portKey]Result, Summary) {
	t.Helper()
	got := map[portKey]Result{}
	s.OnResult = func(r Result) {
		k := portKey{r.Addr, r.Port}
		if _, dup := got[k]; dup {
			t.Errorf("%s:%d reported twice", r.Addr, r.Port)
		}
		got[k] = r
	}
	sum, err := s.Run(context.Background(), sp)
	if err != nil {
		t.Fatalf("Run: %v", err)
	}
	return got, sum
}

type wantState struct {
	state  State
	reason string
}

func stateOf(r Result) wantState { return wantState{r.State, r.Reason} }

// TestConnectStates probes real sockets on loopback: a listener (open), a
// bound port nobody listens on (closed), and a listener whose full accept
// queue makes the kernel drop SYNs (filtered: no answer).
func TestConnectStates(t *testing.T) {
	for _, fam := range []string{"ip4", "ip6"} {
		for _, pr := range []struct {
			name string
			p    Prober
		}{{"connect", ConnectProber{}}, {"dial", DialProber{}}} {
			t.Run(fam+"/"+pr.name, func(t *testing.T) {
				a := netip.MustParseAddr("127.0.0.1")
				if fam == "ip6" {
					a = loopback6(t)
				}
				open, closed, dropped := openPort(t, a), closedPort(t, a), droppedPort(t, a)
				sp := space{addrs: []netip.Addr{a}, ports: []portspec.Port{open, closed, dropped}}
				got, sum := collect(t, Scanner{Prober: pr.p}, sp)
				want := map[portspec.Port]wantState{
					open:    {Open, ReasonSynAck},
					closed:  {Closed, ReasonConnRefused},
					dropped: {Filtered, ReasonNoResponse},
				}
				for port, w := range want {
					r, ok := got[portKey{a, port}]
					if !ok {
						t.Errorf("port %d: no result", port)
						continue
					}
					if stateOf(r) != w {
						t.Errorf("port %d = %v (%s); want %v (%s)", port, r.State, r.Reason, w.state, w.reason)
					}
					if r.State != Filtered && r.RTT <= 0 {
						t.Errorf("port %d: RTT %v; want a measured one", port, r.RTT)
					}
				}
				// The dropped port was tried 1 + DefaultRetries times, and
				// once more after a second (the host has a closed port: its
				// silence could have been rate-limited ICMP errors); the
				// others once.
				if want := uint64(4 + DefaultRetries); sum.Sent < want || sum.Retries != DefaultRetries+1 {
					t.Errorf("sent %d probes, %d retries; want %d and %d (retries only for the silent port)", sum.Sent, sum.Retries, want, DefaultRetries+1)
				}
				if !sum.Complete || sum.Checkpoint != 3 || sum.Done != 3 || sum.Open != 1 {
					t.Errorf("summary %+v; want complete at 3 with 3 done, 1 open", sum)
				}
			})
		}
	}
}

func TestRetriesNegativeMeansNone(t *testing.T) {
	a := netip.MustParseAddr("127.0.0.1")
	sp := space{addrs: []netip.Addr{a}, ports: []portspec.Port{droppedPort(t, a)}}
	got, sum := collect(t, Scanner{Retries: -1, InitialTimeout: 200 * time.Millisecond}, sp)
	if sum.Sent != 1 || sum.Retries != 0 || len(got) != 1 {
		t.Errorf("Retries -1: sent %d, retries %d, %d results; want 1, 0, 1", sum.Sent, sum.Retries, len(got))
	}
}

func TestServiceName(t *testing.T) {
	a := netip.MustParseAddr("127.0.0.1")
	open, closed := openPort(t, a), closedPort(t, a)
	names := map[portspec.Port]string{open: "alpha", closed: "beta"}
	s := Scanner{ServiceName: func(p portspec.Port, proto portspec.Proto) string {
		if proto != portspec.TCP {
			t.Errorf("ServiceName called with %v", proto)
		}
		return names[p]
	}}
	got, _ := collect(t, s, space{addrs: []netip.Addr{a}, ports: []portspec.Port{open, closed}})
	for p, n := range names {
		if got[portKey{a, p}].Service != n {
			t.Errorf("port %d service %q; want %q", p, got[portKey{a, p}].Service, n)
		}
	}
}

// fixture is a set of loopback ports whose states the test controls: some
// open, the rest held closed, so that nothing another process does on the
// machine can change a result between two runs.
func fixture(t *testing.T, n, open int) (space, map[portspec.Port]State) {
	a := netip.MustParseAddr("127.0.0.1")
	sp := space{addrs: []netip.Addr{a}}
	want := map[portspec.Port]State{}
	for i := range n {
		var p portspec.Port
		if i%(n/open) == 0 {
			p = openPort(t, a)
			want[p] = Open
		} else {
			p = closedPort(t, a)
			want[p] = Closed
		}
		sp.ports = append(sp.ports, p)
	}
	return sp, want
}

func states(m map[portKey]Result) map[portspec.Port]State {
	out := map[portspec.Port]State{}
	for k, r := range m {
		out[k.port] = r.State
	}
	return out
}

// TestResumeAfterCancel stops a scan part way and resumes it from the
// Summary's checkpoint: together the two runs report every port, with the
// states of an uninterrupted scan.
func TestResumeAfterCancel(t *testing.T) {
	sp, want := fixture(t, 600, 20)
	const seed = 12345
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	first := map[portKey]Result{}
	s := Scanner{Seed: seed, Window: 16}
	s.OnResult = func(r Result) {
		first[portKey{r.Addr, r.Port}] = r
		if len(first) == 250 {
			cancel()
		}
	}
	sum, err := s.Run(ctx, sp)
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("Run after cancel: err %v; want context.Canceled", err)
	}
	if sum.Complete || sum.Checkpoint > uint64(len(first)) || sum.Checkpoint == 0 {
		t.Fatalf("cancelled run: complete %v, checkpoint %d with %d results; want incomplete, 0 < checkpoint <= results", sum.Complete, sum.Checkpoint, len(first))
	}
	if sum.Seed != seed {
		t.Fatalf("Summary.Seed = %d; want %d", sum.Seed, seed)
	}
	// Everything below the checkpoint has been reported.
	perm := NewPermutation(sp.Size(), seed)
	for pos := range sum.Checkpoint {
		a, p, _ := sp.At(perm.At(pos))
		if _, ok := first[portKey{a, p}]; !ok {
			t.Fatalf("position %d (port %d) is below the checkpoint %d but was not reported", pos, p, sum.Checkpoint)
		}
	}

	s2 := Scanner{Seed: seed, StartAt: sum.Checkpoint}
	second, sum2 := collect(t, s2, sp)
	if !sum2.Complete || sum2.From != sum.Checkpoint || sum2.Total != sp.Size()-sum.Checkpoint {
		t.Errorf("resumed run: %+v; want complete from %d", sum2, sum.Checkpoint)
	}
	for k, r := range second {
		first[k] = r
	}
	if diff := cmp.Diff(want, states(first)); diff != "" {
		t.Errorf("first run + resume (-want +got):\n%s", diff)
	}
}

// TestResumeAfterCrash resumes from the last periodic checkpoint a run
// reported, as the store would after the process died: only OnCheckpoint's
// value survives, and the union of results is still complete and right.
func TestResumeAfterCrash(t *testing.T) {
	sp, want := fixture(t, 600, 30)
	const seed = 777
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	first := map[portKey]Result{}
	var saved uint64
	var checkpoints []uint64
	s := Scanner{Seed: seed, Window: 8, CheckpointEvery: time.Nanosecond}
	s.OnCheckpoint = func(pos uint64) {
		checkpoints = append(checkpoints, pos)
		if len(first) < 300 {
			saved = pos // what the store last wrote before the "crash"
		}
	}
	s.OnResult = func(r Result) {
		first[portKey{r.Addr, r.Port}] = r
		if len(first) == 400 {
			cancel()
		}
	}
	s.Run(ctx, sp)
	if saved == 0 {
		t.Fatal("no checkpoint reported in the first 300 results")
	}
	if !sort.SliceIsSorted(checkpoints, func(i, j int) bool { return checkpoints[i] < checkpoints[j] }) {
		t.Errorf("checkpoints went backwards: %v", checkpoints)
	}
	s2 := Scanner{Seed: seed, StartAt: saved}
	second, _ := collect(t, s2, sp)
	for k, r := range second {
		first[k] = r
	}
	if diff := cmp.Diff(want, states(first)); diff != "" {
		t.Errorf("crashed run + resume (-want +got):\n%s", diff)
	}
}

// TestShardsScanSpace runs every shard of a space and checks they report
// each port exactly once between them.
func TestShardsScanSpace(t *testing.T) {
	sp, want := fixture(t, 200, 10)
	all := map[portspec.Port]State{}
	for i := uint64(1); i <= 3; i++ {
		got, sum := collect(t, Scanner{Seed: 9, Shard: Shard{Index: i, Count: 3}}, sp)
		if sum.Done != sum.To-sum.From {
			t.Errorf("shard %d: done %d of [%d, %d)", i, sum.Done, sum.From, sum.To)
		}
		for k, r := range got {
			if _, dup := all[k.port]; dup {
				t.Errorf("port %d in two shards", k.port)
			}
			all[k.port] = r.State
		}
	}
	if diff := cmp.Diff(want, all); diff != "" {
		t.Errorf("union of shards (-want +got):\n%s", diff)
	}
}

func TestRunRefusesBadInput(t *testing.T) {
	sp := space{addrs: []netip.Addr{netip.MustParseAddr("127.0.0.1")}, ports: []portspec.Port{1, 2, 3, 4}}
	for _, tc := range []struct {
		name string
		s    Scanner
	}{
		{"shard index past count", Scanner{Shard: Shard{Index: 3, Count: 2}}},
		{"resume past shard", Scanner{Shard: Shard{Index: 1, Count: 2}, StartAt: 3}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			sent := false
			tc.s.OnResult = func(Result) { sent = true }
			if _, err := tc.s.Run(context.Background(), sp); err == nil || sent {
				t.Errorf("Run = %v, results %v; want an error before any probe", err, sent)
			}
		})
	}
}

type udpSpace struct{ space }

func (s udpSpace) At(i uint64) (netip.Addr, portspec.Port, portspec.Proto) {
	a, p, _ := s.space.At(i)
	return a, p, portspec.UDP
}

func TestConnectRefusesUDP(t *testing.T) {
	sp := udpSpace{space{addrs: []netip.Addr{netip.MustParseAddr("127.0.0.1")}, ports: []portspec.Port{53}}}
	_, err := new(Scanner).Run(context.Background(), sp)
	if !errors.Is(err, ErrUnsupported) {
		t.Errorf("UDP through the connect prober: %v; want ErrUnsupported", err)
	}
}

// TestStatsAndCallbacks checks the progress numbers a progress line shows.
func TestStatsAndCallbacks(t *testing.T) {
	sp, _ := fixture(t, 300, 10)
	var mu sync.Mutex
	var last Stats
	calls := 0
	s := Scanner{Rate: 2000, StatsEvery: 10 * time.Millisecond}
	s.OnStats = func(st Stats) {
		mu.Lock()
		defer mu.Unlock()
		calls++
		if st.Done > st.Total || st.Percent < last.Percent || st.Sent < last.Sent {
			t.Errorf("stats went wrong: %+v after %+v", st, last)
		}
		last = st
	}
	_, sum := collect(t, s, sp)
	if calls == 0 {
		t.Error("OnStats never called in a scan of 300 ports at 2000/s")
	}
	if sum.Done != 300 || sum.Percent != 100 || sum.Open != 10 || sum.Sent != sum.Answered || sum.ETA != 0 {
		t.Errorf("final stats %+v; want 300 done, 100%%, 10 open, every probe answered", sum.Stats)
	}
}

// TestHostDown: a host none of whose ports ever answers goes through host
// discovery after HostDownAfter silent probes. Here its discovery ports
// are dropped too, so it is given up on; a host that has answered never
// is, however many of its ports are dropped (half of them here: with this
// seed a closed one comes early, as it almost always would); and
// HostDownAfter < 0 probes every port.
func TestHostDown(t *testing.T) {
	silent, live := netip.MustParseAddr("127.0.0.2"), netip.MustParseAddr("127.0.0.1")
	var sp listSpace
	var discovery []portspec.Port
	for i := range 24 {
		p := droppedPort(t, silent)
		if i < 3 {
			discovery = append(discovery, p)
		}
		sp = append(sp, netip.AddrPortFrom(silent, uint16(p)))
		sp = append(sp, netip.AddrPortFrom(live, uint16(droppedPort(t, live))))
		sp = append(sp, netip.AddrPortFrom(live, uint16(closedPort(t, live))))
	}
	base := Scanner{HostDownAfter: 8, InitialTimeout: 100 * time.Millisecond, MaxTimeout: 100 * time.Millisecond, Seed: 3,
		DiscoveryPorts: discovery}

	got, sum := collect(t, base, sp)
	reasons := map[netip.Addr]map[string]int{silent: {}, live: {}}
	for k, r := range got {
		reasons[k.addr][r.Reason]++
	}
	if sum.HostsDown != 1 || reasons[silent][ReasonHostTimeout] == 0 {
		t.Errorf("HostDownAfter 8: %d hosts down, silent host reasons %v; want 1 down, some %s", sum.HostsDown, reasons[silent], ReasonHostTimeout)
	}
	if reasons[live][ReasonHostTimeout] != 0 || reasons[live][ReasonNoResponse] != 24 {
		t.Errorf("host that answered: reasons %v; want 24 %s and no %s", reasons[live], ReasonNoResponse, ReasonHostTimeout)
	}

	never := base
	never.HostDownAfter = -1
	got, sum = collect(t, never, sp)
	clear(reasons[silent])
	for k, r := range got {
		if k.addr == silent {
			reasons[silent][r.Reason]++
		}
	}
	if sum.HostsDown != 0 || reasons[silent][ReasonNoResponse] != 24 {
		t.Errorf("HostDownAfter -1: %d hosts down, silent host reasons %v; want none down, 24 %s", sum.HostsDown, reasons[silent], ReasonNoResponse)
	}
}

// TestHostDiscoveryRST: the same silent-looking host with the default
// discovery ports, which it answers with resets (nothing listens there):
// a reset is an answer, so the host is up and every port of it is probed.
func TestHostDiscoveryRST(t *testing.T) {
	silent := netip.MustParseAddr("127.0.0.2")
	var sp listSpace
	for range 24 {
		sp = append(sp, netip.AddrPortFrom(silent, uint16(droppedPort(t, silent))))
	}
	s := Scanner{HostDownAfter: 8, InitialTimeout: 100 * time.Millisecond, MaxTimeout: 100 * time.Millisecond, Seed: 3}
	got, sum := collect(t, s, sp)
	reasons := map[string]int{}
	for _, r := range got {
		reasons[r.Reason]++
	}
	if sum.HostsDown != 0 || reasons[ReasonNoResponse] != 24 {
		t.Errorf("%d hosts down, reasons %v; want none down, 24 %s", sum.HostsDown, reasons, ReasonNoResponse)
	}
}

// TestOutcome checks what Cancel relies on: reading a connect's result
// from the kernel without waiting for epoll.
func TestOutcome(t *testing.T) {
	a := netip.MustParseAddr("127.0.0.1")
	for _, tc := range []struct {
		name string
		port portspec.Port
		want wantState
		done bool
	}{
		{"open", openPort(t, a), wantState{Open, ReasonSynAck}, true},
		{"closed", closedPort(t, a), wantState{Closed, ReasonConnRefused}, true},
		{"dropped", droppedPort(t, a), wantState{}, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			fd, err := unix.Socket(unix.AF_INET, unix.SOCK_STREAM|unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC, 0)
			if err != nil {
				t.Fatal(err)
			}
			defer unix.Close(fd)
			sa, _ := sockaddr(a, int(tc.port))
			if err := unix.Connect(fd, sa); err != nil && err != unix.EINPROGRESS {
				t.Fatalf("connect: %v", err)
			}
			// Wait for the handshake's end (or, for the dropped port, a while).
			pfd := []unix.PollFd{{Fd: int32(fd), Events: unix.POLLOUT}}
			unix.Poll(pfd, 200)
			r, done := outcome(fd)
			if done != tc.done || (wantState{r.State, r.Reason}) != tc.want {
				t.Errorf("outcome = %v (%s), done %v; want %v (%s), done %v", r.State, r.Reason, done, tc.want.state, tc.want.reason, tc.done)
			}
		})
	}
}

// A probe socket keeps its own source port (and its source address, when
// bound to the one the route gives) across the refused connects it is
// reused for, on both families, so the kernel need not search for a free
// port or pick an address per probe.
func TestProbeSocketKeepsItsPort(t *testing.T) {
	for _, a := range []netip.Addr{netip.MustParseAddr("127.0.0.1"), netip.IPv6Loopback()} {
		src := routeSource(a)
		if src != a {
			t.Fatalf("routeSource(%s) = %s; want the loopback address itself", a, src)
		}
		for _, src := range []netip.Addr{{}, src} {
			sa, family := sockaddr(a, int(closedPort(t, a)))
			fd, err := ownPortSocket(family, src)
			if err != nil {
				t.Fatalf("%s from %s: socket: %v", a, src, err)
			}
			defer unix.Close(fd)
			local := func() netip.AddrPort {
				got, err := unix.Getsockname(fd)
				if err != nil {
					t.Fatalf("getsockname: %v", err)
				}
				switch s := got.(type) {
				case *unix.SockaddrInet4:
					return netip.AddrPortFrom(netip.AddrFrom4(s.Addr), uint16(s.Port))
				case *unix.SockaddrInet6:
					return netip.AddrPortFrom(netip.AddrFrom16(s.Addr), uint16(s.Port))
				}
				return netip.AddrPort{}
			}
			before := local()
			if before.Port() == 0 {
				t.Fatalf("%s from %s: probe socket has no port of its own", a, src)
			}
			if src.IsValid() && before.Addr() != src {
				t.Fatalf("%s: probe socket bound to %s; want %s", a, before.Addr(), src)
			}
			for i := range 3 {
				err := unix.Connect(fd, sa)
				if err == unix.EINPROGRESS {
					err = unix.Connect(fd, sa)
					for err == unix.EALREADY {
						time.Sleep(time.Millisecond)
						err = unix.Connect(fd, sa)
					}
				}
				if err != unix.ECONNREFUSED {
					t.Fatalf("%s from %s: connect %d to a closed port: %v; want ECONNREFUSED", a, src, i, err)
				}
				if got := local(); got != before {
					t.Fatalf("%s from %s: bound to %s after refused connect %d; want %s", a, src, got, i, before)
				}
			}
		}
	}
}

// The source cache gives the route's source address, leaves link-local
// destinations to the kernel, stops remembering new hosts at its bound,
// and asks again for a host it was told to forget.
func TestSourceCache(t *testing.T) {
	var c sourceCache
	for _, a := range []string{"127.0.0.1", "::1", "127.0.0.2"} {
		dst := netip.MustParseAddr(a)
		want := routeSource(dst)
		if got := c.lookup(dst); got != want || !got.IsValid() {
			t.Errorf("lookup(%s) = %v; want %v", a, got, want)
		}
	}
	if got := c.lookup(netip.MustParseAddr("fe80::1%lo")); got.IsValid() {
		t.Errorf("lookup(fe80::1%%lo) = %v; want none", got)
	}
	for i := 0; len(c.m) < sourceHosts; i++ {
		c.lookup(netip.AddrFrom4([4]byte{127, 1, byte(i >> 8), byte(i)}))
	}
	if got := c.lookup(netip.MustParseAddr("127.9.9.9")); got.IsValid() || len(c.m) != sourceHosts {
		t.Errorf("beyond the bound: lookup = %v, %d hosts; want none, %d", got, len(c.m), sourceHosts)
	}
	lo := netip.MustParseAddr("127.0.0.1")
	c.forget(lo)
	if _, ok := c.m[lo]; ok {
		t.Error("forget left the entry")
	}
	if got := c.lookup(lo); got != lo {
		t.Errorf("after forget: lookup = %v; want it asked again, %v", got, lo)
	}
}

// TestHostTimeout: a host that keeps the scan waiting (every port dropped,
// probed a few at a time) is given up HostTimeout after its first probe:
// the ports not probed by then are filtered, host-timeout, unprobed.
func TestHostTimeout(t *testing.T) {
	a := netip.MustParseAddr("127.0.0.3")
	var sp listSpace
	for range 64 {
		sp = append(sp, netip.AddrPortFrom(a, uint16(droppedPort(t, a))))
	}
	s := Scanner{HostDownAfter: -1, HostTimeout: 200 * time.Millisecond, Window: 4,
		MinTimeout: 100 * time.Millisecond, MaxTimeout: 100 * time.Millisecond, InitialTimeout: 100 * time.Millisecond}
	got, sum := collect(t, s, sp)
	reasons := map[string]int{}
	for _, r := range got {
		reasons[r.Reason]++
	}
	if len(got) != len(sp) || reasons[ReasonHostTimeout] == 0 || sum.Sent >= uint64(len(sp)) {
		t.Errorf("%d results, reasons %v, %d probes sent; want %d results, some %s, fewer probes than ports",
			len(got), reasons, sum.Sent, len(sp), ReasonHostTimeout)
	}
}
