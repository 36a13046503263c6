package nflog

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"strings"
	"testing"
	"time"

	"portolan/internal/netlab"
	"portolan/internal/testenv"
)

// logLab is a namespace pair whose srv (198.18.0.1, fd00::1) logs and drops
// TCP to 7000 and UDP to 7001 into NFLOG group 7 (queue threshold 1), and
// UDP to 7002 into group 8, from cli (198.18.0.2, fd00::2).
func logLab(t *testing.T) (srv, cli *netlab.Host, lk *netlab.Link) {
	t.Helper()
	srv, cli, lk = netlab.NewPair(t)
	testenv.RequireCommand(t, "nft")
	rules := `table inet nflogtest {
	chain input {
		type filter hook input priority filter; policy accept;
		tcp dport 7000 log prefix "knock tcp" group 7 queue-threshold 1 drop
		udp dport 7001 log prefix "knock udp" group 7 queue-threshold 1 drop
		udp dport 7002 log prefix "flood" group 8 queue-threshold 1 drop
	}
}
`
	cmd := srv.Command(context.Background(), "nft", "-f", "-")
	cmd.Stdin = strings.NewReader(rules)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("nft -f: %v: %s", err, out)
	}
	return srv, cli, lk
}

func open(t *testing.T, h *netlab.Host, cfg Config) *Reader {
	t.Helper()
	cfg.NetNS = h.FD()
	r, err := Open(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { r.Close() })
	return r
}

// read returns the next packet, failing the test after 10 s.
func read(t *testing.T, r *Reader) Packet {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	var pkts [1]Packet
	if _, err := r.Read(ctx, pkts[:]); err != nil {
		t.Fatal(err)
	}
	return pkts[0]
}

func ifindex(t *testing.T, h *netlab.Host, dev string) uint32 {
	t.Helper()
	var idx int
	if err := h.Do(func() error {
		ifc, err := net.InterfaceByName(dev)
		if err == nil {
			idx = ifc.Index
		}
		return err
	}); err != nil {
		t.Fatal(err)
	}
	return uint32(idx)
}

// TestReadLoggedPackets sends a TCP SYN over IPv4 and a UDP datagram over
// IPv6 at srv's log rules and checks what the reader reports of each.
func TestReadLoggedPackets(t *testing.T) {
	srv, cli, lk := logLab(t)
	r := open(t, srv, Config{Group: 7})
	idx := ifindex(t, srv, lk.ADev)

	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	if c, err := cli.DialContext(ctx, "tcp", "198.18.0.1:7000"); err == nil {
		c.Close()
		t.Fatal("connected to 7000/tcp through a drop rule")
	}
	p := read(t, r)
	f, err := p.Flow()
	if err != nil {
		t.Fatal(err)
	}
	if p.Prefix != "knock tcp" || p.Group != 7 || p.Hook != 1 || p.InDev != idx || p.HWProto != 0x0800 {
		t.Errorf("packet prefix %q group %d hook %d indev %d proto %#x; want \"knock tcp\" 7 1 %d 0x800", p.Prefix, p.Group, p.Hook, p.InDev, p.HWProto, idx)
	}
	if p.HWAddr.String() != lk.BMAC.String() {
		t.Errorf("hwaddr %s; want cli's %s", p.HWAddr, lk.BMAC)
	}
	if d := time.Since(p.Timestamp); d < -time.Minute || d > time.Minute {
		t.Errorf("timestamp %v is not about now", p.Timestamp)
	}
	if !p.HasSeq {
		t.Error("no sequence number")
	}
	if f.Proto != ProtoTCP || f.Src.Addr() != lk.B4 || f.Dst != netip.AddrPortFrom(lk.A4, 7000) || f.TCPFlags&(TCPSyn|TCPAck) != TCPSyn {
		t.Errorf("flow %+v; want a SYN from %s to %s:7000", f, lk.B4, lk.A4)
	}

	c, err := cli.DialContext(context.Background(), "udp", "[fd00::1]:7001")
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	// The SYN may be retransmitted meanwhile; look for the datagram.
	for range 10 {
		if _, err := c.Write([]byte("hello over v6")); err != nil {
			t.Fatal(err)
		}
		p = read(t, r)
		if p.Prefix == "knock udp" {
			break
		}
	}
	f, err = p.Flow()
	if err != nil {
		t.Fatal(err)
	}
	if p.Prefix != "knock udp" || f.Proto != ProtoUDP || f.Src.Addr() != lk.B6 || f.Dst != netip.AddrPortFrom(lk.A6, 7001) || string(f.Data) != "hello over v6" {
		t.Errorf("packet %q flow %+v data %q; want the datagram from %s to [%s]:7001", p.Prefix, f, f.Data, lk.B6, lk.A6)
	}
}

