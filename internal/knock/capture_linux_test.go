package knock

import (
	"context"
	"crypto/ecdh"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"portolan/internal/nflog"
	"portolan/internal/portspec"
	"portolan/internal/testenv"
)

// TestPacketCaptureReads opens the AF_PACKET capture in a namespace and
// checks what it passes: a watched port's packet, with the kernel's
// receive time, and not an unwatched one.
func TestPacketCaptureReads(t *testing.T) {
	l := newLab(t, 30*time.Second)
	c, err := openPacketCapture(l.srv.FD(), []DoorPort{{Proto: portspec.UDP, Port: 8000}})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	send := func(port int) {
		t.Helper()
		u, err := l.cli.DialContext(context.Background(), "udp", netip.AddrPortFrom(l.link.A4, uint16(port)).String())
		if err != nil {
			t.Fatal(err)
		}
		defer u.Close()
		if _, err := u.Write([]byte("knock")); err != nil {
			t.Fatal(err)
		}
	}
	before := time.Now()
	send(8001)
	send(8000)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	pkts := make([]nflog.Packet, 4)
	n, err := c.Read(ctx, pkts)
	if err != nil {
		t.Fatal(err)
	}
	f, err := pkts[0].Flow()
	if err != nil {
		t.Fatal(err)
	}
	if n != 1 || f.Proto != nflog.ProtoUDP || f.Dst != netip.AddrPortFrom(l.link.A4, 8000) || f.Src.Addr() != l.link.B4 || string(f.Data) != "knock" {
		t.Errorf("read %d packets, the first %+v; want one, from %s to %s:8000 with data \"knock\"", n, f, l.link.B4, l.link.A4)
	}
	if ts := pkts[0].Timestamp; ts.Before(before.Add(-time.Second)) || ts.After(time.Now().Add(time.Second)) {
		t.Errorf("timestamp %v; want the receive time, between %v and now", ts, before)
	}
	// A cancelled read returns at once.
	cctx, ccancel := context.WithCancel(context.Background())
	time.AfterFunc(50*time.Millisecond, ccancel)
	if _, err := c.Read(cctx, pkts); !errors.Is(err, context.Canceled) {
		t.Errorf("Read after cancel = %v; want context.Canceled", err)
	}
}

// TestPacketCapture runs the daemon on AF_PACKET: the doors' chain drops
// the knocks without a log rule, the NFLOG group stays free, sequences
// and SPA (IPv4 and IPv6) open the door, and a reload's new sequence is
// captured.
func TestPacketCapture(t *testing.T) {
	testenv.RequireCommand(t, "nft")
	l := newLab(t, 30*time.Second)
	l.capture = CapturePacket
	l.start(t, nil)
	if mode, why := l.server.Capturing(); mode != CapturePacket || why != nil {
		t.Fatalf("Capturing() = %q, %v; want %q, nil", mode, why, CapturePacket)
	}
	out, err := l.srv.Command(context.Background(), "nft", "list", "chain", "inet", "portolan", "knock").CombinedOutput()
	if err != nil {
		t.Fatalf("nft list chain: %v\n%s", err, out)
	}
	if strings.Contains(string(out), " log ") || !strings.Contains(string(out), "@knock_watch drop") {
		t.Errorf("doors' chain under AF_PACKET capture:\n%s\nwant the watched ports dropped without a log rule", out)
	}
	r, err := nflog.Open(context.Background(), nflog.Config{Group: DefaultGroup, NetNS: l.srv.FD()})
	if err != nil {
		t.Errorf("NFLOG group %d under AF_PACKET capture: %v; want it free", DefaultGroup, err)
	} else {
		r.Close()
	}

	knock := func(addr netip.Addr, spec string) {
		t.Helper()
		seq, err := ParseSequence(spec)
		if err != nil {
			t.Fatal(err)
		}
		if err := l.cli.Do(func() error { return Knock(context.Background(), addr, seq, 10*time.Millisecond) }); err != nil {
			t.Fatal(err)
		}
	}
	if l.reachable(t, l.link.A4) {
		t.Fatal("2222/tcp reachable before any knock")
	}
	knock(l.link.A4, "9000,8000/udp,7000")
	l.noEvent(t, EventOpened)
	knock(l.link.A4, "7000,8000/udp,9000")
	if e := l.event(t, EventOpened); e.Via != "sequence" || e.Allow != l.link.B4 || e.Latency <= 0 || e.Latency > 10*time.Second {
		t.Errorf("opened event %+v; want the sequence opening for %s", e, l.link.B4)
	}
	if !l.open(t, l.link.A4) {
		t.Fatal("2222/tcp not reachable after the sequence")
	}

	l.spa(t, l.mac, nil, l.link.A6, netip.Addr{}, []DoorPort{ssh}, 0)
	if e := l.event(t, EventOpened); e.Via != "spa" || e.Allow != l.link.B6 {
		t.Errorf("opened event %+v; want SPA opening for %s", e, l.link.B6)
	}
	if !l.open(t, l.link.A6) {
		t.Fatal("[fd00::1]:2222 not reachable after the SPA request")
	}

	// A reload with another sequence: the filter follows.
	cfg := *l.cfg
	cfg.Doors = []Door{{Name: "ssh", Protect: []DoorPort{ssh}, Sequence: []DoorPort{{Proto: portspec.UDP, Port: 7100}, {Proto: portspec.TCP, Port: 7200}}, OpenFor: 30 * time.Second}}
	if err := l.server.Apply(context.Background(), &cfg, l.keys); err != nil {
		t.Fatal(err)
	}
	knock(l.link.A6, "7100/udp,7200")
	if e := l.event(t, EventOpened); e.Via != "sequence" || e.Allow != l.link.B6 {
		t.Errorf("opened event %+v; want the new sequence opening for %s", e, l.link.B6)
	}
}

