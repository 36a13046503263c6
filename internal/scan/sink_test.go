package scan

import (
	"context"
	"errors"
	"net/netip"
	"testing"

	"portolan/internal/portspec"
)

// recordSink keeps what a SinkWriter hands it, in order.
type recordSink struct {
	events []string
	n      int
	fail   error
}

func (s *recordSink) AddResults(_ context.Context, rs []Result) error {
	s.n += len(rs)
	return s.fail
}

func (s *recordSink) Checkpoint(_ context.Context, pos uint64, t Totals) error {
	s.events = append(s.events, "checkpoint")
	if t.Probes != uint64(s.n) {
		s.events = append(s.events, "checkpoint before its results")
	}
	return nil
}

// TestSinkWriter: results reach the sink before the checkpoint that
// covers them, in batches, and the first error stops the scan once.
func TestSinkWriter(t *testing.T) {
	sink := &recordSink{}
	w := NewSinkWriter(context.Background(), sink, nil)
	var tally Tally
	a := netip.MustParseAddr("127.0.0.1")
	for i := range 10000 {
		r := Result{Addr: a, Port: portspec.Port(i%65535 + 1), Proto: portspec.TCP, State: Closed}
		tally.Add(r)
		w.Add(r)
		if i%3000 == 0 {
			w.Checkpoint(uint64(i+1), tally.Totals)
		}
	}
	w.Checkpoint(10000, tally.Totals)
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	if sink.n != 10000 || len(sink.events) != 5 || tally.HostsUp != 1 || tally.Closed != 10000 {
		t.Errorf("sink got %d results, events %v, tally %+v; want 10000, 5 checkpoints in order, 1 host up", sink.n, sink.events, tally.Totals)
	}

	failed := 0
	bad := &recordSink{fail: errors.New("disk full")}
	w = NewSinkWriter(context.Background(), bad, func() { failed++ })
	for range 3 * sinkBatch {
		w.Add(Result{Addr: a, Port: 1, Proto: portspec.TCP, State: Closed})
	}
	if err := w.Close(); err == nil || failed != 1 {
		t.Errorf("failing sink: Close = %v, failed called %d times; want the error, once", err, failed)
	}
}

func TestProberByName(t *testing.T) {
	if p, err := ProberByName("connect", ProberOptions{}); err != nil || p != (ConnectProber{}) {
		t.Errorf("ProberByName(connect) = %v, %v", p, err)
	}
	if p, err := ProberByName("syn", ProberOptions{}); err != nil || p != (SYNProber{}) {
		t.Errorf("ProberByName(syn) = %v, %v", p, err)
	}
	l := Local{Iface: "eth1", Addr: netip.MustParseAddr("198.18.0.2"), Port: 53}
	if p, err := ProberByName("syn", ProberOptions{Local: l, MinRate: 5000}); err != nil || p != (SYNProber{Local: l, MinRate: 5000}) {
		t.Errorf("ProberByName(syn, %v) = %v, %v", l, p, err)
	}
	if p, err := ProberByName("udp", ProberOptions{Local: l}); err != nil || p.(UDPProber).Local != l {
		t.Errorf("ProberByName(udp, %v) = %v, %v", l, p, err)
	}
	if _, err := ProberByName("xmas", ProberOptions{}); !errors.Is(err, ErrUnsupported) {
		t.Errorf("ProberByName(xmas) = %v; want ErrUnsupported", err)
	}
}
