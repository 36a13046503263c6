package knock

import (
	"bytes"
	"context"
	"encoding/binary"
	"net/netip"
	"testing"
	"time"

	"portolan/internal/nflog"
	"portolan/internal/portspec"
)

// packetTo builds an IPv4 packet from 198.18.0.2 to 198.18.0.1:port with
// payload (UDP) or flags (TCP).
func packetTo(proto uint8, port uint16, flags uint8, payload []byte) []byte {
	var l4 []byte
	if proto == nflog.ProtoTCP {
		l4 = make([]byte, 20)
		l4[12], l4[13] = 5<<4, flags
	} else {
		l4 = make([]byte, 8)
		binary.BigEndian.PutUint16(l4[4:], uint16(8+len(payload)))
		l4 = append(l4, payload...)
	}
	binary.BigEndian.PutUint16(l4, 40000)
	binary.BigEndian.PutUint16(l4[2:], port)
	h := make([]byte, 20)
	h[0], h[8], h[9] = 0x45, 64, proto
	binary.BigEndian.PutUint16(h[2:], uint16(20+len(l4)))
	copy(h[12:], []byte{198, 18, 0, 2})
	copy(h[16:], []byte{198, 18, 0, 1})
	return append(h, l4...)
}

// fuzzServer is a server whose doors open nothing real: OpenDoor records.
func fuzzServer(t testing.TB) (*Server, *[]Event) {
	seq, _ := ParseSequence("7000,8000/udp,9000")
	cfg := &Config{AuthorizedKeys: "keys", Doors: []Door{{Name: "ssh", Protect: []DoorPort{{Proto: portspec.TCP, Port: 22}}, Sequence: seq}}}
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	keys, err := ParseAuthorizedKeys("keys", (&ClientKey{Alg: Ed25519, Private: testPriv}).PublicLine("laptop"))
	if err != nil {
		t.Fatal(err)
	}
	var events []Event
	s := &Server{
		Now:      func() time.Time { return time.UnixMilli(1_800_000_000_000) },
		OpenDoor: func(context.Context, netip.Addr, []DoorPort, time.Duration) error { return nil },
		Events:   func(e Event) { events = append(events, e) },
	}
	s.m.init()
	s.cfg, s.keys, s.track = cfg, keys, newTracker(cfg.Doors, 1<<10)
	s.seen, s.until = map[[16]byte]time.Time{}, map[closeKey]Event{}
	return s, &events
}

// TestHandle runs packets through the server's decision without a
// firewall: a sequence opens, an SPA request opens once, its replay and
// junk do not.
func TestHandle(t *testing.T) {
	s, events := fuzzServer(t)
	ctx := context.Background()
	feed := func(b []byte) { s.handle(ctx, &nflog.Packet{Payload: b}) }
	feed(packetTo(nflog.ProtoTCP, 7000, nflog.TCPSyn, nil))
	feed(packetTo(nflog.ProtoUDP, 8000, 0, []byte{0}))
	feed(packetTo(nflog.ProtoTCP, 9000, nflog.TCPSyn|nflog.TCPAck, nil)) // not a knock
	feed(packetTo(nflog.ProtoTCP, 9000, nflog.TCPSyn, nil))
	req := Request{Time: s.Now(), AllowIP: netip.MustParseAddr("198.18.0.2"), Ports: []DoorPort{{Proto: portspec.TCP, Port: 22}}}
	b, err := req.SignEd25519(testPriv)
	if err != nil {
		t.Fatal(err)
	}
	feed(packetTo(nflog.ProtoUDP, DefaultSPAPort, 0, b))
	feed(packetTo(nflog.ProtoUDP, DefaultSPAPort, 0, b))
	feed(packetTo(nflog.ProtoUDP, DefaultSPAPort, 0, b[:40]))
	feed([]byte{0x45})
	var got []string
	for _, e := range *events {
		got = append(got, e.Type+"/"+e.Via+"/"+e.Reason)
	}
	want := []string{"opened/sequence/", "opened/spa/", "rejected/spa/replayed nonce"}
	if len(got) != len(want) {
		t.Fatalf("events %q; want %q", got, want)
	}
	for i := range want {
		if got[i] != want[i] {
			t.Errorf("event %d = %q; want %q", i, got[i], want[i])
		}
	}
}

// FuzzHandle feeds arbitrary packets to the server: nothing may panic, and
// nothing but a completed sequence may open (the fuzzer has no key).
func FuzzHandle(f *testing.F) {
	f.Add(packetTo(nflog.ProtoTCP, 7000, nflog.TCPSyn, nil))
	f.Add(packetTo(nflog.ProtoUDP, 8000, 0, []byte{1}))
	req := Request{Time: time.UnixMilli(1_800_000_000_000), AllowIP: netip.MustParseAddr("198.18.0.2"), Ports: []DoorPort{{Proto: portspec.TCP, Port: 22}}}
	b, _ := req.SignEd25519(testPriv)
	f.Add(packetTo(nflog.ProtoUDP, DefaultSPAPort, 0, b))
	f.Fuzz(func(t *testing.T, pkt []byte) {
		s, events := fuzzServer(t)
		s.handle(context.Background(), &nflog.Packet{Payload: pkt})
		for _, e := range *events {
			if e.Type == EventOpened && e.Via == "spa" && !bytes.Contains(pkt, b) {
				t.Fatalf("a request not signed by the key opened: %+v", e)
			}
		}
	})
}