// TestCaptureFallsBack: where NFLOG cannot be opened (as without
// nfnetlink_log, whose configuration messages the kernel refuses), the
// automatic capture falls back to AF_PACKET and says why; the doors work.
// A group held by another daemon is no reason to fall back.
func TestCaptureFallsBack(t *testing.T) {
	l := newLab(t, 30*time.Second)
	missing := fmt.Errorf("open nflog group %d: %w", DefaultGroup, syscall.EINVAL)
	s := &Server{Firewall: l.fw, Events: func(e Event) { l.events <- e },
		openNFLOG: func(context.Context, nflog.Config) (capture, error) { return nil, missing }}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	if err := s.Apply(ctx, l.cfg, l.keys); err != nil {
		t.Fatal(err)
	}
	if mode, why := s.Capturing(); mode != CapturePacket || !errors.Is(why, syscall.EINVAL) {
		t.Fatalf("Capturing() = %q, %v; want %q because of %v", mode, why, CapturePacket, missing)
	}
	done := make(chan error, 1)
	go func() { done <- s.Serve(ctx) }()
	l.spa(t, l.ed, nil, l.link.A4, netip.Addr{}, []DoorPort{ssh}, 0)
	l.event(t, EventOpened)
	if !l.open(t, l.link.A4) {
		t.Fatal("2222/tcp not reachable after the SPA request")
	}
	cancel()
	if err := <-done; err != nil {
		t.Errorf("Serve: %v", err)
	}

	for _, mode := range []string{CaptureNFLOG, CaptureAuto} {
		err := (&Server{Firewall: l.fw, Capture: mode,
			openNFLOG: func(context.Context, nflog.Config) (capture, error) {
				if mode == CaptureAuto {
					return nil, fmt.Errorf("open nflog group: %w", nflog.ErrGroupBusy)
				}
				return nil, missing
			}}).Apply(context.Background(), l.cfg, l.keys)
		if err == nil {
			t.Errorf("Capture %q with NFLOG failing: Apply succeeded; want the NFLOG error", mode)
		}
	}
}

