package knock

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"portolan/internal/firewall"
	"portolan/internal/netlab"
	"portolan/internal/nflog"
	"portolan/internal/portspec"
	"portolan/internal/store"
	"portolan/internal/testenv"
)

// lab is srv (198.18.0.1, fd00::1) running the knock daemon with a door
// protecting 2222/tcp, where a listener waits, and cli (198.18.0.2,
// fd00::2) knocking.
type lab struct {
	srv, cli *netlab.Host
	link     *netlab.Link
	fw       *firewall.Firewall
	cfg      *Config
	keys     map[KeyID]*Key
	ed, mac  *ClientKey
	events   chan Event
	logs     *syncBuffer
	stop     func()
	capture  string  // the servers' Capture
	server   *Server // the last one started
}

type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

var ssh = DoorPort{Proto: portspec.TCP, Port: 2222}

func newLab(t *testing.T, openFor time.Duration) *lab {
	t.Helper()
	srv, cli, lk := netlab.NewPair(t)
	ln, err := srv.Listen("tcp", ":2222")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go testenv.Serve(ln, nil)

	l := &lab{srv: srv, cli: cli, link: lk, fw: &firewall.Firewall{NetNS: srv.FD()}, events: make(chan Event, 64), logs: &syncBuffer{}}
	l.ed = &ClientKey{Alg: Ed25519, Private: ed25519.NewKeyFromSeed(bytes.Repeat([]byte{1}, 32))}
	l.mac = &ClientKey{Alg: HMAC, Secret: bytes.Repeat([]byte{2}, 32)}
	keys := string(l.ed.PublicLine("laptop")) + string(l.mac.PublicLine("phone"))
	l.keys, err = ParseAuthorizedKeys("keys", []byte(keys))
	if err != nil {
		t.Fatal(err)
	}
	seq, _ := ParseSequence("7000,8000/udp,9000")
	l.cfg = &Config{AuthorizedKeys: "keys", Doors: []Door{{Name: "ssh", Protect: []DoorPort{ssh}, Sequence: seq, OpenFor: openFor}}}
	return l
}

// start runs a server (a fresh one, as after a restart) with replay store
// rs (nil: memory only) until the test ends or stop is called.
func (l *lab) start(t *testing.T, rs ReplayStore) {
	t.Helper()
	s := &Server{Firewall: l.fw, Replay: rs, Logger: slog.New(slog.NewJSONHandler(l.logs, nil)),
		Events: func(e Event) { l.events <- e }, Capture: l.capture}
	l.server = s
	ctx, cancel := context.WithCancel(context.Background())
	if err := s.Apply(ctx, l.cfg, l.keys); err != nil {
		t.Fatal(err)
	}
	if err := s.Listen(ctx); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- s.Serve(ctx) }()
	var once sync.Once
	l.stop = func() {
		once.Do(func() {
			cancel()
			if err := <-done; err != nil {
				t.Errorf("Serve: %v", err)
			}
		})
	}
	t.Cleanup(l.stop)
}

// reachable reports whether cli can connect to srv's 2222 at addr. A
// dropped SYN is given 700 ms: a busy machine can only make an open port
// look closed within that, never the reverse, so checks that want it open
// use open instead.
func (l *lab) reachable(t *testing.T, addr netip.Addr) bool {
	t.Helper()
	return l.connect(addr, 700*time.Millisecond)
}

// open reports whether cli can connect within 10 s.
func (l *lab) open(t *testing.T, addr netip.Addr) bool {
	t.Helper()
	return l.connect(addr, 10*time.Second)
}

func (l *lab) connect(addr netip.Addr, timeout time.Duration) bool {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	c, err := l.cli.DialContext(ctx, "tcp", netip.AddrPortFrom(addr, 2222).String())
	if err != nil {
		return false
	}
	c.Close()
	return true
}

// event waits for the next event of type typ, skipping others.
func (l *lab) event(t *testing.T, typ string) Event {
	t.Helper()
	deadline := time.After(10 * time.Second)
	for {
		select {
		case e := <-l.events:
			if e.Type == typ {
				return e
			}
		case <-deadline:
			t.Fatalf("no %s event in 10s; logs:\n%s", typ, l.logs.String())
		}
	}
}