// TestReadCancel checks a Read ends with the context, and that the next
// Read with a live context still gets packets.
func TestReadCancel(t *testing.T) {
	srv, cli, _ := logLab(t)
	r := open(t, srv, Config{Group: 7})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		var pkts [4]Packet
		_, err := r.Read(ctx, pkts[:])
		done <- err
	}()
	time.Sleep(50 * time.Millisecond)
	cancel()
	select {
	case err := <-done:
		if !errors.Is(err, context.Canceled) {
			t.Fatalf("Read after cancel = %v; want context.Canceled", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Read did not return after cancel")
	}
	c, err := cli.DialContext(context.Background(), "udp", "198.18.0.1:7001")
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.Write([]byte("after"))
	if p := read(t, r); p.Prefix != "knock udp" {
		t.Errorf("after cancel: prefix %q; want \"knock udp\"", p.Prefix)
	}
}

// TestGroupBusy checks a second reader of a bound group gets ErrGroupBusy.
func TestGroupBusy(t *testing.T) {
	srv, _, _ := logLab(t)
	open(t, srv, Config{Group: 7})
	_, err := Open(context.Background(), Config{Group: 7, NetNS: srv.FD()})
	if !errors.Is(err, ErrGroupBusy) {
		t.Fatalf("second Open of group 7 = %v; want ErrGroupBusy", err)
	}
}

// TestLostCounted overflows a small socket buffer and checks every
// datagram sent is either read or counted lost.
func TestLostCounted(t *testing.T) {
	srv, cli, _ := logLab(t)
	r := open(t, srv, Config{Group: 8, ReadBuffer: 4096, Batch: 4})
	c, err := cli.DialContext(context.Background(), "udp", "198.18.0.1:7002")
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	const flood = 100
	data := []byte(strings.Repeat("x", 1000))
	for range flood {
		if _, err := c.Write(data); err != nil {
			t.Fatal(err)
		}
	}
	got := 0
	pkts := make([]Packet, 4)
	for { // until quiet: the flood is then all delivered or dropped
		ctx, cancel := context.WithTimeout(context.Background(), 500*time.Millisecond)
		n, err := r.Read(ctx, pkts)
		cancel()
		if errors.Is(err, context.DeadlineExceeded) {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		got += n
	}
	// A loss shows once a later message arrives. A flood datagram that
	// a busy machine delivers after the marker is read after it too.
	c.Write([]byte("marker"))
	for marked := false; ; {
		ctx, cancel := context.WithTimeout(context.Background(), 500*time.Millisecond)
		if !marked {
			cancel()
			ctx, cancel = context.WithTimeout(context.Background(), 10*time.Second)
		}
		n, err := r.Read(ctx, pkts)
		cancel()
		if marked && errors.Is(err, context.DeadlineExceeded) {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		for _, p := range pkts[:n] {
			if f, _ := p.Flow(); string(f.Data) == "marker" {
				marked = true
			}
		}
		got += n
	}
	s := r.Stats()
	t.Logf("read %d, stats %+v", got, s)
	if uint64(got)+s.Lost != flood+1 {
		t.Errorf("read %d + lost %d = %d; want %d sent", got, s.Lost, uint64(got)+s.Lost, flood+1)
	}
	if s.Lost == 0 || s.Overruns == 0 {
		t.Errorf("stats %+v; want losses and overruns from a %d-byte buffer", s, 4096)
	}
	if s.Packets != uint64(got) {
		t.Errorf("stats.Packets %d; want %d", s.Packets, got)
	}
}

func Example() {
	ctx := context.Background()
	r, err := Open(ctx, Config{Group: 7})
	if err != nil {
		fmt.Println(err)
		return
	}
	defer r.Close()
	pkts := make([]Packet, 64)
	for {
		n, err := r.Read(ctx, pkts)
		if err != nil {
			return
		}
		for _, p := range pkts[:n] {
			if f, err := p.Flow(); err == nil {
				fmt.Println(p.Prefix, f.Src, "->", f.Dst)
			}
		}
	}
}