// TestSealedSPA: with a server key and sealed-only, an unsealed request is
// rejected with its reason, one sealed to another server's key opens
// nothing, and a sealed one opens the door (over IPv6 here).
func TestSealedSPA(t *testing.T) {
	l := newLab(t, 30*time.Second)
	srv := serverKey(t, 1)
	l.cfg.ServerPrivate, l.cfg.SealedOnly = srv, true
	l.start(t, nil)
	send := func(server *ecdh.PublicKey, to netip.Addr) {
		t.Helper()
		if err := l.cli.Do(func() error {
			_, err := (&SPA{Key: l.ed, Server: server}).Send(context.Background(), netip.AddrPortFrom(to, DefaultSPAPort), netip.Addr{}, []DoorPort{ssh}, 0)
			return err
		}); err != nil {
			t.Fatal(err)
		}
	}
	send(nil, l.link.A4)
	if e := l.event(t, EventRejected); e.Reason != ReasonUnsealed {
		t.Errorf("unsealed request under sealed-only: %+v; want rejected %q", e, ReasonUnsealed)
	}
	send(serverKey(t, 2).PublicKey(), l.link.A4)
	l.noEvent(t, EventOpened)
	if l.reachable(t, l.link.A4) {
		t.Fatal("2222/tcp reachable after requests that must not open it")
	}
	send(srv.PublicKey(), l.link.A6)
	if e := l.event(t, EventOpened); e.Key != "laptop" || e.Allow != l.link.B6 {
		t.Errorf("opened event %+v; want laptop opening for %s", e, l.link.B6)
	}
	if !l.open(t, l.link.A6) {
		t.Fatal("[fd00::1]:2222 not reachable after the sealed request")
	}
	if !strings.Contains(l.logs.String(), `"reason":"not sealed"`) {
		t.Errorf("no rejected line with the reason in the log:\n%s", l.logs.String())
	}
}

// TestOneTimeSequences: each sequence of the file opens the door once and
// is then commented out; a used one opens nothing, also after a restart,
// and the door moves on to the next line.
func TestOneTimeSequences(t *testing.T) {
	l := newLab(t, 30*time.Second)
	path := filepath.Join(t.TempDir(), "ssh.sequences")
	if err := os.WriteFile(path, []byte("7000,8000/udp,9000\n# the phone's\n7100/udp,7200\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	l.cfg.Doors[0].Sequence, l.cfg.Doors[0].OneTime = nil, path
	if err := l.cfg.LoadOneTime(); err != nil {
		t.Fatal(err)
	}
	l.start(t, nil)
	knock := func(addr netip.Addr, spec string) {
		t.Helper()
		seq, _ := ParseSequence(spec)
		if err := l.cli.Do(func() error { return Knock(context.Background(), addr, seq, 10*time.Millisecond) }); err != nil {
			t.Fatal(err)
		}
	}
	knock(l.link.A4, "7100/udp,7200") // not yet: the first line comes first
	l.noEvent(t, EventOpened)
	knock(l.link.A4, "7000,8000/udp,9000")
	if e := l.event(t, EventOpened); e.Via != "sequence" || e.Allow != l.link.B4 {
		t.Errorf("opened event %+v; want the first sequence opening for %s", e, l.link.B4)
	}
	if b, _ := os.ReadFile(path); !strings.HasPrefix(string(b), "#used ") || !strings.HasSuffix(string(b), "\n# the phone's\n7100/udp,7200\n") {
		t.Errorf("file after the first use:\n%s\nwant its first line commented out", b)
	}
	knock(l.link.A6, "7000,8000/udp,9000") // a replay, from elsewhere
	l.noEvent(t, EventOpened)
	if l.reachable(t, l.link.A6) {
		t.Fatal("[fd00::1]:2222 reachable after a used sequence")
	}

	// A restart reads the file: the used line stays used.
	l.stop()
	if err := l.cfg.LoadOneTime(); err != nil {
		t.Fatal(err)
	}
	if n := l.cfg.Doors[0].OneTimeLeft(); n != 1 {
		t.Errorf("after a restart, %d one-time sequences left; want 1", n)
	}
	l.start(t, nil)
	knock(l.link.A6, "7000,8000/udp,9000")
	l.noEvent(t, EventOpened)
	knock(l.link.A6, "7100/udp,7200")
	if e := l.event(t, EventOpened); e.Allow != l.link.B6 {
		t.Errorf("opened for %s; want %s", e.Allow, l.link.B6)
	}
	if !l.open(t, l.link.A6) {
		t.Fatal("[fd00::1]:2222 not reachable after the second sequence")
	}
	if !strings.Contains(l.logs.String(), "one-time sequences used up") {
		t.Errorf("no used-up warning in the log:\n%s", l.logs.String())
	}
}