// noEvent checks no event of type typ comes within a short while.
func (l *lab) noEvent(t *testing.T, typ string) {
	t.Helper()
	deadline := time.After(500 * time.Millisecond)
	for {
		select {
		case e := <-l.events:
			if e.Type == typ {
				t.Fatalf("unexpected %s event: %+v", typ, e)
			}
		case <-deadline:
			return
		}
	}
}

func (l *lab) spa(t *testing.T, key *ClientKey, now func() time.Time, server netip.Addr, allow netip.Addr, ports []DoorPort, d time.Duration) []byte {
	t.Helper()
	var b []byte
	err := l.cli.Do(func() error {
		var err error
		b, err = (&SPA{Key: key, Now: now}).Send(context.Background(), netip.AddrPortFrom(server, DefaultSPAPort), allow, ports, d)
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func (l *lab) resend(t *testing.T, server netip.Addr, b []byte) {
	t.Helper()
	c, err := l.cli.DialContext(context.Background(), "udp", netip.AddrPortFrom(server, DefaultSPAPort).String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if _, err := c.Write(b); err != nil {
		t.Fatal(err)
	}
}

// TestSPAOpensThenCloses: closed before, open right after the door's
// opened event, closed again once its time is up.
func TestSPAOpensThenCloses(t *testing.T) {
	l := newLab(t, 30*time.Second)
	l.start(t, nil)
	if l.reachable(t, l.link.A4) {
		t.Fatal("2222/tcp reachable before any knock")
	}
	l.spa(t, l.ed, nil, l.link.A4, netip.Addr{}, []DoorPort{ssh}, 2*time.Second)
	e := l.event(t, EventOpened)
	if e.Key != "laptop" || e.Allow != l.link.B4 || e.Src != l.link.B4 || e.Until.Sub(e.Time) != 2*time.Second || e.Latency <= 0 {
		t.Errorf("opened event %+v; want laptop opening for %s for 2s", e, l.link.B4)
	}
	if !l.open(t, l.link.A4) {
		t.Fatal("2222/tcp not reachable after the door opened")
	}
	time.Sleep(time.Until(e.Until) + 300*time.Millisecond)
	if l.reachable(t, l.link.A4) {
		t.Fatal("2222/tcp reachable after the door's time")
	}
	if c := l.event(t, EventClosed); c.Allow != l.link.B4 || c.Key != "laptop" || c.Via != "spa" || !c.Time.Equal(e.Until) {
		t.Errorf("closed event %+v; want laptop's door for %s closed at %v", c, l.link.B4, e.Until)
	}
	if !strings.Contains(l.logs.String(), `"msg":"door opened"`) {
		t.Errorf("no door opened line in the log:\n%s", l.logs.String())
	}
}

// TestSPAIPv6 opens the door over IPv6 with the HMAC key.
func TestSPAIPv6(t *testing.T) {
	l := newLab(t, 30*time.Second)
	l.start(t, nil)
	if l.reachable(t, l.link.A6) {
		t.Fatal("[fd00::1]:2222 reachable before any knock")
	}
	l.spa(t, l.mac, nil, l.link.A6, netip.Addr{}, []DoorPort{ssh}, 0)
	e := l.event(t, EventOpened)
	if e.Key != "phone" || e.Allow != l.link.B6 || e.Until.Sub(e.Time) != 30*time.Second {
		t.Errorf("opened event %+v; want phone opening for %s for the door's 30s", e, l.link.B6)
	}
	if !l.open(t, l.link.A6) {
		t.Fatal("[fd00::1]:2222 not reachable after the door opened")
	}
	if l.reachable(t, l.link.A4) {
		t.Error("the door opened for cli's IPv6 address let its IPv4 address in")
	}
}

// TestSPARejected sends requests that must not open the door and checks
// each is rejected with its reason, logged, and leaves the port closed.
func TestSPARejected(t *testing.T) {
	l := newLab(t, 30*time.Second)
	l.start(t, nil)
	stranger := &ClientKey{Alg: Ed25519, Private: ed25519.NewKeyFromSeed(bytes.Repeat([]byte{3}, 32))}
	forged := func() {
		// The laptop's key id, signed by someone else.
		r := Request{Time: time.Now(), AllowIP: l.link.B4, Ports: []DoorPort{ssh}}
		b, err := stranger.Sign(&r)
		if err != nil {
			t.Fatal(err)
		}
		id := keyIDOf(Ed25519, l.ed.Private.Public().(ed25519.PublicKey))
		copy(b[4:12], id[:])
		l.resend(t, l.link.A4, b)
	}
	stale := func() time.Time { return time.Now().Add(-5 * time.Minute) }
	for _, tc := range []struct {
		name, reason string
		send         func()
	}{
		{"unknown key", ReasonUnknownKey, func() { l.spa(t, stranger, nil, l.link.A4, netip.Addr{}, []DoorPort{ssh}, 0) }},
		{"wrong key", ReasonBadSig, forged},
		{"stale timestamp", ReasonStale, func() { l.spa(t, l.ed, stale, l.link.A4, netip.Addr{}, []DoorPort{ssh}, 0) }},
		{"spoofed allow-ip", ReasonAllowIP, func() {
			l.spa(t, l.ed, nil, l.link.A4, netip.MustParseAddr("198.18.0.99"), []DoorPort{ssh}, 0)
		}},
		{"port not protected", ReasonPorts, func() {
			l.spa(t, l.ed, nil, l.link.A4, netip.Addr{}, []DoorPort{{Proto: portspec.TCP, Port: 23}}, 0)
		}},
	} {
		tc.send()
		e := l.event(t, EventRejected)
		if e.Reason != tc.reason {
			t.Errorf("%s: rejected with %q; want %q", tc.name, e.Reason, tc.reason)
		}
		if l.reachable(t, l.link.A4) {
			t.Fatalf("%s: 2222/tcp reachable", tc.name)
		}
		if want := fmt.Sprintf(`"reason":%q`, tc.reason); !strings.Contains(l.logs.String(), want) {
			t.Errorf("%s: no log line with %s", tc.name, want)
		}
	}
	hs, _, err := l.fw.DoorHolders(context.Background())
	if err != nil || len(hs) != 0 {
		t.Errorf("door holders after rejections: %+v, %v; want none", hs, err)
	}
}

// TestSPAReplay replays an accepted datagram after its door closed; the
// second time it is rejected and the port stays closed, also after a
// restart of the daemon with the same store.
func TestSPAReplay(t *testing.T) {
	l := newLab(t, 30*time.Second)
	st, err := store.Open(context.Background(), filepath.Join(t.TempDir(), "p.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	rs := storeReplay{st}
	l.start(t, rs)
	b := l.spa(t, l.ed, nil, l.link.A4, netip.Addr{}, []DoorPort{ssh}, time.Second)
	e := l.event(t, EventOpened)
	time.Sleep(time.Until(e.Until) + 200*time.Millisecond)
	l.resend(t, l.link.A4, b)
	if e := l.event(t, EventRejected); e.Reason != ReasonReplayed {
		t.Errorf("replay rejected with %q; want %q", e.Reason, ReasonReplayed)
	}
	if l.reachable(t, l.link.A4) {
		t.Fatal("2222/tcp reachable after a replay")
	}

	l.stop()
	l.start(t, rs)
	l.resend(t, l.link.A4, b)
	if e := l.event(t, EventRejected); e.Reason != ReasonReplayed {
		t.Errorf("replay after restart rejected with %q; want %q", e.Reason, ReasonReplayed)
	}
	if l.reachable(t, l.link.A4) {
		t.Fatal("2222/tcp reachable after a replay across a restart")
	}
}

type storeReplay struct{ st *store.Store }

func (r storeReplay) AddNonce(ctx context.Context, nonce []byte, expires time.Time) (bool, error) {
	return r.st.AddKnockNonce(ctx, nonce, expires)
}

// TestSequence: the wrong order leaves the door closed, the right
// sequence opens it, and it closes after its time.
func TestSequence(t *testing.T) {
	l := newLab(t, time.Second)
	l.start(t, nil)
	knock := func(spec string) {
		seq, err := ParseSequence(spec)
		if err != nil {
			t.Fatal(err)
		}
		if err := l.cli.Do(func() error { return Knock(context.Background(), l.link.A4, seq, 10*time.Millisecond) }); err != nil {
			t.Fatal(err)
		}
	}
	knock("9000,8000/udp,7000")
	l.noEvent(t, EventOpened)
	if l.reachable(t, l.link.A4) {
		t.Fatal("2222/tcp reachable after the wrong order")
	}
	knock("7000,8000/udp,9000")
	e := l.event(t, EventOpened)
	if e.Door != "ssh" || e.Via != "sequence" || e.Allow != l.link.B4 {
		t.Errorf("opened event %+v; want door ssh by sequence for %s", e, l.link.B4)
	}
	if !l.open(t, l.link.A4) {
		t.Fatal("2222/tcp not reachable after the sequence")
	}
	time.Sleep(time.Until(e.Until) + 300*time.Millisecond)
	if l.reachable(t, l.link.A4) {
		t.Fatal("2222/tcp reachable after the door's time")
	}
}

// TestSequenceIPv6 knocks over IPv6.
func TestSequenceIPv6(t *testing.T) {
	l := newLab(t, 30*time.Second)
	l.start(t, nil)
	seq, _ := ParseSequence("7000,8000/udp,9000")
	if err := l.cli.Do(func() error { return Knock(context.Background(), l.link.A6, seq, 0) }); err != nil {
		t.Fatal(err)
	}
	if e := l.event(t, EventOpened); e.Allow != l.link.B6 {
		t.Errorf("opened for %s; want %s", e.Allow, l.link.B6)
	}
	if !l.open(t, l.link.A6) {
		t.Fatal("[fd00::1]:2222 not reachable after the sequence")
	}
}

// TestJunkDoesNotStopTheServer floods the SPA port with junk and checks
// it is counted, logged at most a few lines, and the server still opens.
func TestJunkDoesNotStopTheServer(t *testing.T) {
	l := newLab(t, 30*time.Second)
	l.start(t, nil)
	for i := range 200 {
		l.resend(t, l.link.A4, bytes.Repeat([]byte{byte(i)}, i%200))
	}
	l.spa(t, l.ed, nil, l.link.A4, netip.Addr{}, []DoorPort{ssh}, 0)
	l.event(t, EventOpened)
	if n := strings.Count(l.logs.String(), "\n"); n > 5 {
		t.Errorf("%d log lines after a junk flood; want junk counted, not logged", n)
	}
	var lines []map[string]any
	for _, s := range strings.Split(strings.TrimSpace(l.logs.String()), "\n") {
		var m map[string]any
		if json.Unmarshal([]byte(s), &m) == nil {
			lines = append(lines, m)
		}
	}
	if len(lines) == 0 {
		t.Error("no log lines")
	}
}

// TestDoorClosesWithoutDaemon stops the daemon while a door is open: the
// kernel still closes it on time, and the port stays protected.
func TestDoorClosesWithoutDaemon(t *testing.T) {
	l := newLab(t, 30*time.Second)
	l.start(t, nil)
	l.spa(t, l.ed, nil, l.link.A4, netip.Addr{}, []DoorPort{ssh}, time.Second)
	e := l.event(t, EventOpened)
	l.stop()
	if !l.open(t, l.link.A4) {
		t.Fatal("2222/tcp not reachable while the door is open")
	}
	time.Sleep(time.Until(e.Until) + 300*time.Millisecond)
	if l.reachable(t, l.link.A4) {
		t.Fatal("2222/tcp reachable after the door's time with the daemon gone")
	}
}

// TestSecondDaemonLeavesDoors starts a second server with other doors in
// the same namespace: it fails on the NFLOG group before it writes its
// doors, so the first one's stay as they were.
func TestSecondDaemonLeavesDoors(t *testing.T) {
	l := newLab(t, 30*time.Second)
	l.start(t, nil)
	other := &Config{Doors: []Door{{Name: "web", Protect: []DoorPort{{Proto: portspec.TCP, Port: 8443}}, Sequence: []DoorPort{{Proto: portspec.TCP, Port: 1}}}}}
	err := (&Server{Firewall: l.fw}).Apply(context.Background(), other, nil)
	if !errors.Is(err, nflog.ErrGroupBusy) {
		t.Fatalf("second server's Apply = %v; want nflog.ErrGroupBusy", err)
	}
	_, protected, err := l.fw.DoorHolders(context.Background())
	if err != nil || len(protected) != 1 || protected[0] != ssh {
		t.Errorf("protected ports after the second server failed: %+v, %v; want only 2222/tcp", protected, err)
	}
}
